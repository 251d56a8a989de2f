"""Evaluation during training: greedy episodes every `eval_interval` env steps, best.pt."""

import csv
import json
import math
import shutil
import statistics

import pytest
import torch
from test_save_load import _assert_same_training, _train_stopped_after_two_updates

from mappo.checkpoint import load_checkpoint, save_checkpoint
from mappo.cli import main
from mappo.config import ConfigError, MappoConfig
from mappo.envs.registry import make_env
from mappo.evaluation import evaluate, load_run
from mappo.plotting import read_run
from mappo.policy import load_policy
from mappo.run import Run
from mappo.trainer import EVAL_SEED_OFFSET

# 16 envs x 25 steps: 400 env steps per update.
RUN = ["--total-steps", "2000", "--num-envs", "16", "--seed", "7", "--quiet"]
EVAL = ["--eval-interval", "700", "--eval-episodes", "8"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _evaluations(run_dir) -> dict[int, float]:
    """env_steps → eval_return of the rows where an evaluation ran."""
    return {
        int(r["env_steps"]): float(r["eval_return"]) for r in _rows(run_dir) if r["eval_return"]
    }


def _greedy_return(checkpoint, episodes: int = 8, seed: int = 7 + EVAL_SEED_OFFSET) -> float:
    """`evaluate` run separately on a saved policy, as the run evaluated it."""
    policy, env = load_policy(
        checkpoint,
        lambda config: make_env(
            config.env, episodes, config.device, seed, config.env_kwargs, use_state=False
        ),
    )
    return statistics.fmean(evaluate(policy, env, episodes, deterministic=True, seed=seed))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run without and with evaluation."""
    root = tmp_path_factory.mktemp("eval")
    assert main(["train", "--run-dir", str(root / "plain"), *RUN]) == 0
    assert main(["train", "--run-dir", str(root / "eval"), *RUN, *EVAL]) == 0
    return root / "plain", root / "eval"


def test_evaluations_run_when_an_update_crosses_a_multiple_of_the_interval(runs) -> None:
    plain, run = runs
    # Updates end at 400, 800, ..., 2000: the one ending at 800 crosses 700, at 1600 1400.
    assert sorted(_evaluations(run)) == [800, 1600]
    assert [r["eval_return"] for r in _rows(plain)] == [""] * 5
    assert len(_rows(run)) == 5


def test_eval_return_is_mappo_evals_greedy_return_of_the_policy(runs) -> None:
    _, run = runs
    best = load_checkpoint(run / "best.pt")
    evaluations = _evaluations(run)
    best_steps = max(evaluations, key=evaluations.get)
    assert best["env_steps"] == best_steps
    assert best["best_eval_return"] == evaluations[best_steps]
    assert _greedy_return(run / "best.pt") == evaluations[best_steps]


def test_eval_and_export_take_best_pt_in_place_of_the_run_folder(runs, tmp_path, capsys) -> None:
    _, run = runs
    capsys.readouterr()
    argv = ["--episodes", "8", "--deterministic", "--seed", str(7 + EVAL_SEED_OFFSET), "--json"]
    assert main(["eval", str(run / "best.pt"), *argv]) == 0
    said = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert said["mean_episode_return"] == load_checkpoint(run / "best.pt")["best_eval_return"]
    assert main(["export", str(run / "best.pt"), "--out", str(tmp_path / "best"), "--no-onnx"]) == 0
    assert (tmp_path / "best" / "policy.pt").is_file()
    plain, _ = runs  # no evaluation, no best.pt: the error names the file asked for
    assert main(["eval", str(plain / "best.pt")]) == 2
    assert f"{plain / 'best.pt'}: no such file" in capsys.readouterr().err


def test_evaluation_leaves_training_bitwise_unchanged(runs) -> None:
    plain, run = runs
    _assert_same_training(plain, run, 2000)
    assert not (plain / "best.pt").exists()


def test_last_evaluation_equals_evaluate_on_the_final_checkpoint(tmp_path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                *RUN,
                "--eval-interval",
                "1000",
                "--eval-episodes",
                "8",
            ]
        )
        == 0
    )
    evaluations = _evaluations(run)
    assert sorted(evaluations) == [1200, 2000]
    assert _greedy_return(run / "checkpoint.pt") == evaluations[2000]


def test_resumed_run_with_evaluation_equals_straight_through(runs, tmp_path, monkeypatch) -> None:
    _, straight = runs
    resumed = tmp_path / "resumed"
    _train_stopped_after_two_updates(resumed, [*RUN, *EVAL], monkeypatch)
    assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    _assert_same_training(straight, resumed, 2000)
    assert _evaluations(resumed) == _evaluations(straight)
    a, b = load_checkpoint(straight / "best.pt"), load_checkpoint(resumed / "best.pt")
    assert a["env_steps"] == b["env_steps"]
    for name, tensor in a["actor"].items():
        assert torch.equal(tensor, b["actor"][name]), name


def test_eval_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"'eval_interval' = -1: must be >= 0 env steps"):
        MappoConfig(eval_interval=-1)
    with pytest.raises(ConfigError, match=r"'eval_episodes' = 0: must be an integer >= 1"):
        MappoConfig(eval_episodes=0)


def test_evaluation_restores_torch_rng_even_when_the_env_draws_from_it(monkeypatch) -> None:
    # The built-in envs have generators of their own; a user's env may draw from torch's.
    import mappo.trainer

    def drawing_evaluate(*args, **kwargs):
        torch.rand(3)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(mappo.trainer, "evaluate", drawing_evaluate)
    trainer = mappo.trainer.MappoTrainer(
        MappoConfig(num_envs=4, eval_interval=100, eval_episodes=4)
    )
    before = torch.get_rng_state()
    trainer.evaluate_policy()
    assert torch.equal(torch.get_rng_state(), before)


def test_curve_png_and_mappo_plot_show_the_evaluations(runs, tmp_path, capsys) -> None:
    plain, run = runs
    assert (run / "curve.png").stat().st_size > 0
    curve = read_run(run, "eval_return")
    assert curve.env_steps.tolist() == [800, 1600]
    assert curve.returns.tolist() == [v for _, v in sorted(_evaluations(run).items())]
    assert main(["plot", str(run), "--y", "eval_return", "--out", str(tmp_path / "e.png")]) == 0
    assert (tmp_path / "e.png").stat().st_size > 0
    assert main(["plot", str(plain), "--y", "eval_return", "--out", str(tmp_path / "p.png")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("metrics.csv holds no eval_return (--eval-interval) yet")
    )


def test_resume_keeps_best_pts_score_as_the_bar(runs, tmp_path) -> None:
    _, run = runs
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    # As if the run stopped after writing best.pt but before the next checkpoint.pt.
    stale = {**load_checkpoint(copy / "checkpoint.pt"), "best_eval_return": -math.inf}
    save_checkpoint(copy / "checkpoint.pt", stale)
    trainer = Run.resume(copy).trainers[0]
    trainer.close()
    assert trainer.best_eval_return == max(_evaluations(run).values())


def test_load_run_plays_a_variant_of_the_runs_task(tmp_path) -> None:
    """`env_kwargs` change the run's env options for play (spread's landmark spawn here),
    on top of those the run was trained with."""
    run_dir = tmp_path / "run"
    argv = ["--env-kwargs", '{"max_cycles": 10}', "--total-steps", "160", "--num-envs", "16"]
    assert main(["train", "--run-dir", str(run_dir), *argv, "--quiet"]) == 0
    _, env = load_run(run_dir, 64, env_kwargs={"landmark_range": 0.5})
    assert env.spec.max_episode_steps == 10  # the run's option stays
    obs = env.reset(seed=3)  # [E, A, O]: vel, pos, landmarks relative to the agent, ...
    landmarks = obs[:, :1, 2:4] + obs[:, 0, 4:10].reshape(64, 3, 2)  # [E, L, 2]
    assert 0.4 < landmarks.abs().max() <= 0.5
    _, env = load_run(run_dir, 64)
    obs = env.reset(seed=3)
    assert (obs[:, :1, 2:4] + obs[:, 0, 4:10].reshape(64, 3, 2)).abs().max() > 0.9
