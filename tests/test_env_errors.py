"""A broken env stops the run with one line: NaN or inf named by env, agent, field and step;
an exception inside the env by env, call, copy and step; an env of the wrong kind or with
wrong keywords by what would work."""

import csv
import json
import math
import re

import numpy as np
import pytest
import pz_envs
import torch

import mappo.trainer
from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.envs.base import ENV_CALLABLES, EnvError
from mappo.envs.mpe.spread import SpreadEnv
from mappo.envs.pettingzoo.batch import STATE_FALLBACK, PettingZooBatch
from mappo.envs.pettingzoo.layout import inspect_parallel_env
from mappo.errors import ConfigError

MODULE = pz_envs.__name__
SMALL = ["--num-envs", "4", "--minibatch-size", "50", "--total-steps", "400", "--quiet"]


class PoisonedSpread(SpreadEnv):
    """spread that puts `value` into one field of agent 1, copy 2, at step `bad_step`."""

    def __init__(self, num_envs, field, value, bad_step, **kwargs):
        super().__init__(num_envs, **kwargs)
        self.field, self.value, self.bad_step, self.calls = field, value, bad_step, 0

    def step(self, actions):
        result = super().step(actions)
        self.calls += 1
        if self.calls == self.bad_step:
            poisoned = getattr(result, self.field).clone()
            poisoned[2, 1] = self.value
            result = result._replace(**{self.field: poisoned})
        return result


@pytest.mark.parametrize(
    ("field", "name", "value", "bad_step"),
    [("reward", "reward", math.nan, 7), ("obs", "observation", math.inf, 30)],
)
def test_non_finite_env_output_is_named(field, name, value, bad_step) -> None:
    env = PoisonedSpread(4, field, value, bad_step, seed=0)
    trainer = MappoTrainer(MappoConfig(num_envs=4, minibatch_size=64, total_steps=400), env=env)
    before = [p.detach().clone() for p in trainer.parameters]
    with pytest.raises(EnvError) as info:
        trainer.train()
    message = str(info.value)
    assert f"env 'spread' returned {value} in the {name} of agent 'agent_1', env copy 2" in message
    assert f"at step {bad_step}" in message
    if bad_step > 25:  # the first update ran on clean data; the second never did
        assert trainer.updates == 1
    else:
        assert all(torch.equal(a, b) for a, b in zip(before, trainer.parameters, strict=True))


def test_a_live_agent_left_without_a_legal_action_is_named() -> None:
    """All its logits masked alike, the agent drew among its illegal actions."""
    env = PoisonedSpread(4, "action_mask", False, 30, seed=0)
    trainer = MappoTrainer(MappoConfig(num_envs=4, minibatch_size=64, total_steps=400), env=env)
    with pytest.raises(EnvError) as info:
        trainer.train()
    assert str(info.value) == (
        "env 'spread' returned an action mask with no legal action for agent 'agent_1', env "
        "copy 2, at step 30 (counting env.step calls, 0 = reset): an agent that acts needs a "
        "legal action (of each sub-action); mark one that cannot act as not alive"
    )
    assert trainer.updates == 1  # the first rollout's masks were whole


@pytest.mark.parametrize(
    ("field", "critic", "agent"),
    [("final_state", "centralized", "agent_0"), ("final_obs", "local", "agent_1")],
)
def test_non_finite_final_observations_of_a_truncation_are_named(field, critic, agent) -> None:
    """NaN in what the critic reads at the end of a truncated episode (the final state, or
    a local critic's final observation), read only for its bootstrap value, made NaN
    advantages: a DivergenceError telling to lower lr."""
    env = PoisonedSpread(4, field, math.nan, 25, seed=0)  # spread truncates at step 25
    config = MappoConfig(num_envs=4, minibatch_size=64, total_steps=400, critic=critic,
                         bootstrap_time_limits=True)  # fmt: skip
    with pytest.raises(EnvError) as info:
        MappoTrainer(config, env=env).train()
    assert str(info.value).startswith(
        "env 'spread' returned nan in the final_obs or final_state (their value bootstraps a "
        f"truncation) of agent '{agent}', env copy 2, at step 25"
    )


