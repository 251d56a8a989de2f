"""PettingZooWrapper and the registry's `module:callable` envs, checked tensor by tensor."""

from __future__ import annotations

import io
import logging
import pickle
import re
from functools import partial

import numpy as np
import pytest
import pz_envs
import torch

from mappo.envs.base import EnvError
from mappo.envs.pettingzoo.batch import _load_snapshot, _StatePickler
from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
from mappo.envs.registry import make_env

torch.set_num_threads(1)

# The registry imports test envs by module name like any other env; under
# pytest's default import mode this module is importable as `pz_envs`.
MODULE = pz_envs.__name__


def wrap(env_cls: type, num_envs: int = 2, seed: int | None = 0, **kwargs) -> PettingZooWrapper:
    """`num_envs` in-process copies of a test env."""
    return PettingZooWrapper(partial(env_cls, **kwargs), num_envs, seed=seed, name=env_cls.__name__)


def offsets(seed: int, draws: int) -> list[int]:
    """The `offset`s a CounterEnv reset with `seed` draws at its first `draws` resets."""
    rng = np.random.default_rng(seed)
    return [int(rng.integers(1000)) for _ in range(draws)]


def zeros_action(env: PettingZooWrapper) -> torch.Tensor:
    """Action 0 for every agent, `[E, A]`."""
    return torch.zeros(env.num_envs, env.num_agents, dtype=torch.long)


def test_dying_agent_is_masked_out_and_gets_no_action() -> None:
    env = wrap(pz_envs.DyingAgentEnv, num_envs=2, seed=0)
    assert env.get_alive().all()
    offset = torch.tensor([offsets(i, 1)[0] for i in range(2)], dtype=torch.float32)
    for t in range(1, 6):
        r = env.step(zeros_action(env))
        if t < 5:
            assert not r.env_done.any()
            # Survivors observe [offset, episode 1, t, slot].
            for slot in (0, 2):
                expected = torch.stack(
                    [offset, torch.ones(2), torch.full((2,), t), torch.full((2,), slot)], -1
                )
                torch.testing.assert_close(r.obs[:, slot], expected, rtol=0, atol=0)
            assert r.alive[:, 0].all() and r.alive[:, 2].all()
            assert (r.alive[:, 1] == (t < 2)).all()
            assert (r.terminated[:, 1] == (t == 2)).all()
            assert not r.terminated[:, [0, 2]].any() and not r.truncated.any()
            # agent_1 earns its reward on its last step (10 * 1 + 2), then nothing.
            assert (r.reward[:, 1] == (12.0 if t == 2 else 0.0 if t > 2 else 10.0 + t)).all()
            if t >= 2:
                assert (r.obs[:, 1] == 0).all() and r.action_mask[:, 1].all()
            if t == 2:  # final_obs keeps what agent_1 saw as it died: t 2, slot 1
                assert (r.final_obs[:, 1, 2:] == torch.tensor([2.0, 1.0])).all()
        else:
            assert r.env_done.all()
            assert r.truncated[:, [0, 2]].all() and not r.truncated[:, 1].any()
            assert not r.terminated.any()
            # The finished episode's last view: survivors at t=5, the dead slot zero.
            assert (r.final_obs[:, 0, 2] == 5).all() and (r.final_obs[:, 1] == 0).all()
            torch.testing.assert_close(r.reward, torch.tensor([[5.0, 0.0, 25.0]] * 2))
            # The new episode: everyone back, episode 2, t 0.
            assert r.alive.all()
            assert (r.obs[:, :, 1] == 2).all() and (r.obs[:, :, 2] == 0).all()
            assert (r.state == r.obs.reshape(2, -1)).all()
    received = env.local_envs[0].received
    assert [sorted(step) for step in received] == (
        [["agent_0", "agent_1", "agent_2"]] * 2 + [["agent_0", "agent_2"]] * 3
    )
    env.close()


def test_seeds_per_copy_and_reseeding() -> None:
    env = wrap(pz_envs.CounterEnv, num_envs=3, seed=7, episode_length=2)
    first = [offsets(7 + i, 2) for i in range(3)]
    assert env.get_observation(0)[:, 0].tolist() == [f[0] for f in first]
    env.step(zeros_action(env))
    r = env.step(zeros_action(env))  # auto-reset: each copy continues its own RNG
    assert r.env_done.all()
    assert r.obs[:, 0, 0].tolist() == [f[1] for f in first]
    assert env.reset(seed=7)[:, 0, 0].tolist() == [f[0] for f in first]
    assert env.reset(seed=8)[:, 0, 0].tolist() == [offsets(8 + i, 1)[0] for i in range(3)]
    env.close()


