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


def test_inputs_that_would_broadcast_or_truncate_are_refused() -> None:
    """Integer rewards gave integer advantages ([2, 1, 3] for [2.012, 1.6, 3.6]); dones
    `[T, E]` against rewards `[T, E, A]` with E = A broadcast over the agents."""
    rewards, values = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 0.5])
    dones = torch.tensor([0.0, 1.0, 0.0])
    assert compute_gae(rewards, values, dones, torch.tensor(2.0), 0.9, 0.8).tolist() == (
        pytest.approx([1.0 + 0.9 * 1.0 - 0.0 + 0.9 * 0.8 * -1.0, -1.0, 2.0 + 0.9 * 2.0 - 0.5])
    )
    with pytest.raises(ValueError, match=r"^compute_gae: rewards are torch.int64: give floats"):
        compute_gae(torch.tensor([1, 0, 2]), values, dones, torch.tensor(2.0), 0.9, 0.8)
    T, E = 3, 2
    with pytest.raises(ValueError, match=r"^compute_gae: dones has shape \[3, 2\], not "
                       r"\[3, 2, 2\]"):  # fmt: skip
        compute_gae(torch.ones(T, E, E), torch.ones(T, E, E), torch.zeros(T, E),
                    torch.zeros(E, E), 0.9, 0.8)  # fmt: skip
    with pytest.raises(ValueError, match=r"^compute_gae: last_value has shape \[2\], not "
                       r"\[2, 2\]"):  # fmt: skip
        compute_gae(torch.ones(T, E, E), torch.ones(T, E, E), torch.zeros(T, E, E),
                    torch.zeros(E), 0.9, 0.8)  # fmt: skip
    with pytest.raises(ValueError, match=r"^compute_gae: truncated is torch.float32"):
        compute_gae(rewards, values, dones, torch.tensor(2.0), 0.9, 0.8,
                    truncated=dones, truncation_values=values)  # fmt: skip


def test_the_buffer_refuses_a_partial_rollout_and_steps_that_would_broadcast() -> None:
    """GAE over a buffer holding 1 of its 3 steps ran over the empty rows (advantage 4.645
    for 5.5); obs `[E, O]` with E = A filled each agent with another env's observation; a
    float action was stored truncated (1.7 as 1)."""
    buf = AgentBuffer(rollout_steps=3, num_envs=2, num_agents=2, obs_dim=4, state_dim=3,
                      action_dim=1)  # fmt: skip
    ones = torch.ones(2, 2)
    buf.add(torch.zeros(2, 2, 4), torch.zeros(2, 2, 1, dtype=torch.long), ones, 1.0, False, ones)
    with pytest.raises(ValueError, match=r"^AgentBuffer holds 1 of its 3 steps"):
        buf.compute_returns_and_advantage(torch.zeros(2, 2), gamma=0.9, gae_lambda=1.0)
    with pytest.raises(ValueError, match=r"^AgentBuffer.add: obs has shape \[2, 4\], not "
                       r"\[2, 2, 4\]$"):  # fmt: skip
        buf.add(torch.zeros(2, 4), torch.zeros(2, 2, 1, dtype=torch.long), ones, 1.0, False, ones)
    with pytest.raises(ValueError, match=r"^AgentBuffer.add: action is torch.float32, stored "
                       r"as torch.int64"):  # fmt: skip
        buf.add(torch.zeros(2, 2, 4), torch.full((2, 2, 1), 1.7), ones, 1.0, False, ones)
    assert len(buf) == 1  # neither refused step was written