class MisshapenSpread(SpreadEnv):
    """spread whose `step` call `bad_step` raises, or returns `field` replaced by `make(it)`;
    with `bad_step` 0 its reset returns observations one entry too narrow."""

    def __init__(self, num_envs, bad_step, field=None, make=None, **kwargs):
        self.bad_step, self.field, self.make, self.calls = bad_step, field, make, 0
        super().__init__(num_envs, **kwargs)

    def reset(self, seed=None):
        obs = super().reset(seed)
        return obs[..., 1:] if self.bad_step == 0 else obs

    def step(self, actions):
        result = super().step(actions)
        self.calls += 1
        if self.calls != self.bad_step:
            return result
        if self.field is None:
            raise ValueError("boom")
        return result._replace(**{self.field: self.make(getattr(result, self.field))})


@pytest.mark.parametrize(
    ("bad_step", "field", "make", "says"),
    [
        (30, None, None, "failed in step() of step 30 of its copies: ValueError: boom"),
        (3, "reward", lambda r: r[:, :1], "step() 3 returned reward of shape [4, 1], not [4, 3]"),
        (4, "terminated", lambda t: t.float(), "terminated of dtype torch.float32, not torch.bool"),
        (5, "info", None, None),  # not checked: any dict
        (
            6,
            "obs",
            lambda o: o[..., :-1],
            "step() 6 returned obs of shape [4, 3, 17], not [4, 3, 18]",
        ),
        (7, "env_done", lambda d: d.tolist(), "a list as env_done, not a tensor of shape [4]"),
        (
            8,
            "info",
            lambda i: None,
            "step() 8 returned a NoneType as info, not a dict (give {} for none)",
        ),
        (0, None, None, "reset() returned obs of shape [4, 3, 17], not [4, 3, 18]"),
    ],
)
def test_an_env_of_its_own_that_raises_or_breaks_the_contract_is_one_line(
    bad_step, field, make, says
) -> None:
    # A vectorized env of the user's (no PettingZoo layer to catch it): what it raises, and a
    # result of another shape or dtype than the contract's, named before anything reads it.
    config = MappoConfig(num_envs=4, minibatch_size=64, total_steps=400, compile="false")
    if says is None:
        env = MisshapenSpread(4, bad_step, field, lambda info: {"any": 1}, seed=0)
        MappoTrainer(config, env=env).train()
        return
    with pytest.raises(EnvError) as info:
        env = MisshapenSpread(4, bad_step, field, make, seed=0)
        MappoTrainer(config, env=env).train()
    assert str(info.value).startswith("env 'spread' ")
    assert str(info.value).endswith(says)


class TupleSpread(SpreadEnv):
    """spread whose step returns a plain tuple of the result's fields."""

    def step(self, actions):
        return tuple(super().step(actions))


class StartSpread(SpreadEnv):
    """spread whose getter `getter` returns `make(what it returns)`."""

    def __init__(self, num_envs, getter, make, **kwargs):
        self.changed = {getter: make}
        super().__init__(num_envs, **kwargs)

    def _as_changed(self, getter, value):
        return self.changed.get(getter, lambda v: v)(value)

    def get_global_state(self):
        return self._as_changed("get_global_state", super().get_global_state())

    def get_action_mask(self):
        return self._as_changed("get_action_mask", super().get_action_mask())

    def get_alive(self):
        return self._as_changed("get_alive", super().get_alive())


@pytest.mark.parametrize(
    ("getter", "make", "says"),
    [
        ("get_global_state", lambda s: s[:, :-1],
         "get_global_state() returned global_state of shape [4, 53], not [4, 54]"),
        ("get_action_mask", lambda m: m.long(),
         "get_action_mask() returned action_mask of dtype torch.int64, not torch.bool"),
        ("get_alive", lambda a: a[:, 0], "get_alive() returned alive of shape [4], not [4, 3]"),
    ],
)  # fmt: skip
def test_what_an_env_gives_after_its_reset_is_checked_as_a_step(getter, make, says) -> None:
    """The state, action mask and alive flags read after the reset were not checked: a
    matrix-shape error in the critic, masked_fill's "only supports boolean masks", or an
    unpacking error in the episode tracker."""
    config = MappoConfig(num_envs=4, minibatch_size=64, total_steps=400, compile="false")
    with pytest.raises(EnvError, match=f"^env 'spread' {re.escape(says)}$"):
        MappoTrainer(config, env=StartSpread(4, getter, make, seed=0))


