"""mappo: fast, faithful Multi-Agent PPO on PyTorch.

The names below load with their module on first use (PEP 562): `import mappo`
alone loads no torch, so that the `mappo` command answers a Ctrl-C while torch
loads in one line (`mappo.console`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mappo.buffer import AgentBuffer, RolloutMinibatch
    from mappo.checkpoint import CheckpointError
    from mappo.config import ConfigError, MappoConfig
    from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
    from mappo.losses import compute_gae, ppo_policy_loss, ppo_value_loss
    from mappo.networks import Actor, CentralizedCritic, LocalCritic
    from mappo.presets import build_config
    from mappo.run import Run, RunSummary
    from mappo.seeds import MultiSeedTrainer
    from mappo.trainer import MappoMetrics, MappoTrainer

# Each public name and the module it comes from.
_HOMES = {
    "ActionSpec": "mappo.envs.base",
    "Actor": "mappo.networks",
    "AgentBuffer": "mappo.buffer",
    "CentralizedCritic": "mappo.networks",
    "CheckpointError": "mappo.checkpoint",
    "ConfigError": "mappo.config",
    "EnvSpec": "mappo.envs.base",
    "LocalCritic": "mappo.networks",
    "MappoConfig": "mappo.config",
    "MappoMetrics": "mappo.trainer",
    "MappoTrainer": "mappo.trainer",
    "MultiAgentEnv": "mappo.envs.base",
    "MultiAgentStepResult": "mappo.envs.base",
    "MultiSeedTrainer": "mappo.seeds",
    "RolloutMinibatch": "mappo.buffer",
    "Run": "mappo.run",
    "RunSummary": "mappo.run",
    "build_config": "mappo.presets",
    "compute_gae": "mappo.losses",
    "ppo_policy_loss": "mappo.losses",
    "ppo_value_loss": "mappo.losses",
}
__all__ = [
    "ActionSpec",
    "Actor",
    "AgentBuffer",
    "CentralizedCritic",
    "CheckpointError",
    "ConfigError",
    "EnvSpec",
    "LocalCritic",
    "MappoConfig",
    "MappoMetrics",
    "MappoTrainer",
    "MultiAgentEnv",
    "MultiAgentStepResult",
    "MultiSeedTrainer",
    "RolloutMinibatch",
    "Run",
    "RunSummary",
    "build_config",
    "compute_gae",
    "ppo_policy_loss",
    "ppo_value_loss",
]


def __getattr__(name: str) -> Any:
    """A public name, loaded with its module on first use; `PettingZooWrapper` too, which
    `from mappo import *` leaves out: it needs the pettingzoo extra."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value  # found directly from now on
        return value
    if name == "PettingZooWrapper":
        from mappo.envs.registry import pettingzoo_wrapper
        from mappo.errors import ConfigError

        try:
            return pettingzoo_wrapper("mappo.PettingZooWrapper")
        except ConfigError:
            raise ImportError(
                "mappo.PettingZooWrapper needs the pettingzoo extra: "
                "pip install 'mappo[pettingzoo]'"
            ) from None
    raise AttributeError(f"module 'mappo' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The module's names with the public ones not loaded yet."""
    return sorted({*globals(), *_HOMES})
