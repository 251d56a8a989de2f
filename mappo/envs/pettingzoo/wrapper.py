"""Any PettingZoo `ParallelEnv` as a `MultiAgentEnv`: E copies, batched tensors out.

`PettingZooWrapper` probes one copy for its layout, then steps the E copies as
`PettingZooBatch`es. With `num_workers=0` it holds one batch of all E copies
and calls it directly. With W workers it runs W batches of E/W copies in
gymnasium's `AsyncVectorEnv` with `shared_memory=True`: each worker writes its
batch's arrays into shared memory, so per step only the actions and
gymnasium's scalar placeholders go through the pipes. Either way the arrays
become torch tensors once per step. For `--resume`, `pickled_state` pickles
every batch where it runs (each worker its own, through `AsyncVectorEnv.call`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from functools import partial
from multiprocessing import connection
from typing import Any, cast

import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

from mappo.envs.base import EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.envs.pettingzoo.aec import parallel_view
from mappo.envs.pettingzoo.batch import PettingZooBatch, split_snapshots
from mappo.envs.pettingzoo.frames import FrameRecorder
from mappo.envs.pettingzoo.layout import PettingZooLayout, inspect_parallel_env
from mappo.errors import EnvError, RenderError
from mappo.stop_signals import stop_signals

logger = logging.getLogger(__name__)
# Seconds between checks that no worker died while the run waits for their answers.
WORKER_POLL_S = 0.5
# Seconds the workers have to close their copies and exit before they are killed.
WORKER_CLOSE_S = 10.0
PR_SET_PDEATHSIG = 1  # prctl's option (linux/prctl.h)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    """The torch dtype of a layout's numpy one (uint8 or float32)."""
    return torch.from_numpy(np.zeros(0, dtype)).dtype