def test_a_step_that_returns_no_step_result_is_one_line() -> None:
    config = MappoConfig(num_envs=4, minibatch_size=64, total_steps=400, compile="false")
    with pytest.raises(EnvError, match=r"^env 'spread' step\(\) 1 returned a tuple, not a "
                       r"MultiAgentStepResult \(it has none of its fields\)$"):  # fmt: skip
        MappoTrainer(config, env=TupleSpread(4, seed=0)).train()


def test_cli_reports_env_errors_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        mappo.trainer, "make_env", lambda *a, **k: PoisonedSpread(4, "reward", math.nan, 3, seed=0)
    )
    code = main(
        [
            "train",
            "--run-dir",
            str(tmp_path / "r"),
            "--num-envs",
            "4",
            "--minibatch-size",
            "64",
            "--total-steps",
            "400",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert err.strip().startswith("mappo: env error: env 'spread' returned nan in the reward")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    ("call", "episode", "broken_step", "named_step"),
    [("step", 7, 3, 3), ("state", 7, 3, 3), ("reset", 8, 0, 5)],
)
def test_an_exception_in_the_env_is_one_line_after_the_last_checkpoint(
    call, episode, broken_step, named_step, num_workers, tmp_path, capsys
) -> None:
    # Copy 2 (seed 9; worker 1's first copy with 2 workers) breaks in the second rollout
    # (4 copies x 25 steps per update, episodes of 5 steps; the first two resets are the
    # wrapper's and the trainer's, so episode 7 starts at step 25 and episode 8 at step 30).
    run = tmp_path / "r"
    kwargs = {"call": call, "episode": episode, "step": broken_step}
    code = main(
        [
            "train",
            "--env",
            f"{MODULE}:BrokenEnv",
            "--env-kwargs",
            json.dumps(kwargs),
            "--run-dir",
            str(run),
            "--seed",
            "7",
            "--num-workers",
            str(num_workers),
            *SMALL,
        ]
    )
    assert code == 3
    hint = f"; {STATE_FALLBACK}" if call == "state" else ""
    assert capsys.readouterr().err == (
        f"mappo: env error: env '{MODULE}:BrokenEnv' failed in {call}() of env copy 2 at "
        f"episode step {named_step}: RuntimeError: {call} broke{hint}; the checkpoint holds "
        f"env step 100: fix that, then mappo train --resume {run}\n"
    )
    # The first update's checkpoint and metrics stay; nothing of the broken rollout is saved.
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 100
    with open(run / "metrics.csv", newline="") as handle:
        assert [row["env_steps"] for row in csv.DictReader(handle)] == ["100"]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_debug_keeps_the_env_traceback(num_workers, tmp_path) -> None:
    with pytest.raises(EnvError, match="failed in step") as info:
        main(
            [
                "--debug",
                "train",
                "--env",
                f"{MODULE}:BrokenEnv",
                "--run-dir",
                str(tmp_path / "r"),
                "--seed",
                "7",
                "--num-workers",
                str(num_workers),
                *SMALL,
            ]
        )
    # In process the env's exception is the cause; from a worker, its traceback is a note.
    shown = repr(info.value.__cause__) if num_workers == 0 else "\n".join(info.value.__notes__)
    assert "step broke" in shown and "the env's second line" in shown


@pytest.mark.parametrize("env", ["StateFailsAtEpisodeEndEnv", "StateFailsWhenAgentsAreGoneEnv"])
def test_env_whose_state_fails_trains_when_the_critic_does_not_use_it(env) -> None:
    config = MappoConfig(
        env=f"{MODULE}:{env}",
        num_envs=2,
        minibatch_size=50,
        total_steps=100,
        use_global_state=False,
    )
    trainer = MappoTrainer(config)
    try:
        assert trainer.env.spec.state_source == "concat_obs"  # the probe did not ask either
        trainer.train()
        assert trainer.env_steps == 100
        assert [copy.state_calls for copy in trainer.env.local_envs] == [0, 0]
    finally:
        trainer.env.close()


def test_eval_never_asks_for_the_state(tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--env",
                f"{MODULE}:StatefulEnv",
                "--use-global-state",
                "true",
                "--run-dir",
                str(run),
                *SMALL,
            ]
        )
        == 0
    )
    assert load_checkpoint(run / "checkpoint.pt")["config"]["global_state_dim"] == 3

    def no_state(self):
        raise AssertionError("state() called")

    monkeypatch.setattr(pz_envs.StatefulEnv, "state", no_state)
    assert main(["eval", str(run), "--episodes", "4"]) == 0
    assert "over 4 episodes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("env", "step", "error"),
    [
        ("StateFailsAtEpisodeEndEnv", 5, "IndexError: the episode is over"),
        ("StateFailsWhenAgentsAreGoneEnv", 2, "ValueError: an agent is gone"),
    ],
)
def test_env_whose_state_fails_stops_in_one_line_when_the_critic_uses_it(
    env, step, error, tmp_path, capsys
) -> None:
    code = main(
        [
            "train",
            "--env",
            f"{MODULE}:{env}",
            "--run-dir",
            str(tmp_path / "r"),
            "--use-global-state",
            "true",
            *SMALL,
        ]
    )
    assert code == 3
    assert capsys.readouterr().err == (
        f"mappo: env error: env '{MODULE}:{env}' failed in state() of env copy 0 at episode "
        f"step {step}: {error}; the critic reads env.state(); --use-global-state false gives "
        "it the agents' observations instead and never calls it; no checkpoint was written: "
        "fix that, then start it again with the same command and --force\n"
    )


