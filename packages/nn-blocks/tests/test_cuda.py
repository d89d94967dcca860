"""CUDA paths: blocks and losses on the GPU agree with the CPU, and train under autocast (fp16 with a
grad scaler, bf16). Skipped where there is no GPU; CI has none, so run it on a GPU machine."""

import copy

import pytest
import torch

from lungtk.nn_blocks import (
    CBAM,
    DecoderStage,
    DiceLoss,
    EncoderStage,
    GeneralizedDiceLoss,
    QuartetAttention,
    ResidualBlock,
    ResidualUnit,
    SwitchNorm,
    TopKBCEDiceLoss,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

MODULES = {
    "residual-quartet": lambda: ResidualBlock(8, 16, 3, attention="quartet"),
    "residual-cbam": lambda: ResidualBlock.nodulenet(8, 16, 3, attention=("cbam", {"reduction": 4})),
    "unit": lambda: ResidualUnit(8, 16, 3, stride=2),
    "switchnorm": lambda: SwitchNorm(8, 3),
    "cbam": lambda: CBAM(8, 3, reduction=4),
    "quartet": lambda: QuartetAttention(kernel_size=3),
    "encoder": lambda: EncoderStage(8, 16, 3, block="residual", num_blocks=2),
}


@cuda
@pytest.mark.parametrize("name", list(MODULES))
def test_gpu_matches_cpu_in_float32(name):
    torch.manual_seed(0)
    cpu = MODULES[name]().eval()
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(2, 8, 16, 16, 16)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), atol=2e-4, rtol=2e-4)


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_tiny_unet_trains_under_autocast(dtype):
    torch.manual_seed(0)
    enc1 = EncoderStage(1, 8, 3, downsample=None)
    enc2 = EncoderStage(8, 16, 3, attention="quartet")
    dec = DecoderStage(16, 8, 8, 3)
    head = torch.nn.Conv3d(8, 1, 1)
    model = torch.nn.ModuleList([enc1, enc2, dec, head]).cuda()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    x = torch.randn(4, 1, 32, 32, 32, device="cuda")
    target = (x > 1.0).float()  # a learnable voxel-wise rule
    losses = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=dtype):
            s1 = enc1(x)
            logits = head(dec(enc2(s1), s1))
            loss = DiceLoss("sigmoid")(logits, target) + GeneralizedDiceLoss("sigmoid")(logits, target)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@cuda
def test_losses_on_gpu_match_cpu():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 24, 24, 24)
    target = (torch.rand(2, 1, 24, 24, 24) > 0.95).float()
    for loss in (DiceLoss("sigmoid"), GeneralizedDiceLoss("sigmoid"), TopKBCEDiceLoss(normalize=False)):
        torch.testing.assert_close(
            loss(logits.cuda(), target.cuda()).cpu(), loss(logits, target), atol=1e-5, rtol=1e-5
        )
