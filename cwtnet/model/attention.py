"""Hard-attention search and transfer (TTSR's SearchTransfer) and CWT-Net's Transformer block.

``search_transfer(q, k, v)`` implements Eq. (8) and the index/attention maps of
Section III-D: every 3x3 patch of Q (padding 1) is compared with every 3x3 patch of K by
the inner product of the L2-normalised patches, ``r_ij = <q_i/|q_i|, k_j/|k_j|>``; the hard
index ``h_i = argmax_j r_ij`` picks the most relevant K position and the soft map
``S_i = max_j r_ij`` its relevance. T is V's 3x3 patch at ``h_i``, folded back (overlapping
patches summed, divided by 9, as TTSR does).

Memory: the dense formulation (``dense_search_transfer``, the reference used in tests and
the benchmark) builds the (Hq*Wq) x (Hk*Wk) relevance matrix. ``search_transfer`` never
does: queries are processed in chunks, each chunk's (chunk x Hk*Wk) relevance block is
reduced to its argmax at once, so the extra memory is O(chunk x Hk*Wk). Only the K
patches are unfolded in full (9C x Hk*Wk, the size of one 3x3 im2col of K); Q patches are
unfolded per chunk and V is never unfolded (the fold of the gathered patches is done by
nine shifted gathers). The relevance search runs without autograd; S is recomputed
differentiably as the dot product of the query patch and its selected key patch, so
gradients reach Q and K through S and V through T exactly as in the dense formulation,
at a cost independent of Hk*Wk.

Windowed search (``window=W``, Q and K on the same grid): query i = (iy, ix) only
considers K positions j with |jy - iy| <= W and |jx - ix| <= W (inside K), exactly the
dense search with every other candidate masked (``dense_search_transfer(..., window=W)``),
ties resolved alike (the lowest flat K index wins). No HW x HW block is ever formed: the
patch inner product is rewritten per displacement d = j - i as a 3x3 box sum of the
per-pixel channel dot ``<q(p), k(p + d)>``, computed for a band of query rows at a time:
for each of the 2W+1 row displacements one batched GEMM of column tiles of queries
against the tile + 2W key columns they reach (an ``unfold`` view), whose 2W+1 diagonals
(an ``as_strided`` view) are the column displacements; no Python loop over positions.
Then the box sum, division by the two patch norms, -inf outside K, max. Time
O(HW (2W+1)^2 C) (the GEMM also forms out-of-window pairs: (tile + 2W)/(2W+1) of the
needed ones, 4x at W = 2, under 2x from W = 8),
extra memory one band's (2W+1)^2 dot maps (``RELEVANCE_BUDGET_BYTES``). S is recomputed
differentiably from the selected pair by nine gathers (O(9C x HW)), and T is the same
fold-gather as the global search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cwtnet.model.blocks import default_conv

RELEVANCE_BUDGET_BYTES = 32 * 2**20
"""``chunk_size=None`` on CPU: the query chunk is chosen so one relevance block stays under this."""

CUDA_RELEVANCE_BUDGET_BYTES = 256 * 2**20
"""The same on CUDA, where larger blocks keep the GPU busy (still far below the dense matrix)."""


def _patch_norms(x: torch.Tensor) -> torch.Tensor:
    """L2 norms of the 3x3 patches of a padded (B, C, H+2, W+2) map -> (B, 1, H*W).

    The 3x3 box sum of the channel-summed squares (on the (B, 1, H, W) map: 9C times less
    work than reducing unfolded patches), in float32 at least (bf16 norms lose precision).
    """
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    sq = F.avg_pool2d(xf.square().sum(dim=1, keepdim=True), 3, stride=1, divisor_override=1)
    return sq.flatten(2).sqrt().clamp_min(1e-12)


def _normalise(p: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Unfolded patches (B, 9C, L) / their norms (B, 1, L), back in ``p.dtype`` (the autocast
    dtype under autocast); in place for float32/64 without autograd (no second buffer)."""
    if p.dtype == norm.dtype and not (torch.is_grad_enabled() and (p.requires_grad or norm.requires_grad)):
        return p.div_(norm)
    return (p.to(norm.dtype) / norm).to(p.dtype)


