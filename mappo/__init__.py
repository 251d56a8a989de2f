"""mappo: fast, faithful Multi-Agent PPO on PyTorch."""

from mappo.buffer import AgentBuffer, RolloutMinibatch
from mappo.checkpoint import CheckpointError
from mappo.config import ConfigError, MappoConfig
from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.losses import compute_gae, ppo_policy_loss, ppo_value_loss
from mappo.networks import Actor, CentralizedCritic
from mappo.trainer import MappoMetrics, MappoTrainer

__all__ = [
    "ActionSpec",
    "Actor",
    "AgentBuffer",
    "CentralizedCritic",
    "CheckpointError",
    "ConfigError",
    "EnvSpec",
    "MappoConfig",
    "MappoMetrics",
    "MappoTrainer",
    "MultiAgentEnv",
    "MultiAgentStepResult",
    "RolloutMinibatch",
    "compute_gae",
    "ppo_policy_loss",
    "ppo_value_loss",
]
