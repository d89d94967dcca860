"""Learning-rate schedules as a factor of the peak lr, a pure function of the step (plus, for plateau,
the validations seen), so a resumed run sets exactly the lr the uninterrupted one did."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class Schedule:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_steps``, then ``kind`` over the rest:

    - ``constant``: 1;
    - ``poly``: ``(1 - t / T) ** poly_exponent`` (nnU-Net: 0.9);
    - ``cosine``: ``(1 + cos(pi * t / T)) / 2``;
    - ``step``: ``gamma ** (t // step_size)``;
    - ``plateau``: times ``gamma`` after ``plateau_patience`` validations without improvement.
    """

    kind: str = "poly"
    total: int = 1000
    warmup_steps: int = 0
    warmup_factor: float = 0.01
    poly_exponent: float = 0.9
    step_size: int = 1000
    gamma: float = 0.1
    plateau_patience: int = 10
    plateau_scale: float = 1.0
    plateau_best: float | None = None
    plateau_bad: int = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], total: int) -> Schedule:
        return cls(
            kind=str(config["schedule"]),
            total=total,
            warmup_steps=int(config["warmup_steps"]),
            warmup_factor=float(config["warmup_factor"]),
            poly_exponent=float(config["poly_exponent"]),
            step_size=max(1, int(config["step_size"])),
            gamma=float(config["gamma"]),
            plateau_patience=int(config["plateau_patience"]),
        )

    def factor(self, step: int) -> float:
        """The lr factor for optimizer step ``step`` (0 for the first)."""
        if step < self.warmup_steps:
            return self.warmup_factor + (1.0 - self.warmup_factor) * step / self.warmup_steps
        t = step - self.warmup_steps
        span = max(1, self.total - self.warmup_steps)
        frac = min(1.0, t / span)
        if self.kind == "poly":
            return (1.0 - frac) ** self.poly_exponent
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * frac))
        if self.kind == "step":
            return self.gamma ** (t // self.step_size)
        if self.kind == "plateau":
            return self.plateau_scale
        return 1.0

    def observe(self, value: float, maximize: bool) -> None:
        """Tell the plateau schedule a validation result."""
        if self.kind != "plateau" or not math.isfinite(value):
            return
        better = self.plateau_best is None or (
            value > self.plateau_best if maximize else value < self.plateau_best
        )
        if better:
            self.plateau_best, self.plateau_bad = value, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad >= self.plateau_patience:
            self.plateau_scale *= self.gamma
            self.plateau_bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        best = state["plateau_best"]
        self.plateau_best = None if best is None else float(best)
        self.plateau_bad = int(state["plateau_bad"])