class PettingZooWrapper(MultiAgentEnv):
    """E copies of a PettingZoo `ParallelEnv` (or `AECEnv`) behind the batched-tensor env
    contract.

    `env_fn()` must build one fresh copy; an `AECEnv` is stepped one turn per
    step through `AECEnvAsParallel` (`spec.turn_based`). `num_workers=0` steps every copy in
    this process; `num_workers=W` splits them over W processes of gymnasium's
    `AsyncVectorEnv` (shared memory), E/W copies each. Copy i is first reset
    with seed `seed + i`; later auto-resets continue each copy's own RNG.
    `use_state` says whether the critic uses the env's own global state: when
    False, `env.state()` is never called and the state is every agent's padded
    observation concatenated (`state` and `final_state` are then views of `obs` and
    `final_obs`). Returned tensors are fresh every step.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_envs: int,
        num_workers: int = 0,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        name: str | None = None,
        use_state: bool = True,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if num_workers and num_envs % num_workers:
            raise ValueError(
                f"num_envs ({num_envs}) must be a multiple of num_workers ({num_workers}): "
                "every worker steps the same number of copies"
            )
        self.num_envs, self.num_workers = num_envs, num_workers
        self.device = torch.device(device)
        name = name or getattr(env_fn, "__qualname__", None) or repr(env_fn)
        env_fn = partial(_built_as_parallel, env_fn)  # every copy, probe and workers' alike
        probe = env_fn()
        try:
            layout = inspect_parallel_env(probe, name, use_state)
        finally:
            if hasattr(probe, "close"):  # a wrong object still gets its error, not this one
                probe.close()
        self.layout = layout
        self.spec = EnvSpec(
            name=name,
            agent_names=layout.agents,
            obs_dim=layout.obs_dim,
            state_dim=layout.state_dim,
            action=layout.action,
            max_episode_steps=layout.max_episode_steps,
            state_source=layout.state_source,
            obs_sizes=layout.obs_sizes,
            turn_based=layout.turn_based,
            obs_shape=layout.obs_shape,
            obs_dtype=_torch_dtype(layout.obs_dtype),
            state_shape=layout.state_shape,
            state_dtype=_torch_dtype(layout.state_dtype),
            conventions=layout.conventions,
        )
        if layout.state_source == "env":
            logger.info("%s: global state from env.state(), %d floats", name, layout.state_dim)
        else:
            logger.info(
                "%s: %s; global state = all agents' padded observations, %d floats",
                name,
                "no env.state()" if use_state else "env.state() unused",
                layout.state_dim,
            )

        copies = num_envs // max(num_workers, 1)
        self._batch: PettingZooBatch | None = None
        self._pool: AsyncVectorEnv | None = None
        if num_workers == 0:
            self._batch = PettingZooBatch(env_fn, layout, copies)
        else:
            self._pool = _in_a_lasting_thread(
                partial(_start_workers, env_fn, layout, copies, num_workers)
            )
        self._copies_per_batch = copies
        # Per-field shape with the worker axis folded into E: [W, k, ...] -> [E, ...].
        step_space = layout.step_space(num_envs)
        self._shapes = {key: space.shape for key, space in step_space.spaces.items()}
        self._action_shape = layout.action_space(num_envs).shape  # [E, A, n]
        self._action_dtype = np.int64 if layout.action.kind == "discrete" else np.float32
        self._closed = False
        self._pending = False  # a call the workers have not all answered
        self._fields: dict[str, torch.Tensor] = {}
        try:
            self.reset(seed)
        except BaseException:
            self.close()  # do not leave worker processes behind a failed start
            raise

    @property
    def _local(self) -> PettingZooBatch:
        """The batch stepped in this process (there are no worker processes)."""
        assert self._batch is not None
        return self._batch

    # ------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy, copy i with seed `seed + i` if given; obs `[E, A, O]`."""
        if self._pool is None:
            arrays, _ = self._local.reset(seed=seed)
        else:
            k = self._copies_per_batch
            seeds: list[int | None] | None = (
                None if seed is None else [seed + w * k for w in range(self.num_workers)]
            )
            arrays, _ = self._in_workers("reset", seed=seeds)
        self._load(arrays)
        return self._fields["obs"]

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (Discrete), `[E, A, n]` (MultiDiscrete) or `[E, A, D]` (Box)."""
        E, A, n = self._action_shape
        # A single Discrete sub-action may come without its trailing axis, as the trainer sends it.
        allowed = [(E, A, n), (E, A)] if n == 1 else [(E, A, n)]
        if tuple(actions.shape) not in allowed:
            raise ValueError(
                f"{self.spec.name}: actions must have shape "
                f"{' or '.join(str(list(s)) for s in allowed)}, got {list(actions.shape)}"
            )
        batch = actions.detach().cpu().numpy().astype(self._action_dtype, copy=False)
        batch = batch.reshape(E, A, n)
        if self._pool is None:
            arrays, *_ = self._local.step(batch)
        else:
            arrays, *_ = self._in_workers("step", batch.reshape(self.num_workers, -1, A, n))
        self._load(arrays)
        f = self._fields
        return MultiAgentStepResult(
            obs=f["obs"],
            state=f["state"],
            reward=f["reward"],
            terminated=f["terminated"],
            truncated=f["truncated"],
            alive=f["alive"],
            action_mask=f["action_mask"],
            env_done=f["env_done"],
            final_obs=f["final_obs"],
            final_state=f["final_state"],
            info={},
        )

    def get_global_state(self) -> torch.Tensor:
        """Global state of the current step, `[E, S]`."""
        return self._fields["state"]

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every copy, `[E, O]`."""
        return self._fields["obs"][:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Legal logits of the current step, `[E, A, K]` bool."""
        return self._fields["action_mask"]

    def get_alive(self) -> torch.Tensor:
        """Which agent slots act at the current step, `[E, A]` bool."""
        return self._fields["alive"]

    def pickled_state(self) -> bytes:
        """Every batch's copies and step arrays pickled (asked of each worker, if any)."""
        if self._pool is None:
            parts = [self._local.pickled_state()]
        else:
            parts = list(self._in_workers("call", "pickled_state"))
        why = next((part for part in parts if isinstance(part, str)), None)
        if why is not None:
            raise pickle.PicklingError(f"env '{self.spec.name}' cannot be pickled ({why})")
        return pickle.dumps(parts)

    def load_pickled_state(self, data: bytes) -> None:
        """Continue every copy from `pickled_state`'s bytes, saved with any number of
        workers (its batches are regrouped into this env's)."""
        parts = pickle.loads(data)
        if len(parts) != max(self.num_workers, 1):
            parts = split_snapshots(parts, max(self.num_workers, 1))
        if self._pool is None:
            arrays = self._local.load_pickled_state(parts)
        else:
            outs = self._in_workers("call", "load_pickled_state", parts)
            arrays = {key: np.stack([out[key] for out in outs]) for key in outs[0]}  # [W, k, ...]
        self._load(arrays)

    def rendered_episodes(self) -> list[list[np.ndarray]]:
        """Copy 0's frames, kept by its `FrameRecorder`: one list per episode begun since it
        was built. A RenderError unless its copies record (`make_env(..., render=True)`)."""
        recorder = next(iter(self.local_envs), None)
        if not isinstance(recorder, FrameRecorder):
            raise RenderError(
                f"env '{self.spec.name}' was not built to record frames: "
                "make_env(..., render=True) builds its copies so"
            )
        return recorder.episodes

    @property
    def local_envs(self) -> list[Any]:
        """The PettingZoo copies, in order, when they run in this process; [] with workers."""
        return self._batch.envs if self._batch is not None else []

    def close(self) -> None:
        """Shut the worker processes down, or close the in-process copies."""
        if self._closed:
            return
        self._closed = True
        if self._pool is None:
            self._local.close()
        elif self._pending:  # a worker busy (hung, or stopped mid-call by a signal) or dead
            self._kill_workers()
        else:
            self._close_workers()

    # ----------------------------------------------------------------- internals

    def _in_workers(self, call: str, *args: Any, **kwargs: Any) -> Any:
        """The pool's `call` ("reset", "step" or "call") with these arguments, in every worker.

        A worker's exception comes back as the batch raised it (one line); gymnasium's log
        of the worker's traceback, which it prints as warnings, becomes notes on it instead
        (shown with the traceback by `mappo --debug`). The wait is `_await_workers`'s; a
        worker found dead, by its pipe (closed as it is written to or read) or by the wait,
        is an EnvError naming it.
        """
        pool = self._pool
        assert pool is not None
        with warnings.catch_warnings(record=True) as logged:
            warnings.simplefilter("always")
            try:
                self._pending = True  # until every worker has answered: close kills them
                try:
                    getattr(pool, f"{call}_async")(*args, **kwargs)
                    self._await_workers(call)
                    # Every pipe is readable now: the read cannot block.
                    result = getattr(pool, f"{call}_wait")(timeout=None)
                except (EOFError, OSError) as err:  # the pipe of a worker that died
                    died = self._died(call, range(self.num_workers), 1.0, failed_only=True)
                    raise died or err from None
                except Exception:  # a worker's env raised: all answered, that one has ended
                    self._pending = False
                    raise
                self._pending = False
            except Exception as err:
                for warning in logged:
                    err.add_note(str(warning.message))
                raise
        for warning in logged:  # a successful call's warnings are passed on as they came
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        return result

    def _await_workers(self, call: str) -> None:
        """Wait until every worker has answered `call`, checking every `WORKER_POLL_S` s that
        none of those yet to answer died (killed, out of memory, a crash in an env's C
        code): reading its pipe would wait for ever. The wait is a poll, which a signal
        interrupts (a read would restart under the run's handlers), so Ctrl-C and `mappo
        stop` reach the run while an env hangs in a worker."""
        assert self._pool is not None
        pipes = self._pool.parent_pipes
        waiting = {pipe: w for w, pipe in enumerate(pipes) if pipe is not None}
        while waiting:
            answered = connection.wait(list(waiting), timeout=WORKER_POLL_S)
            for pipe in answered:
                del waiting[pipe]  # type: ignore[arg-type]
            if not answered and (died := self._died(call, waiting.values())) is not None:
                raise died

    def _died(
        self, call: str, workers: Iterable[int], wait_s: float = 0.0, failed_only: bool = False
    ) -> EnvError | None:
        """The EnvError for the first of `workers` that has ended, or None, waiting up to
        `wait_s` s for one to be reaped (its pipe may read as closed before). `failed_only`:
        an exit code of 0 does not count (a worker whose env raised answers, then exits
        with 0)."""
        assert self._pool is not None
        processes = {w: self._pool.processes[w] for w in workers}
        deadline = time.monotonic() + wait_s
        while True:
            for w, process in processes.items():
                code = process.exitcode
                if code is not None and (code != 0 or not failed_only):
                    return self._death_line(call, w, code)
            running = [p.sentinel for p in processes.values() if p.exitcode is None]
            left = deadline - time.monotonic()
            if not running or left <= 0:
                return None
            connection.wait(running, timeout=left)

    def _death_line(self, call: str, worker: int, code: int) -> EnvError:
        """The one line for worker `worker`, ended with exit code `code` during `call`."""
        k = self._copies_per_batch
        if code >= 0:
            how = f"exit code {code}"
        else:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:  # a real-time signal, which the enum does not name
                how = f"killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += ", as the kernel kills a process when memory runs out"
        return EnvError(
            f"env '{self.spec.name}': worker process {worker} (env copies {worker * k}-"
            f"{worker * k + k - 1}) died in {call}() ({how})"
        )

    def _close_workers(self) -> None:
        """Have each worker close its copies and exit, as gymnasium's close does, but waiting
        at most `WORKER_CLOSE_S` s, by a poll a signal interrupts: a worker whose env hangs
        in `close()`, or that died, is then killed."""
        assert self._pool is not None
        pool = self._pool
        deadline = time.monotonic() + WORKER_CLOSE_S
        try:
            waiting = [pipe for pipe in pool.parent_pipes if pipe is not None]
            for pipe in waiting:
                pipe.send(("close", None))
            while waiting and (left := deadline - time.monotonic()) > 0:
                for ready in connection.wait(waiting, timeout=left):
                    answered = cast(connection.Connection, ready)
                    answered.recv()
                    waiting.remove(answered)
            for process in pool.processes:
                process.join(max(deadline - time.monotonic(), 0.0))
        except (EOFError, OSError):  # a worker that died: killing the rest is all that is left
            pass
        finally:
            self._kill_workers()

    def _kill_workers(self) -> None:
        """End the workers still running at once (SIGKILL: they ignore SIGTERM, see
        `_worker_batch`), release the pipes and mark the pool closed, so that gymnasium's
        close, which waits for answers that may never come, is never called."""
        assert self._pool is not None
        for process in self._pool.processes:
            if process.is_alive():
                process.kill()
        for process in self._pool.processes:
            process.join()
        for pipe in self._pool.parent_pipes:
            if pipe is not None:
                pipe.close()
        self._pool.closed = True  # what is left to free is the shared memory, freed with it

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        """Turn the batch's (or the shared memory's) arrays into fresh tensors on `device`."""
        # copy=True: the arrays are overwritten by the next step, the tensors must not be.
        fields = {
            key: torch.from_numpy(arrays[key].reshape(shape)).to(self.device, copy=True)
            for key, shape in self._shapes.items()
        }
        if "state" not in fields:  # concat_obs: views of the observations, not copies
            fields["state"] = fields["obs"].flatten(1)
            fields["final_state"] = fields["final_obs"].flatten(1)
        self._fields = fields


# While a thread starts workers: the stop signals (`_forking_ignores_stops`), and over a
# worker's fork that thread's signal mask before it.
_forking = threading.local()


def _block_stops_over_fork() -> None:
    # Only multiprocessing's fork of a worker: a subprocess that an env's constructor starts
    # meanwhile would run its program with the signals ignored (exec keeps that).
    caller = sys._getframe(1).f_globals.get("__name__")
    signals: tuple[signal.Signals, ...] | None = getattr(_forking, "signals", None)
    worker = signals is not None and caller == "multiprocessing.popen_fork"
    _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals or ()) if worker else None


