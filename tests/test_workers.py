"""Worker processes (`--num-workers`) whose env dies, hangs or breaks the API: one line
naming the worker or the copy and step, never a wait for ever, no process left behind."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pz_envs
import torch

from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.envs.base import EnvError
from mappo.envs.registry import make_env

MODULE = pz_envs.__name__
ENV = f"{MODULE}:WorkerTroubleEnv"
# 4 copies x 25 steps per update, episodes of 5 steps: copy 2 (seed 9 with --seed 7, worker
# 1's first copy) breaks at step 3 of episode 7, in the second rollout.
SMALL = ["--num-envs", "4", "--minibatch-size", "50", "--total-steps", "400", "--seed", "7"]


def train(tmp_path, how: str, num_workers: int) -> int:
    """`mappo train` of WorkerTroubleEnv doing `how`, into tmp_path/r."""
    return main(
        [
            "train",
            "--env",
            ENV,
            "--env-kwargs",
            json.dumps({"how": how}),
            "--run-dir",
            str(tmp_path / "r"),
            "--num-workers",
            str(num_workers),
            "--quiet",
            *SMALL,
        ]
    )


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("kill", "killed by SIGKILL, as the kernel kills a process when memory runs out"),
        ("os_exit", "exit code 7"),
    ],
)
def test_a_worker_that_dies_is_named_in_one_line(how, says, tmp_path, capfd) -> None:
    assert train(tmp_path, how, num_workers=2) == 3
    assert capfd.readouterr().err == (
        f"mappo: env error: env '{ENV}': worker process 1 (env copies 2-3) died in step() "
        f"({says}); the checkpoint holds env step 100: fix that, then mappo train --resume "
        f"{tmp_path / 'r'}\n"
    )
    assert not multiprocessing.active_children()  # the other worker is gone too
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["env_steps"] == 100


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("exit", "failed in step() of env copy 2 at episode step 3: SystemExit: 7"),
        (
            "rewards_list",
            "step() returned rewards as list, not a dict by agent in env copy 2 at episode step 3",
        ),
        (
            "four_tuple",
            "step() returned a 4-tuple, not (observations, rewards, terminations, truncations, "
            "infos) in env copy 2 at episode step 3",
        ),
    ],
)
def test_an_env_that_exits_or_returns_no_parallel_api_result_names_its_copy_and_step(
    how, says, num_workers, tmp_path, capfd
) -> None:
    assert train(tmp_path, how, num_workers) == 3
    assert capfd.readouterr().err == (
        f"mappo: env error: env '{ENV}' {says}; the checkpoint holds env step 100: fix that, "
        f"then mappo train --resume {tmp_path / 'r'}\n"
    )
    assert not multiprocessing.active_children()


class Stopped(BaseException):
    """What the test's alarm raises, as `StopOnSignal` raises `StopRun`."""


def test_a_signal_reaches_the_run_while_an_env_hangs_in_a_worker() -> None:
    # Copy 2 sleeps 600 s in its first step. A run's signal handlers restart interrupted
    # reads (`StopOnSignal`), so a read of the worker's pipe would never let them run.
    env = make_env(
        ENV, 4, seed=7, env_kwargs={"how": "hang", "episode": 1, "step": 1}, num_workers=2
    )
    workers = multiprocessing.active_children()
    assert len(workers) == 2

    def alarm(signum, frame):
        raise Stopped

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.siginterrupt(signal.SIGALRM, False)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(Stopped):
            env.step(torch.zeros(4, env.num_agents, dtype=torch.long))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    env.close()  # a call is pending: the workers are killed, not waited for
    assert time.monotonic() - started < 30
    assert not any(worker.is_alive() for worker in workers)


def test_a_worker_killed_between_steps_is_named_and_a_slow_one_leaves_an_env_error_its_own() -> (
    None
):
    # Worker 1 (copies 2-3) is killed while idle, as the kernel kills one when the learner's
    # update takes the memory: the next step names it, not a broken pipe of the env's.
    env = make_env(ENV, 4, seed=7, env_kwargs={"how": "none"}, num_workers=2)
    actions = torch.zeros(4, env.num_agents, dtype=torch.long)
    env.step(actions)
    (worker,) = [p for p in multiprocessing.active_children() if p.name.endswith("-1")]
    worker.kill()
    worker.join()
    with pytest.raises(EnvError) as raised:
        env.step(actions)
    assert str(raised.value) == (
        f"env '{ENV}': worker process 1 (env copies 2-3) died in step() (killed by SIGKILL, "
        "as the kernel kills a process when memory runs out)"
    )
    env.close()
    assert not multiprocessing.active_children()
    # Copy 2 raises while copy 0, in the other worker, takes 1.5 s over the same step: the
    # worker whose env raised has answered and ended, and its error is what is said.
    kwargs = {"how": "raise", "episode": 1, "step": 1, "slow_seed": 7}
    env = make_env(ENV, 4, seed=7, env_kwargs=kwargs, num_workers=2)
    with pytest.raises(EnvError, match="env copy 2 at episode step 1: RuntimeError: step broke"):
        env.step(actions)
    env.close()
    assert not multiprocessing.active_children()


