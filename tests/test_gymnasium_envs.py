"""Gymnasium envs with Tuple spaces over agents (`gymnasium:module:id`), checked by number.

The envs are `gym_envs.TupleCounterEnv` and its variants: agent i observes
`[offset, t, i, 100, ...]` (3 + i floats) and acts in Discrete(3 + i); action
j is legal at step t when `t + j` is even; rewards are `10 * i + t`.
"""

from __future__ import annotations

import csv
import json
import warnings

import gym_envs
import pytest
import torch
from gymnasium.utils import seeding

from mappo import MappoConfig, MappoTrainer
from mappo.cli import main
from mappo.config import ConfigError
from mappo.envs.pettingzoo.gymnasium_tuple import TupleEnvAsParallel
from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
from mappo.envs.registry import make_env

ENV = f"gymnasium:{gym_envs.__name__}:TupleCounter-v0"


def gym_env(
    env_id: str = "TupleCounter-v0", num_envs: int = 2, seed: int | None = 0, **env_kwargs
) -> PettingZooWrapper:
    """`num_envs` in-process copies of a test env, built by name through the registry."""
    env = make_env(
        f"gymnasium:{gym_envs.__name__}:{env_id}", num_envs, seed=seed, env_kwargs=env_kwargs
    )
    assert isinstance(env, PettingZooWrapper)
    return env


def offsets(seed: int, draws: int) -> list[int]:
    """The `offset`s a TupleCounterEnv reset with `seed` draws at its first `draws` resets."""
    rng, _ = seeding.np_random(seed)
    return [int(rng.integers(1000)) for _ in range(draws)]


def legal_at(t: int) -> torch.Tensor:
    """Masks `[3, 5]` of the three agents at step t: 3, 4 and 5 own actions, padded to 5."""
    own = torch.arange(5)[None, :] < torch.tensor([3, 4, 5])[:, None]
    return own & ((t + torch.arange(5)) % 2 == 0)


def received(env: PettingZooWrapper, copy: int = 0) -> list[tuple[int, ...]]:
    """The joint actions copy `copy`'s Gymnasium env was sent, step by step."""
    return env.local_envs[copy].env.unwrapped.received


def test_layout_padding_masks_and_per_agent_rewards() -> None:
    env = gym_env()
    spec = env.spec
    assert spec.agent_names == ("agent_0", "agent_1", "agent_2")
    assert spec.obs_sizes == (3, 4, 5) and spec.obs_dim == 5 and spec.action.nvec == (5,)
    assert spec.state_source == "concat_obs" and spec.state_dim == 15
    assert env.layout.dict_obs == (True, True, True)  # masks in the info: Dict observations
    offset = offsets(0, 1)[0]
    assert env.get_observation(2)[0].tolist() == [offset, 0, 2, 100, 101]
    assert env.get_observation(0)[0].tolist() == [offset, 0, 0, 0, 0]  # 3 floats, 2 of padding
    assert torch.equal(env.get_action_mask(), legal_at(0).expand(2, 3, 5))
    r = env.step(torch.tensor([[2, 2, 4], [0, 0, 0]]))  # legal at t 0 (the env asserts it)
    assert received(env, 0) == [(2, 2, 4)] and received(env, 1) == [(0, 0, 0)]
    assert r.obs[0].tolist() == [
        [offset, 1, 0, 0, 0],
        [offset, 1, 1, 100, 0],
        [offset, 1, 2, 100, 101],
    ]
    assert torch.equal(r.state, r.obs.reshape(2, 15))
    assert r.reward.tolist() == [[1.0, 11.0, 21.0]] * 2
    assert torch.equal(r.action_mask, legal_at(1).expand(2, 3, 5))
    env.close()