def _normalised_patches(x: torch.Tensor) -> torch.Tensor:
    """3x3 patches of a padded (B, C, H+2, W+2) map -> (B, 9C, H*W), L2-normalised."""
    return _normalise(F.unfold(x, kernel_size=3), _patch_norms(x))


def auto_chunk_size(batch: int, n_keys: int, n_queries: int, itemsize: int = 4,
                    budget: int = RELEVANCE_BUDGET_BYTES) -> int:
    """Query positions per chunk so that ``batch * chunk * n_keys * itemsize <= budget`` (>= 1)."""
    return int(max(1, min(n_queries, budget // max(1, batch * n_keys * itemsize))))


def _fold_gather(v: torch.Tensor, h: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """``fold(gather(unfold(v, 3, pad 1), h), 3, pad 1) / 9`` without unfolding V.

    ``v`` (B, C, Hk, Wk), ``h`` (B, Hq*Wq) flat K indices -> T (B, C, Hq, Wq). Patch offset
    (dy, dx) of the patch at K position j = (jy, jx) is padded-V pixel (jy+dy, jx+dx); the
    fold adds it to padded output pixel (iy+dy, ix+dx) of query i = (iy, ix).
    """
    b, c, hk, wk = v.shape
    hq, wq = out_hw
    vp = F.pad(v, (1, 1, 1, 1)).flatten(2)  # (B, C, (Hk+2)(Wk+2))
    hy, hx = torch.div(h, wk, rounding_mode="floor"), h % wk
    offsets = [(dy, dx) for dy in range(3) for dx in range(3)]
    shift = torch.tensor([dy * (wk + 2) + dx for dy, dx in offsets], device=h.device)
    idx = (hy * (wk + 2) + hx).unsqueeze(1) + shift.view(1, 9, 1)  # (B, 9, Lq) padded flat
    out = v.new_zeros(b, c, hq + 2, wq + 2)
    for o, (dy, dx) in enumerate(offsets):
        g = torch.gather(vp, 2, idx[:, o:o + 1].expand(b, c, -1))
        out[:, :, dy:dy + hq, dx:dx + wq] += g.view(b, c, hq, wq)
    return out[:, :, 1:-1, 1:-1] / 9.0

def _window_tile(window: int) -> int:
    """Query columns per GEMM tile of the windowed search: each tile's product covers
    tile + 2W key columns, so wider tiles waste less of it on out-of-window pairs."""
    return max(16, 2 * window + 1)


def _window_band_rows(batch: int, channels: int, window: int, width: int, itemsize: int,
                      budget: int) -> int:
    """Query rows per band of the windowed search: the band's (B, (2W+1)^2, rows+2, W+2)
    per-displacement dots and one (B, rows+2, W+2, tile+2W) row product stay under
    ``budget`` bytes, with at least 8 rows (the 2-row halo stays a small share)."""
    d1, tile = 2 * window + 1, _window_tile(window)
    per_row = batch * (width + 2 + tile) * (d1 * d1 + tile + 2 * window + channels) * itemsize
    return int(max(8, budget // max(1, per_row) - 2))


def _window_search(q: torch.Tensor, k: torch.Tensor, window: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard index h (B, H*W, flat K positions) and S (B, H*W) of the windowed search, no autograd.

    ``q``, ``k`` (B, C, H, W) on the same grid; ``rows`` query rows per band. The relevance
    of query i and candidate i + d is ``box3(<q(p), k(p + d)>)(i) / (|q_i| |k_{i+d}|)``, the
    3x3 patch inner product (zero padding 1, as the global search) regrouped by
    displacement; candidates outside K are -inf. The per-pixel channel dots of one row
    displacement dy come from one batched GEMM per band: each tile of ``_window_tile``
    query columns times the key columns it can reach (tile + 2W, an ``unfold`` view),
    whose 2W+1 diagonals are the dx displacements (an ``as_strided`` view). Displacements
    are enumerated dy-major, dx-minor, i.e. in increasing flat K index, so ``max`` (first
    maximum) breaks ties like the global search.
    """
    b, c, h, w = q.shape
    r = int(window)
    d1 = 2 * r + 1
    tw = _window_tile(r)
    wq2 = w + 2  # padded query width
    nt = -(-wq2 // tw)
    wpad = nt * tw
    cdt = torch.float32 if q.dtype not in (torch.float32, torch.float64) else q.dtype
    # channels-last maps: padded query column x' meets key column x' + j (j = dx + r) of kl
    ql = F.pad(q.to(cdt), (1, 1 + wpad - wq2, 1, 1)).permute(0, 2, 3, 1).contiguous()  # (B, H+2, wpad, C)
    kl = F.pad(k.to(cdt), (r + 1, r + 1 + wpad - wq2, r + 1, r + 1)).permute(0, 2, 3, 1).contiguous()
    q_norm = _patch_norms(F.pad(q, (1, 1, 1, 1))).view(b, 1, h, w)
    k_norm = F.pad(_patch_norms(F.pad(k, (1, 1, 1, 1))).view(b, 1, h, w), (r,) * 4, value=1.0)
    dev = q.device
    offs = torch.arange(-r, r + 1, device=dev)
    xs = torch.arange(w, device=dev)
    vx = ((xs.view(1, w) + offs.view(d1, 1)) >= 0) & ((xs.view(1, w) + offs.view(d1, 1)) < w)  # (dx, x)
    h_parts, s_parts = [], []
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        m = r1 - r0
        qt = ql[:, r0:r1 + 2].view(b, m + 2, nt, tw, c)  # the band's query pixels, in column tiles
        dots = ql.new_empty(b, d1, d1, m + 2, wq2)  # (dy, dx) per-pixel channel dots
        for iy in range(d1):  # row displacement dy = iy - r
            kt = kl[:, r0 + iy:r0 + iy + m + 2].unfold(2, tw + 2 * r, tw)  # (B, m+2, nt, C, tw+2r)
            g = torch.matmul(qt, kt).contiguous()  # (B, m+2, nt, tw, tw+2r)
            st = g.stride()
            diag = g.as_strided((b, m + 2, nt, tw, d1), (st[0], st[1], st[2], st[3] + 1, 1),
                                g.storage_offset())  # diag[..., x, j] = g[..., x, x + j]
            dots[:, iy] = diag.reshape(b, m + 2, wpad, d1)[:, :, :wq2].permute(0, 3, 1, 2)
        rel = F.avg_pool2d(dots.view(b, d1 * d1, m + 2, wq2), 3, stride=1, divisor_override=1)
        kn = k_norm[:, 0, r0:r1 + 2 * r].unfold(1, m, 1).unfold(2, w, 1)  # (B, dy, dx, m, W)
        rel = rel.view(b, d1, d1, m, w).div_(kn).div_(q_norm[:, :, r0:r1].unsqueeze(1))
        ys = torch.arange(r0, r1, device=dev)
        vy = ((ys.view(1, m) + offs.view(d1, 1)) >= 0) & ((ys.view(1, m) + offs.view(d1, 1)) < h)  # (dy, y)
        valid = vy.view(d1, 1, m, 1) & vx.view(1, d1, 1, w)
        rel = rel.masked_fill_(~valid, float("-inf")).view(b, d1 * d1, m, w)
        s, o = rel.max(dim=1)  # (B, m, W): first maximum = lowest flat K index
        hy = ys.view(1, m, 1) + torch.div(o, d1, rounding_mode="floor") - r
        hx = xs.view(1, 1, w) + o % d1 - r
        h_parts.append((hy * w + hx).flatten(1))
        s_parts.append(s.flatten(1))
    return torch.cat(h_parts, 1), torch.cat(s_parts, 1)


def _selected_relevance(q: torch.Tensor, k: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Differentiable ``r_{i, h_i}`` (B, Lq) of Eq. (8) from the 3x3 patches of ``q`` and ``k``
    (zero padding 1) at the query positions and their selected K positions ``h`` (B, Lq):
    nine shifted gathers of each map, O(9C x Lq), no unfolded patches."""
    b, c, hq, wq = q.shape
    hk, wk = k.shape[-2:]
    qp, kp = F.pad(q, (1, 1, 1, 1)), F.pad(k, (1, 1, 1, 1))
    dev = q.device
    i = torch.arange(hq * wq, device=dev)
    qbase = (torch.div(i, wq, rounding_mode="floor") * (wq + 2) + i % wq).view(1, 1, -1).expand(b, c, -1)
    kbase = (torch.div(h, wk, rounding_mode="floor") * (wk + 2) + h % wk).unsqueeze(1).expand(-1, c, -1)
    qf, kf = qp.flatten(2), kp.flatten(2)
    dot = torch.zeros((), dtype=qf.dtype, device=dev)
    for dy in range(3):
        for dx in range(3):
            dot = dot + (torch.gather(qf, 2, qbase + dy * (wq + 2) + dx)
                         * torch.gather(kf, 2, kbase + dy * (wk + 2) + dx)).sum(1)
    q_norm = _patch_norms(qp).view(b, -1)
    k_norm = torch.gather(_patch_norms(kp).view(b, -1), 1, h)
    return dot.float() / (q_norm * k_norm)


def search_transfer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    chunk_size: int | None = None, window: int | None = None,
                    return_index: bool = False):
    """Chunked hard-attention search (Eq. 8) and texture transfer, global or windowed.

    Args:
        q (Tensor): Query features (B, C, Hq, Wq).
        k (Tensor): Key features (B, C, Hk, Wk); Hk, Wk may differ from Hq, Wq.
        v (Tensor): Value features (B, Cv, Hk, Wk), aligned with K.
        chunk_size (int | None): Query positions per chunk; ``None`` picks the largest chunk
            whose relevance block fits ``RELEVANCE_BUDGET_BYTES`` (CUDA:
            ``CUDA_RELEVANCE_BUDGET_BYTES``). With ``window``: rounded to whole query rows
            (at least one). Default: None.
        window (int | None): ``None`` searches all of K (the paper's global search).
            ``W >= 0`` searches only K positions within W rows and W columns of the query's
            own position (Q and K must share the grid): candidates (2W+1)^2, cost
            O(HW (2W+1)^2 C). Default: None.
        return_index (bool): Also return the hard index h (B, Hq*Wq), flat K positions.
            Default: False.

    Returns:
        (T, S): transferred texture (B, Cv, Hq, Wq) and soft attention map (B, 1, Hq, Wq)
        (and h with ``return_index``).
        Equal to ``dense_search_transfer`` with the same ``window`` (same hard index,
        allclose T and S).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("q, k, v must be (B, C, H, W) tensors")
    if q.shape[:2] != k.shape[:2] or v.shape[0] != k.shape[0] or v.shape[-2:] != k.shape[-2:]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    b, _, hq, wq = q.shape
    hk, wk = k.shape[-2:]
    if window is not None:
        return _windowed_search_transfer(q, k, v, int(window), chunk_size, return_index)
    n_q, n_k = hq * wq, hk * wk
    k_n = _normalised_patches(F.pad(k, (1, 1, 1, 1)))  # (B, 9C, Lk)
    if chunk_size is None:
        budget = CUDA_RELEVANCE_BUDGET_BYTES if q.is_cuda else RELEVANCE_BUDGET_BYTES
        chunk_size = auto_chunk_size(b, n_k, n_q, k_n.element_size(), budget)
    chunk_size = max(1, int(chunk_size))
    q_pad = F.pad(q, (1, 1, 1, 1))
    q_norm = _patch_norms(q_pad)  # (B, 1, Lq), once for all chunks
    need_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    idx_parts, s_parts = [], []
    for p0 in range(0, n_q, chunk_size):
        p1 = min(n_q, p0 + chunk_size)
        r0, r1 = p0 // wq, (p1 - 1) // wq  # query rows touched by this chunk
        band = F.unfold(q_pad[:, :, r0:r1 + 3], kernel_size=3)  # (B, 9C, rows*Wq)
        q_n = _normalise(band[:, :, p0 - r0 * wq:p1 - r0 * wq], q_norm[:, :, p0:p1])  # (B, 9C, n)
        with torch.no_grad():
            rel = torch.bmm(q_n.transpose(1, 2), k_n)  # (B, n, Lk): Eq. (8) for this chunk
            s_c, idx = rel.max(dim=2)  # S and hard index h (first maximum on ties)
            del rel
        if need_grad:  # S = r_{i, h_i} again, differentiable, O(9C x n)
            k_sel = torch.gather(k_n, 2, idx.unsqueeze(1).expand(-1, k_n.shape[1], -1))
            s_c = (q_n * k_sel).sum(dim=1)
        s_parts.append(s_c)
        idx_parts.append(idx)
    h = torch.cat(idx_parts, dim=1)
    s = torch.cat(s_parts, dim=1).view(b, 1, hq, wq)
    t = _fold_gather(v, h, (hq, wq))
    s = s.to(t.dtype)
    return (t, s, h) if return_index else (t, s)


def _windowed_search_transfer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                              chunk_size: int | None, return_index: bool):
    """``search_transfer(..., window=window)``: the windowed search, then S and T as the global one."""
    if window < 0:
        raise ValueError(f"window must be >= 0 (K rows/columns either side of the query), got {window}")
    if q.shape[-2:] != k.shape[-2:]:
        raise ValueError(f"a windowed search needs Q and K on the same grid, got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    b, c, hq, wq = q.shape
    if chunk_size is None:
        budget = CUDA_RELEVANCE_BUDGET_BYTES if q.is_cuda else RELEVANCE_BUDGET_BYTES
        itemsize = max(4, q.element_size())
        rows = _window_band_rows(b, c, window, wq, itemsize, budget)
    else:
        rows = max(1, int(chunk_size) // wq)
    with torch.no_grad():
        h, s = _window_search(q, k, window, rows)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad):
        s = _selected_relevance(q, k, h)  # S = r_{i, h_i} again, differentiable
    t = _fold_gather(v, h, (hq, wq))
    s = s.view(b, 1, hq, wq).to(t.dtype)
    return (t, s, h) if return_index else (t, s)


def dense_search_transfer(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          return_index: bool = False, window: int | None = None):
    """Reference: TTSR's SearchTransfer with the full (Lq x Lk) relevance matrix.

    Same arguments and results as ``search_transfer`` (plus the hard index (B, Lq) when
    ``return_index``); memory O(B * Hq*Wq * Hk*Wk). ``window=W`` masks (-inf) every
    candidate more than W rows or columns from the query (Q and K on the same grid).
    """
    b, _, hq, wq = q.shape
    q_n = _normalised_patches(F.pad(q, (1, 1, 1, 1)))  # (B, 9C, Lq)
    k_n = _normalised_patches(F.pad(k, (1, 1, 1, 1)))  # (B, 9C, Lk)
    rel = torch.bmm(q_n.transpose(1, 2), k_n)  # (B, Lq, Lk)
    if window is not None:
        if q.shape[-2:] != k.shape[-2:]:
            raise ValueError("a windowed search needs Q and K on the same grid")
        y = torch.arange(hq, device=q.device).repeat_interleave(wq)
        x = torch.arange(wq, device=q.device).repeat(hq)
        near = ((y.view(-1, 1) - y.view(1, -1)).abs() <= window) & ((x.view(-1, 1) - x.view(1, -1)).abs() <= window)
        rel = rel.masked_fill(~near, float("-inf"))
    s, h = torch.max(rel, dim=2)
    v_unf = F.unfold(v, kernel_size=3, padding=1)  # (B, 9Cv, Lk)
    t_unf = torch.gather(v_unf, 2, h.unsqueeze(1).expand(-1, v_unf.shape[1], -1))
    t = F.fold(t_unf, output_size=(hq, wq), kernel_size=3, padding=1) / 9.0
    s = s.view(b, 1, hq, wq).to(t.dtype)
    return (t, s, h) if return_index else (t, s)


def _resize2(x: torch.Tensor, up: bool) -> torch.Tensor:
    """Bicubic x2 up (``up``) or antialiased bicubic x2 down of a feature map, float32 inside."""
    y = x.float()
    if up:
        y = F.interpolate(y, scale_factor=2, mode="bicubic", align_corners=False)
    else:
        y = F.interpolate(y, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bicubic",
                          align_corners=False, antialias=True)
    return y.to(x.dtype)


class TransformerBlock(nn.Module):
    """CWT-Net Transformer block (Section III-D, Eq. 8-9), after TTSR's SearchTransfer.

    ``out = Q + C(Concat(Q, T)) * S`` (Eq. 9) with ``(T, S) = search_transfer(Q, K, V)``.

    Args:
        num_feat (int): Channels of Q, K and V. Default: 64.
        v_mode (str): Which of the WT-branch features is searched and which transferred.
            ``"paper"``: K = f_hwt, V = f_hwt up-then-down (bicubic x2 up, antialiased
            bicubic x2 down), as Section III-D writes it. ``"ttsr"``: TTSR's order,
            K = f_hwt down-then-up (blurred like the LR-derived Q), V = f_hwt itself
            (sharp). Default: ``"paper"``.
        chunk_size (int | None): Query chunk of ``search_transfer``; ``None`` = auto.
            Default: None.
        window (int | None): Search window of ``search_transfer`` in LR px either side of
            the query; ``None`` = global (the paper's). Default: None.
        qk_extractor (bool): TTSR's shared texture extractor: the search compares E(Q) with
            E(K), E one learnable conv-ReLU-conv applied to both (so both live in one feature
            space); T is still taken from V. Default: False (the paper: Q and K as they are).
    """

    def __init__(self, num_feat: int = 64, v_mode: str = "paper", chunk_size: int | None = None,
                 window: int | None = None, qk_extractor: bool = False) -> None:
        super().__init__()
        if v_mode not in ("paper", "ttsr"):
            raise ValueError(f"unknown v_mode {v_mode!r}; choose 'paper' or 'ttsr'")
        if window is not None and int(window) < 0:
            raise ValueError(f"search window must be >= 0 LR px or None (global), got {window}")
        self.v_mode = v_mode
        self.chunk_size = chunk_size
        self.window = None if window is None else int(window)
        self.extractor = nn.Sequential(default_conv(num_feat, num_feat, 3), nn.ReLU(inplace=True),
                                       default_conv(num_feat, num_feat, 3)) if qk_extractor else None
        self.conv = default_conv(2 * num_feat, num_feat, 3)  # C{.} of Eq. (9)
        self.record_index = False  # diagnostics: keep the hard index of the last call
        self.last_index: torch.Tensor | None = None

    def key_value(self, f_hwt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, V) from the WT-branch feature ``f_hwt`` according to ``v_mode``."""
        if self.v_mode == "paper":
            return f_hwt, _updown(f_hwt)
        return _downup(f_hwt), f_hwt

    def forward(self, q: torch.Tensor, f_hwt: torch.Tensor) -> torch.Tensor:
        k, v = self.key_value(f_hwt)
        qs, ks = (self.extractor(q), self.extractor(k)) if self.extractor is not None else (q, k)
        t, s, h = search_transfer(qs, ks, v, self.chunk_size, self.window, return_index=True)  # Eq. (8)
        self.last_index = h.detach() if self.record_index else None
        return q + self.conv(torch.cat([q, t], dim=1)) * s  # Eq. (9)


def _updown(x: torch.Tensor) -> torch.Tensor:
    """f up-then-down: bicubic x2, then antialiased bicubic /2 (same size as ``x``)."""
    return _resize2(_resize2(x, up=True), up=False)


def _downup(x: torch.Tensor) -> torch.Tensor:
    """f down-then-up (TTSR's Ref down-up), back to exactly ``x``'s size."""
    h, w = x.shape[-2:]
    if h < 2 or w < 2:
        return x
    y = _resize2(x, up=False).float()
    y = F.interpolate(y, size=(h, w), mode="bicubic", align_corners=False)
    return y.to(x.dtype)


__all__ = ["TransformerBlock", "auto_chunk_size", "dense_search_transfer", "search_transfer"]
