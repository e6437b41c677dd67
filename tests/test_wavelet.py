"""Haar HH band (Eq. 4) equals the hand computation; the 4-band DWT reconstructs perfectly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cwtnet.model.wavelet import F_HH, dwt_haar, haar_hh, idwt_haar


def test_haar_hh_equals_hand_computation_on_a_2x2_block():
    x = torch.tensor([[1.0, 2.0], [3.0, 7.0]]).view(1, 1, 2, 2)
    # 1/2 (a - b - c + d) = 1/2 (1 - 2 - 3 + 7) = 1.5
    assert haar_hh(x).item() == 1.5


def test_haar_hh_is_the_stride_2_convolution_with_f_hh_per_channel():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 10, 14, dtype=torch.float64)
    w = F_HH.to(torch.float64).view(1, 1, 2, 2).repeat(3, 1, 1, 1)
    ref = F.conv2d(x, w, stride=2, groups=3)
    out = haar_hh(x)
    assert out.shape == (2, 3, 5, 7)
    assert torch.allclose(out, ref, atol=1e-15)


def test_haar_hh_rejects_odd_sizes():
    with pytest.raises(ValueError):
        haar_hh(torch.zeros(1, 3, 5, 6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dwt_idwt_perfect_reconstruction(dtype):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 12, 18, dtype=dtype)
    bands = dwt_haar(x)
    assert all(b.shape == (2, 3, 6, 9) for b in bands)
    assert torch.equal(bands[3], haar_hh(x))
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    assert torch.allclose(idwt_haar(*bands), x, atol=tol)


def test_dwt_is_orthonormal_energy_preserving():
    torch.manual_seed(2)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    energy = sum((b**2).sum() for b in dwt_haar(x))
    assert torch.allclose(energy, (x**2).sum())


def test_constant_image_has_only_ll():
    x = torch.full((1, 1, 4, 4), 0.3, dtype=torch.float64)
    ll, lh, hl, hh = dwt_haar(x)
    assert torch.allclose(ll, torch.full_like(ll, 0.6))
    assert lh.abs().max() == 0 and hl.abs().max() == 0 and hh.abs().max() == 0
