"""Running scaling of rewards (EPyMARL's `standardise_rewards`, without its mean shift).

Each update folds its rollout's credited rewards into a running mean and
variance per agent slot, then divides them by their root mean square,
`sqrt(var + mean^2)`, before GAE. Every rollout so far weighs alike (pooled
moments, not decaying ones), as in EPyMARL. The rewards then have about unit
size whatever their scale, so the balance between the policy gradient and the
entropy bonus is the one EPyMARL's coefficients were tuned for: with sparse
rewards (LBF, RWARE) unscaled advantages are 10-100x smaller. For sparse
rewards the root mean square is the standard deviation EPyMARL divides by
(their mean is small beside it); it also keeps dense rewards of a steady size
(a constant reward, whose deviation shrinks towards 0) at about 1.

EPyMARL also subtracts the mean, which makes every step of a sparse-reward
task cost `mean / std`: wherever an episode can end early (LBF when the food
is gone, Jumanji's RWARE at a collision), ending it pays, so the shift changes
which policy is best. Dividing by a positive number changes no policy's
return ranking; zero rewards stay zero here, so no step costs anything. (On
RWARE tiny-2ag the two did not differ measurably in their first 0.5-1M env
steps, 3 seeds each: both shortened their episodes, deliveries flat.)

With the team reward every slot receives the same rewards and so holds the
same statistics, one common statistic as EPyMARL keeps for its common reward.
Its state is a buffer of the module, so checkpoints carry it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

PRIOR_COUNT = 1e-4  # the weight of the starting mean 0 and variance 1, as in EPyMARL
MIN_RMS = 1e-8  # all-zero rewards so far: their scaled value stays 0


class RewardNorm(nn.Module):
    """Pooled running mean and variance of each agent slot's rewards, and the scaling by
    their root mean square. With `enabled=False` it is the identity, and its state (the
    prior) is still saved, so every checkpoint has the same layout."""

    # Buffers (registered in `__init__`), float64.
    count: torch.Tensor  # [] rewards folded in per slot, PRIOR_COUNT included
    mean: torch.Tensor  # [A]
    var: torch.Tensor  # [A]

    def __init__(self, num_agents: int, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled
        self.register_buffer("count", torch.tensor(PRIOR_COUNT, dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(num_agents, dtype=torch.float64))
        self.register_buffer("var", torch.ones(num_agents, dtype=torch.float64))

    @torch.no_grad()
    def update(
        self,
        rewards: torch.Tensor,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        """Fold in `rewards` `[..., A]` (every step and env copy of a rollout).

        `reduce` sums the batch's moments over data-parallel ranks, so every
        rank folds in the statistics of the whole, pooled batch.
        """
        if not self.enabled:
            return
        x = rewards.double().reshape(-1, rewards.shape[-1])  # [N, A]
        sums = torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), x.square().sum(0)])
        if reduce is not None:
            sums = reduce(sums)
        agents = self.mean.shape[0]
        n, total, total_sq = sums[0], sums[1 : 1 + agents], sums[1 + agents :]
        batch_mean = total / n
        # The batch's sample variance (n - 1), as EPyMARL's `torch.var`.
        batch_var = (total_sq - n * batch_mean.square()).clamp_min(0.0) / (n - 1).clamp_min(1.0)
        delta = batch_mean - self.mean
        pooled = self.count + n
        moments = self.var * self.count + batch_var * n + delta.square() * self.count * n / pooled
        self.mean.add_(delta * n / pooled)
        self.var.copy_(moments / pooled)
        self.count.copy_(pooled)

    def scale(self, rewards: torch.Tensor) -> torch.Tensor:
        """`rewards / sqrt(var + mean^2)` per slot, `[..., A]`, in `rewards`' dtype."""
        if not self.enabled:
            return rewards
        rms = (self.var + self.mean.square()).sqrt().clamp_min(MIN_RMS)
        return (rewards / rms).to(rewards.dtype)
