"""Logged episode returns are real episode returns, computed by hand."""

import pytest
import torch

from mappo import ConfigError
from mappo.episodes import EpisodeTracker
from mappo.policy import policy_groups


def test_mean_per_agent_return_of_finished_episodes() -> None:
    alive = torch.ones(2, 2, dtype=torch.bool)
    tracker = EpisodeTracker(alive)
    no = torch.tensor([False, False])
    tracker.step(torch.tensor([[1.0, 3.0], [0.0, 0.0]]), alive, no, alive)
    out = tracker.step(
        torch.tensor([[1.0, 1.0], [-2.0, -4.0]]), alive, torch.tensor([True, False]), alive
    )
    assert out[0].item() == pytest.approx((2.0 + 4.0) / 2)
    assert tracker.pop_mean() == (pytest.approx(3.0), 1)
    # env 0 restarted from zero; env 1 keeps going
    out = tracker.step(
        torch.tensor([[5.0, 5.0], [0.0, 0.0]]), alive, torch.tensor([True, True]), alive
    )
    assert out.tolist() == pytest.approx([5.0, -3.0])
    assert tracker.pop_mean()[1] == 2


def test_dead_agent_keeps_its_return_until_the_episode_ends() -> None:
    alive = torch.ones(1, 2, dtype=torch.bool)
    tracker = EpisodeTracker(alive)
    dead1 = torch.tensor([[True, False]])
    tracker.step(torch.tensor([[1.0, 2.0]]), alive, torch.tensor([False]), dead1)
    # agent 1 is dead: a reward reported for it does not count
    out = tracker.step(torch.tensor([[1.0, 100.0]]), dead1, torch.tensor([True]), alive)
    assert out.item() == pytest.approx((2.0 + 2.0) / 2)


def test_a_seat_that_wins_before_its_first_turn_counts_in_the_mean() -> None:
    """Leduc hold'em: the first player folds on its first turn, paying the second, which
    never had a turn. Zero-sum, so the episode's mean is 0 (it read -1: the seat that never
    acted was left out); an agent neither acting nor paid stays out (here the third)."""
    first_to_act = torch.tensor([[True, False, False]])
    tracker = EpisodeTracker(first_to_act, turn_based=True)
    out = tracker.step(
        torch.tensor([[-1.0, 1.0, 0.0]]), first_to_act, torch.tensor([True]), first_to_act
    )
    assert out.item() == 0.0
    assert tracker.pop_mean() == (0.0, 1)
    assert tracker.finished.seated.tolist() == [[True, True, False]]


def test_policy_groups_by_prefix() -> None:
    names = ("adversary_0", "agent_0", "agent_1", "adversary_1")
    assert policy_groups(names, True, "adversary,agent") == [0, 1, 1, 0]
    assert policy_groups(names, True, "") == [0, 0, 0, 0]
    assert policy_groups(names, False, "") == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="agent 'agent_0' matches no prefix"):
        policy_groups(names, True, "adversary")