def _unblock_in_parent() -> None:
    if getattr(_forking, "mask", None) is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, _forking.mask)
        _forking.mask = None


def _ignore_stops_in_child() -> None:
    if getattr(_forking, "mask", None) is not None:
        for sig in _forking.signals:
            signal.signal(sig, signal.SIG_IGN)  # which also drops one that came meanwhile
        signal.pthread_sigmask(signal.SIG_SETMASK, _forking.mask)
        _forking.signals = _forking.mask = None


os.register_at_fork(
    before=_block_stops_over_fork,
    after_in_parent=_unblock_in_parent,
    after_in_child=_ignore_stops_in_child,
)


@contextlib.contextmanager
def _forking_ignores_stops() -> Iterator[None]:
    """The processes that multiprocessing forks from this thread meanwhile (the workers)
    ignore the stop signals from their first instruction. A forked worker would otherwise
    run this process's handlers until `_worker_batch` ignores them, and be stopped as they
    stop a run (a traceback, a broken env); the signals stay blocked over the fork, in the
    worker until it ignores them, and here only for the fork itself."""
    _forking.signals = stop_signals()
    try:
        yield
    finally:
        _forking.signals = None


def _start_workers(
    env_fn: Callable[[], Any], layout: PettingZooLayout, copies: int, num_workers: int
) -> AsyncVectorEnv:
    """`num_workers` processes of `copies` copies each; if starting them fails (Ctrl-C, an
    env error), none started outlives it."""
    others = set(multiprocessing.active_children())
    try:
        with _forking_ignores_stops():
            return AsyncVectorEnv(
                [
                    partial(_worker_batch, env_fn, layout, copies, w * copies)
                    for w in range(num_workers)
                ],
                shared_memory=True,
                copy=False,  # we copy once, into torch
                # Forked from this thread, whatever the default (forkserver from Python
                # 3.14): the parent-death signal and the signals' hooks above rely on it.
                context="fork" if sys.platform.startswith("linux") else None,
                autoreset_mode=AutoresetMode.DISABLED,  # the batch resets its own copies
            )
    except BaseException:
        for process in set(multiprocessing.active_children()) - others:
            process.kill()
            process.join()
        raise


