"""CWT-Net: shapes in both modes at x2/x4/x8, gradients reach every parameter, depths of IV-B,
forward_train keys for CWTLoss, and a short overfit on a real patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cwtnet.model import build_from_config, build_model, model_config
from cwtnet.model.blocks import resolve_mean
from cwtnet.model.cwtnet_arch import CWTNet, CWTNetOptions, depths_for_scale
from cwtnet.model.wavelet import haar_hh

TINY = dict(n_cwtb=2, num_feat=16, chunk_size=64)


def _tiny(scale: int, **kw) -> CWTNet:
    torch.manual_seed(0)
    return build_model("cwtnet", scale, **{**TINY, **kw})


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_shapes_with_and_without_reference(scale):
    model = _tiny(scale)
    lr, ref = torch.rand(2, 3, 17, 22), torch.rand(2, 3, 34, 44)  # odd LR side on purpose
    with torch.no_grad():
        sr_ref = model(lr, ref)
        assert model.last_wt.shape == (2, 3, 17, 22)
        sr_sisr = model(lr)
    assert sr_ref.shape == sr_sisr.shape == (2, 3, 17 * scale, 22 * scale)
    assert not torch.allclose(sr_ref, sr_sisr)


@pytest.mark.parametrize("scale,rb_w,n_wrb", [(2, 2, 4), (4, 3, 6), (8, 4, 8)])
def test_depths_follow_section_iv_b(scale, rb_w, n_wrb):
    assert depths_for_scale(scale) == (rb_w, n_wrb)
    model = _tiny(scale)
    assert len(model.body[0].rb_w) == rb_w and len(model.wr.body) == n_wrb
    assert len(model.body[0].rb_s) == 2 and len(model.body) == 2


def test_paper_defaults():
    opt = CWTNetOptions()
    assert (opt.n_cwtb, opt.num_feat, opt.wr_reduction, opt.mean) == (12, 64, 8, "mlcamsr")
    model = CWTNet(2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {m.kernel_size for m in convs} <= {(3, 3), (1, 1)}  # 1x1: MeanShift and the CA
    assert model.wr.body[0].body[3].attention[1].out_channels == 64 // 8


@pytest.mark.parametrize("scale", [2, 4])
def test_every_parameter_gets_gradient_from_ref_and_wr_paths(scale):
    model = _tiny(scale, num_feat=32)
    lr, ref = torch.rand(2, 3, 16, 18), torch.rand(2, 3, 32, 36)
    gt = torch.rand(2, 3, 16 * scale, 18 * scale)
    out = model.forward_train(lr, ref, ref_mask=torch.tensor([True, False]))
    assert out["ref_used"].tolist() == [True, False]
    loss = ((out["sr"] - gt).abs().mean() + (out["wt"] - out["wt_target"]).abs().mean()
            + (out["wr"] - out["wr_target"]).abs().mean())
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    # every weight moves, except (possibly) the 4-unit CA bottleneck behind a dead ReLU
    zero = [n for n, p in trainable if p.grad.abs().sum() == 0 and ".attention." not in n]
    assert not zero
    # the WR module also gets gradient through the SR branch (sample 2 used its output)
    model.zero_grad()
    out = model.forward_train(lr, ref, ref_mask=torch.tensor([False, False]))
    out["sr"].mean().backward()
    assert model.wr.conv_last.weight.grad.abs().sum() > 0


def test_forward_train_keys_and_targets():
    model = _tiny(2)
    lr, ref = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 24, 24)
    out = model.forward_train(lr, ref)
    assert set(out) == {"sr", "wt", "wt_target", "wr", "wr_target", "ref_used"}
    assert torch.equal(out["wt_target"], haar_hh(ref))
    assert out["wr"].shape == out["wt"].shape == out["wt_target"].shape == (1, 3, 12, 12)
    sisr = model.forward_train(lr)
    assert sisr["wt_target"] is None and sisr["wr_target"] is None and not sisr["ref_used"].any()


def test_ref_dropout_extremes():
    lr, ref = torch.rand(4, 3, 12, 12), torch.rand(4, 3, 24, 24)
    assert _tiny(2, ref_dropout=0.0).forward_train(lr, ref)["ref_used"].all()
    assert not _tiny(2, ref_dropout=1.0).forward_train(lr, ref)["ref_used"].any()


def test_one_checkpoint_serves_both_modes():
    model = _tiny(2, v_mode="ttsr", double_residual=True)
    cfg = model_config(model)
    clone = build_from_config(cfg)
    clone.load_state_dict(model.state_dict())
    lr, ref = torch.rand(1, 3, 14, 14), torch.rand(1, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(clone(lr, ref), model(lr, ref), atol=1e-6)
        assert torch.allclose(clone(lr), model(lr), atol=1e-6)


def test_rejects_a_reference_of_the_wrong_size():
    with pytest.raises(ValueError, match="2H, 2W"):
        _tiny(2)(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 25, 24))


def test_overfit_one_real_patch(shared_data):
    from cwtnet.losses import CWTLoss
    from mlcamsr.resize import imresize

    img = np.asarray(Image.open(shared_data / "patches" / "kather100k" / "kather1.tif").convert("RGB"))
    gt = img[:48, :48].astype(np.float32) / 255
    lr = imresize(gt, scale=0.5)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()  # noqa: E731
    gt_t, lr_t = to_t(gt), to_t(lr).clamp(0, 1)
    model = _tiny(2, ref_dropout=0.0)
    crit = CWTLoss()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    losses = []
    for _ in range(30):
        loss, _parts = crit(model.forward_train(lr_t, gt_t), gt_t)  # x2: ref = I_GT (IV-B)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses


def test_summary_reports_params_flops_and_memory():
    from cwtnet.summary import format_summary, summarize

    r = summarize("cwtnet", 2, lr_size=16, n_cwtb=1, num_feat=8)
    model = _tiny(2, n_cwtb=1, num_feat=8)
    assert r["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # the relevance product alone: 2 * (16*16)^2 * 9*8 multiply-adds
    assert r["flops"] > 2 * 256 * 256 * 72
    assert r["flops_sisr"] > 0 and r["train_step_peak_bytes"] is not None
    assert "FLOPs" in format_summary(r)


@pytest.mark.parametrize("variant,wr_mode", [("full", "predict"), ("full", "paper"),
                                             ("no-wr", "predict"), ("no-dwt", "predict"),
                                             ("sr-only", "predict")])
def test_table_ii_variants_and_wr_modes_train_every_parameter(variant, wr_mode):
    """Issue 10 s2-3: each Table II row and WR reading builds, trains every parameter from
    the reference and SISR passes, round-trips through model_config, and its SISR pass in
    training (reference dropped for every sample) is the inference SISR pass."""
    from cwtnet.losses import CWTLoss

    model = _tiny(2, variant=variant, wr_mode=wr_mode)
    lr, ref, gt = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    out = model.forward_train(lr, ref)
    (CWTLoss()(out, gt)[0] + CWTLoss()(model.forward_train(lr), gt)[0]).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert (out["wr"] is not None) == (variant == "full" and wr_mode == "predict")
    if variant == "sr-only":
        assert out["wt"] is None and not hasattr(model, "wt_first")
    elif variant == "no-dwt":  # the reference image on the LR grid, no DWT
        want = torch.nn.functional.avg_pool2d(ref, 2) - torch.tensor(resolve_mean(model.options.mean)).view(1, 3, 1, 1)
        assert torch.allclose(out["wt_target"], want, atol=1e-6)
    else:
        assert torch.equal(out["wt_target"], haar_hh(ref))
    clone = build_from_config(model_config(model))
    clone.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        sisr = model(lr)
        assert torch.allclose(clone(lr, ref), model(lr, ref), atol=1e-6)
        dropped = model.forward_train(lr, ref, ref_mask=torch.zeros(2, dtype=torch.bool))["sr"]
        if variant in ("full", "sr-only"):
            assert torch.allclose(dropped, sisr, atol=1e-6)
        if variant == "sr-only":
            assert torch.equal(model(lr, ref), sisr)
        else:
            assert not torch.allclose(model(lr, ref), sisr, atol=1e-4)


def test_variant_sizes_follow_table_ii_and_bad_names_are_refused():
    n = {v: sum(p.numel() for p in _tiny(2, variant=v).parameters())
         for v in ("sr-only", "no-dwt", "no-wr", "full")}
    assert n["sr-only"] < n["no-dwt"] == n["no-wr"] < n["full"]
    with pytest.raises(ValueError, match="variant"):
        _tiny(2, variant="no-transformer")
    with pytest.raises(ValueError, match="wr_mode"):
        _tiny(2, wr_mode="eq6")
def test_search_window_option_reaches_every_block_and_round_trips():
    model = _tiny(2, search_window=3, v_mode="ttsr")
    assert [b.transformer.window for b in model.body] == [3, 3]
    cfg = model_config(model)
    assert cfg["options"]["search_window"] == 3
    assert [b.transformer.window for b in build_from_config(cfg).body] == [3, 3]
    # a config written before the option existed loads as the paper's global search
    old = {**cfg, "options": {k: v for k, v in cfg["options"].items()
                              if k not in ("search_window", "qk_extractor", "wt_input_scale")}}
    assert [b.transformer.window for b in build_from_config(old).body] == [None, None]
    with pytest.raises(ValueError, match="search_window"):
        _tiny(2, search_window=-1)


def test_windowed_model_equals_global_when_the_window_covers_the_image():
    lr, ref = torch.rand(1, 3, 9, 11), torch.rand(1, 3, 18, 22)
    glob, win = _tiny(2), _tiny(2, search_window=11)
    win.load_state_dict(glob.state_dict())
    with torch.no_grad():
        assert torch.allclose(glob(lr, ref), win(lr, ref), atol=1e-5)
        assert not torch.allclose(glob(lr, ref), _with(glob, search_window=1)(lr, ref), atol=1e-4)


def _with(model: CWTNet, **kw) -> CWTNet:
    other = _tiny(2, **kw)
    other.load_state_dict(model.state_dict())
    return other


def test_wt_input_scale_and_shared_extractor_switches():
    lr, ref = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    base = _tiny(2)
    scaled = _with(base, wt_input_scale=16.0)
    with torch.no_grad():
        base(lr, ref)
        scaled(lr, ref)
        # wt_first sees the band x16: the first WT feature differs, the SR output too
        assert not torch.allclose(base.last_wt, scaled.last_wt)
    lte = _tiny(2, qk_extractor=True, search_window=2)
    assert all(b.transformer.extractor is not None for b in lte.body)
    out = lte.forward_train(lr, ref, ref_mask=torch.tensor([True, True]))
    out["sr"].mean().backward()
    grads = [p.grad for p in lte.body[0].transformer.extractor.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # trained through S


def test_search_window_for_a_loaded_model():
    from cwtnet.model import (
        SEARCH_WINDOW_KEEP,
        ModelConfigError,
        apply_search_window,
        parse_search_window,
    )

    assert parse_search_window(None) == SEARCH_WINDOW_KEEP
    assert parse_search_window("global") is None and parse_search_window("8") == 8
    for bad in ("-1", "wide"):
        with pytest.raises(ModelConfigError, match="--search-window"):
            parse_search_window(bad)
    model = _tiny(2)
    apply_search_window(model, SEARCH_WINDOW_KEEP)
    assert model.body[0].transformer.window is None
    apply_search_window(model, 4)
    assert [b.transformer.window for b in model.body] == [4, 4] and model.options.search_window == 4
    assert model_config(model)["options"]["search_window"] == 4
    with pytest.raises(ModelConfigError, match="CWT-Net only"):
        apply_search_window(build_model("edsr", 2, num_block=1, num_feat=8), 4)


@pytest.mark.parametrize("wr_mode", ["predict", "paper"])
def test_detail_bands_feed_lh_hl_hh_and_train_every_parameter(wr_mode):
    from cwtnet.model.wavelet import dwt_haar, idwt_haar

    model = _tiny(2, wt_bands="detail", wr_mode=wr_mode)
    lr, ref = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 24, 24)
    out = model.forward_train(lr, ref, ref_mask=torch.tensor([True, False]))
    _ll, lh, hl, hh = dwt_haar(ref)
    assert torch.equal(out["wt_target"], torch.cat([lh, hl, hh], dim=1))
    assert out["wt"].shape == (2, 9, 12, 12)
    (out["sr"].mean() + (out["wt"] - out["wt_target"]).abs().mean()
     + (0 if out["wr"] is None else (out["wr"] - out["wr_target"]).abs().mean())).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    with torch.no_grad():  # SISR mode works and the choice survives a checkpoint config
        assert model(lr).shape == (2, 3, 24, 24)
        clone = build_from_config(model_config(model))
        clone.load_state_dict(model.state_dict())
        assert torch.allclose(clone(lr, ref), model(lr, ref), atol=1e-6)
        # the LH band reaches the output: a reference that differs only there changes it
        other = idwt_haar(_ll, lh + 0.05, hl, hh)
        assert not torch.allclose(model(lr, ref), model(lr, other))
        hh_only = _tiny(2)  # ... which the paper's HH-only input cannot see
        assert torch.allclose(hh_only(lr, ref), hh_only(lr, other), atol=1e-6)
    assert model_config(_tiny(2))["options"]["wt_bands"] == "hh"  # the paper's Eq. 4 by default
    with pytest.raises(ValueError, match="wt_bands"):
        _tiny(2, wt_bands="ll")


def test_band_oracle_puts_the_ground_truth_bands_in():
    from cwtnet.diagnose import band_oracle
    from cwtnet.model.wavelet import dwt_haar, idwt_haar

    torch.manual_seed(0)
    gt = torch.rand(2, 3, 32, 32)
    ll, lh, hl, hh = dwt_haar(gt.double())
    no_hh = idwt_haar(ll, lh, hl, torch.zeros_like(hh)).clamp(0, 1).float()
    got = band_oracle(no_hh, gt, border_px=2)
    assert got["hh"] > got["estimate"] + 3  # HH was all that was missing
    no_detail = idwt_haar(ll, *(torch.zeros_like(b) for b in (lh, hl, hh))).clamp(0, 1).float()
    got = band_oracle(no_detail, gt, border_px=2)
    assert got["estimate"] < got["hh"] < got["detail"]
