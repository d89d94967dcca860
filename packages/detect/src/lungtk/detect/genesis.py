"""Models Genesis pre-training of NoduleNet's FeatureNet (seed 003, §3-4): the network and the objective.

``GenesisNet`` (architecture ``genesis``) is FeatureNet under the name ``feature_net`` (so its tensors are
named as in ``nodulenet``, and ``lungtk train nodulenet --set init=genesis.safetensors`` copies them) and a
reconstruction decoder that is dropped afterwards: FeatureNet ends at stride 4, so two transposed
convolutions (k 2, stride 2, BatchNorm, ReLU; the widths halving) bring its 128-channel map back to the
input's size, and a 1^3 convolution and a sigmoid give the restored cube (seed 003's [D] layout).

``GenesisObjective``: the task's forward deforms each patch of the batch (:mod:`genesis_transforms`) and
restores it; the loss is L1 (the paper) or L2 (the reference code) between restoration and original.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lungtk.core import LungtkError
from lungtk.detect.feature_net import FeatureNet
from lungtk.detect.genesis_transforms import GenesisRates, genesis_pair
from lungtk.nn_blocks import he_init_
from lungtk.train.metrics import Metric

LOSSES = ("l1", "l2")


class GenesisNet(nn.Module):
    TINY: ClassVar[dict[str, Any]] = {"args": {"width": 0.125}, "input": (1, 16, 32, 32)}
    """A configuration and one sample's input shape for smoke tests."""

    def __init__(
        self, width: float = 1.0, attention: str = "none", input_range: Sequence[float] = (0.0, 1.0)
    ) -> None:
        super().__init__()
        self.feature_net = FeatureNet(width, attention, input_range)
        c = self.feature_net.channels["f4"]
        half, quarter = max(1, c // 2), max(1, c // 4)
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(c, half, kernel_size=2, stride=2),
            nn.BatchNorm3d(half),
            nn.ReLU(),
            nn.ConvTranspose3d(half, quarter, kernel_size=2, stride=2),
            nn.BatchNorm3d(quarter),
            nn.ReLU(),
            nn.Conv3d(quarter, 1, kernel_size=1),
        )
        he_init_(self, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The restored cube (B, 1, D, H, W), values in [0, 1]."""
        return torch.sigmoid(self.decoder(self.feature_net(x).f4))


class GenesisObjective(nn.Module):
    """The task's forward (:meth:`run`: deform, restore) and loss (the module)."""

    def __init__(self, loss: str = "l1", rates: GenesisRates | None = None) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise LungtkError(
                f"genesis: setting loss={loss!r}: use l1 (the paper) or l2 (the reference code)"
            )
        self.kind, self.rates = loss, rates or GenesisRates()

    def run(self, model: Any, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        image = batch["image"]
        seed = int(torch.randint(2**62, (1,)).item()) if model.training else 0
        rng = np.random.default_rng(seed)
        pairs = [genesis_pair(cube[0], rng, self.rates) for cube in image.detach().float().cpu().numpy()]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]).to(image.device)
        y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None]).to(image.device)
        return {"restored": model(x), "input": x, "target": y}

    def forward(self, output: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        diff = output["restored"].float() - output["target"].float()
        return diff.abs().mean() if self.kind == "l1" else diff.square().mean()


class RestorationMetric(Metric):
    """The mean absolute and squared restoration errors over the validation voxels."""

    names = ("mae", "mse")

    def update(self, output: Any, batch: Mapping[str, Any]) -> None:
        diff = output["restored"].float() - output["target"].float()
        self.add("abs", diff.abs().sum())
        self.add("sq", diff.square().sum())
        self.add("n", torch.tensor(float(diff.numel())))

    def compute(self) -> dict[str, float]:
        n = float(self.sums.get("n", torch.zeros(())))
        if not n:
            return {"mae": float("nan"), "mse": float("nan")}
        return {"mae": float(self.sums["abs"]) / n, "mse": float(self.sums["sq"]) / n}