def _in_a_lasting_thread(start: Callable[[], AsyncVectorEnv]) -> AsyncVectorEnv:
    """`start()` in a thread that lasts as long as this process. A worker dies with the
    *thread* that forked it (`_die_with_parent`: Linux's parent-death signal follows the
    thread), so workers started from a thread that then ends (a thread pool's, a web
    handler's) would be killed with it. The main thread starts them itself, where Ctrl-C
    reaches the start (and `_start_workers` cleans up after it)."""
    if threading.current_thread() is threading.main_thread():
        return start()
    done: Future[AsyncVectorEnv] = Future()
    _lasting_thread().put((start, done))
    return done.result()


@functools.cache
def _lasting_thread() -> queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]:
    """The jobs of one thread that starts worker processes (`_in_a_lasting_thread`) for
    the process's life: a daemon, which nothing stops before the interpreter does (a
    thread pool's thread ends when the main thread returns, though others train on)."""
    jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()

    def serve() -> None:
        while True:
            job, done = jobs.get()
            try:
                done.set_result(job())
            except BaseException as err:  # the caller's to raise
                done.set_exception(err)

    threading.Thread(target=serve, name="mappo-env-workers", daemon=True).start()
    return jobs


def _built_as_parallel(env_fn: Callable[[], Any]) -> Any:
    """One copy from `env_fn()`, an `AECEnv` shown through the parallel API."""
    return parallel_view(env_fn())


def _worker_batch(*args: Any) -> PettingZooBatch:
    """`PettingZooBatch(*args)`, built in a worker process that ignores the signals that stop
    a run (`stop_signals()`): Ctrl-C or a closed terminal signals the whole process group,
    and the parent, which finishes its update and saves first, shuts the workers down
    itself. On Linux the worker is killed when its parent dies, however it dies (`kill -9`
    of a run leaves no worker stepping on). (Gymnasium also builds one in the parent to read
    the spaces; the parent keeps its handlers.)"""
    if multiprocessing.parent_process() is not None:
        for sig in stop_signals():
            signal.signal(sig, signal.SIG_IGN)
        _die_with_parent()
    return PettingZooBatch(*args)


def _die_with_parent() -> None:
    """Have the kernel send this process SIGKILL when its parent ends (Linux's
    `PR_SET_PDEATHSIG`); elsewhere nothing. A parent already gone is checked after."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # no glibc (musl): workers are then ended by the parent alone
        return
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():  # it died before the prctl took
        os._exit(1)