def test_a_refused_config_leaves_no_worker_behind(tmp_path, capfd) -> None:
    # The minibatch (256 by default) is larger than the batch: found after the env is built.
    code = main(
        ["train", "--env", ENV, "--run-dir", str(tmp_path / "r"), "--num-workers", "2",
         "--num-envs", "4", "--rollout-steps", "16", "--total-steps", "400"]
    )  # fmt: skip
    assert code == 2
    err = capfd.readouterr().err
    assert (
        err.startswith("mappo: error: config key 'minibatch_size' = 256") and err.count("\n") == 1
    )
    assert not multiprocessing.active_children()


def test_a_resume_flag_that_cannot_work_is_the_flags_error_not_the_checkpoints(
    tmp_path, capsys
) -> None:
    assert train(tmp_path, "none", num_workers=2) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--num-workers", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mappo: error: config key 'num_workers' = 3") and "checkpoint" not in err


def test_an_env_that_steps_in_this_process_is_not_said_to_use_workers(tmp_path, caplog) -> None:
    run = str(tmp_path / "s")
    argv = ["train", "--env", "spread", "--num-workers", "2", "--run-dir", run, "--num-envs",
            "4", "--minibatch-size", "50", "--total-steps", "200", "--quiet"]  # fmt: skip
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    said = [r.getMessage() for r in caplog.records]
    assert "building 4 copies of env 'spread' ..." in said
    assert (
        "num_workers = 2 has no effect: env 'spread' steps all its copies in this process" in said
    )


THREAD_BUILT = """
import multiprocessing, sys, threading, time
import torch
sys.path.insert(0, {tests!r})
from mappo.envs.registry import make_env


def build(seed):
    return make_env({env!r}, 4, seed=seed, env_kwargs={{"how": "none"}}, num_workers=2)


built = {{}}
thread = threading.Thread(target=lambda: built.update(first=build(7)))
thread.start()
thread.join()


def train_on():
    time.sleep(1.0)  # the main thread has returned by now
    second = build(8)  # started after it returned
    for env in (built["first"], second):
        for _ in range(6):  # past an episode's end (5 steps)
            env.step(torch.zeros(4, env.num_agents, dtype=torch.long))
    print(*[p.pid for p in multiprocessing.active_children()], flush=True)
    time.sleep(120)


threading.Thread(target=train_on).start()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_workers_started_from_a_thread_that_ends_step_on_and_die_with_their_process() -> None:
    """Linux kills a worker when the thread that forked it ends: an env built in a thread
    that then returns (a thread pool's) steps on in its workers, as does one built after the
    main thread returned while another trains on; a kill of the process still takes them
    with it."""
    script = THREAD_BUILT.format(tests=str(Path(__file__).parent), env=ENV)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.strip(), process.communicate(timeout=30)
        workers = [int(pid) for pid in line.split()]
        assert len(workers) == 4
    finally:
        process.kill()
        process.communicate()
    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers))


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is no zombie (one its new parent has not reaped)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("default", ["fork", "forkserver", "spawn"])
def test_a_stop_signal_just_after_a_worker_is_forked_leaves_it_working(
    monkeypatch, default
) -> None:
    """A worker is forked with the run's handlers, which raise on SIGTERM here; one that
    came before the worker ignores its stop signals (here it sends itself one) used to
    stop it, so the env broke. Workers now ignore them from the fork on, and the env steps,
    whatever start method is the default (Python 3.14's is forkserver). A program that the
    env's constructor starts meanwhile keeps the signals (exec would keep them ignored)."""
    import mappo.envs.pettingzoo.wrapper as wrapper

    def stopped(signum, frame):
        raise RuntimeError(f"the run's handler ran for signal {signum}")

    worker_batch, programs = wrapper._worker_batch, []

    def signalled_first(*args):
        if multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGTERM)
        else:  # the parent's copy, which gymnasium builds for the spaces
            programs.append(subprocess.Popen(["sleep", "60"], preexec_fn=os.getpid))
        return worker_batch(*args)

    monkeypatch.setattr(wrapper, "_worker_batch", signalled_first)
    method = multiprocessing.get_start_method()
    multiprocessing.set_start_method(default, force=True)
    before = signal.signal(signal.SIGTERM, stopped)
    try:
        env = make_env(ENV, 4, seed=7, env_kwargs={"how": "none"}, num_workers=2)
        result = env.step(torch.zeros(4, env.num_agents, dtype=torch.long))
        assert result.reward.shape == (4, env.num_agents)
        env.close()
        # The parent's own handler and signal mask are as they were.
        assert signal.getsignal(signal.SIGTERM) is stopped
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.signal(signal.SIGTERM, before)
        multiprocessing.set_start_method(method, force=True)
        for program in programs:
            program.terminate()
    assert [program.wait(timeout=10) for program in programs] == [-signal.SIGTERM]
    assert not multiprocessing.active_children()
