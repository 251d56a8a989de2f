"""Env names → vectorized envs: built-in tasks by name, anything else by `module:callable`."""

from __future__ import annotations

from typing import Any

import torch

from mappo.envs.base import MultiAgentEnv

BUILTIN_ENVS = ("spread",)


def make_env(
    name: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> MultiAgentEnv:
    """Build `num_envs` copies of the env called `name`."""
    env_kwargs = dict(env_kwargs or {})
    if name == "spread":
        from mappo.envs.spread import SpreadEnv

        return SpreadEnv(num_envs, device=device, seed=seed, **env_kwargs)
    raise ValueError(f"unknown env '{name}': built-in envs are {', '.join(BUILTIN_ENVS)}")
