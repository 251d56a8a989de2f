"""`auto` settings: decided per env family as its official MAPPO code does, said in one line,
and the time left in the critic where time limits are terminal."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.config import ConfigError, from_dict, parse_cli_value
from mappo.envs.mpe.spread import SpreadEnv
from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
from mappo.task_settings import resolve_auto

DECIDED = ("agent_id", "bootstrap_time_limits", "critic_time_left", "team_reward")


def trainer_for(**fields) -> MappoTrainer:
    return MappoTrainer(MappoConfig(num_envs=2, minibatch_size=0, compile="false", **fields))


def decided(trainer: MappoTrainer) -> tuple[bool, ...]:
    return tuple(getattr(trainer.config, name) for name in DECIDED)


def test_mpe_follows_the_official_code_and_says_so() -> None:
    trainer = trainer_for()  # spread
    assert decided(trainer) == (False, False, True, True)
    assert trainer.auto_settings == (
        "auto settings for env 'spread': agent_id = false (the official MAPPO code on MPE), "
        "team_reward = true (the official MAPPO code on MPE), bootstrap_time_limits = false "
        "(the time limit is part of the task), critic_time_left = true (time limits are "
        "terminal)"
    )
    # Decided, not chosen: a config file of this run trains another env with its own auto.
    assert not set(DECIDED) & trainer.config.given
    trainer.close()


def test_an_env_without_conventions_keeps_the_library_defaults() -> None:
    trainer = trainer_for(env="pz_envs:CounterEnv")
    assert decided(trainer) == (True, True, False, False)
    assert "agent_id = true (library default)" in trainer.auto_settings
    assert "critic_time_left = false (time limits are bootstrapped)" in trainer.auto_settings
    trainer.close()


def test_pettingzoos_mpe_tasks_are_mpe_tasks() -> None:
    from mpe2 import simple_spread_v3

    env = PettingZooWrapper(lambda: simple_spread_v3.parallel_env(), 2, seed=0, name="mpe2")
    trainer = MappoTrainer(MappoConfig(num_envs=2, minibatch_size=0, compile="false"), env=env)
    assert decided(trainer) == (False, False, True, True)
    trainer.close()


def test_mpes_competitive_tasks_keep_each_agents_own_reward_and_id() -> None:
    """A team reward in simple_tag would pay the prey for being caught: each side learns
    from its own rewards there, and a shared actor tells the agents apart by their one-hot
    (simple_crypto's speaker and listener observe alike), while the other MPE conventions
    hold."""
    from mpe2 import simple_crypto_v3, simple_tag_v3

    for make in (simple_tag_v3.parallel_env, simple_crypto_v3.parallel_env):
        env = PettingZooWrapper(lambda make=make: make(), 2, seed=0, name=make.__module__)
        config = MappoConfig(num_envs=2, minibatch_size=0, compile="false")
        trainer = MappoTrainer(config, env=env)
        assert decided(trainer) == (True, False, True, False)
        assert "agent_id = true (library default)" in trainer.auto_settings
        assert "team_reward = false (library default)" in trainer.auto_settings
        trainer.close()


def test_settings_given_win_and_only_auto_ones_are_reported() -> None:
    trainer = trainer_for(agent_id=True, bootstrap_time_limits=True)
    assert decided(trainer) == (True, True, False, True)
    assert trainer.auto_settings == (
        "auto settings for env 'spread': team_reward = true (the official MAPPO code on MPE), "
        "critic_time_left = false (time limits are bootstrapped)"
    )
    everything = trainer_for(
        agent_id=False, bootstrap_time_limits=False, team_reward=False, critic_time_left=False
    )
    assert everything.auto_settings == "" and decided(everything) == (False, False, False, False)
    trainer.close()
    everything.close()


def test_the_critic_reads_the_time_left_by_hand() -> None:
    # Episodes of 4 steps, a 6-step rollout: the critic's last input is 1 - t/4 at episode
    # step t, 1 again after the reset; the actors' inputs are the observations alone.
    trainer = trainer_for(env_kwargs={"max_cycles": 4}, rollout_steps=6)
    trainer.collect_rollout()
    buf = trainer.buffer
    assert buf.states.shape[-1] == 3 * 18 + 1 == trainer.config.global_state_dim
    assert buf.states[:, :, -1].tolist() == [
        [1.0, 1.0],
        [0.75, 0.75],
        [0.5, 0.5],
        [0.25, 0.25],
        [1.0, 1.0],
        [0.75, 0.75],
    ]
    torch.testing.assert_close(buf.states[:, :, :-1], buf.observations.flatten(2))
    assert trainer.policy.actor.fc1.weight.shape[1] == 18  # the exported actor's layout
    trainer.close()


def test_no_time_left_where_the_critic_cannot_read_it_or_the_limit_is_not_in_steps() -> None:
    local = trainer_for(critic="local")  # IPPO: each critic reads its agent's observation
    assert decided(local)[1:3] == (False, False)
    assert (
        "critic_time_left = false (a local critic reads the actors' observations only)"
        in local.auto_settings
    )
    local.close()
    turns = trainer_for(env="aec_envs:RelayEnv", bootstrap_time_limits=False)
    assert "counts its time limit in rounds, not steps" in turns.auto_settings
    assert not turns.config.critic_time_left
    turns.close()
    with pytest.raises(ConfigError, match="'critic_time_left' = true: a local critic reads"):
        trainer_for(critic="local", critic_time_left=True)
    endless = dataclasses.replace(SpreadEnv(num_envs=1).spec, max_episode_steps=None)
    config, said = resolve_auto(MappoConfig(bootstrap_time_limits=False), endless)
    assert not config.critic_time_left and "(env 'spread' declares no time limit)" in said
    with pytest.raises(ConfigError, match="env 'spread' declares no time limit"):
        resolve_auto(MappoConfig(critic_time_left=True), endless)


def test_auto_is_a_value_of_its_own_on_the_command_line_and_in_files() -> None:
    assert parse_cli_value("agent_id", "auto") == "auto"
    assert parse_cli_value("team_reward", "false") is False
    assert from_dict({"bootstrap_time_limits": "auto"}).bootstrap_time_limits == "auto"
    with pytest.raises(ConfigError, match="'agent_id' = 'maybe': expected true, false or auto"):
        parse_cli_value("agent_id", "maybe")
    with pytest.raises(ConfigError, match="'team_reward' = 'yes': expected true, false or auto"):
        from_dict({"team_reward": "yes"})
