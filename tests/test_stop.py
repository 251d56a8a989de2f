"""Stopping a run: the first Ctrl-C says so at once and stops within seconds, mid-update
included, keeping the last completed update; a second stops at once; `--resume` then ends
bitwise where an uninterrupted run ends. While a run trains, no other process may train in
its folder."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pz_envs
import torch

from mappo import run as run_module
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.errors import ConfigError, RunFolderError
from mappo.presets import build_config
from mappo.run import Run
from mappo.run_folder import RunLock, read_metrics
from mappo.stop_signals import stop_as_interrupt

STEPS_PER_UPDATE = 4 * 25  # env copies x rollout steps: env.step calls of one copy each
RUN = [
    "--env", "pz_envs:CounterEnv", "--env-kwargs", '{"episode_length": 7}',
    "--total-steps", "400", "--num-envs", "4", "--minibatch-size", "50", "--seed", "3",
    "--compile", "false", "--checkpoint-interval", "1e9", "--quiet",
]  # fmt: skip


def assert_same_checkpoints(a_path, b_path) -> None:
    """Bitwise the same weights, value normalizer and optimizer state at the same step."""
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    assert a["env_steps"] == b["env_steps"]
    for part in ("actor", "critic", "value_norm"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name}"
    for index, state in a["optimizer"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, b["optimizer"]["state"][index][key])


def signal_during_step(
    monkeypatch, at_calls: tuple[int, ...], then_sleep: float, sig: int = signal.SIGINT
) -> None:
    """`sig` to this process at those env.step calls of any copy (counted from 1); every step
    after the first signal takes `then_sleep` seconds, a rollout too slow to wait for."""
    step, calls = pz_envs.CounterEnv.step, [0]

    def slow_step(self, actions):
        calls[0] += 1
        if calls[0] in at_calls:
            os.kill(os.getpid(), sig)
        if calls[0] >= at_calls[0]:
            time.sleep(then_sleep)
        return step(self, actions)

    monkeypatch.setattr(pz_envs.CounterEnv, "step", slow_step)


@pytest.fixture
def straight(tmp_path):
    path = tmp_path / "straight"
    assert main(["train", "--run-dir", str(path), *RUN]) == 0
    return path


def test_a_stop_mid_rollout_keeps_the_last_update_and_resumes_exactly(
    straight, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(run_module, "GRACE_S", 0.3)
    monkeypatch.setattr(run_module, "SNAPSHOT_MIN_S", 0.0)  # every update's end kept in memory
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        # Ctrl-C 30 steps into the third update's rollout, which then takes 0.02 s a step.
        signal_during_step(patch, (2 * STEPS_PER_UPDATE + 30,), then_sleep=0.02)
        start = time.monotonic()
        assert (
            main(["train", "--run-dir", str(stopped), *RUN]) == 130
        )  # saved, and stopped by SIGINT
        assert time.monotonic() - start < 10
    out, err = capsys.readouterr()
    # The update before is kept (in memory): this one is left if it runs on, and said so.
    assert "stopping (SIGINT): keeping this update if it ends within 0.3 s, else stopping " in err
    continuing = f"Continue with: mappo train --resume {stopped}"
    assert f"stopped after 200 env steps; checkpoint saved. {continuing}" in out
    # The first update was saved on schedule; the second, from memory, on the stop.
    assert load_checkpoint(stopped / "checkpoint.pt")["env_steps"] == 200
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    assert_same_checkpoints(straight / "checkpoint.pt", stopped / "checkpoint.pt")


@pytest.mark.parametrize(
    "sig, again",
    [(signal.SIGINT, "press Ctrl-C again"), (signal.SIGTERM, "a second SIGTERM")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_second_ctrl_c_stops_at_once_and_says_what_was_not_saved(
    sig, again, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(run_module, "GRACE_S", 60.0)
    monkeypatch.setattr(run_module, "SNAPSHOT_MIN_S", 1e9)  # nothing kept in memory
    stopped = tmp_path / "stopped"
    at = 2 * STEPS_PER_UPDATE + 30
    with monkeypatch.context() as patch:
        signal_during_step(patch, (at, at + 5), then_sleep=0.02, sig=sig)
        start = time.monotonic()
        assert main(["train", "--run-dir", str(stopped), *RUN]) == 128 + sig
        # Well under the 60 s grace a stop waiting for the update would take, with room for
        # a loaded machine (the run itself takes 4-13 s on 2 busy cores).
        assert time.monotonic() - start < 30
    out, err = capsys.readouterr()
    assert f"{again} to stop at once" in err
    assert ("stopped after 200 env steps; the checkpoint holds env step 100 (the 100 steps "
            "since were not saved)") in out  # fmt: skip
    assert load_checkpoint(stopped / "checkpoint.pt")["env_steps"] == 100
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0  # the folder is intact


def test_a_stop_before_the_first_checkpoint_says_nothing_was_saved(
    tmp_path, monkeypatch, capsys
) -> None:
    # Two Ctrl-C in the first rollout: nothing to resume, so the last line says how to start
    # again instead of pointing at a --resume that would fail.
    monkeypatch.setattr(run_module, "GRACE_S", 60.0)
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        signal_during_step(patch, (30, 35), then_sleep=0.02)
        assert (
            main(["train", "--run-dir", str(stopped), *RUN]) == 130
        )  # saved, and stopped by SIGINT
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == (
        f"stopped after 0 env steps, before its first checkpoint: nothing to resume in "
        f"{stopped}. Start it again with the same command and --force"
    )
    assert not (stopped / "checkpoint.pt").exists()
    (stopped / "events.out.tfevents.1.old").write_text("")  # an earlier run's curves
    assert main(["train", "--run-dir", str(stopped), *RUN, "--force"]) == 0
    assert load_checkpoint(stopped / "checkpoint.pt")["env_steps"] == 400
    # --force replaces the run with its TensorBoard curves: only the new run's are left.
    events = list(stopped.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].name != "events.out.tfevents.1.old"


def test_a_stop_waits_for_an_update_whose_steps_are_not_kept(tmp_path, monkeypatch, capsys) -> None:
    # Without a copy in memory, abandoning the third update would lose the second: the run
    # says so and finishes the update instead.
    monkeypatch.setattr(run_module, "GRACE_S", 0.1)
    monkeypatch.setattr(run_module, "SNAPSHOT_MIN_S", 1e9)
    stopped = tmp_path / "stopped"
    with monkeypatch.context() as patch:
        signal_during_step(patch, (2 * STEPS_PER_UPDATE + 30,), then_sleep=0.005)
        assert (
            main(["train", "--run-dir", str(stopped), *RUN]) == 130
        )  # saved, and stopped by SIGINT
    out, err = capsys.readouterr()
    assert "still finishing the update in progress, so that its steps are kept" in err
    assert "stopped after 300 env steps; checkpoint saved" in out
    assert load_checkpoint(stopped / "checkpoint.pt")["env_steps"] == 300


def test_a_grace_alarm_taken_while_the_run_closes_changes_nothing(
    tmp_path, monkeypatch, capsys
) -> None:
    """The grace period's alarm can reach Python after the updates ended (taken late, after a
    long call): closing the folder (its curve, seen on a 64-run sweep) goes on, no traceback;
    a second Ctrl-C then still stops at once, in one line."""
    from mappo.run_folder import RunFolder

    monkeypatch.setattr(run_module, "GRACE_S", 60.0)
    close = RunFolder.close

    def close_with(sig: signal.Signals) -> Callable:
        def closing(self) -> None:
            os.kill(os.getpid(), sig)
            close(self)

        return closing

    with monkeypatch.context() as patch:
        signal_during_step(patch, (2 * STEPS_PER_UPDATE + 30,), then_sleep=0.0)
        patch.setattr(RunFolder, "close", close_with(signal.SIGALRM))
        assert (
            main(["train", "--run-dir", str(tmp_path / "a"), *RUN]) == 130
        )  # saved, and stopped by SIGINT
    out, _ = capsys.readouterr()
    assert "stopped after 300 env steps; checkpoint saved" in out
    assert (tmp_path / "a" / "curve.png").is_file()
    with monkeypatch.context() as patch:
        signal_during_step(patch, (2 * STEPS_PER_UPDATE + 30,), then_sleep=0.0)
        patch.setattr(RunFolder, "close", close_with(signal.SIGINT))
        assert main(["train", "--run-dir", str(tmp_path / "b"), *RUN]) == 130
    assert capsys.readouterr().err.endswith("mappo: interrupted\n")
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["env_steps"] == 300


def test_seeds_stop_mid_rollout_and_resume_exactly(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(run_module, "GRACE_S", 0.3)
    monkeypatch.setattr(run_module, "SNAPSHOT_MIN_S", 0.0)
    seeds = [*RUN, "--seeds", "3,4"]
    seeds.remove("--seed"), seeds.remove("3")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "--run-dir", str(straight), *seeds]) == 0
    with monkeypatch.context() as patch:
        # Both seeds' copies step through one CounterEnv.step: 2 seeds' worth per update.
        signal_during_step(patch, (2 * 2 * STEPS_PER_UPDATE + 30,), then_sleep=0.02)
        assert (
            main(["train", "--run-dir", str(stopped), *seeds]) == 130
        )  # saved, and stopped by SIGINT
    assert "stopped after 200 env steps per seed; checkpoint saved" in capsys.readouterr().out
    assert main(["train", "--resume", str(stopped), "--quiet"]) == 0
    for seed in (3, 4):
        assert_same_checkpoints(
            straight / f"seed_{seed}" / "checkpoint.pt", stopped / f"seed_{seed}" / "checkpoint.pt"
        )


TESTS = os.path.dirname(os.path.abspath(__file__))


def start_training(argv: list[str], tmp_path) -> subprocess.Popen:
    """`mappo train ARGV` in a process group of its own, as a shell starts a job: a signal to
    the group reaches the worker processes too, as Ctrl-C at a terminal does."""
    env = {**os.environ, "PYTHONPATH": TESTS, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ic")}
    return subprocess.Popen(
        [sys.executable, "-m", "mappo", "train", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip


@contextlib.contextmanager
def holding(*folders: Path, ignores_sigint: bool = False) -> Iterator[subprocess.Popen]:
    """Another process holding `folders`' locks (as a run training there does), optionally
    ignoring SIGINT; killed when the block ends."""
    ignore = "signal.signal(signal.SIGINT, signal.SIG_IGN); " if ignores_sigint else ""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import signal, time; {ignore}"
         "from mappo.run_folder import RunLock; "
         f"locks = [RunLock.take(f) for f in {[str(f) for f in folders]!r}]; "
         "print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def rows(path) -> int:
    """Updates logged in a run folder's metrics.csv so far."""
    metrics = path / "metrics.csv"
    return max(len(metrics.read_text().splitlines()) - 1, 0) if metrics.exists() else 0


