"""Factories, norms, blocks and stages: shapes in 2D and 3D, gradient flow, and behaviour."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks import (
    CBAM,
    ConvNormAct,
    DecoderStage,
    DilatedConvBlock,
    DoubleConv,
    EncoderStage,
    QuartetAttention,
    ResidualBlock,
    ResidualUnit,
    SwitchNorm,
    TripletAttention,
    conv_type,
    create_act,
    create_block,
    create_norm,
    create_pool,
    he_init_,
    prior_bias_,
)

torch.manual_seed(0)


def x_of(spatial_dims, channels=8, size=8, n=2):
    return torch.randn(n, channels, *(size,) * spatial_dims)


def test_factories_by_name_and_options():
    assert isinstance(create_norm("batch", 3, 8), nn.BatchNorm3d)
    assert isinstance(create_norm("instance", 2, 8), nn.InstanceNorm2d)
    group = create_norm(("group", {"num_groups": 4}), 3, 8)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 4
    assert isinstance(create_norm(None, 3, 8), nn.Identity)
    assert isinstance(create_norm("switch", 2, 8), SwitchNorm)
    assert isinstance(create_act(("leaky_relu", {"negative_slope": 0.2})), nn.LeakyReLU)
    assert isinstance(create_act("ELU"), nn.ELU)
    assert isinstance(create_pool(("max", {"kernel_size": 2}), 3), nn.MaxPool3d)
    assert conv_type(2) is nn.Conv2d and conv_type(3, transposed=True) is nn.ConvTranspose3d


def test_unknown_names_suggest_the_closest():
    with pytest.raises(LungtkError, match="unknown norm 'batchh'; did you mean 'batch'"):
        create_norm("batchh", 3, 8)
    with pytest.raises(LungtkError, match="did you mean 'elu'"):
        create_act("eluu")
    with pytest.raises(LungtkError, match="do not split into 8 groups"):
        create_norm("group", 3, 12)
    with pytest.raises(LungtkError, match="spatial_dims"):
        conv_type(4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "make",
    [
        lambda d: ConvNormAct(8, 16, d),
        lambda d: DoubleConv(8, 16, d),
        lambda d: DilatedConvBlock(8, 16, d, dilation=2),
        lambda d: ResidualBlock(8, 16, d),
        lambda d: ResidualBlock(8, 16, d, attention="cbam"),
        lambda d: ResidualBlock(8, 16, d, attention="triplet" if d == 2 else "quartet"),
        lambda d: ResidualBlock.nodulenet(8, 16, d),
        lambda d: ResidualUnit(8, 16, d),
    ],
    ids=[
        "convnormact",
        "double",
        "dilated",
        "residual",
        "residual-cbam",
        "residual-rot",
        "nodulenet",
        "unit",
    ],
)
def test_blocks_keep_the_size_and_pass_gradients(spatial_dims, make):
    block = make(spatial_dims)
    x = x_of(spatial_dims).requires_grad_()
    y = block(x)
    assert y.shape == (2, 16, *(8,) * spatial_dims)
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_strided_blocks_halve_the_size(spatial_dims):
    for block in (ResidualBlock(8, 16, spatial_dims, stride=2), ResidualUnit(8, 16, spatial_dims, stride=2)):
        assert block(x_of(spatial_dims)).shape == (2, 16, *(4,) * spatial_dims)


def test_residual_block_shortcut_and_attention_placement():
    same = ResidualBlock(16, 16)
    assert isinstance(same.shortcut, nn.Identity)
    projected = ResidualBlock(8, 16)
    assert isinstance(projected.shortcut[0], nn.Conv3d) and projected.shortcut[0].kernel_size == (1, 1, 1)
    # Seed 000's defaults: GroupNorm with 8 groups and ELU; NoduleNet's: BatchNorm and ReLU.
    assert isinstance(same.residual[2], nn.GroupNorm) and same.residual[2].num_groups == 8
    assert isinstance(same.act, nn.ELU)
    nodulenet = ResidualBlock.nodulenet(16)
    assert isinstance(nodulenet.residual[2], nn.BatchNorm3d) and isinstance(nodulenet.act, nn.ReLU)
    # Attention is the last step of the residual branch, before the addition.
    assert isinstance(ResidualBlock(16, attention="cbam").residual[-1], CBAM)
    assert isinstance(ResidualBlock(16, attention="quartet").residual[-1], QuartetAttention)
    assert isinstance(ResidualBlock(16, spatial_dims=2, attention="triplet").residual[-1], TripletAttention)


def test_residual_block_is_the_identity_plus_activation_when_its_branch_is_zero():
    block = ResidualBlock(8, act="relu").eval()
    for m in block.residual.modules():
        if isinstance(m, nn.GroupNorm):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    x = x_of(3)
    torch.testing.assert_close(block(x), F.relu(x))


def test_dilated_block_sees_exactly_the_dilated_taps():
    block = DilatedConvBlock(1, 1, 3, dilation=2, norm=None, act=None)
    nn.init.ones_(block[0].weight)
    x = torch.zeros(1, 1, 9, 9, 9, requires_grad=True)
    block(x)[0, 0, 4, 4, 4].backward()
    taps = torch.nonzero(x.grad[0, 0]).tolist()
    assert sorted(taps) == sorted([[a, b, c] for a in (2, 4, 6) for b in (2, 4, 6) for c in (2, 4, 6)])


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("block", ["double", "residual", "unit"])
def test_encoder_decoder_stages(spatial_dims, block):
    enc1 = EncoderStage(1, 8, spatial_dims, block=block, downsample=None)
    enc2 = EncoderStage(8, 16, spatial_dims, block=block, num_blocks=2)
    enc3 = EncoderStage(16, 32, spatial_dims, block=block, downsample="stride")
    dec2 = DecoderStage(32, 16, 16, spatial_dims, block=block)
    dec1 = DecoderStage(16, 8, 8, spatial_dims, block=block, upsample="linear")
    x = torch.randn(2, 1, *(16,) * spatial_dims)
    s1 = enc1(x)
    s2 = enc2(s1)
    bottom = enc3(s2)
    assert s2.shape[2:] == (8,) * spatial_dims and bottom.shape == (2, 32, *(4,) * spatial_dims)
    out = dec1(dec2(bottom, s2), s1)
    assert out.shape == (2, 8, *(16,) * spatial_dims)
    out.mean().backward()
    assert all(p.grad is not None for p in enc1.parameters())


def test_create_block_by_name_or_callable():
    assert isinstance(create_block("nodulenet", 8, 16, 3), ResidualBlock)
    assert isinstance(create_block(lambda i, o, d: nn.Conv3d(i, o, 1), 8, 16, 3), nn.Conv3d)
    with pytest.raises(LungtkError, match="did you mean 'residual'"):
        create_block("residul", 8, 16, 3)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_switch_norm_reduces_to_instance_layer_and_batch_norm(spatial_dims):
    x = x_of(spatial_dims, channels=6) * 3 + 1
    norm = SwitchNorm(6, spatial_dims)
    assert sum(p.numel() for p in norm.parameters()) == 2 * 6 + 6
    for which, reference in (
        (0, F.instance_norm(x, eps=1e-5)),
        (1, F.layer_norm(x, x.shape[1:], eps=1e-5)),
        (2, F.batch_norm(x, None, None, training=True, eps=1e-5)),
    ):
        with torch.no_grad():
            logits = torch.full((3,), -1e4)
            logits[which] = 1e4
            norm.mean_logits.copy_(logits)
            norm.var_logits.copy_(logits)
        torch.testing.assert_close(norm(x), reference, atol=1e-4, rtol=1e-4)


def test_switch_norm_eval_uses_running_batch_statistics_like_batchnorm():
    sn, bn = SwitchNorm(4, 3), nn.BatchNorm3d(4)
    with torch.no_grad():
        sn.mean_logits.copy_(torch.tensor([-1e4, -1e4, 1e4]))
        sn.var_logits.copy_(torch.tensor([-1e4, -1e4, 1e4]))
    for _ in range(3):
        x = x_of(3, channels=4) * 2 + 0.5
        sn(x)
        bn(x)
    sn.eval()
    bn.eval()
    x = x_of(3, channels=4)
    torch.testing.assert_close(sn(x), bn(x), atol=1e-5, rtol=1e-4)


def test_he_init_and_prior_bias():
    conv = nn.Conv3d(16, 64, 3)
    he_init_(conv)
    fan_out = 64 * 27
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.05)
    assert conv.bias.abs().sum() == 0
    head = prior_bias_(nn.Conv3d(8, 1, 1), prior=0.01)
    assert torch.sigmoid(head.bias).item() == pytest.approx(0.01)


def test_masked_pool_is_the_weighted_mean_and_the_maximum_inside_the_mask():
    from lungtk.nn_blocks import MaskedPool

    features = torch.randn(3, 4, 6, 6, 6)
    mask = torch.zeros(3, 1, 6, 6, 6)
    mask[0, 0, 1:3, 2:5, 0:2] = 1.0  # a hard mask
    mask[1, 0] = torch.rand(6, 6, 6) * 0.4  # soft, nowhere at 0.5: the mean stands in for the maximum
    pooled = MaskedPool()(features, mask)
    assert pooled.shape == (3, 8)
    for b in range(3):
        w = mask[b, 0].flatten() if mask[b].sum() > 0 else torch.ones(216)  # empty: the whole field
        f = features[b].flatten(1)
        mean = (f * w).sum(1) / w.sum()
        inside = w >= 0.5
        peak = f[:, inside].max(1).values if inside.any() else mean
        torch.testing.assert_close(pooled[b], torch.cat([mean, peak]))
    half = MaskedPool()(features[:, :, ::2, ::2, ::2], torch.ones(3, 1, 6, 6, 6))  # resized to fit
    torch.testing.assert_close(half[:, :4], features[:, :, ::2, ::2, ::2].mean((2, 3, 4)))
