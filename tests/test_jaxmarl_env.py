"""JaxMARL envs through `--env jaxmarl:<name>`: shapes, masks, resets, dying SMAX units, wins,
time limits, DLPack without copies, snapshots, image layouts, and the jaxmarl-smax preset.

The tests needing jax and jaxmarl skip without them (`pip install 'mappo[jax]'`); each JAX
env is built once per module, since compiling a SMAX step takes tens of seconds on CPU.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mappo.config import ConfigError, MappoConfig
from mappo.episodes import EpisodeTracker

jax = pytest.importorskip("jax")
pytest.importorskip("jaxmarl")

from mappo.envs.jax_bridge import to_jax  # noqa: E402
from mappo.envs.registry import make_env  # noqa: E402
from mappo.networks import image_axes  # noqa: E402
from mappo.presets import jaxmarl_smax_preset  # noqa: E402
from mappo.task_settings import resolve_auto  # noqa: E402
from mappo.trainer import MappoTrainer  # noqa: E402

E = 4  # env copies
SMAX_ALLIES = 3  # map 3m
LIMIT = 12  # a short SMAX time limit, which many random battles reach
E_LIMIT = 64  # copies of the short-limit env


@pytest.fixture(scope="module")
def smax():
    env = make_env("jaxmarl:HeuristicEnemySMAX", E, seed=0, env_kwargs={"scenario": "3m"})
    env.reset(seed=0)
    return env


@pytest.fixture(scope="module")
def smax_short():
    env = make_env(
        "jaxmarl:HeuristicEnemySMAX",
        E_LIMIT,
        seed=0,
        env_kwargs={"scenario": "3m", "max_steps": LIMIT},
    )
    env.reset(seed=0)
    return env


@pytest.fixture(scope="module")
def spread():
    env = make_env("jaxmarl:MPE_simple_spread_v3", E, seed=0)
    env.reset(seed=0)
    return env


def random_legal(mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random legal action per agent, `[E, A]`."""
    scores = torch.rand(mask.shape, generator=generator).masked_fill(~mask, -1.0)
    return scores.argmax(-1)


def test_smax_shapes_state_and_mask_come_from_the_env(smax) -> None:
    # 3m: 3 allies with 7 features of each other unit (2 allies, 3 enemies) and 10 of their
    # own = 45 + 4 + 6 = 75; world state 8 features of 6 units = 48 ... as SMAX sizes them.
    inner = smax.env
    assert smax.spec.agent_names == ("ally_0", "ally_1", "ally_2")
    assert smax.spec.obs_dim == inner.obs_size == 75
    assert smax.spec.state_source == "env" and smax.spec.state_dim == inner.state_size == 72
    assert smax.spec.action.nvec == (inner.num_ally_actions,) == (8,)
    obs = smax.reset(seed=3)
    assert obs.shape == (E, 3, 75) and obs.dtype == torch.float32
    assert smax.get_global_state().shape == (E, 72)
    mask = smax.get_action_mask()
    assert mask.shape == (E, 3, 8) and mask.dtype == torch.bool
    # The mask is JaxMARL's get_avail_actions of the same state.
    avail = jax.vmap(inner.get_avail_actions)(smax._state)
    for a, agent in enumerate(smax.spec.agent_names):
        assert mask[:, a].tolist() == torch.from_dlpack(avail[agent]).bool().tolist()
    assert not bool(mask.all())  # out of range: attacks are illegal at the start


def test_spread_has_no_world_state_so_the_critic_sees_all_observations(spread) -> None:
    assert spread.spec.obs_dim == 18 and spread.spec.state_source == "concat_obs"
    obs = spread.reset(seed=1)
    assert torch.equal(spread.get_global_state(), obs.reshape(E, 3 * 18))
    assert bool(spread.get_action_mask().all())  # no mask function: every action legal


def test_time_limit_truncates_and_finished_copies_restart(spread) -> None:
    spread.reset(seed=2)
    gen = torch.Generator().manual_seed(0)
    # JaxMARL's MPE checks its step count before counting the step: with max_steps = 25
    # an episode lasts 26 steps.
    for step in range(1, 27):
        result = spread.step(random_legal(spread.get_action_mask(), gen))
        assert bool(result.env_done.all()) == (step == 26)
        assert not bool(result.terminated.any())
    assert bool(result.truncated.all())  # cut by the time limit, not terminal
    assert not torch.equal(result.final_obs, result.obs)  # obs belong to the new episode
    assert torch.equal(result.final_state, result.final_obs.reshape(E, -1))
    assert bool(result.alive.all())
    result = spread.step(random_legal(spread.get_action_mask(), gen))
    assert not bool(result.env_done.any())  # the new episodes run in full again


