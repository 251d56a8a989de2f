"""The scripts in examples/ run, on a tiny budget, and do what they say."""

from __future__ import annotations

import importlib.util
import json
import math
import runpy
import sys
import tomllib
from pathlib import Path

import pytest

from mappo import Run
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.evaluation import evaluate_run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load_example(name: str):
    """Import examples/<name>.py as module `name` (the registry can then import it too)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_pettingzoo_env_learns_as_a_script(monkeypatch, capsys) -> None:
    # Run as __main__, as `python examples/custom_pettingzoo_env.py` does, so the env is
    # found as `__main__:MatchEnv`.
    monkeypatch.setenv("MAPPO_EXAMPLE_STEPS", "4000")
    runpy.run_path(str(EXAMPLES / "custom_pettingzoo_env.py"), run_name="__main__")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    final = float(line.split()[2])
    assert final > 3.5  # of 5; guessing gets 1.67


def test_custom_env_agents_are_rewarded_for_their_target() -> None:
    example = load_example("custom_pettingzoo_env")
    env = example.MatchEnv()
    obs, _ = env.reset(seed=0)
    targets = {a: int(o.argmax()) for a, o in obs.items()}
    _, rewards, _, _, _ = env.step({"left": targets["left"], "right": targets["right"] + 1})
    assert rewards == {"left": 1.0, "right": 0.0}


def test_python_api_callback_sees_every_update_and_stops_training(tmp_path) -> None:
    example = load_example("python_api")
    summary, seen = example.main(tmp_path / "full", total_steps=1600, target_return=0.0)
    assert [m.env_steps for m in seen] == [800, 1600]  # 32 envs x 25 steps per update
    assert summary.finished and summary.env_steps == 1600
    # Any finite return reaches -1000: the callback stops the run after one update, saved.
    summary, seen = example.main(tmp_path / "stopped", total_steps=1600, target_return=-1000.0)
    assert len(seen) == 1 and summary.env_steps == 800 and not summary.finished
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["env_steps"] == 800
    assert Run.resume(tmp_path / "stopped").train(quiet=True).env_steps == 1600


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    load_example("python_api").main(tmp_path, total_steps=800)
    return tmp_path / "checkpoint.pt"


def test_load_and_act_returns_what_eval_measures(checkpoint) -> None:
    example = load_example("load_and_act")
    returns = example.main(checkpoint, episodes=2, seed=7)
    assert len(returns) == 2
    # One env copy, seed 7, greedy: the episodes `mappo eval --deterministic` runs.
    expected = evaluate_run(checkpoint.parent, episodes=1, deterministic=True, seed=7)
    assert returns[0] == pytest.approx(expected.returns[0], abs=1e-5)


def test_own_vectorized_env_trains_and_evaluates_through_the_cli(tmp_path, capsys) -> None:
    load_example("own_vectorized_env")  # importable by name, as with PYTHONPATH=examples
    run = tmp_path / "run"
    env = ["--env", "own_vectorized_env:LineEnv"]
    assert (
        main(
            [
                "train",
                *env,
                "--env-kwargs",
                '{"num_agents": 3}',
                "--run-dir",
                str(run),
                "--total-steps",
                "8000",
                "--num-envs",
                "16",
                "--seed",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    facts = tomllib.loads((run / "config.toml").read_text())["read_off_env"]
    assert (facts["num_agents"], facts["obs_dim"], facts["global_state_dim"]) == (3, 2, 6)
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "64", "--deterministic", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # The first update's episodes (a near-random policy) score about -13.7.
    assert result["mean_episode_return"] > -5.5
    # Its own keywords are checked like any env's.
    assert (
        main(["train", *env, "--env-kwargs", '{"agents": 3}', "--run-dir", str(tmp_path / "bad")])
        == 2
    )
    assert capsys.readouterr().err == (
        "mappo: error: config key 'env_kwargs' = {'agents': 3}: env 'own_vectorized_env:LineEnv' "
        "refused them (LineEnv.__init__() got an unexpected keyword argument 'agents'); it "
        "takes num_agents, episode_length\n"
    )


def test_evaluation_of_a_handed_env_is_refused_unless_config_env_builds_it(tmp_path) -> None:
    """Evaluation during training plays copies of `config.env`: for an env handed to
    MappoTrainer that `config.env` does not build, it failed after the first update with a
    matrix-shape error (another env), or scored another task without a word (another
    episode limit). Refused before any work; a config that builds the same env trains."""
    from mappo import ConfigError, MappoConfig, MappoTrainer

    line = load_example("own_vectorized_env")
    small = {"num_envs": 4, "rollout_steps": 20, "total_steps": 80, "eval_interval": 80,
             "eval_episodes": 2, "minibatch_size": 0, "compile": "false"}  # fmt: skip
    refused = (r"^config key 'eval_interval' = 80: evaluation plays copies of config.env "
               r"'spread' \(env_kwargs \{\}\), which differ from the env given to "
               r"MappoTrainer \(agent_names .*obs_dim 18 against 2")  # fmt: skip
    with pytest.raises(ConfigError, match=refused):
        MappoTrainer(MappoConfig(**small), env=line.LineEnv(4))
    config = MappoConfig(env="own_vectorized_env:LineEnv", **small)
    with pytest.raises(
        ConfigError, match=r"\(max_episode_steps 20 against 5\): set env and env_kwargs"
    ):
        MappoTrainer(config, env=line.LineEnv(4, episode_length=5))
    built = config.replace(env_kwargs={"episode_length": 5})
    trainer = MappoTrainer(built, env=line.LineEnv(4, episode_length=5))
    assert math.isfinite(trainer.train()[-1].eval_return)