def ctrl_c_after(
    process: subprocess.Popen, ready: Callable[[str], bool], timeout: float = 120
) -> tuple[float, str, str]:
    """SIGINT to the process group once `ready(stdout so far)`; (seconds from the signal to
    the exit, stdout, stderr)."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(process.stdout.readline, "")))
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready("".join(out)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got ready"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    sent = time.monotonic()
    err = process.stderr.read()
    process.wait(timeout=60)
    took = time.monotonic() - sent
    reader.join()
    return took, "".join(out), err


def worker_run(env: list[str]) -> list[str]:
    """A run stepped by 2 worker processes, long enough (30 updates) to stop in the middle."""
    return [*env, "--num-workers", "2", "--total-steps", "3000", "--num-envs", "4",
            "--minibatch-size", "50", "--seed", "5", "--compile", "false"]  # fmt: skip


COUNTER = ["--env", "pz_envs:CounterEnv", "--env-kwargs", '{"episode_length": 7}']


@pytest.mark.parametrize("env", [
    COUNTER, ["--env", "gymnasium:gym_envs:TupleCounter-v0"]
], ids=["pettingzoo", "gymnasium"])  # fmt: skip
def test_ctrl_c_with_worker_processes_saves_and_resumes_exactly(env, tmp_path) -> None:
    argv = [*worker_run(env), "--quiet"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert start_training([*argv, "--run-dir", str(straight)], tmp_path).wait(timeout=300) == 0
    process = start_training([*argv, "--run-dir", str(stopped)], tmp_path)
    took, out, err = ctrl_c_after(process, lambda _: rows(stopped) >= 2)
    # Saved, and ended by the signal as the shell expects of a stopped command.
    assert process.returncode == -signal.SIGINT and took < 10
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "stopping (SIGINT)" in err and "checkpoint saved" in out
    assert load_checkpoint(stopped / "checkpoint.pt")["env_steps"] < 3000
    resume = start_training(["--resume", str(stopped), "--quiet"], tmp_path)
    assert resume.wait(timeout=300) == 0
    assert_same_checkpoints(straight / "checkpoint.pt", stopped / "checkpoint.pt")


def train_in_a_terminal(argv: list[str], tmp_path, nohup: bool = False) -> tuple[int, int]:
    """`mappo train ARGV` typed into an interactive bash in a terminal of its own (a
    pseudo-terminal), as in a window or over ssh: closing it hangs up bash, which passes
    SIGHUP on to its jobs, then the kernel signals the foreground job as bash exits (two
    SIGHUPs, to the run and its workers). `nohup`: started under `nohup`, output to a file.
    The run's exit code goes to `tmp_path/rc`, from a shell that outlives the hangup. (bash's
    pid, the terminal's controlling end)."""
    env = {**os.environ, "PYTHONPATH": TESTS, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ic")}
    command = shlex.join([*(["nohup"] if nohup else []), sys.executable, "-m", "mappo", "train",
                          *argv])  # fmt: skip
    if nohup:
        command += f" > {shlex.quote(str(tmp_path / 'nohup.out'))} 2>&1"
    # `trap : HUP` (a handler, which exec resets, not an ignore, which the run would inherit).
    job = f"trap : HUP; {command}; echo $? > {shlex.quote(str(tmp_path / 'rc'))}"
    pid, terminal = pty.fork()
    if pid == 0:  # the child: nothing but system calls before exec
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
    os.write(terminal, f"sh -c {shlex.quote(job)}\n".encode())
    return pid, terminal


def close_terminal_when(terminal: int, ready: Callable[[], bool], timeout: float = 120) -> str:
    """Read the terminal's output (a full terminal would block the run) until `ready()`,
    then close it, as closing a window does; the output so far."""
    out, deadline = b"", time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"the run never got ready: {out.decode()[-2000:]}"
        if select.select([terminal], [], [], 0.05)[0]:
            with contextlib.suppress(OSError):  # EIO: the shell ended, its output read
                out += os.read(terminal, 65536)
    os.close(terminal)
    return out.decode(errors="replace")


def run_exit_code(shell: int, tmp_path, timeout: float = 60) -> int:
    """The exit code `train_in_a_terminal`'s run wrote within `timeout` seconds; its
    shell reaped."""
    rc, deadline = tmp_path / "rc", time.monotonic() + timeout
    while not rc.is_file() or not rc.read_text().strip():
        assert time.monotonic() < deadline, "the run did not exit"
        time.sleep(0.05)
    os.waitpid(shell, 0)
    return int(rc.read_text())


def test_the_stop_line_starts_below_the_bar_on_a_terminal(tmp_path) -> None:
    """The bar's line ends with no newline: on a terminal the stop line was glued to it,
    `...[00:03, ret=-25.68]stopping (SIGINT): ...`."""
    env = {**os.environ, "PYTHONPATH": TESTS}
    argv = [sys.executable, "-m", "mappo", "train", "--run-dir", str(tmp_path / "run"),
            *[a for a in RUN if a != "--quiet"]]  # fmt: skip
    argv[argv.index("400")] = "100000000"  # trains until stopped
    pid, terminal = pty.fork()
    if pid == 0:  # the child: nothing but system calls before exec
        os.execve(sys.executable, argv, env)
    # A window 120 columns wide: tqdm draws nothing on a terminal of 0 columns.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    out, deadline = b"", time.monotonic() + 120
    while b"ret=" not in out:  # the bar is drawn, after an update (training: stops are its)
        assert time.monotonic() < deadline, out.decode()[-2000:]
        if select.select([terminal], [], [], 0.05)[0]:
            out += os.read(terminal, 65536)
    os.kill(pid, signal.SIGINT)
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the run ended, its output read
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(terminal)
    text = out.decode(errors="replace")
    assert "\nstopping (SIGINT): " in text.replace("\r\n", "\n"), text[-2000:]


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs bash")
def test_ctrl_c_stops_the_script_a_run_trains_in(tmp_path) -> None:
    # A script's loop over seeds, or `train && eval`: bash goes on after a child that exits
    # normally on Ctrl-C (it takes the signal as handled), so a saved run used to exit 0 and
    # the script trained the next seed. The run saves, then ends by SIGINT, and so does bash.
    run, went_on = tmp_path / "r", tmp_path / "went_on"
    env = {**os.environ, "PYTHONPATH": TESTS, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ic")}
    train = shlex.join(
        [
            sys.executable,
            "-m",
            "mappo",
            "train",
            "--run-dir",
            str(run),
            "--num-envs",
            "4",
            "--total-steps",
            "1000000",
            "--compile",
            "false",
        ]
    )
    script = subprocess.Popen(
        ["/bin/bash", "-c", f"{train} > /dev/null; touch {shlex.quote(str(went_on))}"],
        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while rows(run) < 2:
        assert script.poll() is None and time.monotonic() < deadline, script.communicate()
        time.sleep(0.05)
    os.killpg(script.pid, signal.SIGINT)  # as Ctrl-C at the script's terminal
    err = script.communicate(timeout=60)[1]
    assert script.returncode == -signal.SIGINT and not went_on.exists(), err
    assert "stopping (SIGINT)" in err and "Traceback" not in err
    logged, _ = read_metrics(run / "metrics.csv")
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == int(logged[-1]["env_steps"])


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs bash")
def test_a_closed_terminal_stops_the_run_as_ctrl_c_does(tmp_path) -> None:
    # Both SIGHUPs reach the run and its workers; the run finishes its update and saves (the
    # second is no "stop at once"), its last lines written to nowhere (EIO from a hung-up
    # terminal would be a traceback). The save is Ctrl-C's, whose resume is exact (above).
    run = tmp_path / "run"
    shell, terminal = train_in_a_terminal([*worker_run(COUNTER), "--run-dir", str(run)], tmp_path)
    out = close_terminal_when(terminal, lambda: rows(run) >= 2)
    assert run_exit_code(shell, tmp_path) == 128 + signal.SIGHUP, out  # stopped, not done
    saved = load_checkpoint(run / "checkpoint.pt")["env_steps"]
    logged, _ = read_metrics(run / "metrics.csv")
    assert saved < 3000 and saved == int(logged[-1]["env_steps"])  # every logged update kept


@pytest.mark.skipif(not os.path.exists("/bin/bash"), reason="needs bash")
def test_a_run_under_nohup_trains_on_when_its_terminal_closes(tmp_path) -> None:
    run = tmp_path / "run"
    shell, terminal = train_in_a_terminal(
        [*worker_run(COUNTER), "--run-dir", str(run)], tmp_path, nohup=True
    )
    close_terminal_when(terminal, lambda: rows(run) >= 2)
    assert run_exit_code(shell, tmp_path, timeout=300) == 0, (tmp_path / "nohup.out").read_text()
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 3000
    assert "stopping" not in (tmp_path / "nohup.out").read_text()


def test_ctrl_c_during_the_first_compile_stops_within_seconds(tmp_path) -> None:
    run = tmp_path / "run"
    process = start_training(
        ["--run-dir", str(run), "--compile", "true", "--total-steps", "100000", "--num-envs",
         "16"], tmp_path
    )  # fmt: skip
    # The update compiles after the first rollout (a fraction of a second): Ctrl-C 3 s after
    # the line that announces it, with the build under way (tens of seconds, cold cache).
    announced: list[float] = []

    def compiling(out: str) -> bool:
        if "then compiling the update" in out and not announced:
            announced.append(time.monotonic())
        return bool(announced) and time.monotonic() - announced[0] > 3

    took, out, err = ctrl_c_after(process, compiling)
    assert process.returncode == -signal.SIGINT and took < 10, (took, out, err)
    assert "Traceback" not in err and "stopping (SIGINT)" in err
    assert "first update: a rollout of 25 steps in 16 env copies, then compiling the update" in out
    assert not (run / "checkpoint.pt").exists()  # no update was completed, none was lost


@pytest.mark.parametrize("resumed_workers", ["0", "4"])
def test_resume_with_other_workers_continues_exactly(resumed_workers, tmp_path) -> None:
    # Copies and their step arrays are regrouped into the new batches: the episodes in flight
    # go on, so the run ends as one that never stopped.
    run = ["--env", "pz_envs:CounterEnv", "--env-kwargs", '{"episode_length": 7}',
           "--num-envs", "4", "--minibatch-size", "50", "--seed", "5", "--compile", "false",
           "--quiet"]  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", "--run-dir", str(straight), *run, "--total-steps", "600"]) == 0
    assert main(["train", "--run-dir", str(stopped), *run, "--total-steps", "300",
                 "--num-workers", "2"]) == 0  # fmt: skip
    assert main(["train", "--resume", str(stopped), "--total-steps", "600",
                 "--num-workers", resumed_workers, "--quiet"]) == 0  # fmt: skip
    assert_same_checkpoints(straight / "checkpoint.pt", stopped / "checkpoint.pt")


@pytest.mark.slow
def test_ctrl_c_with_torchrun_ranks_saves_without_a_traceback(tmp_path) -> None:
    run = tmp_path / "ranks"
    process = start_training(
        ["--nproc", "2", "--run-dir", str(run), "--total-steps", "400000", "--num-envs", "16",
         "--compile", "false"], tmp_path
    )  # fmt: skip
    took, out, err = ctrl_c_after(process, lambda _: rows(run) >= 2)
    assert process.returncode == -signal.SIGINT and took < 10, (took, out, err)
    assert "Traceback" not in err + out and "SignalException" not in err
    assert "stopped after" in out and "checkpoint saved" in out
    saved = load_checkpoint(run / "checkpoint.pt")["env_steps"]
    assert saved >= 2 * 16 * 25 * 2  # both ranks' steps of at least two updates


def test_a_torchrun_resume_of_a_folder_in_use_is_refused_by_every_rank_at_once(
    straight, tmp_path
) -> None:
    """Rank 0 takes the folder's lock before it reads the checkpoint; the other ranks, which
    take none, built their envs and waited for it in the process group until the launcher
    ended them, 20 s on."""
    with holding(straight) as holder:
        process = start_training(["--resume", str(straight), "--nproc", "2"], tmp_path)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    assert f"is in use by another training process (pid {holder.pid} on " in err
    assert "building" not in out  # no rank built its envs


def test_a_script_that_stops_its_run_names_its_own_command_to_continue(tmp_path, capsys) -> None:
    # benchmarks/reproduce.py continues by running itself again (it also writes the table).
    config = build_config(
        fields=dict(
            env="pz_envs:CounterEnv", num_envs=4, total_steps=400, minibatch_size=50,
            compile="false",
        )
    )  # fmt: skip
    summary = Run.start(config, tmp_path / "run").train(
        callback=lambda metrics: True, continue_with="python benchmarks/reproduce.py --suite x"
    )
    assert summary.env_steps == 100 and not summary.finished
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (
        "stopped after 100 env steps; checkpoint saved. "
        "Continue with: python benchmarks/reproduce.py --suite x"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_ends_other_commands_as_ctrl_c_does_with_one_line(tmp_path, sig) -> None:
    """SIGTERM (a batch scheduler) or SIGHUP killed `mappo eval` (or `export`, `report`,
    `plot`) on the spot, silently, where Ctrl-C said one line. Here it comes while the
    evaluation steps an env whose copy first reset with seed 9 (eval's `--seed 9`, none of
    training's) hangs in its second episode."""
    run, marker = tmp_path / "run", tmp_path / "hanging"
    kwargs = {"how": "hang", "episode": 2, "step": 3, "marker": str(marker)}
    assert main(["train", "--run-dir", str(run), "--env", "pz_envs:WorkerTroubleEnv",
                 "--env-kwargs", json.dumps(kwargs), *RUN[4:]]) == 0  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "mappo", "eval", str(run), "--episodes", "100", "--seed", "9"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": TESTS},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not marker.exists():  # the evaluation is under way, in the env's step
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == -sig  # it ends by the signal, as the shell then reads
    assert err == f"mappo: stopped by {signal.Signals(sig).name}\n"


def test_a_folder_in_use_is_refused_until_its_run_stops(tmp_path, capsys) -> None:
    """A second `mappo train` into a training run's folder (resume, or a new run with
    --force) would interleave metrics rows and overwrite checkpoints: it is refused in one
    line naming the process; once that run stops, the folder resumes."""
    run = tmp_path / "run"
    argv = [a if a != "400" else "100000000" for a in RUN]  # trains until stopped
    process = start_training(["--run-dir", str(run), *argv], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run never saved"
            time.sleep(0.05)
        capsys.readouterr()
        in_use = (
            f"mappo: error: run folder {run} is in use by another training process "
            f"(pid {process.pid} on {socket.gethostname()}); stop it first (Ctrl-C there, or "
            f"mappo stop {run}: it saves), or choose another run folder\n"
        )
        assert main(["train", "--resume", str(run), "--total-steps", "1000", "--quiet"]) == 2
        assert capsys.readouterr().err == in_use
        assert main(["train", "--run-dir", str(run), "--force", *RUN]) == 2
        assert capsys.readouterr().err == in_use
        assert main(["stop", str(run)]) == 0  # as Ctrl-C at its terminal
        said = capsys.readouterr().out
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGINT and "checkpoint saved" in out, err
    saved = load_checkpoint(run / "checkpoint.pt")["env_steps"]
    assert said == (
        f"sent SIGINT to pid {process.pid}, training in {run}: a first signal stops it at the "
        f"end of an update, saved; a second stops it at once\nstopped: its checkpoint holds env "
        f"step {saved:,}\n"
    )
    assert main(["stop", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run}: no process trains in it, nothing to stop\n"
    )
    assert main(["stop", str(run.parent)]) == 2  # a folder holding no run at all
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run.parent}: not a run folder (no config.toml), nothing "
        "to stop\n"
    )
    with open(run / "metrics.csv", newline="") as handle:
        steps = [int(row["env_steps"]) for row in csv.DictReader(handle)]
    assert steps == [STEPS_PER_UPDATE * k for k in range(1, len(steps) + 1)]  # one writer
    assert main(["train", "--resume", str(run), "--total-steps", str(saved + 200), "--quiet"]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == saved + 200


@pytest.mark.parametrize("seeds", [None, [0, 1]])
def test_a_resume_holds_its_folders_before_it_reads_their_checkpoints(
    tmp_path, monkeypatch, seeds
) -> None:
    """A resume that read a checkpoint before it took the folder trained on from it while
    another resume finished there, then cut that one's newer rows and overwrote its
    checkpoint; and while its envs were built, `mappo status` and `mappo stop` saw no
    process in the folder."""
    config = build_config(None, None, {"env": "spread", "num_envs": 4, "total_steps": 400})
    run = tmp_path / "run"
    Run.start(config, run, seeds=seeds).train(quiet=True, callback=lambda metrics: True)
    folders = [run] if seeds is None else [run / f"seed_{s}" for s in seeds]
    held_when_read: dict[str, str | None] = {}
    load = run_module.load_checkpoint

    def reading(path, *args, **kwargs):
        held_when_read[Path(path).parent.name] = RunLock.holder(Path(path).parent)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(run_module, "load_checkpoint", reading)
    resumed = Run.resume(run)
    this_process = f"pid {os.getpid()} on {socket.gethostname()}"
    assert held_when_read == {folder.name: this_process for folder in folders}
    assert resumed.train(quiet=True).finished
    assert all(RunLock.holder(folder) is None for folder in folders)  # released at the end


def test_a_resume_of_a_folder_without_a_run_leaves_no_lock_there(tmp_path, capsys) -> None:
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    assert main(["train", "--resume", str(folder)]) == 2
    assert "has no checkpoint.pt" in capsys.readouterr().err
    assert list(folder.iterdir()) == []  # it used to leave its .lock


def test_a_torchrun_rank_keeps_the_default_stop_signals(monkeypatch) -> None:
    """torchrun's agent ends the other ranks with SIGTERM when one fails: in a starting rank
    that read as a scheduler's stop (exit code 143, "stopped by SIGTERM"), not a failure."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")
        stop_as_interrupt()
        assert {sig: signal.getsignal(sig) for sig in saved} == saved
        monkeypatch.delenv("TORCHELASTIC_RUN_ID")
        stop_as_interrupt()
        assert signal.getsignal(signal.SIGTERM) not in (saved[signal.SIGTERM], signal.SIG_DFL)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path) -> None:
    """The lock is the kernel's: SIGKILL of the process holding a seed's folder frees it.
    While held, a seeds run is refused before it writes any seed's folder."""
    folder = tmp_path / "seeds"
    with holding(folder / "seed_4") as holder:
        config = build_config(None, None, {"env": "spread", "num_envs": 4, "total_steps": 200})
        with pytest.raises(RunFolderError, match=rf"seed_4 is in use .*\(pid {holder.pid} on "):
            Run.start(config, folder, seeds=[3, 4])
        assert not (folder / "seed_3").exists()
    RunLock.take(folder / "seed_4").release()
    summary = Run.start(config, folder, seeds=[3, 4]).train(quiet=True)
    assert summary.finished and (folder / "seed_4" / "checkpoint.pt").is_file()


def test_a_run_that_fails_to_open_or_start_releases_its_folders(tmp_path, capsys) -> None:
    """A folder is held by this process only while a Run of it trains: a start refused for
    W&B with seeds, or a resume refused for a damaged metrics.csv, lets the folder go."""
    config = build_config(None, None, {"env": "spread", "num_envs": 4, "total_steps": 200})
    run = Run.start(config, tmp_path / "a", seeds=[3, 4])
    with pytest.raises(RunFolderError, match=r"seed_3 is in use by this process: a Run of it"):
        Run.start(config, tmp_path / "a", seeds=[3, 4], force=True)
    with pytest.raises(ConfigError, match="W&B logs one run per process"):
        run.train(wandb_project="p")
    assert Run.start(config, tmp_path / "a", seeds=[3, 4], force=True).train(quiet=True).finished

    metrics = tmp_path / "a" / "seed_4" / "metrics.csv"
    rows = metrics.read_text()
    metrics.write_text(rows + "damaged\n")
    assert main(["train", "--resume", str(tmp_path / "a"), "--total-steps", "400"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: {metrics} is damaged at line {rows.count(chr(10)) + 1} (not a whole row "
        "with an integer env_steps): restore it, or move it away (a resumed run then starts a "
        "new one)\n"
    )
    # A last row cut short (killed while appending it) is dropped, not appended to.
    metrics.write_text(rows + rows.splitlines()[-1][:12])
    assert main(["report", str(tmp_path / "a")]) == 0
    assert main(["train", "--resume", str(tmp_path / "a"), "--total-steps", "400", "--quiet"]) == 0
    assert metrics.read_text().startswith(rows)
    resumed, _ = read_metrics(metrics)  # every row whole
    assert resumed[-1]["env_steps"] == "400" and len(resumed) > rows.count("\n") - 1


def test_a_run_opened_in_a_with_block_frees_its_folders_however_the_block_ends(
    tmp_path,
) -> None:
    """Ctrl-C between opening a run and training it (a notebook, a script's own setup):
    the block's end closes the run, so the same process can open its folder again; a
    closed run refuses to train, naming how to go on."""
    config = build_config(None, None, {"env": "spread", "num_envs": 4, "total_steps": 200})
    folder = tmp_path / "a"
    closes = []
    with pytest.raises(KeyboardInterrupt), Run.start(config, folder, seeds=[3, 4]) as run:
        close_envs = run.learner.close
        run.learner.close = lambda: closes.append(close_envs())
        assert RunLock.holder(folder / "seed_3") is not None
        raise KeyboardInterrupt
    assert RunLock.holder(folder / "seed_3") is None and RunLock.holder(folder / "seed_4") is None
    assert len(closes) == 1  # the envs too
    with pytest.raises(RuntimeError, match=re.escape(f"continue it with Run.resume('{folder}')")):
        run.train(quiet=True)
    run.close()
    assert len(closes) == 1  # a second close does nothing
    with Run.start(config, folder, seeds=[3, 4], force=True) as run:
        assert run.train(quiet=True).finished
    assert RunLock.holder(folder / "seed_3") is None


@pytest.mark.parametrize("ignores_sigint", [False, True], ids=["stops", "still-saving"])
def test_mappo_stop_finds_the_process_of_a_seeds_folder(tmp_path, capsys, ignores_sigint) -> None:
    """`mappo stop` on the folder of a seeds run signals the process holding its seeds'
    folders; one still busy after --wait gets a line saying how to stop it at once."""
    folder = tmp_path / "seeds"
    with holding(folder / "seed_3", folder / "seed_4", ignores_sigint=ignores_sigint) as holder:
        # A seed's folder, as the in-use refusal names it: the process trains every seed.
        # Time to exit where it stops: a loaded machine took over 1 s to end the process.
        wait = "1" if ignores_sigint else "60"
        code = main(["stop", str(folder / "seed_4"), "--wait", wait])
        out = capsys.readouterr().out.splitlines()
        assert out.pop(0) == (
            f"{folder / 'seed_4'} is one run of {folder}, which one process trains: stopping it"
        )
        assert out[0] == (
            f"sent SIGINT to pid {holder.pid}, training in {folder}: a first signal stops it "
            "at the end of an update, saved; a second stops it at once"
        )
        if ignores_sigint:
            assert code == 1 and holder.poll() is None
            assert out[1] == (
                "still running after 1 s: an update it cannot leave (e.g. a first compile), "
                "or what its script does after training (reproduce.py scores the runs); run "
                f"mappo stop {folder} again to stop an update at once, losing it"
            )
        else:  # it exited (KeyboardInterrupt), though not yet reaped: a zombie
            assert code == 0 and out[1] == (
                f"stopped before its first checkpoint: {folder} holds nothing to resume"
            )
            assert holder.wait(timeout=10) != 0


def test_mappo_stop_of_another_users_run_says_whose_it_is(tmp_path, capsys, monkeypatch) -> None:
    """It said only `mappo: error: Operation not permitted`."""
    folder = tmp_path / "run"
    with holding(folder) as holder:
        (folder / "config.toml").write_text("")

        def not_permitted(pid: int, signum: int) -> None:
            raise PermissionError(1, "Operation not permitted")

        with monkeypatch.context() as patched:
            patched.setattr(os, "kill", not_permitted)
            assert main(["stop", str(folder)]) == 2
        assert capsys.readouterr().err == (
            f"mappo: error: cannot signal pid {holder.pid}, which trains in {folder}: it "
            "belongs to another user (stop it as that user, or as root)\n"
        )


def test_mappo_stop_of_one_setting_says_it_stops_the_whole_sweep(tmp_path, capsys) -> None:
    """A sweep's settings train in one process: `mappo stop SWEEP/<setting>` (or one seed's
    folder in it) stops them all, and now says so. Another run's folder beside it, held by
    another process, is not one of them."""
    sweep = tmp_path / "sweep"
    held = [  # the sweep's two settings of two seeds by one process, another run by another
        [sweep / setting / f"seed_{s}" for setting in ("lr=0.1", "lr=0.2") for s in (0, 1)],
        [tmp_path / "other" / "seed_0"],
    ]
    holders = [  # each says which signal reached it, and holds on
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import signal, time; from mappo.run_folder import RunLock; "
                "signal.signal(signal.SIGINT, lambda *_: print('SIGINT', flush=True)); "
                f"locks = [RunLock.take(p) for p in {[str(p) for p in paths]!r}]; "
                "print('held', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for paths in held
    ]
    sent = (
        f"sent SIGINT to pid {holders[0].pid}, training in {sweep}: a first signal "
        "stops it at the end of an update, saved; a second stops it at once"
    )
    try:
        assert [h.stdout.readline() for h in holders] == ["held\n", "held\n"]
        for named, what in ((sweep / "lr=0.1" / "seed_1", "one run"), (sweep / "lr=0.1",
                            "one setting's runs")):  # fmt: skip
            assert main(["stop", str(named), "--wait", "0"]) == 0
            assert capsys.readouterr().out.splitlines() == [
                f"{named} is {what} of {sweep}, which one process trains: stopping it",
                sent,
                "not waiting (--wait 0): it saves and exits by itself",
            ]
            assert holders[0].stdout.readline() == "SIGINT\n"
        assert main(["stop", str(tmp_path / "other"), "--wait", "0"]) == 0
        assert capsys.readouterr().out.splitlines()[0] == (
            f"sent SIGINT to pid {holders[1].pid}, training in {tmp_path / 'other'}: a first "
            "signal stops it at the end of an update, saved; a second stops it at once"
        )
        assert holders[1].stdout.readline() == "SIGINT\n"
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


def test_mappo_stop_signals_every_rank_of_a_torchrun_job(tmp_path) -> None:
    """Only rank 0 holds the lock; its siblings under torchrun's agent are the other ranks
    (marked by TORCHELASTIC_RUN_ID), which a second signal must reach too."""
    from mappo.run_lock import _with_other_ranks

    agent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "ranks = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
         " for _ in range(2)]\n"
         "print(*(r.pid for r in ranks), flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "TORCHELASTIC_RUN_ID": "x"},
    )  # fmt: skip
    try:
        ranks = [int(pid) for pid in agent.stdout.readline().split()]
        assert _with_other_ranks(ranks[0]) == sorted(ranks)
        assert _with_other_ranks(agent.pid) == [agent.pid]  # the agent is no rank
    finally:
        for pid in ranks:
            os.kill(pid, signal.SIGKILL)
        agent.kill()
        agent.wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` that have not exited (zombies left out)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):  # gone meanwhile
            continue
        if int(fields.get("PPid", "0")) == pid and not fields.get("State", "").startswith("Z"):
            found.append(int(status.parent.name))
    return found


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is no zombie."""
    try:
        return not Path(f"/proc/{pid}/status").read_text().split("State:\t")[1].startswith("Z")
    except (OSError, IndexError):
        return False


WORKER_RUN = ["--env", "pz_envs:WorkerTroubleEnv", "--num-workers", "2", "--num-envs", "4",
              "--minibatch-size", "50", "--seed", "7", "--compile", "false"]  # fmt: skip


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")
def test_ctrl_c_stops_a_run_whose_env_hangs_in_a_worker_and_kill_leaves_no_worker(
    tmp_path,
) -> None:
    # Copy 2 sleeps 600 s at its step 3 of episode 7, in the second rollout; the first
    # signal's grace period ends the rollout and the stuck worker is killed, not waited for.
    run = tmp_path / "hang"
    process = start_training(
        [*WORKER_RUN, "--env-kwargs", '{"how": "hang"}', "--total-steps", "400",
         "--run-dir", str(run)], tmp_path
    )  # fmt: skip
    took, out, err = ctrl_c_after(process, lambda _: rows(run) >= 1)
    assert process.returncode == -signal.SIGINT and took < 30, (took, out, err)
    assert "stopping (SIGINT)" in err and "Traceback" not in err
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 100
    # A run killed outright (SIGKILL, which it cannot handle) takes its workers with it, the
    # one stuck in its env too (an idle one would end on its closed pipe anyway).
    run, hanging = tmp_path / "killed", tmp_path / "hanging"
    kwargs = json.dumps({"how": "hang", "marker": str(hanging)})
    process = start_training(
        [*WORKER_RUN, "--env-kwargs", kwargs, "--total-steps", "400", "--run-dir", str(run)],
        tmp_path,
    )
    deadline = time.monotonic() + 120
    while len(workers := children(process.pid)) < 2 or not hanging.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.kill()
    process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_closing_runs_every_closer_and_keeps_the_error_on_its_way_out() -> None:
    from mappo.run import close_all

    closed = []

    def fails(name: str) -> Callable[[], None]:
        def close() -> None:
            closed.append(name)
            raise RuntimeError(name)

        return close

    with pytest.raises(RuntimeError) as raised:
        close_all([fails("a"), lambda: closed.append("b"), fails("c")])
    assert closed == ["a", "b", "c"] and str(raised.value) == "a"  # the first
    assert raised.value.__notes__ == ["and while closing: RuntimeError: c"]
    failure = ValueError("the run's own error")
    close_all([fails("d")], failure)  # noted on the error leaving, not raised in its place
    assert failure.__notes__ == ["and while closing: RuntimeError: d"]