@pytest.mark.slow
def test_dead_smax_units_are_not_alive_until_their_env_resets(smax) -> None:
    smax.reset(seed=5)
    gen = torch.Generator().manual_seed(5)
    deaths = 0
    alive = smax.get_alive().clone()
    for _ in range(120):
        result = smax.step(random_legal(smax.get_action_mask(), gen))
        unit_alive = torch.from_dlpack(smax._state.state.unit_alive)[:, :SMAX_ALLIES]
        assert torch.equal(result.alive, unit_alive)  # reset copies: all alive again
        died = alive & ~result.alive & ~result.env_done.unsqueeze(-1)
        if bool(died.any()):
            deaths += int(died.sum())
            assert bool(result.terminated[died].all())  # its episode ended for good
            assert float(result.obs[died].abs().sum()) == 0.0
            # A dead unit may only "act" with slot 0, which the env ignores.
            assert result.action_mask[died].tolist() == [[True] + [False] * 7] * int(died.sum())
        was_dead = ~alive & ~result.env_done.unsqueeze(-1)
        assert not bool(result.alive[was_dead].any())  # the dead stay dead
        assert not bool(result.terminated[was_dead].any())  # and end nothing again
        alive = result.alive.clone()
    assert deaths > 0


def test_a_won_battle_is_flagged_and_counted(smax) -> None:
    smax.reset(seed=7)
    inner = smax._state.state
    # Every enemy at no health: the next step kills them all, with every ally alive.
    smax._state = smax._state.replace(
        state=inner.replace(unit_health=inner.unit_health.at[:, SMAX_ALLIES:].set(0.0))
    )
    tracker = EpisodeTracker(smax.get_alive(), team_reward=True)
    result = smax.step(torch.zeros(E, SMAX_ALLIES, dtype=torch.long))
    assert result.env_done.tolist() == [True] * E
    assert result.info["win"].tolist() == [True] * E
    assert bool((result.reward >= 1.0).all())  # SMAX's won-battle bonus, JaxMARL's own test
    tracker.step(result.reward, smax.get_alive(), result.env_done, result.alive, result.info["win"])
    assert tracker.pop_win_rate() == (1.0, E)


@pytest.mark.slow
def test_at_the_time_limit_the_fallen_terminate_and_only_survivors_are_truncated(
    smax_short,
) -> None:
    env = smax_short
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    units = env.env.num_allies + env.env.num_enemies
    features = len(env.env.own_features)  # per unit in the world state, health first
    ends = fallen_seen = survivors_seen = decided_seen = 0
    while ends < 256:
        # SMAX's own limit: `step >= max_steps`, compared before the step counts itself.
        at_limit = torch.from_dlpack(env._state.state.step) >= LIMIT  # [E]
        alive = env.get_alive().clone()
        result = env.step(random_legal(env.get_action_mask(), gen))
        assert bool(result.env_done[at_limit].all())
        # Each unit's health in the world state the step reached: 0 once it is dead.
        health = result.final_state[:, : units * features].unflatten(-1, (units, features))
        unit_alive = health[..., 0] > 0  # [E, units]
        decided = ~unit_alive[:, :SMAX_ALLIES].any(-1) | ~unit_alive[:, SMAX_ALLIES:].any(-1)
        # Only time cuts episodes: nothing is truncated off the limit step (nor on the step
        # before it, where the step count first reads max_steps).
        assert not bool(result.truncated[~at_limit].any())
        cut = (at_limit & ~decided)[:, None]  # the battle goes on; time ends it
        survivors = cut & alive & unit_alive[:, :SMAX_ALLIES]
        fallen = cut & alive & ~unit_alive[:, :SMAX_ALLIES]  # killed on the last step
        assert bool(result.truncated[survivors].all())
        assert not bool(result.terminated[survivors].any())
        assert bool(result.terminated[fallen].all())
        assert not bool(result.truncated[fallen].any())  # never bootstrapped from the dead
        won_or_lost = (at_limit & decided)[:, None] & alive  # decided on the last step
        assert bool(result.terminated[won_or_lost].all())
        assert not bool(result.truncated[won_or_lost].any())
        ends += int(at_limit.sum())
        fallen_seen += int(fallen.sum())
        survivors_seen += int(survivors.sum())
        decided_seen += int((at_limit & decided).sum())
    # Random allies against SMAX's heuristic enemies (seeds 0): 70 units die on the last
    # step of 256 cut battles, and 6 battles are decided on it.
    assert ends == 256 and fallen_seen >= 30 and survivors_seen >= 300 and decided_seen >= 1, (
        ends,
        fallen_seen,
        survivors_seen,
        decided_seen,
    )