def test_an_episode_that_ends_in_termination_never_asks_for_the_state_after_it(tmp_path) -> None:
    # As multiwalker: every walker terminates when one falls, and state() then raises. Nothing
    # bootstraps from a terminated end, so training with the env's state runs through.
    run = tmp_path / "r"
    env = f"{MODULE}:StateFailsAfterTerminationEnv"
    assert (
        main(["train", "--env", env, "--use-global-state", "true", "--run-dir", str(run), *SMALL])
        == 0
    )
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 400
    batch = PettingZooBatch(
        pz_envs.StateFailsAfterTerminationEnv,
        inspect_parallel_env(pz_envs.StateFailsAfterTerminationEnv(), env),
        num_copies=1,
    )
    arrays, _ = batch.reset(seed=0)
    calls = []
    for _ in range(5):
        before = arrays["state"].copy()  # [1, 3]: [offset, episode, t]
        arrays, *_ = batch.step(np.zeros((1, 2, 1), np.int64))
        calls.append(batch.envs[0].state_calls)
    # One state() per step, from reset on; at the terminated end (t = 5) only the new
    # episode's, and the final state repeats the last one read (t = 4).
    assert calls == [2, 3, 4, 5, 6]
    assert arrays["env_done"][0] and np.array_equal(arrays["final_state"], before)
    assert before[0, 2] == 4 and arrays["state"][0, 1:].tolist() == [2, 0]


