"""Check numbers where they enter lungtk: a CLI option, a CSV cell, a JSON field, a plugin's output.

Every check takes the value and ``what`` (the name a user can find it by: ``"--min-prob"``,
``"nodules.csv: line 3, column 'diameter_mm'"``) and returns the value as a ``float`` (or ``int``), or
raises a one-line :class:`~lungtk.core.LungtkError` that names ``what``, shows the value as given and says
what is expected. NaN and infinity are never accepted: a NaN compares false with everything and slips
through range checks, and an infinite size or coordinate turns a metric silently.

    >>> probability(0.25, "--min-prob")
    0.25
    >>> probability(7, "--min-prob")
    Traceback (most recent call last):
    ...
    lungtk.core.errors.LungtkError: --min-prob: 7 is not a probability; use a number from 0 to 1
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from lungtk.core.errors import LungtkError

# Plausibility limits: far beyond any real CT, near enough that arithmetic on them cannot overflow.
MAX_COORDINATE_MM = 1e5  # |x|, |y|, |z| of a point in patient space (100 m)
MAX_SIZE_MM = 1e4  # a diameter, spacing or length (10 m)
MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seeds are 32-bit unsigned

Check = Callable[[Any, str], float]


def _shown(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return f"{value:g}"
    return str(value)


def as_number(value: object, what: str) -> float:
    """``value`` (a number or its text) as a finite float; booleans and other types are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise LungtkError(f"{what}: {_shown(value)} is not a number")
    if isinstance(value, str) and not value.strip():
        raise LungtkError(f"{what}: is empty; give a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise LungtkError(f"{what}: {_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise LungtkError(
            f"{what}: {_shown(value)} is not a finite number (NaN and infinity are not allowed)"
        )
    return number


def finite(value: object, what: str) -> float:
    """Any finite number."""
    return as_number(value, what)


def in_range(
    value: object,
    what: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    expected: str | None = None,
) -> float:
    """A finite number within ``low``..``high`` (inclusive unless ``low_open`` / ``high_open``).
    ``expected`` words the range for the message (default: from the bounds)."""
    number = as_number(value, what)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        if expected is None:
            parts = []
            if low is not None:
                parts.append(f"{'above' if low_open else 'at least'} {low:g}")
            if high is not None:
                parts.append(f"{'below' if high_open else 'at most'} {high:g}")
            expected = "a number " + " and ".join(parts)
        raise LungtkError(f"{what}: {_shown(value)} is out of range; use {expected}")
    return number


def probability(value: object, what: str) -> float:
    """A probability: 0 to 1."""
    number = as_number(value, what)
    if not 0.0 <= number <= 1.0:
        raise LungtkError(f"{what}: {_shown(value)} is not a probability; use a number from 0 to 1")
    return number


def positive(value: object, what: str, *, limit: float = MAX_SIZE_MM) -> float:
    """A size (mm), spacing or length: above 0, at most ``limit``."""
    return in_range(value, what, 0.0, limit, low_open=True, expected=f"a positive number up to {limit:g}")


def non_negative(value: object, what: str, *, limit: float = MAX_SIZE_MM) -> float:
    """A size or count that may be 0: 0 to ``limit``."""
    return in_range(value, what, 0.0, limit, expected=f"a number from 0 to {limit:g}")


def coordinate(value: object, what: str) -> float:
    """A patient-space coordinate in mm: finite, within +-:data:`MAX_COORDINATE_MM`."""
    return in_range(
        value,
        what,
        -MAX_COORDINATE_MM,
        MAX_COORDINATE_MM,
        expected=f"a coordinate in mm within +-{MAX_COORDINATE_MM:g}",
    )


def integer(value: object, what: str, low: int | None = None, high: int | None = None) -> int:
    """A whole number (``3`` or ``3.0``, not ``3.5``) within ``low``..``high``."""
    number = as_number(value, what)
    if not number.is_integer():
        raise LungtkError(f"{what}: {_shown(value)} is not a whole number")
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            expected = f"a whole number from {low} to {high}"
        elif low is not None:
            expected = f"a whole number of at least {low}"
        else:
            expected = f"a whole number of at most {high}"
        raise LungtkError(f"{what}: {_shown(value)} is out of range; use {expected}")
    return int(number)


def seed(value: object, what: str) -> int:
    """A random seed: 0 to 2**32 - 1."""
    return integer(value, what, 0, MAX_SEED)


def count(value: object, what: str, low: int = 1, high: int | None = None) -> int:
    """A count such as a number of trees, epochs or processes: ``low`` or more."""
    return integer(value, what, low, high)


def number_list(
    text: str, what: str, length: int, check: Check = finite, *, names: Sequence[str] = ()
) -> list[float]:
    """``length`` numbers separated by commas and/or spaces (``"0.7,0.7,2.5"``), each passed through
    ``check``; ``names`` label the items in messages (``("x", "y", "z")``)."""
    parts = text.replace(",", " ").split()
    if len(parts) != length:
        raise LungtkError(f"{what} takes {length} numbers separated by commas, got {len(parts)} ({text!r})")
    return [
        check(part, f"{what} ({names[i] if i < len(names) else f'number {i + 1}'})")
        for i, part in enumerate(parts)
    ]


def cell_name(source: object, line: int, column: str) -> str:
    """How messages name a table cell: ``"file.csv: line 3, column 'probability'"`` (``line`` is the
    file's line, the header being line 1)."""
    return f"{source}: line {line}, column '{column}'"