@pytest.mark.parametrize("side", ["won", "lost"])
def test_a_battle_decided_at_the_time_limit_terminates(smax_short, side) -> None:
    env = smax_short
    env.reset(seed=13)
    inner = env._state.state
    losers = slice(SMAX_ALLIES, None) if side == "won" else slice(0, SMAX_ALLIES)
    # Every copy at its last step, with one side at no health: that side dies in the step.
    env._state = env._state.replace(
        state=inner.replace(
            step=inner.step.at[:].set(LIMIT), unit_health=inner.unit_health.at[:, losers].set(0.0)
        )
    )
    result = env.step(torch.zeros(E_LIMIT, SMAX_ALLIES, dtype=torch.long))
    assert result.env_done.tolist() == [True] * E_LIMIT
    assert result.terminated.tolist() == [[True] * SMAX_ALLIES] * E_LIMIT
    assert int(result.truncated.sum()) == 0
    assert result.info["win"].tolist() == [side == "won"] * E_LIMIT


def test_overcooked_says_its_grid_is_channels_last(spread) -> None:
    env = make_env("jaxmarl:overcooked", 2, seed=0, env_kwargs={"layout": "cramped_room"})
    obs = jax.eval_shape(env.env.reset, jax.random.PRNGKey(0))[0]["agent_0"]
    assert obs.shape == (4, 5, 26)  # [H, W, C]: 26 feature planes of the 4x5 kitchen
    assert env.spec.image_layout == "hwc"
    assert image_axes(obs.shape, said=env.spec.image_layout) == ((26, 4, 5), True)
    assert spread.spec.image_layout is None  # vectors


def test_arrays_cross_to_torch_and_back_without_a_copy(spread) -> None:
    result = spread.step(torch.zeros(E, 3, dtype=torch.long))
    for name in ("obs", "reward", "alive", "action_mask"):
        assert spread._jax_out[name].unsafe_buffer_pointer() == getattr(result, name).data_ptr(), (
            name
        )
    actions = torch.arange(E * 3, dtype=torch.int32).reshape(E, 3)
    as_jax = to_jax(actions, spread.jax_device)
    assert as_jax.unsafe_buffer_pointer() == actions.data_ptr()
    assert as_jax.tolist() == actions.tolist()


def test_a_snapshot_continues_exactly(smax) -> None:
    smax.reset(seed=11)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        smax.step(random_legal(smax.get_action_mask(), gen))
    snapshot = smax.state_dict()
    gen_state = gen.get_state()
    first = [smax.step(random_legal(smax.get_action_mask(), gen)) for _ in range(4)]
    smax.load_state_dict(snapshot)
    gen.set_state(gen_state)
    again = [smax.step(random_legal(smax.get_action_mask(), gen)) for _ in range(4)]
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward)
        assert torch.equal(a.alive, b.alive) and torch.equal(a.action_mask, b.action_mask)


def test_training_never_takes_a_masked_action_and_reports_a_win_rate(smax) -> None:
    preset = jaxmarl_smax_preset("jaxmarl:HeuristicEnemySMAX", {"scenario": "3m"})
    config = MappoConfig(
        **{
            **preset,
            "num_envs": E,
            "rollout_steps": 64,
            "minibatch_size": 0,
            "data_chunk_length": 16,
            "update_epochs": 1,
            "compile": "false",
            "total_steps": E * 64,
        }
    )
    trainer = MappoTrainer(config, env=smax)
    trainer.collect_rollout()
    buf = trainer.buffer
    taken = buf.action_masks.gather(-1, buf.actions).squeeze(-1)  # [T, E, A]
    assert bool(taken.all())
    assert not bool(buf.action_masks.all())  # some actions were masked
    assert not bool(buf.alive.all())  # and some units died on the way
    metrics = trainer.update()
    assert metrics.episodes > 0 and 0.0 <= metrics.win_rate <= 1.0


def test_jaxmarl_smax_preset_follows_the_map() -> None:
    three_m = jaxmarl_smax_preset(None, {"scenario": "3m"})  # --env not given
    assert three_m["env"] == "jaxmarl:HeuristicEnemySMAX"
    assert three_m["minibatch_size"] == 128 * 128 * 3 // 4  # 4 minibatches
    assert jaxmarl_smax_preset(None)["env_kwargs"]["scenario"] == "2s3z"
    assert jaxmarl_smax_preset(None)["minibatch_size"] == 128 * 128 * 5 // 4
    with pytest.raises(ConfigError, match="no SMAX map '3z'"):
        jaxmarl_smax_preset(None, {"scenario": "3z"})
    with pytest.raises(ConfigError, match="preset 'jaxmarl-smax' covers"):
        jaxmarl_smax_preset("jaxmarl:hanabi")
    # Plain SMAX makes both sides agents: the preset's team reward would mix the sides.
    with pytest.raises(ConfigError, match="heuristic enemy.*not 'jaxmarl:SMAX'$"):
        jaxmarl_smax_preset("jaxmarl:SMAX", {"scenario": "3m"})
    # `--env spread` given: refused, not taken for "no --env" (it blamed the preset's
    # env_kwargs on spread, which refused them).
    with pytest.raises(ConfigError, match="preset 'jaxmarl-smax' covers .*, not 'spread'$"):
        jaxmarl_smax_preset("spread")


