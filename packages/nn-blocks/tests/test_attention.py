"""Attention modules: shapes, gating, and the published parameter-count formulas."""

import pytest
import torch

from lungtk.nn_blocks import CBAM, QuartetAttention, TripletAttention, create_attention
from lungtk.nn_blocks.attention import SpatialGate


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(("channels", "reduction", "kernel"), [(16, 4, 3), (64, 16, 7), (128, 16, 5)])
def test_cbam_parameter_count(spatial_dims, channels, reduction, kernel):
    cbam = CBAM(channels, spatial_dims, reduction=reduction, kernel_size=kernel)
    hidden = channels // reduction
    formula = 2 * channels**2 / reduction + 2 * kernel**spatial_dims  # the paper's O(2C^2/r + 2k^d)
    extras = hidden + channels + 2  # the MLP's biases and the gate's 1-channel norm
    assert n_params(cbam) == formula + extras


def test_triplet_and_quartet_sizes_do_not_depend_on_channels():
    for k in (3, 5, 7):
        assert n_params(TripletAttention(kernel_size=k)) == 6 * k**2 + 6
        assert n_params(QuartetAttention(kernel_size=k)) == 8 * k**3 + 8
    for channels in (4, 32, 256):
        assert n_params(create_attention("quartet", channels, 3)) == n_params(QuartetAttention())
        assert n_params(create_attention("triplet", channels, 2)) == n_params(TripletAttention())


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (CBAM(16, 2, reduction=4), (2, 16, 12, 10)),
        (CBAM(16, 3, reduction=4), (2, 16, 6, 12, 10)),
        (TripletAttention(), (2, 16, 12, 10)),
        (QuartetAttention(kernel_size=3), (2, 16, 6, 12, 10)),
    ],
)
def test_attention_keeps_shape_and_only_rescales(module, shape):
    module.eval()
    x = torch.randn(shape, requires_grad=True)
    y = module(x)
    assert y.shape == x.shape
    # Gates lie in (0, 1): every output has its input's sign and no more magnitude.
    assert torch.all(y.detach() * x.detach() >= 0)
    assert torch.all(y.detach().abs() <= x.detach().abs() + 1e-6)
    y.sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in module.parameters())


def test_cross_dimension_branches_see_the_channel_order():
    # A spatial gate over channel pools ([max, mean]) commutes with reordering the channels; Quartet's
    # branches convolve along the channel axis, so they do not: they model channel-space interactions.
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 5, 5)
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    gate = SpatialGate(3, kernel_size=3).eval()
    torch.testing.assert_close(gate(x[:, perm]), gate(x)[:, perm])
    q = QuartetAttention(kernel_size=3).eval()
    assert not torch.allclose(q(x[:, perm]), q(x)[:, perm], atol=1e-3)


def test_wrong_dimensionality_is_refused():
    with pytest.raises(ValueError, match="2D module"):
        TripletAttention(spatial_dims=3)
    with pytest.raises(ValueError, match="3 spatial dims"):
        QuartetAttention()(torch.randn(1, 4, 5, 5))
