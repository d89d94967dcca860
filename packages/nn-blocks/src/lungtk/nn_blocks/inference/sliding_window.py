"""Sliding-window inference over a whole image with Gaussian (or constant) blending of the windows.

Memory: the image stays the caller's array or tensor (a numpy memory map is read a window at a time);
only ``batch_size`` windows at a time are copied to the device. The blended logits and the blending
weights are accumulated on the CPU in float32: (K + 1) x the number of voxels x 4 bytes for K output
channels, e.g. 512 x 512 x 400 voxels with K = 1 is 2 x 0.42 GB = 0.84 GB.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from lungtk.core import PRECISIONS, LungtkError, Precision
from lungtk.nn_blocks.inference._checks import (
    choice,
    image_ndim,
    per_axis_fractions,
    per_axis_ints,
    positive_int,
    positive_number,
)
from lungtk.nn_blocks.inference.gaussian import gaussian_importance_map
from lungtk.nn_blocks.inference.tiling import padding, read_window, window_grid

BLENDS = ("gaussian", "constant")
OutputSelector = int | str | Callable[[Any], torch.Tensor] | None
Progress = Callable[[int, int], None]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def sliding_window(
    model: Callable[[torch.Tensor], Any],
    image: np.ndarray | torch.Tensor,
    window: int | Sequence[int],
    *,
    overlap: float | Sequence[float] = 0.5,
    batch_size: int = 4,
    blend: str = "gaussian",
    sigma_scale: float = 0.125,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    pad_value: float = 0.0,
    output: OutputSelector = None,
    out_dtype: torch.dtype = torch.float32,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Run ``model`` window by window over ``image`` (C, *spatial; 2 or 3 spatial axes) and blend the
    windows' logits into one (K, *spatial) CPU tensor of ``out_dtype``.

    - ``model`` maps a batch (B, C, *window) to logits (B, K, *window). Put it in eval mode and on
      ``device`` first; ``device=None`` takes the device of its first parameter or buffer (CPU for a
      plain function). Windows reach it as float32, under ``torch.inference_mode``, and under autocast
      when ``precision`` is bf16 or fp16 on CUDA (bf16 on the CPU too; fp16 on the CPU runs in fp32).
    - ``output`` picks the logits out of a model that returns more than a tensor: an index (tuple or
      list), a key (dict), or a callable applied to what the model returns, e.g.
      ``output=lambda out: out["seg"]``.
    - ``window``: the window size, one int per spatial axis (an int for all); ``overlap`` in [0, 1) (one
      for all axes or one per axis) sets the step, ``window * (1 - overlap)``; the last window on an axis
      is aligned to its end. An axis shorter than the window is padded (centred) with ``pad_value`` and
      the result cropped back.
    - ``blend="gaussian"`` weights each window by nnU-Net's importance map (``sigma = sigma_scale * window``),
      ``"constant"`` weights all voxels alike; the result is the weighted mean of the windows' logits.
    - ``progress(done, total)`` is called after each batch with the number of windows done.

    The result does not depend on ``batch_size`` (to float rounding), and equals one whole-image pass
    when one window covers the image.
    """
    shape = tuple(image.shape)
    ndim = image_ndim(shape)
    window = per_axis_ints(window, ndim, "window")
    overlap = per_axis_fractions(overlap, ndim, "overlap")
    batch_size = positive_int(batch_size, "batch size")
    blend = choice(blend, BLENDS, "blend")
    precision = choice(precision, PRECISIONS, "precision")
    sigma_scale = positive_number(sigma_scale, "sigma_scale")
    device = _model_device(model) if device is None else torch.device(device)

    padded, before = padding(shape[1:], window)
    starts = window_grid(padded, window, overlap)
    weight_map = gaussian_importance_map(window, sigma_scale) if blend == "gaussian" else torch.ones(window)
    logit_sum: torch.Tensor | None = None
    weight_sum = torch.zeros(padded, dtype=torch.float32)

    with torch.no_grad():  # reading windows from a tensor that requires grad builds no graph
        for done in range(0, len(starts), batch_size):
            chunk = starts[done : done + batch_size]
            batch = torch.stack([read_window(image, s, window, before, pad_value) for s in chunk])
            if device.type == "cuda" and batch.device.type == "cpu":
                batch = batch.pin_memory()
            with torch.inference_mode(), _autocast(device, precision):
                logits = _select(model(batch.to(device, non_blocking=True)), output)
            _check_logits(logits, len(chunk), window)
            weighted = logits.to("cpu", torch.float32) * weight_map
            if logit_sum is None:
                logit_sum = torch.zeros((weighted.shape[1], *padded), dtype=torch.float32)
            for start, values in zip(chunk, weighted, strict=True):
                region = tuple(slice(a, a + w) for a, w in zip(start, window, strict=True))
                logit_sum[(slice(None), *region)] += values
                weight_sum[region] += weight_map
            if progress is not None:
                progress(done + len(chunk), len(starts))

    assert logit_sum is not None  # there is always at least one window
    result = logit_sum.div_(weight_sum)
    if padded != shape[1:]:
        crop = tuple(slice(b, b + s) for b, s in zip(before, shape[1:], strict=True))
        result = result[(slice(None), *crop)].contiguous()
    return result.to(out_dtype)


def _model_device(model: Callable[..., Any]) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            return tensor.device
    return torch.device("cpu")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision != "fp32" and (device.type == "cuda" or (device.type == "cpu" and precision == "bf16")):
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()  # fp16 on the CPU: fp32


def _select(raw: Any, output: OutputSelector) -> torch.Tensor:
    if output is None:
        logits = raw
    elif callable(output):
        logits = output(raw)
    else:
        try:
            logits = raw[output]
        except (KeyError, IndexError, TypeError) as error:
            raise LungtkError(
                f"output {output!r}: the model's {type(raw).__name__} output has no such entry ({error})"
            ) from None
    if not isinstance(logits, torch.Tensor):
        raise LungtkError(
            f"the model returned a {type(logits).__name__}, not a tensor: pass output= (an index, a key or a "
            "callable) to pick the logits"
        )
    return logits


def _check_logits(logits: torch.Tensor, batch: int, window: tuple[int, ...]) -> None:
    if logits.ndim != len(window) + 2 or logits.shape[0] != batch or tuple(logits.shape[2:]) != window:
        raise LungtkError(
            f"the model returned logits of shape {tuple(logits.shape)} for a batch of {batch} windows of "
            f"{window}: sliding-window inference needs (B, K, *window), the window's own spatial size"
        )
