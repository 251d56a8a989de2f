"""Checkpoints during a run: after the first update, every interval, and at the end."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from mappo import run as run_module
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.run_folder import RunFolder

TINY = ["--total-steps", "1600", "--num-envs", "16", "--quiet"]  # 4 updates of 400 steps


@pytest.fixture
def saved_steps(monkeypatch) -> list[int]:
    """The env steps of every checkpoint written, in order."""
    steps = []
    save = RunFolder.save

    def record(self, payload, pickled_env=None):
        steps.append(payload["env_steps"])
        save(self, payload, pickled_env)

    monkeypatch.setattr(RunFolder, "save", record)
    return steps


@pytest.mark.parametrize(
    ("flags", "every", "expected"),
    [
        ([], 50, [400, 1600]),  # the default 300 s: after the first update and at the end
        (["--checkpoint-interval", "0.001"], 50, [400, 800, 1200, 1600]),  # every update
        ([], 2, [400, 800, 1600]),  # every CHECKPOINT_EVERY_UPDATES updates as well
    ],
)
def test_checkpoint_schedule(flags, every, expected, saved_steps, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(run_module, "CHECKPOINT_EVERY_UPDATES", every)
    assert main(["train", "--run-dir", str(tmp_path / "r"), *TINY, *flags]) == 0
    assert saved_steps == expected
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["env_steps"] == 1600


def test_hard_kill_after_the_first_update_keeps_a_checkpoint(tmp_path) -> None:
    run = tmp_path / "r"
    metrics = run / "metrics.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mappo",
            "train",
            "--run-dir",
            str(run),
            "--num-envs",
            "16",
            "--total-steps",
            "100000000",
            "--compile",
            "false",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # The second row is logged after the first update's checkpoint was written.
        deadline = time.monotonic() + 300
        while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no second update within 300 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 400

    # The run continues from that checkpoint; rows logged past it are dropped and redone.
    assert main(["train", "--resume", str(run), "--total-steps", "1200", "--quiet"]) == 0
    with open(metrics, newline="") as handle:
        assert [int(row["env_steps"]) for row in csv.DictReader(handle)] == [400, 800, 1200]
