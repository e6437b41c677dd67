"""CWT-Net (Chen et al., "CWT-Net: Super-resolution of Histopathology Images Using a
Cross-scale Wavelet-based Transformer"), images in [0, 1]. Readings of the paper: docs/cwtnet.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cwtnet.choices import V_MODES, WT_BANDS
from cwtnet.model.attention import TransformerBlock
from cwtnet.model.blocks import (
    RCAB,
    MeanShift,
    ResBlock,
    Upsampler,
    default_conv,
    make_layer,
    resolve_mean,
)
from cwtnet.model.wavelet import dwt_haar, haar_hh


@dataclass
class CWTNetOptions:
    """CWT-Net options; defaults are the paper's (Section IV-B and ``cwtnet.choices.PAPER_READING``),
    see ``CWTNet``. ``cwtnet-train`` trains another setting by default (``TrainConfig``)."""

    n_cwtb: int = 12
    num_feat: int = 64
    rb_s: int = 2
    rb_w: int | None = None
    n_wrb: int | None = None
    wr_reduction: int = 8
    # -- Table II variants and the WR reading (issue 10 s2-3; docs/cwtnet.md) --
    variant: str = "full"
    wr_mode: str = "predict"
    # -- end of the variants block --
    res_scale: float = 1.0
    mean: str | tuple[float, float, float] = "mlcamsr"
    v_mode: str = "paper"
    chunk_size: int | None = None
    ref_dropout: float = 0.25
    double_residual: bool = False
    search_window: int | None = None
    qk_extractor: bool = False
    wt_input_scale: float = 1.0
    wt_bands: str = "hh"


VARIANTS = ("full", "no-wr", "no-dwt", "sr-only")
"""Table II rows as ``variant``: ``sr-only`` (SR branch only), ``no-dwt`` (+ WT branch and
Transformer, the reference without DWT), ``no-wr`` (+ DWT), ``full`` (+ WR)."""

WR_MODES = ("predict", "paper")
"""``wr_mode``: ``predict`` (WR maps the LR image to the HH band, used only without a
reference) or ``paper`` (WR's channel-attention blocks at the WT branch's entrance, on
DWT(I'_GT) features, or on the LR features when there is no reference; Eq. 6 pools f_hwt)."""



def depths_for_scale(scale: int, rb_w: int | None = None, n_wrb: int | None = None) -> tuple[int, int]:
    """(RBs per B_RBw, WRBs in WR) at ``scale``: 2 and 4 at x2, +1 and +2 per doubling (IV-B)."""
    steps = max(0, round(math.log2(scale)) - 1)
    return (2 + steps if rb_w is None else rb_w), (4 + 2 * steps if n_wrb is None else n_wrb)


class CWTB(nn.Module):
    """Cross-scale Wavelet-based Transformer Block: B_RBs, B_RBw and a Transformer block (Eq. 2, 5, 9).

    Args:
        num_feat (int): Channels. Default: 64.
        rb_s (int): Residual blocks in B_RBs (SR branch). Default: 2.
        rb_w (int): Residual blocks in B_RBw (WT branch). Default: 2.
        res_scale (float): Residual scale of every RB. Default: 1.0.
        v_mode (str): ``TransformerBlock`` K/V order, ``"paper"`` or ``"ttsr"``. Default: "paper".
        chunk_size (int | None): Query chunk of the search. Default: None (auto).
        double_residual (bool): Eq. (2) read literally on top of Eq. (9) (adds Q twice).
            Default: False.
        search_window (int | None): Search window in LR px either side; ``None`` = global.
            Default: None.
        qk_extractor (bool): Search between a shared learnable extractor's Q and K. Default: False.
    """

    def __init__(self, num_feat: int = 64, rb_s: int = 2, rb_w: int = 2, res_scale: float = 1.0,
                 v_mode: str = "paper", chunk_size: int | None = None,
                 double_residual: bool = False, search_window: int | None = None,
                 qk_extractor: bool = False) -> None:
        super().__init__()
        self.rb_s = make_layer(ResBlock, rb_s, num_feat=num_feat, res_scale=res_scale)
        self.rb_w = make_layer(ResBlock, rb_w, num_feat=num_feat, res_scale=res_scale)
        self.transformer = TransformerBlock(num_feat, v_mode=v_mode, chunk_size=chunk_size,
                                            window=search_window, qk_extractor=qk_extractor)
        self.double_residual = double_residual

    def forward(self, f_sr: torch.Tensor, f_hwt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.rb_s(f_sr)  # B_RBs^m(f_sr^{m-1})
        f_hwt = self.rb_w(f_hwt)  # Eq. (5): f_hwt^m = B_RBw^m(f_hwt^{m-1})
        f_sr = self.transformer(q, f_hwt)  # Eq. (9): Q + C{Concat(Q, T)} * S  (= Eq. 2)
        if self.double_residual:
            f_sr = q + f_sr  # Eq. (2) with its own extra Q
        return f_sr, f_hwt


class WaveletReconstruction(nn.Module):
    """WR module (Section III-C, Eq. 6-7): predicts the WT-branch input (the HH sub-band, or
    the three detail bands) from the LR image.

    ``conv(3 -> C) -> n_wrb x WRB -> conv(C -> out_channels)``; each WRB is an RCAB whose channel
    attention is Eq. (6-7) (global average pool, 1x1 conv down by ``reduction``, ReLU, 1x1
    conv up, sigmoid). Output (B, out_channels, H, W), the same size as the LR input and
    as the WT input of I'_GT (``haar_hh``, or LH/HL/HH), so no resampling is needed.

    Args:
        num_feat (int): Channels. Default: 64.
        n_wrb (int): WRBs. Default: 4.
        reduction (int): Channel reduction of the attention (the paper's 8). Default: 8.
        out_channels (int): 3 (HH) or 9 (LH, HL, HH). Default: 3.
    """

    def __init__(self, num_feat: int = 64, n_wrb: int = 4, reduction: int = 8,
                 out_channels: int = 3) -> None:
        super().__init__()
        self.conv_first = default_conv(3, num_feat, 3)
        self.body = make_layer(RCAB, n_wrb, num_feat=num_feat, reduction=reduction)
        self.conv_last = default_conv(num_feat, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.body(self.conv_first(x)))


class CWTNet(nn.Module):
    """CWT-Net: SR branch + WT branch joined by Transformer blocks (Section III, Fig. 2).

    ``sr = model(lr, ref=None)``: ``lr`` (B, 3, H, W) in [0, 1]; ``ref`` = I'_GT
    (B, 3, 2H, 2W) in [0, 1] or ``None`` (SISR mode: the WR module predicts the WT-branch
    input from ``lr``). Returns ``sr`` (B, 3, sH, sW); the WT-branch output I_WT of the
    last call is kept in ``model.last_wt``. For training use ``forward_train``, which
    returns everything the loss needs (keys in docs/cwtnet.md).

    Args:
        scale (int): Upsampling factor, 2, 4 or 8 (3 works, depths as x2). Default: 2.
        options (CWTNetOptions): ``None`` means the defaults.
            n_cwtb (int): CWTBs. Default: 12.
            num_feat (int): Channels of every 3x3 convolution. Default: 64.
            rb_s (int): RBs per B_RBs (paper silent). Default: 2.
            rb_w (int | None): RBs per B_RBw; ``None`` = 2 at x2, +1 per doubling. Default: None.
            n_wrb (int | None): WRBs in WR; ``None`` = 4 at x2, +2 per doubling. Default: None.
            wr_reduction (int): WR channel-attention reduction. Default: 8.
            variant (str): Table II row: ``"full"``, ``"no-wr"`` (no WR module; without a
                reference the WT branch gets DWT(bicubic x2 of the LR image)), ``"no-dwt"``
                (no WR, no DWT: the WT branch gets the reference image itself on the LR
                grid, a 2x2 mean, and L_WT compares with that), ``"sr-only"`` (the SR
                branch alone: ``n_cwtb`` groups of ``rb_s`` RBs, no WT branch, no
                Transformer; ``ref`` is ignored). Default: "full".
            wr_mode (str): ``"predict"`` or ``"paper"`` (see ``WR_MODES``). Default: "predict".
            res_scale (float): Residual scale of every RB. Default: 1.0.
            mean (str | tuple): MeanShift mean, ``"mlcamsr"`` (0.7204, 0.4298, 0.6379),
                ``"div2k"`` or an RGB triple. Default: "mlcamsr".
            v_mode (str): Transformer K/V order, ``"paper"`` (V = K up-down) or ``"ttsr"``
                (K = f_hwt down-up, V = f_hwt). Default: "paper".
            chunk_size (int | None): Query chunk of the search; ``None`` = auto. Default: None.
            ref_dropout (float): Training only: probability per sample that the WT branch
                gets the WR prediction instead of haar_hh(ref). Default: 0.25.
            double_residual (bool): Read Eq. (2) literally on top of Eq. (9). Default: False.
            search_window (int | None): Each query searches only K positions within this
                many LR px (rows and columns) of its own position; ``None`` = the paper's
                global search. Checkpoints without it load as global. Default: None.
            qk_extractor (bool): TTSR's shared extractor: Q and K pass through the same
                learnable conv-ReLU-conv before the search (the transfer still takes V).
                Default: False.
            wt_input_scale (float): Factor on the WT-branch input (the HH band of the
                reference or WR's prediction) before ``wt_first``; the band's std on
                histology is ~0.011 against ~0.18 for the LR image. Default: 1.0.
            wt_bands (str): Reference sub-bands on the WT branch, ``"hh"`` (Eq. 4) or
                ``"detail"`` (LH, HL, HH); see ``cwtnet.choices.WT_BANDS``. ``no-dwt``
                ignores it. Default: "hh" (``cwtnet-train``'s default is ``"detail"``).
    """

    has_params = True

    def __init__(self, scale: int = 2, options: CWTNetOptions | None = None) -> None:
        super().__init__()
        self.scale = scale
        self.options = opt = options or CWTNetOptions()
        if opt.v_mode not in V_MODES:
            raise ValueError(f"unknown v_mode {opt.v_mode!r}; choose one of: {', '.join(V_MODES)}")
        if opt.variant not in VARIANTS:
            raise ValueError(f"unknown variant {opt.variant!r}; choose one of: {', '.join(VARIANTS)}")
        if opt.wr_mode not in WR_MODES:
            raise ValueError(f"unknown wr_mode {opt.wr_mode!r}; choose one of: {', '.join(WR_MODES)}")
        if opt.wt_bands not in WT_BANDS:
            raise ValueError(f"unknown wt_bands {opt.wt_bands!r}; choose one of: {', '.join(WT_BANDS)}")
        if opt.search_window is not None and int(opt.search_window) < 0:
            raise ValueError(f"search_window must be >= 0 LR px or None (global), got {opt.search_window}")
        if not 0.0 <= opt.ref_dropout <= 1.0:
            raise ValueError(f"ref_dropout must be in [0, 1], got {opt.ref_dropout}")
        rb_w, n_wrb = depths_for_scale(scale, opt.rb_w, opt.n_wrb)
        mean = resolve_mean(opt.mean)
        c = opt.num_feat
        # WT-branch input channels: 3 per Haar band (``no-dwt`` takes the image itself)
        self.wt_channels = 9 if opt.wt_bands == "detail" and opt.variant != "no-dwt" else 3
        # SR branch entrance
        self.sub_mean = MeanShift(1.0, mean, sign=-1)
        self.conv_first = default_conv(3, c, 3)
        # WT branch entrance: WR (SISR mode) and the head conv after the DWT
        self.has_wt = opt.variant != "sr-only"
        self.has_wr = opt.variant == "full"
        self.wr_paper = self.has_wr and opt.wr_mode == "paper"
        self.wr: nn.Module
        if self.wr_paper:  # Eq. 6-7 on the WT branch's entrance features
            self.wr = make_layer(RCAB, n_wrb, num_feat=c, reduction=opt.wr_reduction)
        elif self.has_wr:
            self.wr = WaveletReconstruction(c, n_wrb, opt.wr_reduction, out_channels=self.wt_channels)
        if self.has_wt:
            self.wt_first = default_conv(self.wt_channels, c, 3)
        self.body = nn.ModuleList(
            CWTB(c, opt.rb_s, rb_w, opt.res_scale, opt.v_mode, opt.chunk_size, opt.double_residual,
                 opt.search_window, opt.qk_extractor)
            for _ in range(opt.n_cwtb)
        ) if self.has_wt else nn.ModuleList(
            make_layer(ResBlock, opt.rb_s, num_feat=c, res_scale=opt.res_scale)
            for _ in range(opt.n_cwtb)
        )
        # exits
        if self.has_wt:
            self.wt_last = default_conv(c, self.wt_channels, 3)
        self.upsample = Upsampler(scale, c)
        self.conv_last = default_conv(c, 3, 3)
        self.add_mean = MeanShift(1.0, mean, sign=1)
        self.last_wt: torch.Tensor | None = None

    def set_search_window(self, window: int | None) -> None:
        """Search window of every Transformer block from now on (``None`` = global), e.g. a
        globally trained checkpoint evaluated with a window; ``options`` follows."""
        if window is not None and int(window) < 0:
            raise ValueError(f"search_window must be >= 0 LR px or None (global), got {window}")
        self.options.search_window = None if window is None else int(window)
        for block in self.body:
            if isinstance(block, CWTB):
                block.transformer.window = self.options.search_window

    def _check(self, lr: torch.Tensor, ref: torch.Tensor | None) -> None:
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"lr must be (B, 3, H, W), got {tuple(lr.shape)}")
        if ref is not None:
            b, _, h, w = lr.shape
            if tuple(ref.shape) != (b, 3, 2 * h, 2 * w):
                raise ValueError(f"ref must be (B, 3, 2H, 2W) = {(b, 3, 2 * h, 2 * w)} for lr "
                                 f"{tuple(lr.shape)}, got {tuple(ref.shape)}")

    def _wt_input(self, ref: torch.Tensor) -> torch.Tensor:
        """The WT branch's input transform of a reference (B, 3, 2H, 2W) -> (B, wt_channels,
        H, W): DWT's HH band (Eq. 4), LH/HL/HH for ``wt_bands="detail"``, or for ``no-dwt``
        the mean-subtracted 2x2 mean (no DWT)."""
        if self.options.variant == "no-dwt":
            return self.sub_mean(F.avg_pool2d(ref, 2))
        if self.wt_channels == 9:
            return torch.cat(dwt_haar(ref)[1:], dim=1)
        return haar_hh(ref)

    def _lr_ref(self, lr: torch.Tensor) -> torch.Tensor:
        """Variants without WR, no reference: bicubic x2 of the LR image stands in (I_LR)."""
        return F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)

    def _branches(self, x: torch.Tensor, f_hwt: torch.Tensor,
                  used: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean-subtracted LR ``x`` and WT-branch input ``f_hwt`` (B, 3, H, W) -> (sr, I_WT).

        ``used`` (B,) bool, ``wr_mode="paper"`` only: samples whose WT entrance takes the
        reference's features (else the LR features f_sr^0); WR's blocks then run on both.
        """
        f_sr0 = self.conv_first(x)  # f_sr^0
        if not self.has_wt:  # Table II "SR branch only"
            f_sr = f_sr0
            for block in self.body:
                f_sr = block(f_sr)
            return self.add_mean(self.conv_last(self.upsample(f_sr0 + f_sr))), None
        f_sr, f_w = f_sr0, self.wt_first(f_hwt * self.options.wt_input_scale)  # f_hwt^0
        if self.wr_paper:  # WR (Eq. 6-7) on DWT(I'_GT) features, or on LR features
            if used is not None:
                f_w = torch.where(used.view(-1, 1, 1, 1), f_w, f_sr0)
            f_w = self.wr(f_w)
        for block in self.body:
            f_sr, f_w = block(f_sr, f_w)  # Eq. (2), (5), (9)
        f_sr = f_sr0 + f_sr  # Eq. (3): long skip
        sr = self.add_mean(self.conv_last(self.upsample(f_sr)))  # B_up, tail, mean restored
        return sr, self.wt_last(f_w)  # I_WT

    def forward(self, lr: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        self._check(lr, ref)
        x = self.sub_mean(lr)
        used = None
        if not self.has_wt:
            f_hwt = x
        elif ref is not None:
            f_hwt = self._wt_input(ref)  # Eq. (4) DWT
        elif not self.has_wr:
            f_hwt = self._wt_input(self._lr_ref(lr))
        elif self.wr_paper:
            f_hwt = x.new_zeros(x.shape[0], self.wt_channels, *x.shape[-2:])
            used = torch.zeros(lr.shape[0], dtype=torch.bool, device=lr.device)
        else:
            f_hwt = self.wr(x)  # WR (Eq. 6-7) predicts the HH band
        sr, self.last_wt = self._branches(x, f_hwt, used)
        return sr

    def forward_train(self, lr: torch.Tensor, ref: torch.Tensor | None = None,
                      ref_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """One training pass: both the reference path and the SISR path.

        ``wr_mode="predict"``: WR always runs on ``lr`` and is supervised by ``wr_target =
        haar_hh(ref)``; with probability ``ref_dropout`` per sample (or where ``ref_mask``
        (B,) bool is False) the WT branch is fed the WR prediction instead of haar_hh(ref),
        so the SR and WT losses also train the SISR path end to end. ``wr_mode="paper"``:
        those samples' WT entrance takes the LR features instead (no WR loss; L_WT still
        compares I_WT with haar_hh(ref)). Variants without WR always use the reference.
        ``ref=None`` trains SISR mode only.

        Returns dict: ``sr`` (B, 3, sH, sW), ``wt`` = I_WT (B, K, H, W), ``wt_target`` =
        the WT input transform of ``ref`` (B, K, H, W), ``wr`` WR's prediction (B, K, H, W)
        or None, ``wr_target`` (= ``wt_target`` when ``wr`` is given), ``ref_used`` (B,)
        bool; targets are ``None`` when ``ref`` is, ``wt`` is ``None`` for ``sr-only``;
        K = ``wt_channels`` (3, or 9 for ``wt_bands="detail"``).
        """
        self._check(lr, ref)
        x = self.sub_mean(lr)
        b = lr.shape[0]
        predict = self.has_wr and not self.wr_paper
        wr = self.wr(x) if predict else None
        target = None
        if ref is None or not self.has_wt:
            used = torch.zeros(b, dtype=torch.bool, device=lr.device)
            if not self.has_wt:
                f_hwt = x
            elif predict:
                f_hwt = wr
            elif self.wr_paper:
                f_hwt = x.new_zeros(x.shape[0], self.wt_channels, *x.shape[-2:])
            else:
                f_hwt = self._wt_input(self._lr_ref(lr))
        else:
            target = self._wt_input(ref)
            if not self.has_wr:
                used = torch.ones(b, dtype=torch.bool, device=lr.device)
            elif ref_mask is not None:
                used = ref_mask.to(device=lr.device, dtype=torch.bool).view(-1)
            else:
                used = torch.rand(b, device=lr.device) >= self.options.ref_dropout
            f_hwt = target
            if wr is not None:  # predict: dropped samples take WR's prediction
                f_hwt = torch.where(used.view(-1, 1, 1, 1), target.to(wr.dtype), wr)
        sr, wt = self._branches(x, f_hwt, used if self.wr_paper else None)
        self.last_wt = wt
        return {"sr": sr, "wt": wt, "wt_target": target if self.has_wt else None, "wr": wr,
                "wr_target": target if predict else None, "ref_used": used}


__all__ = ["CWTB", "CWTNet", "CWTNetOptions", "VARIANTS", "WR_MODES", "WT_BANDS", "WaveletReconstruction",
           "depths_for_scale"]
