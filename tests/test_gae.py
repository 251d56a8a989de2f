"""GAE by hand: termination cuts the return, truncation bootstraps from the final value."""

import pytest
import torch

from mappo import AgentBuffer, MappoConfig, MappoTrainer, compute_gae


def test_three_steps_with_one_terminal_and_one_truncation() -> None:
    # Step 0 terminates an episode; steps 1-2 are a new one, cut by a time limit after step 2.
    rewards = torch.tensor([1.0, 2.0, 3.0])
    values = torch.tensor([0.5, 1.0, 1.5])
    dones = torch.tensor([True, False, True])
    truncated = torch.tensor([False, False, True])
    truncation_values = torch.tensor([0.0, 0.0, 4.0])  # value of the observation the cut reached
    last_value = torch.tensor(10.0)  # value after the reset: must not leak into step 2
    gamma, lam = 0.9, 0.8
    adv = compute_gae(rewards, values, dones, last_value, gamma, lam, truncated, truncation_values)
    a2 = 3.0 + 0.9 * 4.0 - 1.5  # 5.1: bootstrapped from the truncation value
    a1 = (2.0 + 0.9 * 1.5 - 1.0) + 0.9 * 0.8 * a2  # 6.022
    a0 = 1.0 - 0.5  # terminal: nothing follows
    assert adv.tolist() == pytest.approx([a0, a1, a2], abs=1e-6)


def test_without_truncation_the_end_of_an_episode_is_a_termination() -> None:
    adv = compute_gae(
        torch.tensor([1.0, 1.0]),
        torch.tensor([0.0, 0.0]),
        torch.tensor([False, True]),
        torch.tensor(5.0),
        1.0,
        1.0,
    )
    assert adv.tolist() == pytest.approx([2.0, 1.0])


def test_rollout_cut_mid_episode_bootstraps_from_last_value() -> None:
    adv = compute_gae(
        torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([False]), torch.tensor(2.0), 0.5, 1.0
    )
    assert adv.item() == pytest.approx(1.0 + 0.5 * 2.0 - 0.5)


def test_gae_is_elementwise_over_envs_and_agents() -> None:
    torch.manual_seed(0)
    T, E, A = 6, 4, 3
    rewards, values = torch.randn(T, E, A), torch.randn(T, E, A)
    dones = torch.rand(T, E, A) < 0.3
    last = torch.randn(E, A)
    batched = compute_gae(rewards, values, dones, last, 0.99, 0.95)
    for e in range(E):
        for a in range(A):
            single = compute_gae(
                rewards[:, e, a], values[:, e, a], dones[:, e, a], last[e, a], 0.99, 0.95
            )
            torch.testing.assert_close(batched[:, e, a], single)


def test_buffer_returns_are_advantages_plus_values() -> None:
    buf = AgentBuffer(
        rollout_steps=2, num_envs=1, num_agents=1, obs_dim=1, state_dim=1, action_dim=1
    )
    buf.add(torch.zeros(1), torch.zeros(1, dtype=torch.long), 0.0, 1.0, False, torch.tensor(0.5))
    buf.add(
        torch.zeros(1),
        torch.zeros(1, dtype=torch.long),
        0.0,
        1.0,
        True,
        torch.tensor(0.25),
        truncated=True,
        truncation_value=torch.tensor(2.0),
    )
    buf.compute_returns_and_advantage(torch.zeros(1, 1), gamma=0.5, gae_lambda=1.0)
    # returns are discounted sums: step 1 = 1 + 0.5*2 = 2, step 0 = 1 + 0.5*2 = 2
    assert buf.returns.flatten().tolist() == pytest.approx([2.0, 2.0])
    assert buf.advantages.flatten().tolist() == pytest.approx([1.5, 1.75])


@pytest.mark.parametrize("bootstrap", [True, False])
def test_trainer_bootstraps_time_limits_only_when_configured(bootstrap) -> None:
    # Spread episodes of 3 steps end by the time limit after the rollout's last step.
    config = MappoConfig(
        env_kwargs={"max_cycles": 3},
        num_envs=4,
        rollout_steps=3,
        minibatch_size=0,
        total_steps=12,
        bootstrap_time_limits=bootstrap,
    )
    trainer = MappoTrainer(config)
    trainer.collect_rollout()
    buf = trainer.buffer
    assert buf.dones[2].all() and not buf.dones[:2].any()
    buf.compute_returns_and_advantage(torch.full((4, 3), 1e3), 0.99, 0.95)
    if bootstrap:
        # The cut is followed by the value of the state it reached, not the next episode's.
        assert buf.truncated[2].all() and buf.truncation_values[2].abs().min() > 0
        expected = buf.rewards[2] + 0.99 * buf.truncation_values[2]
    else:
        assert not buf.truncated.any()  # the official code's reading: a terminal state
        expected = buf.rewards[2]
    torch.testing.assert_close(buf.returns[2], expected)
