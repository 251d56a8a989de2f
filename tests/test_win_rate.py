"""Envs that report wins (SMAX): the tracker's win rate, and the one line for a missing jax."""

from __future__ import annotations

import math

import pytest
import torch

from mappo.config import ConfigError
from mappo.episodes import EpisodeTracker


def test_win_rate_counts_the_won_episodes_among_those_that_ended() -> None:
    alive = torch.ones(3, 2, dtype=torch.bool)
    tracker = EpisodeTracker(alive, team_reward=True)
    reward = torch.zeros(3, 2)
    # Step 1: envs 0 and 1 end, env 0 won; env 2's flag is ignored (its episode goes on).
    tracker.step(
        reward, alive, torch.tensor([True, True, False]), alive, torch.tensor([True, False, True])
    )
    # Step 2: env 2 ends won.
    tracker.step(
        reward, alive, torch.tensor([False, False, True]), alive, torch.tensor([False, False, True])
    )
    assert tracker.pop_win_rate() == (2 / 3, 3)
    rate, count = tracker.pop_win_rate()  # popped: nothing since
    assert math.isnan(rate) and count == 0


def test_a_missing_jax_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import mappo.envs.jaxmarl as bridge
    from mappo.envs.registry import make_env

    monkeypatch.setattr(bridge, "_MISSING", ModuleNotFoundError("no jax", name="jax"))
    with pytest.raises(ConfigError, match=r"pip install 'mappo\[jax\]'"):
        make_env("jaxmarl:HeuristicEnemySMAX", 2, env_kwargs={"scenario": "3m"})
