"""Checks on the numbers that enter the inference functions: each failure is one LungtkError line."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from lungtk.core import LungtkError


def is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_tuple(value: object) -> tuple:
    try:
        return tuple(value)  # type: ignore[call-overload]
    except TypeError:
        return ()


def is_real(value: object) -> bool:
    """A finite real number (numpy scalars included, bools not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(value: object, name: str) -> int:
    if not is_int(value) or value < 1:
        raise LungtkError(f"{name} {value!r}: use a whole number of 1 or more")
    return int(value)


def per_axis_ints(value: int | Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """A positive int, or one per spatial axis (``ndim`` of them)."""
    values = (value,) * ndim if is_int(value) else _as_tuple(value)
    if len(values) != ndim or not all(is_int(v) and v >= 1 for v in values):
        raise LungtkError(
            f"{name} {value!r}: use {ndim} whole numbers of 1 or more, one per spatial axis of the image"
        )
    return tuple(int(v) for v in values)


def per_axis_fractions(value: float | Sequence[float], ndim: int, name: str) -> tuple[float, ...]:
    """A number in [0, 1), or one per spatial axis."""
    values = (value,) * ndim if is_real(value) else _as_tuple(value)
    if len(values) != ndim or not all(_is_fraction(v) for v in values):
        raise LungtkError(f"{name} {value!r}: use a number in [0, 1), or {ndim}, one per spatial axis")
    return tuple(float(v) for v in values)


def _is_fraction(value: object) -> bool:
    return is_real(value) and 0 <= value < 1


def positive_number(value: object, name: str) -> float:
    if not (is_real(value) and value > 0):
        raise LungtkError(f"{name} {value!r}: use a number above 0")
    return float(value)


def non_negative_number(value: object, name: str) -> float:
    if not (is_real(value) and value >= 0):
        raise LungtkError(f"{name} {value!r}: use a number of 0 or more")
    return float(value)


def choice(value: object, options: Sequence[str], name: str) -> str:
    if value not in options:
        raise LungtkError(f"{name} {value!r}: use one of {', '.join(map(repr, options))}")
    return value  # type: ignore[return-value]


def image_ndim(shape: Sequence[int], name: str = "image") -> int:
    """The number of spatial axes of a channel-first image (C, *spatial) with 2 or 3 of them."""
    if len(shape) not in (3, 4):
        raise LungtkError(
            f"{name} of shape {tuple(shape)}: use a channel-first image (C, *spatial) with 2 or 3 spatial axes"
        )
    return len(shape) - 1