def test_action_mask_from_dict_observations_and_padding_of_discrete_sizes() -> None:
    env = wrap(pz_envs.MaskedEnv, num_envs=2)
    assert env.spec.action.nvec == (5,) and env.spec.obs_dim == 4
    # t=0: even actions legal; agent_0 has only 3 actions, the last two are never legal.
    expected = torch.tensor([[1, 0, 1, 0, 0], [1, 0, 1, 0, 1]], dtype=torch.bool)
    assert (env.get_action_mask() == expected).all()
    r = env.step(torch.tensor([[2, 4], [0, 2]]))  # legal at t=0 (the env asserts it)
    expected = torch.tensor([[0, 1, 0, 0, 0], [0, 1, 0, 1, 0]], dtype=torch.bool)
    assert (r.action_mask == expected).all()
    assert env.local_envs[0].received == [{"agent_0": 2, "agent_1": 4}]
    assert (r.obs[:, :, 2] == 1).all()  # the `observation` part, unpadded
    env.close()


def test_heterogeneous_observations_are_zero_padded() -> None:
    env = wrap(pz_envs.HeteroObsEnv, num_envs=2)
    assert env.spec.obs_sizes == (2, 6, 4) and env.spec.obs_dim == 6
    r = env.step(zeros_action(env))
    expected = torch.tensor(
        [
            [1010, 1011, 0, 0, 0, 0],
            [1020, 1021, 1022, 1023, 1024, 1025],
            [1030, 1031, 1032, 1033, 0, 0],
        ],
        dtype=torch.float32,
    )
    assert (r.obs == expected).all()
    assert env.spec.state_source == "concat_obs" and env.spec.state_dim == 18
    assert (r.state == expected.reshape(1, -1)).all()
    env.close()


def test_box_actions_are_clipped_to_each_agents_bounds() -> None:
    env = wrap(pz_envs.BoxActionEnv, num_envs=1)
    spec = env.spec.action
    assert spec.kind == "continuous"
    assert spec.low == (-1.0, -1.0, 0.0) and spec.high == (5.0, 5.0, 5.0)
    assert env.get_action_mask().shape == (1, 2, 3)
    env.step(torch.tensor([[[-3.0, 0.5, 9.0], [-3.0, 2.5, 9.0]]]))
    received = env.local_envs[0].received[0]
    assert received["agent_0"].tolist() == [-1.0, 0.5]  # third dimension dropped
    assert received["agent_1"].tolist() == [0.0, 2.5, 5.0]
    assert received["agent_0"].dtype == np.float32
    env.close()


def test_box_action_mask_marks_each_agents_own_dimensions() -> None:
    env = wrap(pz_envs.BoxActionEnv, num_envs=2)  # agent_0 acts in 2 dimensions, agent_1 in 3
    expected = torch.tensor([[True, True, False], [True, True, True]]).expand(2, 2, 3)
    assert torch.equal(env.get_action_mask(), expected)
    r = env.step(torch.zeros(2, 2, 3))
    assert torch.equal(r.action_mask, expected)
    env.close()


