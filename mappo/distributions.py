"""Action distributions over batched logits: masked (multi-)categorical and diagonal Gaussian.

Written directly on tensors rather than with `torch.distributions`, whose
argument validation and object construction cost more than the math at the
batch sizes of a rollout step. Sampling uses the global torch RNG, so a seeded
run (and a resumed one, which restores that RNG) is reproducible.
"""

from __future__ import annotations

import math

import torch

from mappo.envs.base import ActionSpec


class ActionDistribution:
    """The policy's distribution for a batch of agents, of any leading shape `[...]`.

    Discrete: `params` are logits `[..., K]` (K = sum of sub-action sizes) and
    `mask` marks legal logits; an illegal action gets probability exactly 0.
    Continuous: `params` are means `[..., D]` and `log_std` is `[..., D]`; `mask`
    `[..., D]` marks each agent's own dimensions, so the padding of an agent
    with fewer than D takes no part in log-probabilities or entropy.
    Actions are `[..., n_sub]` long (discrete) or `[..., D]` float.
    """

    def __init__(
        self,
        spec: ActionSpec,
        params: torch.Tensor,
        mask: torch.Tensor | None = None,
        log_std: torch.Tensor | None = None,
    ) -> None:
        self.spec = spec
        if spec.kind == "discrete":
            if mask is not None:
                # The most negative finite float, not -inf: exp() gives exactly 0
                # and 0 * log p stays 0 in the entropy instead of NaN.
                params = params.masked_fill(~mask, torch.finfo(params.dtype).min)
            self.log_probs_all = _split_log_softmax(params, spec.nvec)
        else:
            assert log_std is not None, "a Gaussian policy's distribution needs its log_std"
            self.mean = params
            self.log_std = log_std.expand_as(params)
            self.dims = None if mask is None else mask.to(params.dtype)  # [..., D], 1 = real

    def sample(self) -> torch.Tensor:
        """One action per agent."""
        if self.spec.kind == "continuous":
            return self.mean + self.log_std.exp() * torch.randn_like(self.mean)
        # Gumbel-max: argmax(log p + Gumbel) is a categorical sample, one kernel per head.
        gumbel = -torch.log(-torch.log(torch.rand_like(self.log_probs_all).clamp_min(1e-20)))
        return self._argmax_per_head(self.log_probs_all + gumbel)

    def mode(self) -> torch.Tensor:
        """The most likely action (the mean for a Gaussian)."""
        if self.spec.kind == "continuous":
            return self.mean
        return self._argmax_per_head(self.log_probs_all)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-probability of `actions`, summed over sub-actions or dimensions: `[...]`."""
        if self.spec.kind == "continuous":
            z = (actions - self.mean) / self.log_std.exp()
            return self._sum_dims(-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi))
        index = actions if len(self.spec.nvec) == 1 else actions + self._offsets(actions)
        return self.log_probs_all.gather(-1, index).sum(-1)

    def entropy(self) -> torch.Tensor:
        """Entropy, summed over sub-actions or dimensions: `[...]`."""
        if self.spec.kind == "continuous":
            return self._sum_dims(self.log_std + 0.5 * math.log(2 * math.pi * math.e))
        p_log_p = self.log_probs_all.exp() * self.log_probs_all
        return -p_log_p.sum(-1)

    def _sum_dims(self, per_dim: torch.Tensor) -> torch.Tensor:
        """Sum over the Gaussian's dimensions `[..., D]` that the agent has."""
        return (per_dim if self.dims is None else per_dim * self.dims).sum(-1)

    def _offsets(self, like: torch.Tensor) -> torch.Tensor:
        """Start of each sub-action's block of logits, `[n_sub]`."""
        starts = [0]
        for size in self.spec.nvec[:-1]:
            starts.append(starts[-1] + size)
        return torch.tensor(starts, device=like.device)

    def _argmax_per_head(self, scores: torch.Tensor) -> torch.Tensor:
        if len(self.spec.nvec) == 1:
            return scores.argmax(-1, keepdim=True)
        return torch.stack([s.argmax(-1) for s in scores.split(self.spec.nvec, -1)], -1)


def _split_log_softmax(logits: torch.Tensor, nvec: tuple[int, ...]) -> torch.Tensor:
    """log_softmax over each sub-action's block of logits, concatenated back to `[..., K]`."""
    if len(nvec) == 1:
        return logits.log_softmax(-1)
    return torch.cat([block.log_softmax(-1) for block in logits.split(nvec, -1)], -1)
