"""Layer factories: convolutions, norms, activations, pooling and dropout in 2D or 3D, by name or by
``(name, kwargs)``, as MONAI's layer factories and timm's ``create_*`` helpers do.

    >>> norm = create_norm(("group", {"num_groups": 8}), spatial_dims=3, channels=32)
    >>> act = create_act("elu")
    >>> conv = conv_type(3)(16, 32, kernel_size=3, padding=1)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from torch import nn

from lungtk.core import LungtkError

LayerSpec: TypeAlias = str | tuple[str, Mapping[str, Any]] | None
"""A layer by name (``"elu"``), by name and options (``("group", {"num_groups": 8})``), or None for none."""


def _pick(kind: str, table: Mapping[str, Any], spec: LayerSpec) -> tuple[Any, dict[str, Any]]:
    if spec is None:
        name, options = "none", {}
    elif isinstance(spec, str):
        name, options = spec, {}
    else:
        name, options = spec[0], dict(spec[1])
    key = name.lower().replace("_", "").replace("-", "")
    if key not in table:
        names = sorted(table)
        close = difflib.get_close_matches(key, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LungtkError(f"unknown {kind} {name!r}{hint} (known: {', '.join(names)})")
    return table[key], options


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (1, 2, 3):
        raise LungtkError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return spatial_dims


def conv_type(spatial_dims: int, *, transposed: bool = False) -> type[nn.Module]:
    d = _check_dims(spatial_dims)
    if transposed:
        return {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[d]
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[d]


def _batch(spatial_dims: int, channels: int, **kw: Any) -> nn.Module:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels, **kw)


def _instance(spatial_dims: int, channels: int, **kw: Any) -> nn.Module:
    kw.setdefault("affine", True)
    return {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, **kw)


def _group(spatial_dims: int, channels: int, num_groups: int = 8, **kw: Any) -> nn.Module:
    groups = min(num_groups, channels)
    if channels % groups:
        raise LungtkError(f"GroupNorm: {channels} channels do not split into {num_groups} groups")
    return nn.GroupNorm(groups, channels, **kw)


def _layer(spatial_dims: int, channels: int, **kw: Any) -> nn.Module:
    return nn.GroupNorm(1, channels, **kw)  # LayerNorm over channels and space, per sample


def _switch(spatial_dims: int, channels: int, **kw: Any) -> nn.Module:
    from lungtk.nn_blocks.layers.switch_norm import SwitchNorm

    return SwitchNorm(channels, spatial_dims=spatial_dims, **kw)


def _none_norm(spatial_dims: int, channels: int, **kw: Any) -> nn.Module:
    return nn.Identity()


NORMS: dict[str, Callable[..., nn.Module]] = {
    "batch": _batch,
    "instance": _instance,
    "group": _group,
    "layer": _layer,
    "switch": _switch,
    "none": _none_norm,
}

ACTS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "leakyrelu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda **kw: nn.Softmax(dim=kw.pop("dim", 1), **kw),
    "none": nn.Identity,
    "identity": nn.Identity,
}

_POOLS: dict[str, dict[int, type[nn.Module]]] = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d},
    "adaptivemax": {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d},
    "adaptiveavg": {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
}

_DROPOUTS: dict[str, dict[int, type[nn.Module]]] = {
    "dropout": {1: nn.Dropout, 2: nn.Dropout2d, 3: nn.Dropout3d},
    "alphadropout": {1: nn.AlphaDropout, 2: nn.AlphaDropout, 3: nn.AlphaDropout},
}


def create_norm(spec: LayerSpec, spatial_dims: int, channels: int) -> nn.Module:
    """A norm layer: batch, instance, group (``num_groups``, default 8), layer, switch or none."""
    factory, options = _pick("norm", NORMS, spec)
    return factory(_check_dims(spatial_dims), channels, **options)


def create_act(spec: LayerSpec) -> nn.Module:
    """An activation: relu, leakyrelu, prelu, elu, selu, gelu, silu, sigmoid, tanh, softmax or none."""
    factory, options = _pick("activation", ACTS, spec)
    if factory in (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.SELU) and "inplace" not in options:
        options["inplace"] = False
    return factory(**options)


def create_pool(spec: LayerSpec, spatial_dims: int) -> nn.Module:
    """A pooling layer: max, avg, adaptivemax or adaptiveavg (options: kernel_size, output_size, ...)."""
    table, options = _pick("pooling", _POOLS, spec)
    return table[_check_dims(spatial_dims)](**options)


def create_dropout(spec: LayerSpec | float, spatial_dims: int) -> nn.Module:
    """Dropout by rate (``0.1``), name, or ``(name, {"p": rate})``; 0 or None gives Identity."""
    if spec is None or (isinstance(spec, float | int) and float(spec) == 0.0):
        return nn.Identity()
    if isinstance(spec, float | int):
        return nn.Dropout(float(spec))
    table, options = _pick("dropout", _DROPOUTS, spec)
    return table[_check_dims(spatial_dims)](**options)
