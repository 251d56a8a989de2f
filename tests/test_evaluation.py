"""Greedy or sampled evaluation: which episodes it counts."""

from __future__ import annotations

from functools import partial

import pz_envs
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
from mappo.evaluation import evaluate


def test_short_episodes_are_not_favoured_over_long_ones() -> None:
    """Copy 0 (seed 0) plays 1-step episodes, copy 1 (seed 1) 9-step ones, each worth its
    length: 4 episodes are 2 of each, a mean of 5. The first 4 to finish were all copy 0's,
    a mean of 1: the bias that made a won SMAX battle or a cleared LBF map count more."""
    env = PettingZooWrapper(pz_envs.SeedLengthEnv, 2, name="lengths")
    config = MappoConfig(num_envs=2, rollout_steps=9, minibatch_size=0, compile="false")
    trainer = MappoTrainer(config, env=env)
    returns = evaluate(trainer.policy, env, episodes=4, seed=0)
    assert sorted(returns) == [1.0, 1.0, 9.0, 9.0]
    assert sorted(evaluate(trainer.policy, env, episodes=3, seed=0)) == [1.0, 1.0, 9.0]
    trainer.close()


def test_sampled_actions_repeat_with_the_seed() -> None:
    """`mappo eval --seed 7` without --deterministic gave another number each time: the
    seed reached the envs, not the sampling."""
    trainer = MappoTrainer(MappoConfig(num_envs=4, minibatch_size=0, compile="false"))
    env = trainer.env
    first = evaluate(trainer.policy, env, episodes=8, seed=7)
    torch.rand(3)  # whatever drew from the RNG in between
    assert evaluate(trainer.policy, env, episodes=8, seed=7) == first
    assert evaluate(trainer.policy, env, episodes=8, seed=8) != first
    trainer.close()


def test_a_copy_whose_episode_never_ends_holds_the_others_only_so_long(caplog) -> None:
    """Copy 1's episode outlasts 10 x the longest ended one (+ 1000 steps): copy 0's
    episodes are scored, and a warning says so, instead of waiting forever."""
    env = PettingZooWrapper(partial(pz_envs.SeedLengthEnv, odd_length=10**9), 2, name="stuck")
    config = MappoConfig(num_envs=2, rollout_steps=9, minibatch_size=0, compile="false")
    trainer = MappoTrainer(config, env=env)
    with caplog.at_level("WARNING", logger="mappo.evaluation"):
        assert evaluate(trainer.policy, env, episodes=4, seed=0) == [1.0, 1.0]
    assert [r.getMessage() for r in caplog.records] == [
        "evaluation: env copy 1 played one episode for 1011 steps, over 10 times the longest "
        "that ended (1 steps); scored the 2 episodes that ended, of 4"
    ]
    trainer.close()


def test_when_only_copies_that_do_not_score_end_episodes_the_env_is_named() -> None:
    """3 copies for 1 episode: copy 0 scores; it never ends, copies 1 and 2 (no share) do."""
    import pytest

    from mappo.envs.base import EnvError

    class OddFirst(pz_envs.SeedLengthEnv):  # copy 0 (seed 1) never ends, the others in 1 step
        def reset(self, seed=None, options=None):
            return super().reset(None if seed is None else seed + 1, options)

    env = PettingZooWrapper(partial(OddFirst, odd_length=10**9), 3, name="stuck")
    config = MappoConfig(num_envs=3, rollout_steps=9, minibatch_size=0, compile="false")
    trainer = MappoTrainer(config, env=env)
    with pytest.raises(EnvError) as info:
        evaluate(trainer.policy, env, episodes=1, seed=0)
    assert str(info.value) == (
        "env 'stuck': the evaluation's env copies that score (0) ended no episode in 1011 "
        "steps, over 10 times the longest that ended elsewhere (1 steps); give the env a time "
        "limit"
    )
    trainer.close()
