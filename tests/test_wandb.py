"""`--wandb` sends W&B the same metrics as TensorBoard, and fails early without the package."""

import csv
import sys
import types

from mappo.cli import main

TINY = ["--total-steps", "1200", "--num-envs", "16", "--quiet", "--wandb"]


class FakeRun:
    def __init__(self, **kwargs) -> None:
        self.init_kwargs, self.logged, self.finished = kwargs, [], False

    def log(self, data: dict, step: int) -> None:
        self.logged.append((step, data))

    def finish(self) -> None:
        self.finished = True


def test_wandb_gets_every_row(tmp_path, monkeypatch) -> None:
    runs = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: runs.append(FakeRun(**kwargs)) or runs[-1]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--wandb-project", "p", *TINY]) == 0
    (run,) = runs
    assert run.init_kwargs["project"] == "p" and run.init_kwargs["config"]["num_envs"] == 16
    assert run.finished
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").read_text().splitlines()))
    assert (
        [step for step, _ in run.logged] == [int(r["env_steps"]) for r in rows] == [400, 800, 1200]
    )
    step, data = run.logged[-1]
    assert data["train/policy_loss"] == float(rows[-1]["policy_loss"])
    assert "train/episode_return" in data and "train/env_steps" not in data


def test_wandb_missing_is_a_clear_error_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    assert main(["train", "--run-dir", str(tmp_path / "r"), *TINY]) == 2
    assert "--wandb needs the wandb package" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
