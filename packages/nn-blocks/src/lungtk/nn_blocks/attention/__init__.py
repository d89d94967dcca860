"""Attention modules and a factory to insert them into blocks by name."""

from __future__ import annotations

from torch import nn

from lungtk.nn_blocks.attention.cbam import CBAM, ChannelGate, SpatialGate
from lungtk.nn_blocks.attention.rotation import CrossDimensionAttention, QuartetAttention, TripletAttention
from lungtk.nn_blocks.layers.factories import LayerSpec, _pick


def _rotate(channels: int, spatial_dims: int, **kw: object) -> nn.Module:
    return CrossDimensionAttention(spatial_dims, **kw)  # type: ignore[arg-type]


def _none(channels: int, spatial_dims: int) -> nn.Module:
    return nn.Identity()


ATTENTIONS = {
    "cbam": lambda channels, spatial_dims, **kw: CBAM(channels, spatial_dims, **kw),
    "triplet": lambda channels, spatial_dims, **kw: TripletAttention(channels, spatial_dims, **kw),
    "quartet": lambda channels, spatial_dims, **kw: QuartetAttention(channels, spatial_dims, **kw),
    "crossdimension": _rotate,
    "none": _none,
}


def create_attention(spec: LayerSpec, channels: int, spatial_dims: int) -> nn.Module:
    """cbam, triplet (2D), quartet (3D), crossdimension (either) or none, by name or (name, kwargs)."""
    factory, options = _pick("attention", ATTENTIONS, spec)
    return factory(channels, spatial_dims, **options)


__all__ = [
    "CBAM",
    "ChannelGate",
    "CrossDimensionAttention",
    "QuartetAttention",
    "SpatialGate",
    "TripletAttention",
    "create_attention",
]
