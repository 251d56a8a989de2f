"""mappo: fast, faithful Multi-Agent PPO on PyTorch."""

from typing import Any

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
    """`PettingZooWrapper` on first use: `import mappo` (and `from mappo import *`, which
    leaves it out) needs no pettingzoo or gymnasium."""
    if name == "PettingZooWrapper":
        from mappo.envs.registry import pettingzoo_wrapper

        try:
            return pettingzoo_wrapper("mappo.PettingZooWrapper")
        except ConfigError:
            raise ImportError(
                "mappo.PettingZooWrapper needs the pettingzoo extra: "
                "pip install 'mappo[pettingzoo]'"
            ) from None
    raise AttributeError(f"module 'mappo' has no attribute '{name}'")