def test_multidiscrete_and_discrete_start() -> None:
    env = wrap(pz_envs.MultiDiscreteEnv, num_envs=1)
    assert env.spec.action.nvec == (4, 2)
    # agent_0: 3 of 4 in the first part, both in the second; agent_1 has no second part
    # (a dummy whose only choice is 0).
    expected = torch.tensor([[1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    assert (env.get_action_mask()[0] == expected).all()
    env.step(torch.tensor([[[2, 1], [3, 0]]]))
    received = env.local_envs[0].received[0]
    assert received["agent_0"].tolist() == [2, 1]
    assert received["agent_1"] == 4  # Discrete(4, start=1): index 3 is action 4
    env.close()


def test_mixed_discrete_and_box_agents_are_refused() -> None:
    with pytest.raises(ValueError, match=r"agent_0: Discrete\(5\).*agent_1: Box"):
        wrap(pz_envs.MixedActionEnv)


def test_global_state_from_env_or_concatenated_obs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mappo.envs.pettingzoo.wrapper"):
        with_state = wrap(pz_envs.StatefulEnv, num_envs=2, seed=3)
        without = wrap(pz_envs.CounterEnv, num_envs=2, seed=3)
    assert with_state.spec.state_source == "env" and with_state.spec.state_dim == 3
    assert without.spec.state_source == "concat_obs" and without.spec.state_dim == 8
    assert "StatefulEnv: global state from env.state()" in caplog.text
    assert "CounterEnv: no env.state()" in caplog.text
    r = with_state.step(zeros_action(with_state))
    expected = torch.tensor([[offsets(3 + i, 1)[0], 1, 1] for i in range(2)], dtype=torch.float32)
    assert (r.state == expected).all()
    r = without.step(zeros_action(without))
    assert (r.state == r.obs.reshape(2, 8)).all()
    with_state.close()
    without.close()


def test_auto_reset_at_different_steps_keeps_final_obs_and_state() -> None:
    env = wrap(pz_envs.VariableLengthEnv, num_envs=3, seed=0)  # lengths 2, 3, 4
    lengths = torch.tensor([2, 3, 4])
    episode = torch.ones(3)
    for t in range(1, 9):
        before = episode.clone()
        r = env.step(zeros_action(env))
        done = t % lengths == 0
        assert (r.env_done == done).all()
        assert (r.truncated == done[:, None]).all()
        episode += done
        # Finished copies: final_* are the episode's end, obs/state the new start.
        t_in_episode = torch.where(done, lengths, (t % lengths).float())
        assert (r.final_obs[:, :, 1] == before[:, None]).all()
        assert (r.final_obs[:, :, 2] == t_in_episode[:, None]).all()
        assert (r.final_state[:, 1:] == torch.stack([before, t_in_episode], -1)).all()
        assert (r.obs[:, :, 1] == episode[:, None]).all()
        assert (r.obs[:, :, 2] == torch.where(done, 0, t % lengths)[:, None]).all()
        assert (r.state[:, 1] == episode).all()
        assert torch.equal(r.final_obs[~done], r.obs[~done])
        assert torch.equal(r.final_state[~done], r.state[~done])
    env.close()


@pytest.mark.parametrize("env_cls", [pz_envs.LoneTruncationEnv, pz_envs.StatefulLoneTruncationEnv])
def test_agent_truncated_alone_keeps_its_last_observation_in_final_obs(env_cls: type) -> None:
    env = wrap(env_cls, num_envs=2, seed=0)
    offset = torch.tensor([offsets(i, 1)[0] for i in range(2)], dtype=torch.float32)
    env.step(zeros_action(env))
    r = env.step(zeros_action(env))
    # agent_0 is cut off at step 2; agent_1, and so the copy, go on.
    assert not r.env_done.any()
    assert r.truncated[:, 0].all() and not r.truncated[:, 1].any() and not r.terminated.any()
    assert not r.alive[:, 0].any() and r.alive[:, 1].all()
    assert (r.obs[:, 0] == 0).all()
    # What the env returned for agent_0 at step 2: [offset, episode 1, t 2, slot 0].
    seen = torch.stack([offset, torch.ones(2), torch.full((2,), 2.0), torch.zeros(2)], -1)
    assert torch.equal(r.final_obs[:, 0], seen)
    assert torch.equal(r.final_obs[:, 1], r.obs[:, 1])
    if env.spec.state_source == "concat_obs":
        assert torch.equal(r.final_state, r.final_obs.reshape(2, 8))
        assert torch.equal(r.state, r.obs.reshape(2, 8))
        # Views, not copies: the batch does not carry the observations a second time.
        assert r.state.data_ptr() == r.obs.data_ptr()
        assert r.final_state.data_ptr() == r.final_obs.data_ptr()
        assert "state" not in env.layout.step_space(2).spaces
    else:  # the env has not moved since the step: one state, read once per step and reset
        expected = torch.stack([offset, torch.ones(2), torch.full((2,), 2.0)], -1)
        assert torch.equal(r.final_state, expected) and torch.equal(r.state, expected)
        assert [copy.state_calls for copy in env.local_envs] == [3, 3]
    # A step later agent_0 has been gone since the last one: zeros, and no new truncation.
    r = env.step(zeros_action(env))  # the env asserts no action is sent for agent_0
    assert (r.final_obs[:, 0] == 0).all() and not r.truncated[:, 0].any()
    assert (r.final_obs[:, 1, 2] == 3).all()
    env.close()


def test_workers_give_the_same_tensors_as_in_process() -> None:
    for env_cls, num_agents in ((pz_envs.VariableLengthEnv, 2), (pz_envs.DyingAgentEnv, 3)):
        local = PettingZooWrapper(env_cls, 4, num_workers=0, seed=5)
        pooled = PettingZooWrapper(env_cls, 4, num_workers=2, seed=5)
        try:
            assert torch.equal(pooled.get_global_state(), local.get_global_state())
            gen = torch.Generator().manual_seed(0)
            for _ in range(7):
                actions = torch.randint(0, 5, (4, num_agents), generator=gen)
                a, b = local.step(actions), pooled.step(actions)
                for field in a._fields[:-1]:  # every tensor; `info` is a dict
                    assert torch.equal(getattr(a, field), getattr(b, field)), field
        finally:
            local.close()
            pooled.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_snapshot_written_with_a_copy_of_the_observations_still_resumes(workers: int) -> None:
    # Checkpoints from before the batch read observations in place hold a fifth item, a copy
    # of the last observations, and, for an env without a state of its own, state arrays,
    # pickled bare (not compressed); they resume as the new snapshots do, also regrouped
    # over worker processes.
    env = wrap(pz_envs.CounterEnv, episode_length=5)
    for _ in range(3):
        env.step(zeros_action(env))
    parts = []
    for part in pickle.loads(env.pickled_state()):
        envs, out, env_mask, episode_steps = _load_snapshot(part)
        out = {**out, "state": np.ones((2, 8), np.float32), "final_state": np.ones((2, 8))}
        old = (envs, out, np.full((2, 2, 4), 7.0, np.float32), env_mask, episode_steps)
        buffer = io.BytesIO()
        _StatePickler(buffer).dump(old)
        parts.append(buffer.getvalue())
    resumed = PettingZooWrapper(
        partial(pz_envs.CounterEnv, episode_length=5), 2, num_workers=workers, seed=9
    )
    try:
        resumed.load_pickled_state(pickle.dumps(parts))
        saved = [_load_snapshot(p)[1] for p in pickle.loads(resumed.pickled_state())]
        assert all("state" not in out for out in saved)  # the old arrays are not carried on
        finished = torch.zeros(2, dtype=torch.bool)
        for _ in range(4):  # past the episodes' end at step 5, into the next ones
            a, b = resumed.step(zeros_action(env)), env.step(zeros_action(env))
            assert torch.equal(a.obs, b.obs) and torch.equal(a.final_obs, b.final_obs)
            assert torch.equal(a.state, b.state) and torch.equal(a.env_done, b.env_done)
            finished |= a.env_done
        assert finished.all()
    finally:
        resumed.close()


@pytest.mark.parametrize("workers", [0, 2])
def test_snapshot_of_an_env_holding_constant_arrays_is_compressed(workers: int) -> None:
    env = PettingZooWrapper(
        partial(pz_envs.BulkyEnv, episode_length=5), 2, num_workers=workers, seed=0
    )
    resumed = PettingZooWrapper(
        partial(pz_envs.BulkyEnv, episode_length=5), 2, num_workers=workers, seed=9
    )
    try:
        for _ in range(3):
            env.step(zeros_action(env))
        data = env.pickled_state()
        assert len(data) < 40_000  # two copies of 1 MB each, bare
        resumed.load_pickled_state(data)
        for _ in range(4):  # past the episodes' end at step 5
            a, b = resumed.step(zeros_action(env)), env.step(zeros_action(env))
            assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward)
    finally:
        env.close()
        resumed.close()


def test_snapshot_keeps_what_an_env_drew_on_its_pygame_surfaces() -> None:
    # The canvas is filled at reset and drawn on a pixel a step (as pistonball's screen):
    # resumed from a blank canvas, the copies would observe something else until reset.
    pytest.importorskip("pygame")
    env = wrap(pz_envs.SketchEnv, episode_length=4)
    moves = [(1, 2), (3, 4), (4, 1), (2, 3), (0, 4), (3, 0)]
    actions = [torch.tensor([[a, b], [b, a]]) for a, b in moves]
    for t in range(2):
        env.step(actions[t])
    resumed = wrap(pz_envs.SketchEnv, seed=9, episode_length=4)
    resumed.load_pickled_state(env.pickled_state())
    for t in range(2, 6):  # the episode's last two steps, then two of the next
        a, b = resumed.step(actions[t]), env.step(actions[t])
        assert torch.equal(a.obs, b.obs) and torch.equal(a.final_obs, b.final_obs)
        if t == 2:  # pixel (2, 0), of [W=3, H=2], took agent_0's colour 4 * 40, agent_1's alpha
            assert a.obs[0, 0, [12, 13, 14, 18 + 4]].tolist() == [160.0, 160.0, 160.0, 40.0]


def test_num_envs_must_split_evenly_over_workers() -> None:
    with pytest.raises(ValueError, match="multiple of num_workers"):
        PettingZooWrapper(pz_envs.CounterEnv, 5, num_workers=2)


@pytest.mark.filterwarnings("ignore::UserWarning")  # gymnasium logs the worker's traceback
def test_observation_of_the_wrong_size_is_an_env_error() -> None:
    for num_workers in (0, 2):
        env = PettingZooWrapper(pz_envs.WrongObsSizeEnv, 2, num_workers=num_workers, name="bad")
        try:
            env.step(zeros_action(env))
            with pytest.raises(
                EnvError,
                match="env 'bad' returned a bad observation for agent "
                "'agent_1' in env copy 0 at episode step 2: 5 values where",
            ):
                env.step(zeros_action(env))
        finally:
            env.close()


# ---------------------------------------------------------------------- registry


def test_registry_builds_mpe2_simple_spread() -> None:
    simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")
    name = "mpe2.simple_spread_v3:parallel_env"
    env = make_env(name, 4, seed=3, env_kwargs={"N": 3})
    assert env.spec.name == name and env.spec.max_episode_steps == 25
    assert env.spec.state_source == "env"
    assert env.reset(seed=3).shape == (4, 3, 18)
    assert env.get_global_state().shape == (4, 54)
    # Copy i is mpe2 reset with seed 3 + i.
    reference = simple_spread_v3.parallel_env(N=3)
    obs, _ = reference.reset(seed=5)
    assert np.array_equal(env.get_observation(2)[2].numpy(), obs["agent_2"])
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 26):
        r = env.step(torch.randint(0, 5, (4, 3), generator=gen))
        assert (r.env_done == (t == 25)).all()
        assert (r.truncated == (t == 25)).all() and not r.terminated.any()
    env.close()


def test_registry_imports_module_callable_with_kwargs() -> None:
    for name in (f"{MODULE}:DyingAgentEnv", f"pettingzoo:{MODULE}:DyingAgentEnv"):
        env = make_env(name, 2, seed=0, env_kwargs={"episode_length": 3})
        assert env.spec.name == name and env.spec.max_episode_steps == 3
        for _ in range(3):
            r = env.step(zeros_action(env))
        assert r.env_done.all()
        env.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no_such_module_xyz:parallel_env", "cannot import module"),
        ("mpe2.simple_spread_v3:no_such_env", "has no attribute"),
        # Another version than the one installed: not the pettingzoo extra missing (it said).
        (
            "pettingzoo.sisl.multiwalker_v8:parallel_env",
            "cannot import module 'pettingzoo.sisl."
            "multiwalker_v8' (No module named 'pettingzoo.sisl.multiwalker_v8'); pettingzoo.sisl "
            "has multiwalker_v9",
        ),
        (
            "gym_envs:TupleCounter-v0",
            "module 'gym_envs' has no attribute 'TupleCounter-v0'; a "
            "Gymnasium id: --env gymnasium:gym_envs:TupleCounter-v0",
        ),
        (f"{MODULE}:not_a_parallel_env", "not a PettingZoo ParallelEnv"),
        # PettingZoo's MPE moved to mpe2 (1.25): the name that tutorials give is translated.
        (
            "pettingzoo.mpe.simple_spread_v3:parallel_env",
            "; mpe2 is installed: --env mpe2.simple_spread_v3:parallel_env",
        ),
    ],
)
def test_registry_errors_name_the_env(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"env '{name}'") + ".*" + re.escape(message)):
        make_env(name, 2)


@pytest.mark.parametrize(
    ("bad_value", "said"),
    [("1", "str '1'"), (None, "NoneType None"), ([1.0, None], "list [1.0, None]")],
)
def test_a_reward_that_is_no_number_is_named_not_converted(bad_value, said) -> None:
    """Text would convert to its number and None to nan, hiding the env's bug."""
    make = partial(pz_envs.MalformedEnv, field="reward", bad_value=bad_value)
    env = PettingZooWrapper(make, 2, name="bad")
    try:
        env.step(zeros_action(env))
        with pytest.raises(EnvError) as info:
            env.step(zeros_action(env))
        assert str(info.value) == (
            "env 'bad' returned a bad reward for agent 'agent_1' in env copy 0 at episode step "
            f"2: not numbers ({said})"
        )
    finally:
        env.close()
