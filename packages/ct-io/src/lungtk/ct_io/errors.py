"""Errors for unreadable or unusable CT input."""

from __future__ import annotations

from pathlib import Path

from lungtk.core import LungtkError


class CTReadError(LungtkError):
    """A scan that cannot be read or used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
