"""The trainer on small PettingZoo envs: masks, dead agents, padding and Box actions, by number."""

from __future__ import annotations

import math

import pytest
import torch

from mappo import MappoConfig, MappoTrainer


def trainer_for(env: str, **overrides) -> MappoTrainer:
    config = MappoConfig(
        env=f"pz_envs:{env}",
        num_envs=4,
        rollout_steps=10,
        minibatch_size=16,
        update_epochs=2,
        total_steps=80,
        **overrides,
    )
    return MappoTrainer(config)


@pytest.mark.parametrize("share_policy", [True, False])
def test_masked_actions_have_probability_zero_and_are_never_taken(share_policy) -> None:
    trainer = trainer_for("MaskedEnv", share_policy=share_policy)
    trainer.train()  # the env asserts every action it receives was legal
    buf = trainer.buffer
    with torch.no_grad():
        policy = trainer.policy
        dist = policy.distribution(
            policy.actor(buf.observations.flatten(0, 1)), buf.action_masks.flatten(0, 1)
        )
    probs = dist.log_probs_all.exp()  # [T*E, A, K]
    illegal = ~buf.action_masks.flatten(0, 1)
    assert illegal.any()
    assert probs[illegal].max().item() == 0.0
    # agent_0 has 3 actions of the 5 logits: its last two are never legal
    assert not buf.action_masks[..., 0, 3:].any()
    taken = buf.actions.flatten(0, 1).squeeze(-1)  # [T*E, A]
    assert torch.gather(~illegal, -1, taken.unsqueeze(-1)).all()


def test_dead_agent_has_zero_weight_and_zero_observation() -> None:
    trainer = trainer_for("DyingAgentEnv")
    trainer.collect_rollout()
    buf = trainer.buffer
    # Episodes last 5 steps; agent_1 dies at step 2, so it is absent at steps 2-4 of each.
    expected_alive = torch.tensor([True, True, False, False, False] * 2)
    assert torch.equal(buf.alive[:, :, 1], expected_alive[:, None].expand(10, 4))
    assert buf.alive[:, :, [0, 2]].all()
    assert buf.observations[~buf.alive].abs().max().item() == 0.0
    assert buf.rewards[~buf.alive].abs().max().item() == 0.0
    mb = next(buf.minibatches(1))
    assert mb.weights.sum().item() == buf.alive.sum().item() == 10 * 4 * 3 - 3 * 2 * 4
    # Its death is a termination: nothing is bootstrapped past it.
    assert buf.dones[1, :, 1].all() and not buf.truncated[1, :, 1].any()


def test_episode_return_is_the_mean_per_agent_return_with_a_dead_agent() -> None:
    trainer = trainer_for("DyingAgentEnv")
    metrics = trainer.train()
    # rewards are 10*agent + t: agent_0 1..5 = 15; agent_1 11+12 = 23; agent_2 21..25 = 115
    assert metrics[0].episode_return == pytest.approx((15 + 23 + 115) / 3)
    assert metrics[0].episodes == 8  # 4 copies x 2 episodes of 5 steps


def test_heterogeneous_observations_and_independent_policies() -> None:
    trainer = trainer_for("HeteroObsEnv", share_policy=False)
    trainer.collect_rollout()
    obs = trainer.buffer.observations  # [T, E, 3, 6]
    assert obs.shape[-1] == 6
    assert obs[..., 0, 2:].abs().max().item() == 0.0  # agent_0 has 2 floats, 4 of padding
    assert obs[..., 2, 4:].abs().max().item() == 0.0  # agent_2 has 4
    assert obs[0, 0, 1].tolist() == [20.0 + i for i in range(6)]  # agent_1 fills all 6
    assert len(trainer.policy.actor.fc1.weight) == 3


def test_box_actions_train_with_a_learned_log_std_and_clipping_only_at_the_env() -> None:
    trainer = trainer_for("BoxActionEnv")
    log_std_before = trainer.policy.actor.log_std.detach().clone()
    trainer.train()  # the env asserts each action lies in the agent's own box
    actions = trainer.buffer.actions  # [T, E, A, 3] unclipped samples of the Gaussian
    assert actions.dtype == torch.float32
    assert (actions[..., 0, :2].abs() > 1.0).any()  # the policy sampled outside [-1, 1]
    assert not torch.equal(trainer.policy.actor.log_std.detach(), log_std_before)


def test_env_state_is_the_critic_input_when_the_env_has_one() -> None:
    trainer = trainer_for("StatefulEnv")
    assert trainer.env.spec.state_source == "env"
    assert trainer.config.global_state_dim == 3
    trainer.collect_rollout()
    states = trainer.buffer.states  # [T, E, 3]: [offset, episode, t] from env.state()
    assert states[:5, 0, 2].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert states[5, 0, 1].item() == states[0, 0, 1].item() + 1  # the next episode


def test_late_joiner_is_not_alive_before_it_joins_and_counts_after() -> None:
    trainer = trainer_for("LateJoinerEnv")
    metrics = trainer.train()  # the env asserts no action reaches agent_2 before it joins
    buf = trainer.buffer
    expected_alive = torch.tensor([False, False, True, True, True] * 2)
    assert torch.equal(buf.alive[:, :, 2], expected_alive[:, None].expand(10, 4))
    assert buf.observations[:2, :, 2].abs().max().item() == 0.0
    assert buf.observations[2, 0, 2, 3].item() == 2.0  # its own agent index, once present
    # rewards 10*agent + t: agent_0 1..5 = 15, agent_1 11..15 = 65, agent_2 23+24+25 = 72
    assert metrics[-1].episode_return == pytest.approx((15 + 65 + 72) / 3)


def test_box_entropy_counts_each_agents_own_dimensions() -> None:
    # BoxActionEnv: agent_0 acts in 2 dimensions, agent_1 in 3; log std starts at 0.
    trainer = trainer_for("BoxActionEnv")
    trainer.collect_rollout()
    trainer.buffer.compute_returns_and_advantage(torch.zeros(4, 2), 0.99, 0.95)
    mb = next(trainer.buffer.minibatches(1))
    _, stats = trainer.minibatch_loss(mb)
    one_dim = 0.5 * math.log(2 * math.pi * math.e)
    assert stats["entropy"].item() == pytest.approx((2 * one_dim + 3 * one_dim) / 2, rel=1e-5)