def test_a_tuple_env_draws_no_warning_from_gymnasiums_single_agent_checker() -> None:
    """Gymnasium's passive checker warned on every run of lbforaging and rware that the
    reward (one per agent) must be a number; it is off unless asked for."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym_env()
        env.step(torch.tensor([[2, 2, 4], [0, 0, 0]]))
        env.close()
    assert [str(w.message) for w in caught] == []
    checked = gym_env(disable_env_checker=False)
    with pytest.warns(UserWarning, match="The reward returned by `step\\(\\)` must be a float"):
        checked.step(torch.tensor([[2, 2, 4], [0, 0, 0]]))
    checked.close()


def test_team_bool_ends_the_episode_for_every_agent_and_the_copy_resets() -> None:
    env = gym_env(reward="team")
    first = [offsets(j, 2) for j in range(2)]
    for t in range(1, 5):
        actions = legal_at(t - 1).int().argmax(-1).expand(2, 3)  # each agent's first legal
        r = env.step(actions)
        assert r.reward.tolist() == [[float(t)] * 3] * 2  # the team float, to every agent
        assert (r.terminated == (t == 4)).all() and not r.truncated.any()
        assert (r.env_done == (t == 4)).all() and r.alive.all()
    # The new episode: t 0 and each copy's next offset from its own seeded RNG.
    assert r.obs[:, 0, :2].tolist() == [[first[0][1], 0], [first[1][1], 0]]
    assert (r.final_obs[:, :, 1] == 4).all()  # the finished episode's last view
    env.close()


def test_per_agent_flags_let_an_agent_leave_and_send_it_its_no_op() -> None:
    env = gym_env(flags="agents")  # agent_1 terminates at step 2; the others truncate at 4
    for t in range(1, 5):
        r = env.step(legal_at(t - 1).int().argmax(-1).expand(2, 3))
        assert (r.terminated[:, 1] == (t == 2)).all() and not r.terminated[:, [0, 2]].any()
        assert (r.truncated[:, [0, 2]] == (t == 4)).all() and not r.truncated[:, 1].any()
        if t < 4:
            assert r.alive[:, [0, 2]].all() and (r.alive[:, 1] == (t < 2)).all()
            assert not r.env_done.any()
        # agent_1 earns 10 + t until it leaves, then nothing.
        assert r.reward[0].tolist() == [t, 10.0 + t if t <= 2 else 0.0, 20.0 + t]
    assert r.env_done.all() and r.alive.all()  # the next episode
    # After it left, agent_1 is sent its only legal action, the last of its 4 (the env asserts).
    assert [step[1] for step in received(env)] == [0, 1, 3, 3]
    env.close()


def test_masks_from_get_avail_actions() -> None:
    env = gym_env("TupleCounterMethodMask-v0")
    assert env.layout.dict_obs == (True, True, True)
    assert torch.equal(env.get_action_mask(), legal_at(0).expand(2, 3, 5))
    r = env.step(torch.tensor([[0, 2, 4]] * 2))
    assert torch.equal(r.action_mask, legal_at(1).expand(2, 3, 5))
    env.close()


def test_without_masks_observations_are_boxes_and_only_own_actions_are_masked() -> None:
    env = gym_env(masks=False)
    assert env.layout.dict_obs == (False, False, False)
    own = torch.arange(5)[None, :] < torch.tensor([3, 4, 5])[:, None]
    r = env.step(torch.tensor([[1, 3, 4]] * 2))  # illegal under the masks, which are off
    assert torch.equal(r.action_mask, own.expand(2, 3, 5))
    assert received(env) == [(1, 3, 4)]
    env.close()


def test_time_limit_truncates_the_team_and_sets_the_episode_length() -> None:
    env = gym_env("TupleCounterTimeLimit-v0")  # registered with max_episode_steps=3
    assert env.spec.max_episode_steps == 3
    for t in range(1, 4):
        r = env.step(legal_at(t - 1).int().argmax(-1).expand(2, 3))
    assert r.truncated.all() and not r.terminated.any() and r.env_done.all()
    env.close()


def test_a_limit_kept_as_the_envs_own_max_episode_steps_is_its_episode_length() -> None:
    """lbforaging keeps its limit in `_max_episode_steps` only: before, mappo found none and
    `--critic-time-left true` was refused for it ("declares no time limit")."""
    env = gym_env("OwnLimit-v0")
    assert env.spec.max_episode_steps == 6
    env.close()
    config = MappoConfig(
        env=ENV.replace("TupleCounter", "OwnLimit"),
        num_envs=2,
        minibatch_size=0,
        bootstrap_time_limits=False,
        critic_time_left=True,
    )
    trainer = MappoTrainer(config)
    assert trainer.config.critic_time_left is True
    trainer.env.close()


def test_global_state_from_get_state() -> None:
    env = gym_env("TupleCounterState-v0")
    assert env.spec.state_source == "env" and env.spec.state_dim == 2
    r = env.step(torch.tensor([[0, 0, 0]] * 2))
    assert r.state.tolist() == [[offsets(j, 1)[0], 1.0] for j in range(2)]
    env.close()


def test_copies_are_seeded_and_reset_independently() -> None:
    env = gym_env(num_envs=3, seed=0, episode_length=None, masks=False)  # lengths 2, 3, 4
    lengths = torch.tensor([2, 3, 4])
    draws = [offsets(j, 5) for j in range(3)]  # copy 0 starts 4 more episodes
    episode = [0, 0, 0]
    for t in range(1, 9):
        r = env.step(torch.zeros(3, 3, dtype=torch.long))
        done = t % lengths == 0
        assert r.env_done.tolist() == done.tolist()
        assert r.obs[:, 0, 1].tolist() == torch.where(done, 0, t % lengths).tolist()
        episode = [e + int(d) for e, d in zip(episode, done.tolist(), strict=True)]
        assert r.obs[:, 0, 0].tolist() == [draws[j][episode[j]] for j in range(3)]
    env.close()


def test_workers_give_the_same_tensors_as_in_process() -> None:
    local = gym_env(num_envs=4, seed=5, episode_length=None, flags="agents")
    pooled = make_env(
        ENV, 4, seed=5, num_workers=2, env_kwargs={"episode_length": None, "flags": "agents"}
    )
    try:
        for _ in range(7):
            actions = local.get_action_mask().int().argmax(-1)  # first legal action each
            a, b = local.step(actions), pooled.step(actions)
            for field in a._fields[:-1]:  # every tensor; `info` is a dict
                assert torch.equal(getattr(a, field), getattr(b, field)), field
    finally:
        local.close()
        pooled.close()


def test_idle_action_of_each_kind_of_space() -> None:
    env = TupleEnvAsParallel(gym_envs.MixedActionEnv())
    assert env.idle_action(0) == 1  # Discrete(3, start=1): its first action
    assert env.idle_action(1).tolist() == [1, 2]  # MultiDiscrete's starts
    assert env.idle_action(2).tolist() == [1.0, 1.0]  # Box [1, 2]^2: the point nearest 0


# ------------------------------------------------------------------ training and the CLI


def test_training_never_takes_a_masked_action() -> None:
    config = MappoConfig(
        env=ENV, num_envs=4, rollout_steps=10, minibatch_size=40, update_epochs=2, total_steps=120
    )
    trainer = MappoTrainer(config)
    metrics = trainer.train()  # the env asserts every action it receives is legal
    buf = trainer.buffer
    taken = buf.actions.flatten(0, 1).squeeze(-1)  # [T*E, A]
    legal = buf.action_masks.flatten(0, 1)  # [T*E, A, K]
    assert (~legal).any() and torch.gather(legal, -1, taken.unsqueeze(-1)).all()
    # Every episode: agent i earns 10 i + t for t = 1..4, so the mean return is 50.
    assert [m.episode_return for m in metrics if m.episodes] == [50.0] * 3
    trainer.env.close()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_cli_trains_evaluates_and_resumes(num_workers, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    argv = [
        "train",
        "--env",
        ENV,
        "--total-steps",
        "160",
        "--num-envs",
        "4",
        "--rollout-steps",
        "10",
        "--minibatch-size",
        "0",
        "--num-workers",
        str(num_workers),
        "--quiet",
        "--run-dir",
        str(run),
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["env_steps"]) for r in rows] == [40, 80, 120, 160]
    assert sum(int(r["episodes"]) for r in rows) == 40  # 4 copies x 40 steps / 4 per episode
    assert {float(r["episode_return"]) for r in rows} == {50.0}
    assert MappoConfig.load(run / "config.toml").env == ENV
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["episodes"], result["mean_episode_return"]) == (6, 50.0)
    assert main(["train", "--resume", str(run), "--total-steps", "240", "--quiet"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["env_steps"]) for r in rows][-2:] == [200, 240]


def test_unknown_id_is_one_line_naming_it_and_the_close_ones(tmp_path, capsys) -> None:
    name = f"gymnasium:{gym_envs.__name__}:TupleCountr-v0"
    assert main(["train", "--env", name, "--quiet", "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: env '{name}': no Gymnasium env 'TupleCountr-v0' is registered after "
        f"importing {gym_envs.__name__}; did you mean 'TupleCounter-v0' or "
        "'TupleCounterState-v0' or 'TupleCounterTimeLimit-v0'?\n"
    )
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            f"gymnasium:{gym_envs.__name__}:Nope-v0",
            f"registered after importing {gym_envs.__name__}; {gym_envs.__name__} registers "
            "TupleCounter-v0, TupleCounterMethodMask-v0, TupleCounterState-v0, "
            "TupleCounterTimeLimit-v0",
        ),
        (
            "gymnasium:Nope-v0",
            "no Gymnasium env 'Nope-v0' is registered; name the module that "
            "registers it: gymnasium:<module>:Nope-v0",
        ),
        ("gymnasium:no_such_module_xyz:Nope-v0", "cannot import module 'no_such_module_xyz'"),
    ],
)
def test_registry_errors_name_the_env_and_what_would_work(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_env(name, 2)
    assert str(info.value).startswith(f"env '{name}': ") and message in str(info.value)


def test_a_single_agent_env_is_refused() -> None:
    with pytest.raises(
        ValueError,
        match="Gymnasium env 'CartPole-v1' has a Box observation "
        "space and a Discrete action space; a multi-agent env needs Tuples",
    ):
        make_env("gymnasium:CartPole-v1", 2)


def test_wrong_number_of_rewards_is_named(monkeypatch) -> None:
    inner = gym_envs.TupleCounterEnv(num_agents=2, masks=False)
    env = TupleEnvAsParallel(inner)
    env.reset(seed=0)
    monkeypatch.setattr(
        inner, "step", lambda actions: (inner.observe(), [1.0, 2.0, 3.0], False, False, {})
    )
    with pytest.raises(ValueError, match="returned 3 rewards for 2 agents"):
        env.step({"agent_0": 0, "agent_1": 0})


@pytest.mark.parametrize(
    "env_id", ["lbforaging:Foraging-8x8-2p-2f-coop-v3", "rware:rware-tiny-2ag-v2"]
)
def test_epymarls_envs_score_up_to_their_limit_which_they_end_as_a_terminal_step(
    env_id: str,
) -> None:
    """Both packages end their time limit with `terminated` (never `truncated`): `auto`
    said "bootstrap_time_limits = true" though no cut was ever bootstrapped, and gave
    the critic no time left; EPyMARL's MAPPO also trains on the common reward."""
    pytest.importorskip(env_id.partition(":")[0])
    config = MappoConfig(env=f"gymnasium:{env_id}", num_envs=1, minibatch_size=0)
    trainer = MappoTrainer(config)
    limit = trainer.env.spec.max_episode_steps
    assert limit in (50, 500)
    assert not trainer.config.bootstrap_time_limits and trainer.config.critic_time_left
    assert trainer.config.team_reward
    for _ in range(limit):
        result = trainer.env.step(torch.zeros(1, 2, dtype=torch.long))  # agents stand still
    assert result.env_done.all() and result.terminated.all() and not result.truncated.any()
    trainer.env.close()