@pytest.mark.parametrize(
    ("env", "kwargs", "message"),
    [
        (
            f"{MODULE}:CounterEnv",
            {"nope": 1},
            f"config key 'env_kwargs' = {{'nope': 1}}: env '{MODULE}:CounterEnv' refused them "
            "(CounterEnv.__init__() got an unexpected keyword argument 'nope'); it takes "
            "num_agents, episode_length",
        ),
        (
            "mpe2.simple_spread_v3:parallel_env",
            {"M": 4},
            "config key 'env_kwargs' = {'M': 4}: env 'mpe2.simple_spread_v3:parallel_env' refused "
            "them (raw_env.__init__() got an unexpected keyword argument 'M'); pass only keywords "
            "it takes",
        ),
        (
            f"{MODULE}:not_a_parallel_env",
            {},
            f"env '{MODULE}:not_a_parallel_env' built a dict, not a PettingZoo ParallelEnv (it has "
            f"no possible_agents, reset, step); {ENV_CALLABLES}",
        ),
        (
            f"{MODULE}:not_a_vectorized_env",
            {},
            f"env '{MODULE}:not_a_vectorized_env' takes num_envs, so it was called as a vectorized "
            f"env, but it returned a dict, not a mappo MultiAgentEnv; {ENV_CALLABLES}",
        ),
        # The built-in tasks' own options: a traceback (num_agents 0), or episodes of one
        # step while the run said "no time limit" (max_cycles 0), before.
        (
            "spread",
            {"num_agents": 0},
            "config key 'env_kwargs': env 'spread' num_agents = 0 must be an integer >= 1",
        ),
        (
            "spread",
            {"max_cycles": 0},
            "config key 'env_kwargs': env 'spread' max_cycles = 0 must be an integer >= 1",
        ),
        (
            "reference",
            {"local_ratio": 2},
            "config key 'env_kwargs': env 'reference' local_ratio = 2 must be in [0, 1]",
        ),
        (
            "gymnasium:CartPole-v1",
            {},
            "Gymnasium env 'CartPole-v1' has a Box observation space and a Discrete action "
            "space; a multi-agent env needs Tuples with one space per agent",
        ),
        (
            "gymnasium.envs.classic_control.cartpole:CartPoleEnv",
            {},
            "env 'gymnasium.envs.classic_control.cartpole:CartPoleEnv' built a single-agent "
            f"Gymnasium env (CartPoleEnv), not a multi-agent one; {ENV_CALLABLES}",
        ),
    ],
)
def test_env_of_the_wrong_kind_or_with_wrong_keywords_is_one_line(
    env, kwargs, message, tmp_path, capsys
) -> None:
    code = main(
        [
            "train",
            "--env",
            env,
            "--env-kwargs",
            json.dumps(kwargs),
            "--run-dir",
            str(tmp_path / "r"),
            *SMALL,
        ]
    )
    assert code == 2
    assert capsys.readouterr().err == f"mappo: error: {message}\n"
    assert not (tmp_path / "r").exists()  # refused before any work


BROKEN_ENVS = """
from pz_envs import CounterEnv


class NoDisplay(CounterEnv):
    def __init__(self, **kwargs):
        raise RuntimeError("cannot open display :0")


class Buggy(CounterEnv):
    def __init__(self, num_agents=2):
        None + num_agents
"""


@pytest.mark.parametrize(
    ("module", "source", "callable_name", "says"),
    [
        ("broken_a", BROKEN_ENVS, "NoDisplay", "could not be built: RuntimeError: cannot open "
         "display :0"),
        # A TypeError of its own code, with keywords it takes: not blamed on --env-kwargs.
        ("broken_b", BROKEN_ENVS, "Buggy", "could not be built: TypeError: unsupported operand "
         "type(s) for +: 'NoneType' and 'int'"),
        ("broken_c", "raise RuntimeError('no licence')\n", "env",
         "importing module 'broken_c' failed: RuntimeError: no licence"),
        ("broken_d", "def env(:\n", "env",
         "importing module 'broken_d' failed: SyntaxError: invalid syntax (broken_d.py, line 1)"),
    ],
)  # fmt: skip
def test_an_env_whose_own_code_fails_is_one_env_error_line(
    module, source, callable_name, says, tmp_path, monkeypatch, capsys
) -> None:
    """Its import or its constructor raising (a display it cannot open, a licence check, a
    bug) was a raw traceback, or a TypeError blamed on keywords never given; it is one env
    error line (exit code 3), and --debug gives the traceback of the env's own error."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = f"{module}:{callable_name}"
    run = ["train", "--env", env, "--run-dir", str(tmp_path / "r"), *SMALL]
    assert main(run) == 3
    assert capsys.readouterr().err == (
        f"mappo: env error: env '{env}'{':' if 'importing' in says else ''} {says}\n"
    )
    with pytest.raises(EnvError) as raised:
        main(["--debug", *run])
    assert type(raised.value.__cause__) in (RuntimeError, TypeError, SyntaxError)


CHECKED_ENV = """
from pz_envs import CounterEnv


