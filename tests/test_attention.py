"""Chunked search-transfer equals the dense (full relevance matrix) reference; Transformer block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cwtnet.model.attention import (
    TransformerBlock,
    auto_chunk_size,
    dense_search_transfer,
    search_transfer,
)


def _relevance(q, k):
    """Dense Eq. (8) relevance (B, Lq, Lk) in float64."""
    unf = lambda x: F.normalize(F.unfold(x.double(), 3, padding=1), dim=1)  # noqa: E731
    return torch.bmm(unf(q).transpose(1, 2), unf(k))


SHAPES = [  # (Hq, Wq, Hk, Wk)
    (8, 8, 8, 8),
    (7, 11, 7, 11),
    (5, 9, 10, 6),
]


@pytest.mark.parametrize("hq,wq,hk,wk", SHAPES)
@pytest.mark.parametrize("chunk", [1, 5, 16, 33, 10_000, None])
def test_chunked_equals_dense(hq, wq, hk, wk, chunk):
    g = torch.Generator().manual_seed(hq * 100 + wk)
    q = torch.randn(2, 6, hq, wq, generator=g)
    k = torch.randn(2, 6, hk, wk, generator=g)
    v = torch.randn(2, 4, hk, wk, generator=g)
    t0, s0, h0 = dense_search_transfer(q, k, v, return_index=True)
    t, s, h = search_transfer(q, k, v, chunk_size=chunk, return_index=True)
    assert t.shape == (2, 4, hq, wq) and s.shape == (2, 1, hq, wq)
    if not torch.equal(h, h0):  # only a float near-tie may flip (BLAS blocking differs)
        rel = _relevance(q, k)
        gap = (rel.gather(2, h0[..., None]) - rel.gather(2, h[..., None])).abs()
        assert gap.max() < 1e-6 and (h != h0).float().mean() < 0.01
        return
    assert torch.allclose(t, t0, atol=1e-6, rtol=0)
    assert torch.allclose(s, s0, atol=1e-6, rtol=0)


def test_transfer_of_one_hot_positions_equals_dense_fold():
    # V = one-hot position code (channel j is 1 at K position j): T shows exactly which
    # K patches were folded into each query pixel.
    g = torch.Generator().manual_seed(7)
    hq, wq, hk, wk = 4, 5, 3, 6
    q = torch.randn(1, 5, hq, wq, generator=g)
    k = torch.randn(1, 5, hk, wk, generator=g)
    v = torch.eye(hk * wk).view(1, hk * wk, hk, wk)
    t0, _, h0 = dense_search_transfer(q, k, v, return_index=True)
    t, _ = search_transfer(q, k, v, chunk_size=3)
    assert torch.equal(t.argmax(1), t0.argmax(1))
    assert torch.allclose(t, t0, atol=1e-7)


def test_self_search_finds_itself_with_unit_relevance():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 8, 6, 7, generator=g)
    t, s = search_transfer(x, x, x, chunk_size=4)
    assert torch.allclose(s, torch.ones_like(s), atol=1e-5)
    # every patch matches itself, so the fold reproduces x in the interior (9 of 9 overlaps)
    assert torch.allclose(t[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1], atol=1e-5)


def test_gradients_match_dense():
    g = torch.Generator().manual_seed(5)
    tensors = [torch.randn(1, 4, 6, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    grads = []
    for fn in (dense_search_transfer, lambda q, k, v: search_transfer(q, k, v, chunk_size=7)):
        q, k, v = (x.clone().requires_grad_() for x in tensors)
        t, s = fn(q, k, v)[:2]
        (t.square().sum() + (s * t.mean(1, keepdim=True)).sum()).backward()
        grads.append([q.grad, k.grad, v.grad])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


def test_auto_chunk_respects_budget():
    assert auto_chunk_size(4, 4096, 4096, 4, budget=2**20) == 16
    assert auto_chunk_size(1, 10, 50, 4, budget=2**30) == 50
    assert auto_chunk_size(64, 10**9, 50, 4) == 1


@pytest.mark.parametrize("v_mode", ["paper", "ttsr"])
def test_transformer_block_shapes_and_eq9(v_mode):
    torch.manual_seed(0)
    blk = TransformerBlock(8, v_mode=v_mode, chunk_size=10)
    q, f = torch.randn(2, 8, 9, 7), torch.randn(2, 8, 9, 7)
    out = blk(q, f)
    assert out.shape == q.shape
    k, v = blk.key_value(f)
    assert k.shape == f.shape and v.shape == f.shape
    t, s = dense_search_transfer(q, k, v)
    expect = q + blk.conv(torch.cat([q, t], 1)) * s
    assert torch.allclose(out, expect, atol=1e-5)


def test_transformer_block_runs_under_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    blk = TransformerBlock(16, chunk_size=20)
    conv = torch.nn.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 12, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q, f = conv(x), conv(x.flip(-1))
        assert q.dtype == torch.bfloat16
        out = blk(q, f)
        k, v = blk.key_value(f)
        t, s = search_transfer(q, k, v, chunk_size=20)
        t0, s0 = dense_search_transfer(q, k, v)
    assert out.shape == q.shape and torch.isfinite(out.float()).all()
    # S is the max relevance: the same value whichever tied index is chosen
    assert torch.allclose(s.float(), s0.float(), atol=2e-2)
    out.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        search_transfer(torch.zeros(1, 4, 5, 5), torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError):
        TransformerBlock(4, v_mode="other")


# --- windowed search -------------------------------------------------------------

WINDOW_CASES = [  # (H, W, window)
    (8, 8, 0),
    (7, 11, 1),
    (9, 6, 2),
    (12, 10, 3),
    (5, 7, 8),  # window wider than the grid: every candidate, i.e. the global search
]


@pytest.mark.parametrize("h,w,window", WINDOW_CASES)
@pytest.mark.parametrize("chunk", [1, 13, None])
def test_windowed_equals_masked_dense(h, w, window, chunk):
    g = torch.Generator().manual_seed(h * 31 + w * 7 + window)
    q = torch.randn(2, 5, h, w, generator=g)
    k = torch.randn(2, 5, h, w, generator=g)
    v = torch.randn(2, 3, h, w, generator=g)
    t0, s0, h0 = dense_search_transfer(q, k, v, return_index=True, window=window)
    t, s, idx = search_transfer(q, k, v, chunk_size=chunk, window=window, return_index=True)
    assert torch.equal(idx, h0)
    iy, ix = torch.div(idx, w, rounding_mode="floor"), idx % w
    qy = torch.arange(h).repeat_interleave(w)
    qx = torch.arange(w).repeat(h)
    assert ((iy - qy).abs() <= window).all() and ((ix - qx).abs() <= window).all()
    assert torch.allclose(t, t0, atol=1e-6, rtol=0)
    assert torch.allclose(s, s0, atol=1e-6, rtol=0)
    if window >= max(h, w):
        assert torch.equal(idx, search_transfer(q, k, v, return_index=True)[2])


def test_windowed_ties_pick_the_lowest_flat_index_like_the_global_search():
    # K constant: every interior K patch is the same vector, so inside the image all
    # interior candidates tie exactly; the border patches (zero padding) differ.
    h, w, window = 9, 10, 2
    g = torch.Generator().manual_seed(11)
    q = torch.randn(1, 4, h, w, generator=g)
    k = torch.ones(1, 4, h, w)
    v = torch.randn(1, 2, h, w, generator=g)
    _, _, h0 = dense_search_transfer(q, k, v, return_index=True, window=window)
    _, _, idx = search_transfer(q, k, v, window=window, return_index=True)
    assert torch.equal(idx, h0)
    # an all-positive query in the interior: interior candidates tie at the top, and the
    # first (top-left) of its window that is an interior position wins
    q = torch.ones(1, 4, h, w)
    _, s, idx = search_transfer(q, k, v, window=window, return_index=True)
    _, _, h0 = dense_search_transfer(q, k, v, return_index=True, window=window)
    assert torch.equal(idx, h0)
    y, x = 5, 5
    assert idx[0, y * w + x] == (y - window) * w + (x - window)
    assert torch.allclose(s[0, 0, y, x], torch.tensor(1.0))


def test_windowed_gradients_match_masked_dense():
    g = torch.Generator().manual_seed(5)
    tensors = [torch.randn(1, 4, 7, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    grads = []
    for fn in (lambda q, k, v: dense_search_transfer(q, k, v, window=2),
               lambda q, k, v: search_transfer(q, k, v, chunk_size=12, window=2)):
        q, k, v = (x.clone().requires_grad_() for x in tensors)
        t, s = fn(q, k, v)[:2]
        (t.square().sum() + (s * t.mean(1, keepdim=True)).sum()).backward()
        grads.append([q.grad, k.grad, v.grad])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


def test_windowed_search_rejects_bad_window_and_grids():
    x = torch.zeros(1, 2, 5, 5)
    with pytest.raises(ValueError, match="same grid"):
        search_transfer(x, torch.zeros(1, 2, 4, 5), torch.zeros(1, 2, 4, 5), window=1)
    with pytest.raises(ValueError, match=">= 0"):
        search_transfer(x, x, x, window=-1)
    with pytest.raises(ValueError):
        TransformerBlock(2, window=-3)


def test_transformer_block_window_equals_masked_dense():
    torch.manual_seed(1)
    blk = TransformerBlock(6, v_mode="ttsr", window=2)
    q, f = torch.randn(1, 6, 10, 9), torch.randn(1, 6, 10, 9)
    k, v = blk.key_value(f)
    t, s = dense_search_transfer(q, k, v, window=2)
    assert torch.allclose(blk(q, f), q + blk.conv(torch.cat([q, t], 1)) * s, atol=1e-5)