def test_unknown_names_and_maps_are_one_line() -> None:
    with pytest.raises(ConfigError, match="did you mean 'jaxmarl:HeuristicEnemySMAX'"):
        make_env("jaxmarl:HeuristicEnemySmax", 2)
    with pytest.raises(ConfigError, match="has no SMAX map '4m'"):
        make_env("jaxmarl:SMAX", 2, env_kwargs={"scenario": "4m"})


def test_importing_jaxmarl_prints_nothing_and_keeps_a_redirect() -> None:
    """JaxMARL's import prints two lines and points `sys.stdout`/`sys.stderr` back at the
    terminal's; through mappo neither reaches the caller, whose redirects stay."""
    probe = (
        "import io, sys\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "sys.stdout, sys.stderr = out, err\n"
        "import mappo.envs.jaxmarl\n"
        "import jaxmarl.environments\n"  # what the preset's map check imports next
        "kept = sys.stdout is out and sys.stderr is err\n"
        "sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__\n"
        "print(kept, repr(out.getvalue()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert done.stdout == "True ''\n"


def test_keywords_jaxmarl_refuses_by_its_own_checks_are_one_line() -> None:
    """JaxMARL checks keywords by assert or fails on their type deep inside (a raw
    traceback before, where only a TypeError was caught)."""
    with pytest.raises(ConfigError) as refused:
        make_env("jaxmarl:hanabi", 2, env_kwargs={"num_agents": 1})
    assert str(refused.value) == (
        "config key 'env_kwargs' = {'num_agents': 1}: env 'jaxmarl:hanabi' refused them "
        "(AssertionError: Number of agents must be between 2 and 5)"
    )
    with pytest.raises(ConfigError, match=r"refused them \(AttributeError: 'int' object has no"):
        make_env("jaxmarl:HeuristicEnemySMAX", 2, env_kwargs={"scenario": 5})


def test_a_keyword_jaxmarls_mpe_would_drop_is_refused() -> None:
    """JaxMARL's MPE envs take `**kwargs` and drop the keys they do not read: a misspelt
    `num_agent` trained 3 agents silently. The keys they do read off it still build."""
    with pytest.raises(ConfigError) as refused:
        make_env("jaxmarl:MPE_simple_spread_v3", 2, env_kwargs={"num_agent": 5, "max_steps": 9})
    assert str(refused.value).startswith(
        "config key 'env_kwargs' = {'num_agent': 5, 'max_steps': 9}: env "
        "'jaxmarl:MPE_simple_spread_v3' does not use num_agent; it takes accel, action_spaces, "
    )
    assert ", damping, " in str(refused.value) and ", num_agents, " in str(refused.value)
    env = make_env("jaxmarl:MPE_simple_spread_v3", 2, env_kwargs={"damping": 0.5, "num_agents": 4})
    assert env.num_agents == 4
    env.close()


def test_keywords_read_are_told_only_where_the_source_shows_them() -> None:
    from mappo.envs.jaxmarl import _keywords_read

    class Base:
        def __init__(self, size: int = 1, **kwargs) -> None:
            self.rad = kwargs["rad"] if "mass" in kwargs else kwargs.get("speed", 1)

    class Child(Base):
        def __init__(self, colour: str = "red", **rest) -> None:
            super().__init__(size=2, **rest)

    class Elsewhere(Base):
        def __init__(self, **rest) -> None:
            super().__init__()
            self.other = dict(**rest)  # handed on where nothing can be read off: no check

    class Closed(Base):  # takes no **kwargs: Base's own keywords are not the caller's
        def __init__(self, colour: str = "red") -> None:
            super().__init__(size=2, rad=1)

    # `size` is Child's to give (a caller's would be given twice).
    assert _keywords_read(Child) == {"colour", "rad", "mass", "speed"}
    assert _keywords_read(Closed) == {"colour"}
    assert _keywords_read(Elsewhere) is None


def test_both_sides_of_plain_smax_learn_their_own_sides_reward() -> None:
    both = make_env("jaxmarl:SMAX", 1, seed=0, env_kwargs={"scenario": "3m"})
    assert len(both.spec.agent_names) == 6  # the allies and the enemies
    config, line = resolve_auto(MappoConfig(env="jaxmarl:SMAX"), both.spec)
    # One team reward over every slot would pay each side for the other's damage too.
    assert not config.team_reward
    assert "team_reward = false (SMAX with both sides learning" in line
    assert not config.bootstrap_time_limits  # a battle is scored within its time limit
