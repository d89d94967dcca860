"""Switchable Normalization (Luo et al., ICLR 2019): a learned softmax mix of instance-, layer- and
batch-norm statistics, used in seed 000's experiments."""

from __future__ import annotations

import torch
from torch import nn


class SwitchNorm(nn.Module):
    """Normalise ``(N, C, *spatial)`` with ``mean = sum_k w_k mu_k`` and ``var = sum_k v_k sigma2_k`` over
    k in (instance, layer, batch), w and v being softmaxes of 3 learned logits each. In eval mode the batch
    statistics are the running averages. Parameters: 2C (affine) + 6 (mixing logits)."""

    def __init__(
        self,
        channels: int,
        spatial_dims: int = 3,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.channels, self.spatial_dims, self.eps, self.momentum = channels, spatial_dims, eps, momentum
        shape = (1, channels) + (1,) * spatial_dims
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if affine else None
        self.mean_logits = nn.Parameter(torch.ones(3))
        self.var_logits = nn.Parameter(torch.ones(3))
        self.register_buffer("running_mean", torch.zeros(1, channels, 1))
        self.register_buffer("running_var", torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.channels:
            raise ValueError(
                f"SwitchNorm expects (N, {self.channels}, {self.spatial_dims} spatial dims), got {tuple(x.shape)}"
            )
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1).float()  # statistics in float32, also under autocast
        mean_in = flat.mean(-1, keepdim=True)
        var_in = flat.var(-1, keepdim=True, unbiased=False)
        second_in = var_in + mean_in**2
        mean_ln = mean_in.mean(1, keepdim=True)
        var_ln = second_in.mean(1, keepdim=True) - mean_ln**2
        if self.training:
            mean_bn = mean_in.mean(0, keepdim=True)
            var_bn = second_in.mean(0, keepdim=True) - mean_bn**2
            with torch.no_grad():
                count = flat.shape[0] * flat.shape[2]
                unbiased = var_bn * count / max(count - 1, 1)
                self.running_mean.lerp_(mean_bn, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean_bn, var_bn = self.running_mean, self.running_var
        w = torch.softmax(self.mean_logits, 0)
        v = torch.softmax(self.var_logits, 0)
        mean = w[0] * mean_in + w[1] * mean_ln + w[2] * mean_bn
        var = v[0] * var_in + v[1] * var_ln + v[2] * var_bn
        out = ((flat - mean) / torch.sqrt(var + self.eps)).reshape(x.shape)
        if self.weight is not None:
            out = out * self.weight + self.bias
        return out.to(x.dtype)
