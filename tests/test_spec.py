"""The specification's two unit tests, translated, and its public names."""

import torch

import mappo
from mappo import AgentBuffer, CentralizedCritic, MappoConfig


def test_centralized_critic() -> None:
    critic = CentralizedCritic(32, 64)
    value = critic(torch.randn(4, 32))
    assert value.shape == (4, 1)


def test_agent_buffer() -> None:
    buffer = AgentBuffer(
        rollout_steps=4,
        num_envs=1,
        num_agents=1,
        obs_dim=8,
        state_dim=8,
        action_dim=2,
        action_dtype=torch.float32,
    )
    buffer.add(torch.zeros(8), torch.zeros(2), torch.tensor(0.0), 1.0, False, torch.tensor(0.5))
    assert len(buffer) == 1
    assert buffer.rewards[0].item() == 1.0
    assert buffer.values[0].item() == 0.5
    buffer.clear()
    assert len(buffer) == 0


def test_spec_defaults() -> None:
    cfg = MappoConfig()
    spec_defaults = dict(
        num_agents=2,
        share_policy=True,
        use_global_state=True,
        obs_dim=16,
        global_state_dim=32,
        action_dim=5,
        clip_coef=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
        gamma=0.99,
        gae_lambda=0.95,
        update_epochs=10,
        minibatch_size=256,
    )
    assert {k: getattr(cfg, k) for k in spec_defaults} == spec_defaults


def test_public_names() -> None:
    for name in (
        "MappoConfig",
        "MappoTrainer",
        "CentralizedCritic",
        "AgentBuffer",
        "MultiAgentEnv",
        "MultiAgentStepResult",
        "compute_gae",
        "ppo_policy_loss",
        "ppo_value_loss",
        "MappoMetrics",
    ):
        assert hasattr(mappo, name), name
