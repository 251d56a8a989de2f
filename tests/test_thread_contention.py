"""`benchmarks/thread_contention.py`: each run gets its own torch threads and only its own
OpenMP wait settings, and its speed is the median per-update speed after the warm-up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("thread_contention")


def fake_train(seen: list, speeds: list[float]):
    """A stand-in for subprocess.run of `mappo train`: records the command and env, and
    writes a metrics.csv of `speeds` into the run folder."""

    def run(command, env, **_):
        seen.append((command, env))
        run_dir = command[command.index("--run-dir") + 1]
        rows = "".join(f"{speed}\n" for speed in speeds)
        (Path(run_dir) / "metrics.csv").write_text("steps_per_second\n" + rows)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_a_run_sees_only_its_own_wait_settings(bench, tmp_path, monkeypatch) -> None:
    seen: list = []
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the caller's, never the run's
    monkeypatch.setattr(bench.subprocess, "run", fake_train(seen, [1.0, 2.0, 10.0, 30.0, 20.0]))
    speed = bench.run_speed(["--preset", "paper-mpe"], 2, {"GOMP_SPINCOUNT": "10"}, 0, tmp_path)
    command, env = seen[0]
    assert command[-6:-4] == ["--torch-threads", "2"]
    assert env["GOMP_SPINCOUNT"] == "10" and "OMP_WAIT_POLICY" not in env
    assert speed == 20.0  # the median of 10, 30, 20: the first two updates left out


def test_busy_processes_run_beside_and_stop_after(bench, tmp_path, monkeypatch) -> None:
    started: list = []

    class Loop:
        def __init__(self, command) -> None:
            started.append(self)
            self.killed = False

        def kill(self) -> None:
            self.killed = True

        def wait(self) -> None:
            pass

    monkeypatch.setattr(bench.subprocess, "Popen", Loop)
    monkeypatch.setattr(bench.subprocess, "run", fake_train([], [1.0, 1.0, 5.0]))
    assert bench.run_speed([], 1, {}, 3, tmp_path) == 5.0
    assert len(started) == 3 and all(loop.killed for loop in started)


def test_too_short_a_run_asks_for_more_steps(bench, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench.subprocess, "run", fake_train([], [1.0, 2.0]))
    with pytest.raises(SystemExit, match="2 updates: raise --total-steps"):
        bench.run_speed([], 1, {}, 0, tmp_path)