class Checked(CounterEnv):
    def __init__(self, num_agents=2, size=-1):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        super().__init__(num_agents=num_agents)
"""


def test_a_value_the_env_refuses_is_bad_input_when_the_user_gave_it(
    tmp_path, monkeypatch, capsys
) -> None:
    """A keyword the env takes, with a value its own check refuses (lbforaging's players 0):
    an env error (exit code 3) blamed on the env, where JaxMARL and VMAS said it was the
    user's --env-kwargs (exit code 2). It is so for every env; without --env-kwargs the
    same check failing is the env's own doing."""
    (tmp_path / "checked.py").write_text(CHECKED_ENV)
    monkeypatch.syspath_prepend(str(tmp_path))
    run = ["train", "--env", "checked:Checked", "--run-dir", str(tmp_path / "r"), *SMALL]
    assert main([*run, "--env-kwargs", '{"size": 0}']) == 2
    assert capsys.readouterr().err == (
        "mappo: error: config key 'env_kwargs' = {'size': 0}: env 'checked:Checked' refused "
        "them (ValueError: size must be >= 1, got 0)\n"
    )
    assert main(run) == 3
    assert capsys.readouterr().err == (
        "mappo: env error: env 'checked:Checked' could not be built: ValueError: size must be "
        ">= 1, got -1\n"
    )
    # A value of another type than the env's code takes fails there with a TypeError.
    assert main([*run, "--env-kwargs", '{"size": "3"}']) == 2
    assert "env 'checked:Checked' refused them (TypeError: '<' not supported" in (
        capsys.readouterr().err
    )


def test_running_out_of_memory_is_one_line_saying_how_much(monkeypatch, tmp_path, capsys) -> None:
    """torch's CPU allocator refusing (a hidden_dim or num_envs far too large) was a raw
    traceback; numpy's and CUDA's errors say their sizes their own way."""
    from mappo.errors import memory_line

    refusal = RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
        "memory: you tried to allocate 4000000000000 bytes. Error code 12"
    )

    def refused(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(mappo.trainer.MappoTrainer, "__init__", refused)
    assert main(["train", "--run-dir", str(tmp_path / "r"), *SMALL]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: out of memory: it asked for 3,725.3 GiB at once; lower num_envs, "
        "rollout_steps, hidden_dim or minibatch_size (--debug shows where)\n"
    )
    numpy_says = MemoryError("Unable to allocate 1.82 TiB for an array with shape (10, 10)")
    assert memory_line(numpy_says).startswith("out of memory: it asked for 1.82 TiB at once;")
    cuda_says = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; ...)")
    assert memory_line(cuda_says).startswith("out of memory: it asked for 2.00 GiB at once;")


def test_a_missing_jumanji_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import mappo.envs.jumanji as bridge
    from mappo.envs.registry import make_env

    monkeypatch.setattr(bridge, "_MISSING", ModuleNotFoundError("no jumanji", name="jumanji"))
    with pytest.raises(ConfigError, match=r"pip install 'mappo\[jumanji\]' \(jumanji is missing\)"):
        make_env("jumanji:LevelBasedForaging-v0", 2)


def test_an_env_object_of_another_kind_is_refused_in_one_line() -> None:
    """A PettingZoo env, or anything not a `MultiAgentEnv`, handed to the trainer failed deep
    inside with "'...' object has no attribute 'spec'"."""
    config = MappoConfig(num_envs=2, minibatch_size=0, compile="false")
    with pytest.raises(ConfigError) as refused:
        MappoTrainer(config, env=object())  # type: ignore[arg-type]
    assert str(refused.value) == (
        "env: object is not a mappo MultiAgentEnv; give one (a PettingZoo env: "
        "mappo.PettingZooWrapper(make_env, num_envs)), or none to build config.env"
    )
