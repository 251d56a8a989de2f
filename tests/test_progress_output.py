"""`mappo train`'s progress: a bar on a terminal, summary lines in a log, the recent return."""

import csv
import errno
import io
import math
import os
import pty
import re
import signal
import subprocess
import sys
import time

import pytest

from mappo import MappoConfig, MappoMetrics
from mappo import progress as progress_module
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.progress import Progress, RecentReturns
from mappo.run_folder import metrics_of_row

TINY = ["--total-steps", "1600", "--num-envs", "16", "--seed", "3"]  # 4 updates of 400 steps


def update(
    env_steps: int, episode_return: float = math.nan, episodes: int = 0, **rates: float
) -> MappoMetrics:
    """The metrics of one update, as far as progress output reads them (`rates`: win_rate,
    first_seat_win_rate, second_seat_win_rate, draw_rate, rewarded_fraction)."""
    return MappoMetrics(
        policy_loss=0.0,
        value_loss=0.0,
        entropy=0.0,
        env_steps=env_steps,
        episode_return=episode_return,
        episodes=episodes,
        steps_per_second=1000.0,
        **rates,
    )


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class Clock:
    """`time.monotonic` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_recent_return_is_the_mean_of_recent_episodes() -> None:
    recent = RecentReturns()
    recent.add(10.0, 1)
    for _ in range(10):  # ten updates without an episode push the old return out
        recent.add(math.nan, 0)
    assert (recent.episodes, recent.text()) == (0, "n/a")
    recent.add(238.0, 4)
    assert (recent.episodes, recent.mean) == (4, 238.0)

    weighted = RecentReturns()
    weighted.add(1.0, 1)
    weighted.add(4.0, 3)
    weighted.add(math.nan, 0)
    assert weighted.mean == 3.25  # (1 + 3 * 4) / 4 episodes, not (1 + 4) / 2 updates
    assert weighted.text(3) == "3.250"


def test_recent_return_keeps_the_last_ten_updates() -> None:
    recent = RecentReturns()
    recent.add(-100.0, 5)
    for _ in range(9):
        recent.add(-2.0, 1)
    assert recent.mean == pytest.approx((-500 - 18) / 14)
    recent.add(-2.0, 1)  # the eleventh update drops the first
    assert recent.mean == -2.0


def test_log_gets_a_summary_line_per_interval_and_one_at_the_end(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", clock)
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 30.0)
    out = io.StringIO()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=out)
    clock.now = 10.0
    progress.update(update(100, -20.0, 2))
    assert out.getvalue() == ""  # 10 s: no line yet
    clock.now = 30.0
    progress.update(update(300, -10.0, 2))
    clock.now = 45.0
    progress.update(update(600))
    clock.now = 50.0
    progress.close()
    assert out.getvalue().splitlines() == [
        "env steps 300 / 1,000 (30.0 %), 10 steps/s, recent return -15.00, elapsed 0:00:30",
        "env steps 600 / 1,000 (60.0 %), 15 steps/s, recent return -15.00, elapsed 0:00:50",
    ]


def test_terminal_gets_the_bar_and_quiet_gets_nothing(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 0.0)
    terminal = Terminal()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=terminal)
    progress.update(update(500, -3.0, 1))
    progress.close()
    assert "\r" in terminal.getvalue() and "ret=-3.00" in terminal.getvalue()
    assert "env steps" not in terminal.getvalue()
    for stream in (Terminal(), io.StringIO()):
        progress = Progress(total=1000, env_steps=0, quiet=True, stream=stream)
        progress.update(update(500, -3.0, 1))
        progress.close()
        assert stream.getvalue() == ""


class HungUpTerminal(Terminal):
    """A terminal closed a moment ago: every write fails with `error` (EIO for a hangup)."""

    def __init__(self, error: int) -> None:
        super().__init__()
        self.error = error

    def write(self, text: str) -> int:
        raise OSError(self.error, os.strerror(self.error))


def test_a_hung_up_terminal_drops_the_lines_and_a_full_disk_is_kept_to_stop_the_run() -> None:
    # Before the run's SIGHUP handler points stdout at /dev/null, a line or the bar may
    # meet the closed terminal: the line is lost, not the run.
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=HungUpTerminal(errno.EIO))
    progress.write("checkpoint saved")
    progress.update(update(500, -3.0, 1))  # tqdm disables its bar on EIO
    progress.close()
    assert progress.failed is None and not progress.reader_gone  # the SIGHUP stops the run
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=io.StringIO())  # a log
    progress.stream = HungUpTerminal(errno.ENOSPC)  # its disk full
    progress.write("checkpoint saved")
    progress.write("a line after it")
    name, error = progress.failed
    assert name == "the output"  # a stream in memory: no file to name
    assert error.errno == errno.ENOSPC  # the first failure, which stops the run (`Run.train`)


def test_a_zero_sum_game_shows_each_seats_wins_in_place_of_the_return(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(progress_module, "time", clock)
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # the line at the end
    out = io.StringIO()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=out)
    # 10 games: seat 1 won 5, seat 2 won 4, 1 draw; then 30: 21, 6, 3; then none finished.
    seats = ("first_seat_win_rate", "second_seat_win_rate", "draw_rate")
    progress.update(update(100, 0.0, 10, **dict(zip(seats, (0.5, 0.4, 0.1), strict=True))))
    progress.update(update(200, 0.0, 30, **dict(zip(seats, (0.7, 0.2, 0.1), strict=True))))
    progress.update(update(300))
    clock.now = 3.0
    progress.close()
    assert out.getvalue() == (
        "env steps 300 / 1,000 (30.0 %), 100 steps/s, seat 1 wins 0.65, seat 2 wins 0.25, "
        "draws 0.10, elapsed 0:00:03\n"
    )

    terminal = Terminal()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=terminal)
    progress.update(update(500, 0.0, 4, **dict(zip(seats, (0.75, 0.0, 0.25), strict=True))))
    progress.close()
    # One rate, the bar's own: "500/1.00k [00:00<00:00, 1.2kstep/s, seat1_wins=0.75, ...]".
    assert "step/s, seat1_wins=0.75, seat2_wins=0.00, draws=0.25]" in terminal.getvalue()
    assert "ret=" not in terminal.getvalue()


def test_more_than_two_seats_show_the_other_seats_wins(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 0.0)
    out = io.StringIO()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=out)
    rates = {"first_seat_win_rate": 0.4, "second_seat_win_rate": 0.3, "draw_rate": 0.1}
    progress.update(update(100, 0.0, 10, **rates))
    assert "seat 1 wins 0.40, seat 2 wins 0.30, other seats win 0.20, draws 0.10, " in (
        out.getvalue()
    )


def test_a_sparse_return_that_reads_zero_shows_the_rewarded_episodes(monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 0.0)  # a line per update
    out = io.StringIO()
    progress = Progress(total=1000, env_steps=0, quiet=False, stream=out)
    progress.update(update(100, 0.0, 30, rewarded_fraction=0.0))
    progress.update(update(200, 0.01, 10, rewarded_fraction=0.4))  # 4 of 40 paid, 0.0025
    progress.update(update(300, 5.0, 10, rewarded_fraction=1.0))  # the return speaks
    progress.update(update(400, 0.0, 2, rewarded_fraction=0.0, win_rate=0.0))
    lines = out.getvalue().splitlines()
    assert "recent return 0.00, rewarded episodes 0.00, " in lines[0]
    assert "recent return 0.00, rewarded episodes 0.10, " in lines[1]
    assert "recent return 1.00, elapsed" in lines[2]
    # An env that reports wins shows them; the rewarded episodes still where the return is 0.
    assert "recent return 0.96, win rate 0.00, elapsed" in lines[3]


def test_train_in_a_log_prints_lines_not_a_bar(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # none due before the end
    assert main(["train", "--run-dir", str(tmp_path / "r"), *TINY]) == 0
    captured = capsys.readouterr()  # capsys's stdout is not a terminal
    assert "\r" not in captured.out + captured.err
    lines = captured.out.splitlines()
    summaries = [line for line in lines if line.startswith("env steps")]
    assert len(summaries) == 1  # the one at the end
    assert summaries[0].startswith("env steps 1,600 / 1,600 (100.0 %), ")
    assert "no episode has finished" not in captured.out  # spread's episodes fit a rollout

    # The recent return printed is the episode-weighted mean of the last 10 updates' rows.
    mean = recent_mean(tmp_path / "r" / "metrics.csv")
    assert f"recent return {mean:.2f}," in summaries[0]
    assert lines[-1].startswith(f"done: 1600 env steps, recent episode return {mean:.3f}, ")


def recent_mean(*metrics_csvs, updates: int = 10) -> float:
    """The episode-weighted mean return of the last `updates` rows of metrics.csv files,
    pooled."""
    rows = []
    for path in metrics_csvs:
        with open(path, newline="") as handle:
            rows += list(csv.DictReader(handle))[-updates:]
    episodes = sum(int(r["episodes"]) for r in rows)
    return sum(float(r["episode_return"]) * int(r["episodes"]) for r in rows) / episodes


@pytest.mark.parametrize("seeds", [None, "3,4", "3,4 out of step"])
def test_a_resume_goes_on_from_the_updates_logged_before(tmp_path, monkeypatch, capsys, seeds):
    """One update after a resume, the recent return still pools the last 10 updates' rows,
    the 4 logged before the resume with it, not that one update's episodes alone: in the
    closing line, each seed's own, and in the progress line, every seed's pooled; a seed
    that kept fewer rows (here its first two lost) pools what it has."""
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)
    run = tmp_path / "r"
    seeding = [*TINY[:-2], "--seeds", "3,4"] if seeds else TINY  # TINY ends in --seed 3
    assert main(["train", "--run-dir", str(run), *seeding, "--quiet"]) == 0
    capsys.readouterr()
    folders = [run / "seed_3", run / "seed_4"] if seeds else [run]
    if seeds == "3,4 out of step":
        lines = (folders[1] / "metrics.csv").read_text().splitlines(keepends=True)
        (folders[1] / "metrics.csv").write_text("".join([lines[0], *lines[-2:]]))
    assert main(["train", "--resume", str(run), "--total-steps", "2000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    means = [recent_mean(folder / "metrics.csv") for folder in folders]
    with open(folders[0] / "metrics.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 5  # the last update's alone would differ
    if seeds:
        assert f"seed 3 {means[0]:.3f}, seed 4 {means[1]:.3f}" in lines[-1]
    else:
        assert lines[-1].startswith(f"done: 2000 env steps, recent episode return {means[0]:.3f}")
    [summary] = [line for line in lines if line.startswith("env steps")]
    pooled = recent_mean(*(folder / "metrics.csv" for folder in folders))
    assert f"recent return {pooled:.2f}," in summary


def test_a_metrics_row_keeps_the_definition_of_its_return() -> None:
    """A sweep over team_reward pools team and per-agent returns apart: a row read back
    says which it is (a row of an older mappo, without the column, is per-agent)."""
    row = {"env_steps": "400", "episode_return": "-3.5", "episodes": "2"}
    assert metrics_of_row({**row, "return_definition": "team"}).return_definition == "team"
    assert metrics_of_row(row).return_definition == "per_agent"
    assert math.isnan(metrics_of_row(row).policy_loss)


def test_train_in_a_log_prints_a_line_per_interval(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 0.0)  # every update is due
    assert main(["train", "--run-dir", str(tmp_path / "r"), *TINY]) == 0
    out = capsys.readouterr().out
    steps = [line.split(" / ")[0] for line in out.splitlines() if line.startswith("env steps")]
    assert steps == ["env steps 400", "env steps 800", "env steps 1,200", "env steps 1,600"]


def test_quiet_train_prints_no_progress(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 0.0)
    assert main(["train", "--run-dir", str(tmp_path / "r"), *TINY, "--quiet"]) == 0
    out = capsys.readouterr().out
    # What the run is: its folder and the settings decided for its env; then the end.
    assert [line.split(":")[0] for line in out.splitlines()] == [
        "run folder",
        "auto settings for env 'spread'",
        "done",
    ]


def test_long_episodes_get_one_hint(tmp_path, capsys) -> None:
    # 200-step episodes, 5-step rollouts: no episode ends in the run's 4 updates.
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(tmp_path / "r"),
                "--env-kwargs",
                '{"max_cycles": 200}',
                "--rollout-steps",
                "5",
                "--num-envs",
                "4",
                "--minibatch-size",
                "60",
                "--total-steps",
                "80",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    hint = (
        "no episode has finished in the first 3 updates (15 steps per env copy): returns "
        "are logged when episodes end, and with 4 env copies this env's episodes of up "
        "to 200 steps first end after 800 env steps; fewer --num-envs make them end sooner"
    )
    assert out.count("no episode has finished") == 1
    assert hint in out.splitlines()
    assert "recent episode return n/a" in out


@pytest.mark.parametrize("seeds", [None, "0,1"])
def test_a_long_wait_says_what_it_waits_for(tmp_path, monkeypatch, capsys, seeds) -> None:
    """The heartbeat counts the rollout's steps; with seeds, which roll out one after
    another, the steps over all of them per seed (it read 0 until the last seed's began)."""
    import time

    import pz_envs

    from mappo import run as run_module

    monkeypatch.setattr(run_module, "HEARTBEAT_S", 0.2)
    step = pz_envs.CounterEnv.step
    copies = 4 * (len(seeds.split(",")) if seeds else 1)
    calls, said = [], []  # said: the output read while the rollout stalls

    def slow_step(self, actions):  # a first rollout of 25 steps, each copy 20 ms a step
        calls.append(1)
        if len(calls) == 12 * copies + 1:
            # Stalled about halfway until the heartbeat says so, as its doubling waits make it
            # (a loaded machine had said all its lines before the first step), a minute at most.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not re.search(r": [1-9]\d* of 25", "".join(said)):
                said.append(capsys.readouterr().out)
                time.sleep(0.05)
        time.sleep(0.02)
        return step(self, actions)

    monkeypatch.setattr(pz_envs.CounterEnv, "step", slow_step)
    argv = ["--env", "pz_envs:CounterEnv", "--total-steps", "100", "--num-envs", "4",
            "--minibatch-size", "0", "--compile", "false",
            "--run-dir", str(tmp_path / "r")]  # fmt: skip
    if seeds:
        argv += ["--seeds", seeds]
    assert main(["train", *argv]) == 0
    lines = ("".join(said) + capsys.readouterr().out).splitlines()
    assert f"first update: a rollout of 25 steps in {copies} env copies" in lines
    waits = [line for line in lines if line.startswith("first update: collecting a rollout")]
    assert len(waits) >= 2, lines
    assert all(line.split(": ")[2].split(" (")[0].endswith(" of 25 done") for line in waits)
    done = [int(line.split(": ")[2].split(" of ")[0]) for line in waits]
    assert done == sorted(done) and 0 < done[-1] <= 25  # the rollout's steps, as they come
    assert waits[0].endswith("s since the last update)")


def test_a_closed_pipe_stops_the_run_saved_and_says_so_on_stderr(tmp_path) -> None:
    """`mappo train | head -1`: once the pipe's reader has gone the run stops after its
    update and saves it, as Ctrl-C does (it used to die at its next line with "Broken
    pipe", exit code 2, losing the updates since its checkpoint), and its last line goes to
    stderr. A command whose output was cut short (`mappo report | head -1`) ends quietly,
    with a shell's code for SIGPIPE."""
    run = tmp_path / "r"
    process = subprocess.Popen(
        [sys.executable, "-m", "mappo", "train", "--run-dir", str(run), "--num-envs", "4",
         "--total-steps", "1000000", "--checkpoint-interval", "1000", "--compile", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline() == "building 4 copies of env 'spread' ...\n"
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=300) == -signal.SIGPIPE, err  # stopped, as SIGPIPE stops
    with open(run / "metrics.csv", newline="") as handle:
        logged = int(list(csv.DictReader(handle))[-1]["env_steps"])
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == logged < 1_000_000
    assert err.endswith(
        f"the output's reader has gone (a closed pipe): stopped after {logged} env steps; "
        f"checkpoint saved. Continue with: mappo train --resume {run}\n"
    )
    report = subprocess.Popen(
        [sys.executable, "-m", "mappo", "report", str(run), "--episodes", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    report.stdout.close()
    assert report.wait(timeout=300) == -signal.SIGPIPE
    assert report.stderr.read() == b""


@pytest.mark.parametrize("closed", [1, 2])
def test_a_command_started_without_stdout_or_stderr_runs_as_with_them(tmp_path, closed) -> None:
    """`mappo train >&-` (or `2>&-`): Python leaves that stream None, and the first line
    printed was a traceback, leaving a folder with config.toml alone."""
    run = tmp_path / "r"
    train = [sys.executable, "-m", "mappo", "train", "--run-dir", str(run), "--num-envs", "4",
             "--total-steps", "200", "--compile", "false"]  # fmt: skip
    kept = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    kept.pop("stdout" if closed == 1 else "stderr")
    process = subprocess.run(
        train, preexec_fn=lambda: os.close(closed), text=True, timeout=300, **kept
    )
    assert process.returncode == 0, process.stderr
    assert (process.stderr if closed == 1 else process.stdout).count("Traceback") == 0
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 200
    assert (run / "curve.png").is_file()


def test_output_on_a_full_disk_stops_the_run_saved_and_says_so(tmp_path) -> None:
    """A log file on a full disk (/dev/full): the run used to die at its next line with
    "No space left on device", losing the updates since its checkpoint; it stops after its
    update, saved, and says so in one line with exit code 2. With stderr on the full disk,
    Ctrl-C used to crash the run from its signal handler, saving nothing; it saves."""
    run = tmp_path / "r"
    train = [sys.executable, "-m", "mappo", "train", "--num-envs", "4", "--minibatch-size",
             "0", "--total-steps", "1000000", "--compile", "false"]  # fmt: skip
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [*train, "--run-dir", str(run)], stdout=full, stderr=subprocess.PIPE, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr == (
            "mappo: error: cannot write stdout (No space left on device); the run stopped "
            "after its update at env step 100, and the checkpoint holds env step 100: make "
            f"room, then mappo train --resume {run}\n"
        )
        assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 100
        process = subprocess.Popen(
            [*train, "--run-dir", str(tmp_path / "s")], stdout=subprocess.PIPE, stderr=full,
            text=True,
        )  # fmt: skip
        metrics, deadline = tmp_path / "s" / "metrics.csv", time.monotonic() + 300
        while not metrics.exists() or len(metrics.read_text().splitlines()) < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)  # until an update is done: the run's stop handler is in place
        process.send_signal(signal.SIGINT)  # its "stopping" line meets the full disk
        assert process.wait(timeout=300) == -signal.SIGINT
        process.stdout.close()
    with open(tmp_path / "s" / "metrics.csv", newline="") as handle:
        logged = int(list(csv.DictReader(handle))[-1]["env_steps"])
    assert load_checkpoint(tmp_path / "s" / "checkpoint.pt")["env_steps"] == logged


class FullAtTheEnd(io.StringIO):
    """A log whose disk fills as the run closes: its last summary line and the lines after
    it cannot be written."""

    def write(self, text: str) -> int:
        if text.startswith("env steps") or self.getvalue().count("env steps"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(text)


def test_a_finished_run_whose_last_lines_are_lost_is_no_error(tmp_path) -> None:
    """A run that reached its budget and saved is not reported as stopped because its last
    summary line met a full disk while it closed."""
    from mappo.presets import build_config
    from mappo.run import Run

    config = build_config(None, None, {"num_envs": 4, "total_steps": 200, "compile": "false"})
    with Run.start(config, tmp_path / "r") as run:
        summary = run.train(stream=FullAtTheEnd())
    assert summary.finished and summary.stopped_by is None
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["env_steps"] == 200


def test_a_run_that_ignores_sighup_trains_on_after_its_terminal_closes(tmp_path) -> None:
    """A run started with `& disown` (or anything that keeps SIGHUP from it) whose terminal
    closes: every later write fails (EIO), and the run trains to its end all the same,
    its lines going nowhere (its last line used to fail it, exit code 1)."""
    run = tmp_path / "r"
    terminal, its_side = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "mappo", "train", "--run-dir", str(run), "--num-envs", "4",
         "--total-steps", "1000", "--compile", "false"],
        stdin=its_side, stdout=its_side, stderr=its_side, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )  # fmt: skip
    os.close(its_side)
    assert os.read(terminal, 100).startswith(b"building 4 copies of env 'spread'")
    os.close(terminal)
    assert process.wait(timeout=300) == 0
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 1000


@pytest.mark.parametrize("seeds", [None, "1,2"])
def test_a_budget_between_updates_is_said_rounded_up_and_the_progress_ends_at_100(
    tmp_path, monkeypatch, capsys, seeds
) -> None:
    """1,000 steps with 400 per update train 1,200: said at the start, not "120.0 %"."""
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # only the last line
    argv = ["train", "--run-dir", str(tmp_path / "r"), "--total-steps", "1000",
            "--num-envs", "16", "--minibatch-size", "0", "--compile", "false"]  # fmt: skip
    assert main(argv + (["--seeds", seeds] if seeds else [])) == 0
    lines = capsys.readouterr().out.splitlines()
    copies, total = (32, "2,400") if seeds else (16, "1,200")
    assert (
        f"first update: a rollout of 25 steps in {copies} env copies; total_steps 1,000 rounds "
        "up to whole updates: 1,200"
    ) in lines
    summaries = [line for line in lines if line.startswith("env steps")]
    assert summaries[-1].startswith(f"env steps {total} / {total} (100.0 %), ")


def test_the_lines_of_one_long_wait_come_ever_further_apart() -> None:
    """After the first, a line each time the wait has doubled: a log of 3-minute updates
    reads 2 lines per update, not 6."""
    import time
    from types import SimpleNamespace

    from mappo.run import Heartbeat

    learner = SimpleNamespace(updates=3, phase="updating")
    said: list[str] = []
    with Heartbeat(learner, said.append, 0.05):
        time.sleep(1.3)  # a line every 0.05 s would make 26
    assert 2 <= len(said) <= 6, said
    assert all(line.startswith("updating (") for line in said)


@pytest.mark.parametrize("seeds", [1, 2])
def test_a_wait_after_the_update_says_saving_and_evaluating_only_while_it_runs(seeds) -> None:
    """Once an update is done the run logs it and may save a large checkpoint: a wait then
    said "evaluating", with evaluation off; it says what happens, and "evaluating" only
    while an evaluation runs."""
    from mappo.run import Heartbeat
    from mappo.seeds import MultiSeedTrainer
    from mappo.trainer import MappoTrainer

    config = MappoConfig(num_envs=2, rollout_steps=5, minibatch_size=0, eval_interval=10)
    learner = (
        MappoTrainer(config) if seeds == 1 else MultiSeedTrainer(config, seeds=list(range(seeds)))
    )
    heartbeat = Heartbeat(learner, print, 0.0)
    during = []
    for trainer in learner.trainers:
        evaluate = trainer.evaluate_policy
        trainer.evaluate_policy = lambda e=evaluate: during.append(heartbeat.waiting_for()) or e()
    learner.iteration()
    assert during == ["evaluating"] * seeds
    assert heartbeat.waiting_for() == "saving the update (metrics, curve, checkpoint)"
    learner.close()
