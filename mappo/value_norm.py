"""Running normalization of value targets (ValueNorm of the MAPPO paper).

The critic predicts normalized values; targets are normalized with running,
debiased moments so that returns of any scale give a well-conditioned loss.
Its state is a buffer of the module, so checkpoints carry it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ValueNorm(nn.Module):
    """Exponential running mean and variance of scalars, debiased like Adam's moments.

    With `enabled=False` it is the identity, so the trainer has one code path.
    """

    # Buffers (registered in `__init__`), float64 scalars.
    running_mean: torch.Tensor
    running_mean_sq: torch.Tensor
    debiasing_term: torch.Tensor

    def __init__(self, beta: float = 0.99999, epsilon: float = 1e-5, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.beta = beta
        self.epsilon = epsilon
        self.register_buffer("running_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("running_mean_sq", torch.zeros((), dtype=torch.float64))
        self.register_buffer("debiasing_term", torch.zeros((), dtype=torch.float64))

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Debiased mean and variance (float64 scalars)."""
        denom = self.debiasing_term.clamp_min(self.epsilon)
        mean = self.running_mean / denom
        var = (self.running_mean_sq / denom - mean.square()).clamp_min(1e-2)
        return mean, var

    @torch.no_grad()
    def update(
        self,
        targets: torch.Tensor,
        weights: torch.Tensor | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Fold a batch of targets in; samples with weight 0 (dead agents) are left out.

        `reduce` sums the batch's moments over data-parallel ranks, so every
        rank folds in the statistics of the whole, pooled batch.
        """
        if not self.enabled:
            return
        x = targets.double()
        w = torch.ones_like(x) if weights is None else weights.double()
        sums = torch.stack([(x * w).sum(), (x.square() * w).sum(), w.sum()])
        if reduce is not None:
            sums = reduce(sums)
        count = sums[2].clamp_min(1.0)
        batch_mean, batch_mean_sq = sums[0] / count, sums[1] / count
        self.running_mean.mul_(self.beta).add_(batch_mean * (1.0 - self.beta))
        self.running_mean_sq.mul_(self.beta).add_(batch_mean_sq * (1.0 - self.beta))
        self.debiasing_term.mul_(self.beta).add_(1.0 - self.beta)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map targets to the critic's scale."""
        if not self.enabled:
            return x
        mean, var = self.moments()
        return ((x - mean) / var.sqrt()).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map critic outputs back to returns."""
        if not self.enabled:
            return x
        mean, var = self.moments()
        return (x * var.sqrt() + mean).to(x.dtype)
