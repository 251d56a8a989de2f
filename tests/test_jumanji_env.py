"""Jumanji envs through `--env jumanji:<id>`: what each agent sees, the critic's state, masks,
team rewards, terminal and time-limit ends, in-step resets, generator kwargs, snapshots,
refusals, and a return that rises on LBF.

A tiny Jumanji-style env written here (`Tally`) has outcomes known by hand; the real envs
check that the same reading holds for Jumanji's own specs. Skipped without jax and jumanji
(`pip install 'mappo[jumanji]'`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pytest
import torch

from mappo.config import ConfigError, MappoConfig

jax = pytest.importorskip("jax")
jumanji = pytest.importorskip("jumanji")

import jax.numpy as jnp  # noqa: E402
from jumanji.types import restart, termination, transition, truncation  # noqa: E402

from mappo.envs.jumanji import JumanjiEnv  # noqa: E402
from mappo.envs.registry import make_env  # noqa: E402
from mappo.trainer import MappoTrainer  # noqa: E402

E = 4  # env copies
LIMIT = 3  # Tally's time limit


class TallyObservation(NamedTuple):
    agents_view: jax.Array  # [A, 2]: the agent's index and the step count
    positions: jax.Array  # [A, 1]: the agent's last action, public
    grid: jax.Array  # [2]: shared
    action_mask: jax.Array  # [A, 3]
    step_count: jax.Array  # []


class TallyState(NamedTuple):
    step_count: jax.Array
    last: jax.Array  # [A]


class Tally:
    """Two agents pick 0, 1 or 2; the team reward is the sum of the picks, both picking 2
    ends the episode (discount 0), and step `LIMIT` cuts it (discount 1). Agent 1 may not
    pick 2 on even steps."""

    num_agents = 2
    time_limit = LIMIT

    def _observe(self, state: TallyState) -> TallyObservation:
        step = state.step_count
        mask = jnp.array([[True, True, True], [True, True, False]])
        mask = mask.at[1, 2].set(step % 2 == 1)
        view = jnp.stack([jnp.arange(2), jnp.full(2, step)], axis=1)
        return TallyObservation(view, state.last[:, None], jnp.array([7, 8]), mask, step)

    def reset(self, key):
        state = TallyState(jnp.int32(0), jnp.zeros(2, jnp.int32))
        return state, restart(self._observe(state))

    def step(self, state, action):
        state = TallyState(state.step_count + 1, action.astype(jnp.int32))
        obs, reward = self._observe(state), jnp.sum(action).astype(jnp.float32)
        timestep = jax.lax.cond(
            jnp.all(action == 2),
            lambda: termination(reward, obs),
            lambda: jax.lax.cond(
                state.step_count >= LIMIT,
                lambda: truncation(reward, obs),
                lambda: transition(reward, obs),
            ),
        )
        return state, timestep

    @property
    def action_spec(self):
        from jumanji import specs

        return specs.MultiDiscreteArray(num_values=jnp.array([3, 3]), dtype=jnp.int32)


@pytest.fixture(scope="module")
def tally() -> JumanjiEnv:
    env = JumanjiEnv(Tally(), "tally", E, seed=0)
    env.reset(seed=0)
    return env


def test_each_agent_sees_its_own_view_public_rows_and_shared_fields(tally) -> None:
    obs = tally.reset(seed=0)  # [E, A, O]
    # own agents_view row (2), own position (1), everyone's positions (2), the grid (2)
    assert obs.shape == (E, 2, 7)
    assert obs[0, 0].tolist() == [0, 0, 0, 0, 0, 7, 8]
    assert obs[0, 1].tolist() == [1, 0, 0, 0, 0, 7, 8]
    # The critic's state: every field once (both views, both positions, the grid).
    assert tally.get_global_state()[0].tolist() == [0, 0, 1, 0, 0, 0, 7, 8]
    assert tally.spec.state_dim == 8 and tally.spec.max_episode_steps == LIMIT
    assert tally.spec.conventions.agent_id is None  # the views tell the agents apart


def test_the_mask_comes_from_the_observation_and_the_team_reward_reaches_every_agent(
    tally,
) -> None:
    tally.reset(seed=0)
    assert tally.get_action_mask()[0].tolist() == [[True, True, True], [True, True, False]]
    result = tally.step(torch.tensor([[1, 0], [2, 1], [0, 0], [1, 1]]))
    assert result.reward.tolist() == [[1, 1], [3, 3], [0, 0], [2, 2]]
    assert result.action_mask[0, 1].tolist() == [True, True, True]  # step 1 is odd
    assert result.obs[1, 0].tolist() == [0, 1, 2, 2, 1, 7, 8]  # own pick 2, then both


def test_both_picking_two_terminates_and_the_limit_truncates_then_copies_restart(tally) -> None:
    tally.reset(seed=0)
    tally.step(torch.zeros(E, 2, dtype=torch.long))
    ends = tally.step(torch.tensor([[2, 2], [0, 0], [0, 0], [2, 2]]))  # step 2
    assert ends.terminated.tolist() == [[True, True], [False, False]] * 1 + [
        [False, False],
        [True, True],
    ]
    assert ends.env_done.tolist() == [True, False, False, True]
    assert not ends.truncated.any()
    assert ends.final_obs[0, 0].tolist() == [0, 2, 2, 2, 2, 7, 8]  # what it reached
    assert ends.obs[0, 0, 1].item() == 0 and ends.obs[1, 0, 1].item() == 2  # restarted
    cut = tally.step(torch.zeros(E, 2, dtype=torch.long))  # step 3 for copies 1 and 2
    assert cut.truncated.tolist() == [[False, False], [True, True], [True, True], [False, False]]
    assert not cut.terminated.any() and cut.alive.all()


class Finishing(Tally):
    """Tally in which agent 1 is done from step 2 on: no legal action, as MMST's agents once
    their nodes are connected (the env ignores their actions)."""

    def _observe(self, state: TallyState) -> TallyObservation:
        seen = super()._observe(state)
        return seen._replace(action_mask=seen.action_mask.at[1].set(state.step_count < 2))


def test_an_agent_left_no_legal_action_gets_its_first_as_its_only_one() -> None:
    """Its logits all masked alike, it drew among its illegal actions (and the rollout check
    refuses that); its first action alone leaves it no choice, and its rewards count on."""
    env = JumanjiEnv(Finishing(), "finishing", E, seed=0)
    env.reset(seed=0)
    env.step(torch.zeros(E, 2, dtype=torch.long))
    second = env.step(torch.tensor([[2, 2], [0, 0], [0, 0], [0, 0]]))  # copy 0 ends
    assert second.alive.all()
    assert second.action_mask[1:, 1].tolist() == [[True, False, False]] * 3
    assert second.action_mask[0, 1].tolist() == [True, True, True]  # restarted
    trainer = MappoTrainer(
        MappoConfig(num_envs=E, rollout_steps=8, total_steps=64, minibatch_size=0, compile="false"),
        env=env,
    )
    trainer.train()
    buf = trainer.buffer
    no_choice = ~buf.action_masks[..., 1, 1:].any(-1)  # [T, E]: agent 1 with action 0 alone
    assert bool(no_choice.any()) and bool((buf.actions[..., 1, 0][no_choice] == 0).all())


def test_a_snapshot_continues_exactly() -> None:
    env = make_env("jumanji:RobotWarehouse-v0", E, seed=3)
    env.reset()
    gen = torch.Generator().manual_seed(0)

    def act() -> torch.Tensor:
        return (
            torch.rand(env.get_action_mask().shape, generator=gen)
            .masked_fill(~env.get_action_mask(), -1)
            .argmax(-1)
        )

    for _ in range(5):
        env.step(act())
    snapshot, gen_state = env.state_dict(), gen.get_state()
    first = [env.step(act()).obs.clone() for _ in range(4)]
    env.load_state_dict(snapshot)
    gen.set_state(gen_state)
    again = [env.step(act()).obs.clone() for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_generator_kwargs_set_the_agents_and_a_single_agent_env_is_refused() -> None:
    env = make_env(
        "jumanji:LevelBasedForaging-v0",
        2,
        seed=0,
        env_kwargs={"grid_size": 6, "fov": 6, "num_agents": 3, "num_food": 2, "time_limit": 25},
    )
    assert env.reset().shape[1] == 3 and env.spec.max_episode_steps == 25
    # LBF's agents_view: each agent's own row only (3 agents + 2 foods, 3 numbers each).
    assert env.spec.obs_dim == 15 and env.spec.state_dim == 45
    assert env.spec.conventions.team_reward is True
    connector = make_env("jumanji:Connector-v3", 1, seed=0, env_kwargs={"num_agents": 3})
    assert connector.spec.conventions.agent_id is True  # one shared grid: ids tell agents apart
    with pytest.raises(ConfigError, match="refused .*'grid_size': 6.*not given .*: .*fov=8"):
        make_env("jumanji:LevelBasedForaging-v0", 1, env_kwargs={"grid_size": 6})
    # Each value taken alone, but no level can be drawn from them: the first reset says so.
    says = "env 'jumanji:RobotWarehouse-v0' cannot reset with {'shelf_rows': 0} (a must be"
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_env("jumanji:RobotWarehouse-v0", 1, env_kwargs={"shelf_rows": 0})
    with pytest.raises(ConfigError, match="takes no 'food'.*its generator takes grid_size"):
        make_env("jumanji:LevelBasedForaging-v0", 1, env_kwargs={"food": 3})
    with pytest.raises(ConfigError, match="one agent; mappo trains .*jumanji:RobotWarehouse-v0"):
        make_env("jumanji:Snake-v1", 1)
    with pytest.raises(ConfigError, match="did you mean 'jumanji:RobotWarehouse-v0'"):
        make_env("jumanji:RobotWarehous-v0", 1)
    # Whatever the env raises with the kwargs, the line names the user's own keys (not the
    # generator built from them); a time limit that is no whole number of steps, or no
    # agents at all, are refused before anything runs.
    refusals = [
        ("Cleaner-v0", {"num_rows": -4}, "refused {'num_rows': -4} ("),
        ("Cleaner-v0", {"generator": 1}, "refused {'generator': 1} ("),
        ("Cleaner-v0", {"num_agents": 0}, "has 0 agents with {'num_agents': 0}; it needs at"),
        ("LevelBasedForaging-v0", {"time_limit": 0}, "time_limit = 0 for env 'jumanji:Level"),
        ("RobotWarehouse-v0", {"time_limit": 2.5}, "time_limit = 2.5 for env 'jumanji:Robot"),
    ]
    for env_id, kwargs, says in refusals:
        with pytest.raises(ConfigError, match=re.escape(says)):
            make_env(f"jumanji:{env_id}", 1, env_kwargs=kwargs)


def test_connector_settings_that_draw_broken_levels_are_refused() -> None:
    """Connector's generator puts two ends on one cell, without an error, when its grid is
    too small for its agents: on 3x3 with 4 agents in about 1 level of 20."""
    says = (
        "env 'jumanji:Connector-v3' with {'grid_size': 3, 'num_agents': 4} draws broken levels "
        "(11 of 256 drawn put two agents' ends on one cell); give a larger grid_size"
    )
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_env("jumanji:Connector-v3", 1, env_kwargs={"grid_size": 3, "num_agents": 4})
    env = make_env("jumanji:Connector-v3", 1, env_kwargs={"grid_size": 4, "num_agents": 2})
    assert env.reset().shape[1] == 2
    # Envs whose state has no agents' ends are not checked (Cleaner's has no `agents`).
    assert make_env("jumanji:Cleaner-v0", 1, env_kwargs={"num_agents": 2}).num_agents == 2


def test_env_copies_that_cannot_fit_in_memory_are_refused(monkeypatch) -> None:
    """Cleaner's agents each see every agent's position: 10,000 agents make 20,102 numbers
    per agent, 16 copies 12 GiB of observations, held twice in a step."""
    monkeypatch.setattr("mappo.memory.free_bytes", lambda device: 16 * 2**30)
    says = (
        "env 'jumanji:Cleaner-v0' (16 copies of its state and observations, 10000 agents x "
        "20102 numbers each) needs 24.0 GiB, but 16.0 GiB of memory is free: lower --num-envs "
        "(about 8 would fit) or, where these are the evaluation env's copies, --eval-episodes"
    )
    with pytest.raises(ConfigError, match=re.escape(says)):
        make_env("jumanji:Cleaner-v0", 16, env_kwargs={"num_agents": 10_000})


def test_training_never_takes_a_masked_action() -> None:
    config = MappoConfig(
        env="jumanji:RobotWarehouse-v0",
        num_envs=4,
        rollout_steps=16,
        total_steps=64,
        compile="false",
        seed=0,
    )
    trainer = MappoTrainer(config)
    trainer.collect_rollout()
    buf = trainer.buffer
    taken = buf.action_masks.gather(-1, buf.actions).squeeze(-1)  # [T, E, A]
    assert bool(taken.all())
    assert not bool(buf.action_masks.all())  # some actions were masked


@pytest.mark.slow
def test_lbf_return_rises() -> None:
    """Two agents, one food on a 5x5 grid: the team return rises from a random policy's."""
    config = MappoConfig(
        env="jumanji:LevelBasedForaging-v0",
        env_kwargs={"grid_size": 5, "num_agents": 2, "num_food": 1, "fov": 5, "time_limit": 25},
        num_envs=32,
        rollout_steps=25,
        total_steps=120_000,
        seed=0,
        compile="false",
    )
    trainer = MappoTrainer(config)
    returns = []
    trainer.train(callback=lambda metrics: returns.append(metrics.episode_return))
    early, late = returns[1], sum(returns[-5:]) / 5
    assert late > early + 0.1, (early, late)
