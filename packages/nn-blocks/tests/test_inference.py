"""Sliding-window inference, TTA and ensembles on tiny networks and small images, against hand-computed
results (numpy) and single whole-image passes."""

import functools
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lungtk.core import LungtkError
from lungtk.nn_blocks import ensemble, sliding_window, tta_predict
from lungtk.nn_blocks.inference import (
    all_flips,
    entropy,
    gaussian_importance_map,
    random_affines,
    warp,
    window_starts,
)

SHAPES = {2: (2, 19, 23), 3: (2, 11, 13, 17)}  # (C, *spatial), sizes the windows do not divide
WINDOWS = {2: (8, 10), 3: (6, 8, 8)}


def tiny_net(ndim: int, in_ch: int = 2, out_ch: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv2d if ndim == 2 else nn.Conv3d
    return nn.Sequential(conv(in_ch, 4, 3, padding=1), nn.ReLU(), conv(4, out_ch, 3, padding=1)).eval()


def plogp(p: np.ndarray) -> np.ndarray:
    """p log p with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(p), 0.0)


def image_of(ndim: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=SHAPES[ndim]).astype(np.float32))


# --- tiling and the Gaussian map ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "window", "overlap", "expected"),
    [
        (100, 64, 0.5, [0, 32, 36]),
        (64, 64, 0.5, [0]),
        (10, 4, 0.0, [0, 4, 6]),
        (10, 4, 0.5, [0, 2, 4, 6]),
        (10, 4, 0.75, [0, 1, 2, 3, 4, 5, 6]),
        (3, 8, 0.5, [0]),
    ],
)
def test_window_starts_step_by_overlap_and_align_the_last_to_the_end(size, window, overlap, expected):
    assert window_starts(size, window, overlap) == expected


@pytest.mark.parametrize("window", [(9, 12), (8, 7, 10)])
def test_gaussian_map_peaks_at_one_is_positive_symmetric_and_follows_the_formula(window):
    g = gaussian_importance_map(window, 0.125)
    assert g.shape == window and g.dtype == torch.float32
    assert g.max().item() == pytest.approx(1.0) and (g > 0).all()
    for axis in range(len(window)):
        torch.testing.assert_close(g, g.flip(axis))
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (0.125 * n)) ** 2) for n in window]
    expected = functools.reduce(np.multiply.outer, axes)
    np.testing.assert_allclose(g.numpy(), expected / expected.max(), rtol=1e-5)


def test_gaussian_map_zeros_are_clamped_to_the_smallest_positive_value():
    g = gaussian_importance_map((64,), 0.01)  # the far tails underflow float32
    assert (g > 0).all()
    assert (g == g.min()).sum() > 2  # more than the two symmetric tail ends: the clamped zeros


# --- sliding window -------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_sliding_window_does_not_depend_on_batch_size(ndim, blend):
    model, image = tiny_net(ndim), image_of(ndim)
    results = [
        sliding_window(model, image, WINDOWS[ndim], overlap=0.5, batch_size=b, blend=blend) for b in (1, 3, 8)
    ]
    assert results[0].shape == (3, *SHAPES[ndim][1:]) and results[0].dtype == torch.float32
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_one_window_over_the_whole_image_equals_a_single_pass(ndim, blend):
    model, image = tiny_net(ndim), image_of(ndim)
    got = sliding_window(model, image, SHAPES[ndim][1:], blend=blend)
    with torch.no_grad():
        expected = model(image[None])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_an_image_smaller_than_the_window_is_padded_centred_and_cropped_back(ndim):
    model, image = tiny_net(ndim), image_of(ndim)
    spatial = SHAPES[ndim][1:]
    window = (spatial[0] + 5, *spatial[1:-1], spatial[-1] + 2)  # larger on the first and last axes
    got = sliding_window(model, image, window, pad_value=-1.5)
    pad = [(0, 0)] + [((w - s) // 2, w - s - (w - s) // 2) for w, s in zip(window, spatial, strict=True)]
    padded = np.pad(image.numpy(), pad, constant_values=-1.5)
    with torch.no_grad():
        full = model(torch.from_numpy(padded)[None])[0]
    crop = tuple(slice(b, b + s) for (b, _), s in zip(pad[1:], spatial, strict=True))
    assert got.shape == (3, *spatial)
    torch.testing.assert_close(got, full[(slice(None), *crop)], atol=1e-5, rtol=0)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, (0.5, 0.0, 0.75)])
def test_a_voxelwise_model_comes_back_exactly_whatever_the_tiling(overlap):
    image = image_of(3)

    def model(x):
        return torch.cat([2 * x + 1, x[:, :1] ** 2], dim=1)

    got = sliding_window(model, image, (5, 6, 7), overlap=overlap, batch_size=2)
    torch.testing.assert_close(got, model(image[None])[0], atol=1e-5, rtol=1e-6)


def test_windows_are_blended_by_their_gaussian_weights():
    # image (1, 4, 6), window (4, 4), overlap 0.5: windows at columns 0 and 2; the model outputs each
    # window's mean, so the result is the Gaussian-weighted mean of the two means where they overlap.
    image = torch.arange(24, dtype=torch.float32).reshape(1, 4, 6)

    def model(x):
        return x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, 4, 4)

    got = sliding_window(model, image, (4, 4), overlap=0.5)[0].numpy()
    g = gaussian_importance_map((4, 4)).numpy()
    m0, m1 = image[0, :, 0:4].mean().item(), image[0, :, 2:6].mean().item()
    num, den = np.zeros((4, 6)), np.zeros((4, 6))
    num[:, 0:4] += g * m0
    den[:, 0:4] += g
    num[:, 2:6] += g * m1
    den[:, 2:6] += g
    np.testing.assert_allclose(got, num / den, rtol=1e-6)
    assert got[0, 0] == pytest.approx(m0) and got[0, 5] == pytest.approx(m1)


def test_numpy_and_memmap_inputs_give_the_tensor_result(tmp_path):
    model, image = tiny_net(3), image_of(3)
    expected = sliding_window(model, image, (6, 8, 8))
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=image.shape)
    mm[:] = image.numpy()
    for source in (image.numpy(), mm, image.numpy().astype(np.float64)):
        got = sliding_window(model, source, (6, 8, 8))
        assert isinstance(got, torch.Tensor) and got.device.type == "cpu"
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    half = sliding_window(model, image, (6, 8, 8), out_dtype=torch.float16)
    assert half.dtype == torch.float16
    tracked = sliding_window(model, image.clone().requires_grad_(), (6, 8, 8))
    assert not tracked.requires_grad
    tracked += 1  # an ordinary tensor, not an inference-mode one


class TwoHeads(nn.Module):
    def __init__(self, as_dict: bool):
        super().__init__()
        self.seg = tiny_net(3, out_ch=1)
        self.as_dict = as_dict

    def forward(self, x):
        seg = self.seg(x)
        cls = seg.mean(dim=(2, 3, 4))
        return {"seg": seg, "cls": cls} if self.as_dict else (seg, cls)


def test_output_selects_the_logits_of_a_model_with_several_heads():
    image = image_of(3)
    expected = sliding_window(TwoHeads(False).seg, image, (6, 8, 8))
    for model, output in [
        (TwoHeads(False), 0),
        (TwoHeads(True), "seg"),
        (TwoHeads(True), lambda out: out["seg"]),
    ]:
        torch.testing.assert_close(sliding_window(model, image, (6, 8, 8), output=output), expected)
    with pytest.raises(LungtkError, match="output="):
        sliding_window(TwoHeads(True), image, (6, 8, 8))
    with pytest.raises(LungtkError, match="no such entry"):
        sliding_window(TwoHeads(True), image, (6, 8, 8), output="mask")


def test_a_model_that_changes_the_window_size_is_an_error():
    with pytest.raises(LungtkError, match=r"\(B, K, \*window\)"):
        sliding_window(lambda x: F.avg_pool3d(x, 2), image_of(3), (6, 8, 8))


def test_progress_reports_windows_done():
    calls = []
    sliding_window(
        tiny_net(2), image_of(2), (8, 10), batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    total = len(window_starts(19, 8, 0.5)) * len(window_starts(23, 10, 0.5))
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted({min(i + 4, total) for i in range(0, total, 4)})


def test_precision_on_the_cpu_bf16_autocasts_and_fp16_stays_fp32():
    model, image = tiny_net(3), image_of(3)
    fp32 = sliding_window(model, image, (6, 8, 8))
    torch.testing.assert_close(sliding_window(model, image, (6, 8, 8), precision="fp16"), fp32)
    seen = []
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    bf16 = sliding_window(model, image, (6, 8, 8), precision="bf16")
    assert seen and set(seen) == {torch.bfloat16}
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 1.0}, "overlap 1.0"),
        ({"overlap": -0.1}, "overlap -0.1"),
        ({"overlap": (0.5, 0.5)}, "overlap"),
        ({"window": (0, 8, 8)}, "window"),
        ({"window": (6, 8)}, "window"),
        ({"window": (6.0, 8, 8)}, "window"),
        ({"batch_size": 0}, "batch size 0"),
        ({"batch_size": 2.5}, "batch size"),
        ({"blend": "mean"}, "blend"),
        ({"precision": "fp8"}, "precision"),
        ({"sigma_scale": 0}, "sigma_scale"),
    ],
)
def test_bad_numbers_are_one_line_errors(kwargs, message):
    args = {"window": (6, 8, 8)} | kwargs
    window = args.pop("window")
    with pytest.raises(LungtkError, match=message) as error:
        sliding_window(tiny_net(3), image_of(3), window, **args)
    assert "\n" not in str(error.value)


def test_an_image_without_a_channel_axis_is_an_error():
    with pytest.raises(LungtkError, match=r"\(C, \*spatial\)"):
        sliding_window(tiny_net(3), image_of(3)[0, 0], (4, 4))


# --- test-time augmentation -----------------------------------------------------------------------


def symmetric_conv(ndim: int, k: int = 2, seed: int = 0):
    """A convolution whose kernels are symmetric under every flip: flip-equivariant."""
    torch.manual_seed(seed)
    w = 0.3 * torch.randn(k, 2, *(3,) * ndim)  # logits of order 1
    w = torch.stack([w.flip([a + 2 for a in axes]) for axes in all_flips(ndim)]).mean(0)
    conv = F.conv2d if ndim == 2 else F.conv3d
    return lambda x: conv(x[None].float(), w, padding=1)[0]


def plain_conv(ndim: int, k: int = 2, seed: int = 1):
    torch.manual_seed(seed)
    w = torch.randn(k, 2, *(3,) * ndim)
    conv = F.conv2d if ndim == 2 else F.conv3d
    return lambda x: conv(x[None].float(), w, padding=1)[0]


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_flip_equivariant_model_gives_its_own_prediction_and_the_entropy_formula(ndim):
    predict, image = symmetric_conv(ndim), image_of(ndim)
    result = tta_predict(predict, image)
    p = torch.sigmoid(predict(image)).numpy()
    np.testing.assert_allclose(result.probability.numpy(), p, atol=1e-5)  # flips reorder float sums
    expected = -plogp(p) - plogp(1 - p)
    np.testing.assert_allclose(result.entropy.numpy(), expected, atol=1e-5)
    plain = tta_predict(predict, image, flips=[()])
    torch.testing.assert_close(result.probability, plain.probability, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_tta_of_a_model_is_the_average_of_its_flipped_back_predictions(ndim):
    predict, image = plain_conv(ndim), image_of(ndim)
    calls = []
    result = tta_predict(lambda x: calls.append(1) or predict(x), image)
    assert len(calls) == 2**ndim
    x = image.numpy()
    flipped_back = []
    for r in range(ndim + 1):
        for axes in itertools.combinations(range(1, ndim + 1), r):
            logits = predict(torch.from_numpy(np.flip(x, axes).copy())).numpy()
            flipped_back.append(1 / (1 + np.exp(-np.flip(logits, axes))))
    mean = np.mean(flipped_back, axis=0)
    np.testing.assert_allclose(result.probability.numpy(), mean, atol=1e-6)
    # and the model is not flip-equivariant, so TTA changed something
    assert not np.allclose(mean, flipped_back[0], atol=1e-3)


def test_softmax_tta_averages_probabilities_and_sums_the_entropy_over_classes():
    predict, image = plain_conv(2, k=3), image_of(2)
    result = tta_predict(predict, image, flips=[(), (1,)], activation="softmax")
    x = image.numpy()
    p0 = torch.softmax(predict(image), 0).numpy()
    p1 = np.flip(torch.softmax(predict(torch.from_numpy(np.flip(x, 2).copy())), 0).numpy(), 2)
    mean = (p0 + p1) / 2
    np.testing.assert_allclose(result.probability.numpy(), mean, atol=1e-6)
    np.testing.assert_allclose(result.probability.sum(0).numpy(), 1, atol=1e-6)
    expected = -plogp(mean).sum(0, keepdims=True)
    assert result.entropy.shape == (1, *SHAPES[2][1:])
    np.testing.assert_allclose(result.entropy.numpy(), expected, atol=1e-5)


def test_tta_takes_a_sliding_window_partial():
    model, image = tiny_net(3, out_ch=1), image_of(3)
    predict = functools.partial(sliding_window, model, window=SHAPES[3][1:])
    result = tta_predict(predict, image.numpy(), flips=[(), (0, 2)])
    assert result.probability.shape == (1, *SHAPES[3][1:])
    assert ((result.probability > 0) & (result.probability < 1)).all()


def test_warp_rotates_in_the_row_col_plane_and_its_inverse_undoes_it():
    quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # samples x[-col, row]
    square = torch.arange(2 * 25, dtype=torch.float32).reshape(2, 5, 5)
    turned = warp(square, quarter)
    torch.testing.assert_close(turned, torch.rot90(square, -1, (1, 2)), atol=1e-4, rtol=0)
    torch.testing.assert_close(warp(turned, torch.linalg.inv(quarter)), square, atol=1e-4, rtol=0)
    volume = torch.randn(1, 3, 5, 5)
    quarter3 = torch.eye(3, dtype=torch.float64)
    quarter3[1:, 1:] = quarter
    torch.testing.assert_close(warp(volume, quarter3), torch.rot90(volume, -1, (2, 3)), atol=1e-4, rtol=0)


def test_random_affines_are_seeded_and_within_range():
    a = random_affines(5, 3, rotation=10, scale=0.1, seed=3)
    b = random_affines(5, 3, rotation=10, scale=0.1, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], random_affines(1, 3, 10, 0.1, seed=4)[0])
    for m in a:
        factor = m[0, 0].item()  # the index axis is only scaled
        assert m[0, 1] == m[0, 2] == m[1, 0] == m[2, 0] == 0
        assert m[1, 1] == m[2, 2] and m[1, 2] == -m[2, 1]  # a rotation in the (row, col) plane
        assert np.hypot(m[1, 1].item(), m[2, 1].item()) == pytest.approx(factor)  # isotropic
        assert 0.9 <= factor <= 1.1
        assert abs(np.degrees(np.arctan2(m[2, 1].item(), m[1, 1].item()))) <= 10


def test_identity_affine_samples_change_nothing():
    predict, image = plain_conv(3), image_of(3)
    plain = tta_predict(predict, image, flips=[()])
    same = tta_predict(predict, image, flips=[()], affine=3, rotation=0, scale=0)
    torch.testing.assert_close(same.probability, plain.probability, atol=1e-5, rtol=0)


def test_affine_tta_of_a_voxelwise_model_is_close_to_its_prediction_and_seeded():
    z, y, x = np.meshgrid(np.arange(9), np.arange(24), np.arange(24), indexing="ij")
    smooth = np.exp(-((y - 11.5) ** 2 + (x - 11.5) ** 2) / 60.0) * (1 + 0 * z)
    image = torch.from_numpy(np.stack([smooth, smooth]).astype(np.float32))

    def predict(v):
        return 4 * v[:1] - 2

    plain = tta_predict(predict, image, flips=[()])
    warped = tta_predict(predict, image, flips=[()], affine=4, seed=1)
    again = tta_predict(predict, image, flips=[()], affine=4, seed=1)
    torch.testing.assert_close(warped.probability, again.probability)
    torch.testing.assert_close(warped.probability, plain.probability, atol=0.03, rtol=0)
    assert not torch.equal(warped.probability, plain.probability)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flips": [(3,)]}, "flip"),
        ({"flips": [(0, 0)]}, "flip"),
        ({"flips": []}, "flips"),
        ({"affine": -1}, "affine"),
        ({"scale": 1.0}, "scale"),
        ({"rotation": -5}, "rotation"),
        ({"activation": "relu"}, "activation"),
    ],
)
def test_bad_tta_arguments_are_errors(kwargs, message):
    with pytest.raises(LungtkError, match=message):
        tta_predict(plain_conv(3), image_of(3), **kwargs)


def test_a_predict_fn_of_the_wrong_size_is_an_error():
    with pytest.raises(LungtkError, match="predict_fn"):
        tta_predict(lambda x: x[:, :-1], image_of(3))


def test_entropy_is_zero_for_certain_voxels_and_maximal_at_one_half():
    p = torch.tensor([[0.0, 1.0, 0.5]])
    np.testing.assert_allclose(entropy(p).numpy(), [[0, 0, np.log(2)]], atol=1e-7)
    q = torch.tensor([[1 / 3, 1.0], [1 / 3, 0.0], [1 / 3, 0.0]])
    np.testing.assert_allclose(entropy(q, "softmax").numpy(), [[np.log(3), 0]], atol=1e-6)


# --- ensembles ------------------------------------------------------------------------------------


def test_ensemble_is_the_normalised_weighted_mean_of_logits_or_probabilities():
    rng = np.random.default_rng(0)
    logits = [rng.normal(size=(2, 5, 6)).astype(np.float32) for _ in range(3)]
    weights = [1.0, 3.0, 0.0]
    expected = (1 * logits[0] + 3 * logits[1]) / 4
    np.testing.assert_allclose(ensemble(logits, weights=weights).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(ensemble(logits).numpy(), np.mean(logits, axis=0), rtol=1e-5, atol=1e-6)
    sig = [1 / (1 + np.exp(-z)) for z in logits]
    got = ensemble(logits, weights=weights, mode="probabilities")
    np.testing.assert_allclose(got.numpy(), (sig[0] + 3 * sig[1]) / 4, rtol=1e-6)
    soft = [np.exp(z) / np.exp(z).sum(0) for z in logits]
    got = ensemble(logits, weights=[0.2, 0.2, 0.6], mode="probabilities", activation="softmax")
    np.testing.assert_allclose(got.numpy(), 0.2 * soft[0] + 0.2 * soft[1] + 0.6 * soft[2], rtol=1e-5)


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_seed_002_two_model_weighting(w):
    image = image_of(3)
    unet = functools.partial(sliding_window, tiny_net(3, seed=1), window=(6, 8, 8))
    other = functools.partial(sliding_window, tiny_net(3, seed=2), window=(6, 8, 8))
    got = ensemble([unet, other], image, weights=[w, 1 - w])
    expected = w * unet(image) + (1 - w) * other(image)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_ensemble_members_may_be_predictions_or_predict_functions():
    image = image_of(2)
    fns = [plain_conv(2, seed=s) for s in (1, 2)]
    torch.testing.assert_close(ensemble(fns, image), ensemble([f(image) for f in fns]))
    with pytest.raises(LungtkError, match="pass the image"):
        ensemble(fns)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -0.5], "non-negative"),
        ([0.0, 0.0], "not all zero"),
        ([1.0], "one weight per member"),
        ([float("nan"), 1.0], "non-negative"),
    ],
)
def test_bad_ensemble_weights_are_errors(weights, message):
    with pytest.raises(LungtkError, match=message):
        ensemble([np.zeros((1, 2, 2)), np.ones((1, 2, 2))], weights=weights)


def test_ensemble_members_of_different_shapes_or_none_are_errors():
    with pytest.raises(LungtkError, match="same shape"):
        ensemble([np.zeros((1, 2, 2)), np.ones((1, 2, 3))])
    with pytest.raises(LungtkError, match="no members"):
        ensemble([])
    with pytest.raises(LungtkError, match="mode"):
        ensemble([np.zeros((1, 2, 2))], mode="votes")


# --- CUDA -----------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_sliding_window_on_the_gpu_matches_the_cpu(precision):
    model, image = tiny_net(3), image_of(3)
    cpu = sliding_window(model, image, (6, 8, 8))
    gpu = sliding_window(model.cuda(), image, (6, 8, 8), precision=precision)
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    tolerance = 1e-4 if precision == "fp32" else 0.05
    torch.testing.assert_close(gpu, cpu, atol=tolerance, rtol=tolerance)
