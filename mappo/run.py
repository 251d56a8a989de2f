"""`Run`: a training run and its run folder(s), the same for `mappo train` and for Python.

    run = Run.start(MappoConfig(env="spread", total_steps=300_000), "runs/spread")
    run.train()                    # progress, checkpoints, best.pt, metrics.csv, curve.png
    with Run.resume("runs/spread", total_steps=600_000) as run:  # closed however it ends
        run.train()

A run owns its learner (a `MappoTrainer`, on one rank or several, or a
`MultiSeedTrainer` for `seeds`), one run folder per seed, the checkpoint
schedule, `best.pt`, stopping on SIGINT/SIGTERM/SIGHUP and the progress output. One
loop (`train_until_budget`) serves one seed and K seeds.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import functools
import itertools
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from mappo.checkpoint import BEFORE_FIELDS, load_checkpoint, saved_config
from mappo.config import (
    AUTO,
    ENV_DIM_FIELDS,
    FIELDS,
    MappoConfig,
    check_new_seed,
    check_savable,
    from_dict,
    read_toml,
)
from mappo.distributed import Distributed, is_main_rank
from mappo.envs.registry import steps_in_this_process
from mappo.errors import ConfigError, DivergenceError, EnvError, RunFolderError, WriteError
from mappo.progress import Progress, RecentReturns
from mappo.run_folder import RUN_FILES, RunFolder, slot_folders, start_again
from mappo.run_lock import RunLock, signal_holders, wait_released
from mappo.seeds import MultiSeedTrainer, SeedStreams, check_slot_configs, pooled_metrics
from mappo.stop_signals import (
    output_lost,
    silence,
    stop_signals,
    take_hangup,
    terminal_outputs,
)
from mappo.trainer import Learner, MappoMetrics, MappoTrainer, budget_end, train_until_budget

logger = logging.getLogger(__name__)  # `mappo train` shows its INFO lines unless --quiet
CHECKPOINT_EVERY_UPDATES = 50
GRACE_S = 3.0  # after a stop signal, how long the update in progress may take to finish
# An iteration at least this long keeps its end state in memory, so that a stop signal need
# not wait for the next one (a shorter one is over within the grace period anyway).
SNAPSHOT_MIN_S = 1.0
HEARTBEAT_S = 30.0  # a wait this long without an update says what it waits for
COMPILING = (
    "compiling the update (on a CPU a minute or more the first time, then cached; "
    "--compile false trains without)"
)
FIRST_EPISODE_UPDATES = 3  # no episode finished after this many updates: say why
# What `resume` may change: how the run is computed and watched, never what it learns.
RESUME_CHANGES = (
    "total_steps",
    "compile",
    "device",
    "torch_threads",
    "num_workers",
    "checkpoint_interval",
    "eval_interval",
    "eval_episodes",
)


@dataclass
class RunSummary:
    """How `Run.train` ended."""

    env_steps: int  # per seed
    finished: bool  # reached total_steps; False when a signal or the callback stopped it
    recent_returns: list[float]  # per seed: the recent episodes' mean return, NaN if none
    paths: list[Path]  # the run folders, one per seed
    stopped_by: str | None = None  # the signal that stopped it ("SIGINT", "SIGHUP", ...), if any


class Run:
    """A learner and its run folders; `train()` runs it to the budget, saving as it goes.

    Build one with `Run.start` (a new run) or `Run.resume` (a run folder's
    checkpoint). On ranks other than 0 of a multi-rank run, `folders` is empty:
    rank 0 writes.
    """

    def __init__(
        self, learner: Learner, folders: list[RunFolder], path: Path, opening: str
    ) -> None:
        self.learner = learner
        self.folders = folders
        self.path = path  # the run folder, or the folder of the seeds' run folders
        self._opening = opening  # the first line train() prints
        self._closed = False

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the run folders' locks and close the envs; `train()` does so when it
        ends, so this matters for a run opened but not trained (an error or Ctrl-C between
        `Run.start` and `train()`: `with Run.start(...) as run:` closes it however the
        block ends). Closing twice does nothing."""
        self._close()

    @property
    def trainers(self) -> list[MappoTrainer]:
        """One trainer per seed; `trainers[k].policy` holds seed k's current weights."""
        return self.learner.trainers

    @classmethod
    def start(
        cls,
        config: MappoConfig,
        run_dir: str | Path | None = None,
        seeds: Sequence[int] | None = None,
        force: bool = False,
        sweep: Mapping[str, Sequence[Any]] | None = None,
    ) -> Run:
        """A new run of `config` in `run_dir` (default `runs/<env>-<time>`).

        With `seeds`, every seed trains in this process as one batched network
        and seed s writes `run_dir/seed_<s>`. With `sweep` (field → values), every
        combination of the values, with every seed, is one more slot of that
        network, writing `run_dir/<field=value,...>/seed_<s>`: fields that would
        change a tensor's shape or the rollout cannot be swept (a ConfigError
        says so). An existing run in a folder is refused before any work, unless
        `force` (which replaces it).
        """
        path = Path(run_dir) if run_dir is not None else default_run_dir(config)
        check_savable(config)
        if seeds is None:  # `--seeds` are checked as they are parsed (`check_seeds`)
            check_new_seed(config.seed)
        if seeds is None and not sweep:
            dist = Distributed.from_environment(config.device)
            if dist.is_main:
                _refuse_other_slots(path, [])
                RunFolder.check_free(path, force)
                _say_building(config, config.num_envs)
            trainer = MappoTrainer(config, distributed=dist)
            folders = (
                open_folders(trainer, [lambda: RunFolder.create(path, trainer.config, force)])
                if dist.is_main
                else []
            )
            return cls(trainer, folders, path, f"run folder: {path}")
        if Distributed.from_environment(config.device).world_size > 1:
            raise ConfigError(
                "seeds and sweeps train in one process; they do not combine with ranks (--nproc)"
            )
        if (path / "checkpoint.pt").exists():  # resume would find that run, not the slots
            raise RunFolderError(
                f"run folder {path} holds a run of its own (checkpoint.pt); --seeds writes "
                "its runs in RUN_DIR/seed_<s>: choose another --run-dir"
            )
        settings = sweep_settings(sweep or {})
        seeds = list(seeds) if seeds is not None else [config.seed]
        slots = [(setting, seed) for setting in settings for seed in seeds]
        paths = [path / setting_name(setting) / f"seed_{seed}" for setting, seed in slots]
        _refuse_other_slots(path, paths)
        for slot_path in paths:
            RunFolder.check_free(slot_path, force)
        configs = [config.replace(**setting, seed=seed) for setting, seed in slots]
        check_slot_configs(configs)  # before the line that says envs are being built
        _say_building(config, len(paths) * config.num_envs)
        multi = MultiSeedTrainer.of_configs(configs)
        folders = open_folders(
            multi,
            [
                functools.partial(RunFolder.create, p, t.config, force)
                for p, t in zip(paths, multi.trainers, strict=True)
            ],
        )
        return cls(multi, folders, path, _slots_line(path, folders))

    @classmethod
    def resume(cls, run_dir: str | Path, **changes: Any) -> Run:
        """The run in `run_dir` (one seed, or the seed_<s> folders of a seeds run) from its
        checkpoint, continuing exactly where it was saved.

        `changes` may set the fields of `RESUME_CHANGES`, which change how the
        run is computed or watched but not what it learns; any other is refused.
        """
        refused = sorted(set(changes) - set(RESUME_CHANGES))
        if refused:
            raise ConfigError(
                f"a resumed run keeps the config it learns with: {', '.join(refused)} cannot "
                f"change (these can: {', '.join(RESUME_CHANGES)})"
            )
        path = Path(run_dir)
        seed_paths = slot_folders(path)
        single = (path / "checkpoint.pt").is_file() or not seed_paths
        # Each folder's lock before its checkpoint is read; rank 0 alone writes the folders.
        locks: dict[Path, RunLock] = {}
        try:
            if not is_main_rank():  # a rank of a --nproc run (one folder): rank 0 holds it
                RunLock.refuse_if_held_outside_this_job(path)
            writers = ([path] if single else seed_paths) if is_main_rank() else []
            for folder in writers:
                if (lock := RunFolder.lock_to_resume(folder)) is not None:
                    locks[folder] = lock
            run = cls._at_checkpoints(path, seed_paths if not single else [], changes, locks)
        except BaseException:
            for lock in locks.values():  # a folder opened released its own (a no-op again)
                lock.release()
            raise
        try:
            run._keep_best_bars()
        except BaseException as failure:  # a damaged best.pt, or Ctrl-C meanwhile
            run._close(failure=failure)
            raise
        return run

    @classmethod
    def _at_checkpoints(
        cls,
        path: Path,
        seed_paths: list[Path],
        changes: dict[str, Any],
        locks: dict[Path, RunLock],
    ) -> Run:
        """The run of folder `path` (or of its `seed_paths`, a seeds run) at its checkpoints,
        its folders opened with `locks`, the ones `resume` took."""
        if not seed_paths:
            trainer = _trainer_at_checkpoint(path, changes, distributed=True)
            folders = (
                open_folders(
                    trainer,
                    [
                        lambda: RunFolder.resume(
                            path, trainer.config, trainer.env_steps, locks.get(path)
                        )
                    ],
                )
                if trainer.dist.is_main
                else []
            )
            return cls(trainer, folders, path, _resume_line(path, trainer))
        if not any((p / "checkpoint.pt").is_file() for p in seed_paths):
            raise RunFolderError(
                f"run folder {path} has no checkpoint in its seeds' folders (the run "
                f"stopped before its first checkpoint); start it again with: "
                f"{start_again(path)}"
            )
        # Before any env is built (a JAX env compiles): the seeds must be in step.
        payloads = [load_checkpoint(p / "checkpoint.pt") for p in seed_paths]
        _check_in_step(path, seed_paths, [payload.get("env_steps", 0) for payload in payloads])
        budgets = {payload["config"]["total_steps"] for payload in payloads}
        if len(budgets) > 1 and "total_steps" not in changes:
            # A seed brought level alone (`_check_in_step`'s advice) saved the budget it was
            # brought to; the run goes on to the budget the others still hold.
            changes = {**changes, "total_steps": max(budgets)}
            logger.warning(
                "%s: its seeds' total_steps differ (%s): they go on to %s",
                path,
                ", ".join(f"{n:,}" for n in sorted(budgets)),
                f"{max(budgets):,}",
            )
        trainers: list[MappoTrainer] = []
        streams = None
        try:
            for seed_path in seed_paths:
                trainers.append(_trainer_at_checkpoint(seed_path, changes))
                streams = streams or SeedStreams(trainers[0].device)
                streams.capture()  # the seed's stream, as its checkpoint saved it
            assert streams is not None  # a seeds folder holds at least one seed
            multi = MultiSeedTrainer.from_trainers(trainers, streams)
        except BaseException:
            for trainer in trainers:
                trainer.close()
            raise
        folders = open_folders(
            multi,
            [
                functools.partial(RunFolder.resume, p, t.config, t.env_steps, locks.get(p))
                for p, t in zip(seed_paths, trainers, strict=True)
            ],
        )
        return cls(
            multi,
            folders,
            path,
            _slots_line(path, folders) + "; " + _resume_line(seed_paths[0], trainers[0]),
        )

    def train(
        self,
        quiet: bool = False,
        stream: TextIO | None = None,
        wandb_project: str | None = None,
        callback: Callable[[list[MappoMetrics]], Any] | None = None,
        continue_with: str | None = None,
    ) -> RunSummary:
        """Train to `config.total_steps`, writing the run folder(s) as it goes.

        A checkpoint is written after the first update, then whenever
        `checkpoint_interval` seconds or `CHECKPOINT_EVERY_UPDATES` updates have
        passed, and at the end: a hard kill loses at most one interval. A better
        evaluation (`eval_interval`) writes `best.pt`. SIGINT, SIGTERM or SIGHUP
        (a closed terminal; not under `nohup`) stops after the current update and
        saves; an update still running `GRACE_S` seconds later is abandoned where
        the state it started from is kept (on disk, or in memory after updates of
        `SNAPSHOT_MIN_S` or more), and a second signal abandons it at once
        (`StopOnSignal`). `callback(metrics)`, one
        `MappoMetrics` per seed, runs after every update and stops the run by
        returning True. Progress goes to `stream` (stdout), unless `quiet`. A stopped
        run's last line says to continue with `continue_with` (a script driving the run
        names its own command), by default `mappo train --resume <run folder>`.
        """
        if self._closed:  # its envs are closed, its folders' locks released
            raise RuntimeError(
                f"this Run of {self.path} is closed (train() closes it when it ends); "
                f"continue it with Run.resume({str(self.path)!r}).train()"
            )
        learner, folders, trainers = self.learner, self.folders, self.trainers
        main = bool(folders)
        config = learner.config
        if learner.env_steps >= config.total_steps:  # a finished run resumed as it was
            if main:
                print(
                    f"nothing to train: {self.path} is at env step {learner.env_steps:,}, "
                    f"its total_steps being {config.total_steps:,}; give a larger "
                    "--total-steps to go on",
                    file=stream or sys.stdout,
                )
            self._close()  # nothing written: its files stay as the run left them
            paths = [f.path for f in folders]
            return RunSummary(learner.env_steps, True, [math.nan] * len(trainers), paths)
        if wandb_project is not None and main:
            try:
                if len(folders) > 1:
                    raise ConfigError(
                        "W&B logs one run per process; it does not combine with seeds"
                    )
                folders[0].use_wandb(config, wandb_project)
            except BaseException as wandb_failure:
                self._close(failure=wandb_failure)
                raise
        stream = stream or sys.stdout
        progress = Progress(
            len(trainers) * budget_end(learner),
            len(trainers) * learner.env_steps,
            quiet=quiet or not main,
            stream=stream,
        )
        if main:
            progress.write(self._opening)
            if trainers[0].auto_settings:
                progress.write(trainers[0].auto_settings)
        recent = [RecentReturns() for _ in trainers]
        # A resume's recent return goes on from the updates logged before it.
        for k, folder in enumerate(folders):
            for logged in folder.logged_before:
                recent[k].add(logged.episode_return, logged.episodes)
        # Seeds with fewer logged updates (seeds resumed out of step) join at their last one.
        latest_first = itertools.zip_longest(*(reversed(f.logged_before) for f in folders))
        for logged_together in reversed(list(latest_first)):
            progress.remember(pooled_metrics([m for m in logged_together if m is not None]))
        checkpoints = CheckpointSchedule(self._save, config.checkpoint_interval)
        start_steps = boundary_steps = learner.env_steps  # the last completed update's
        snapshot: tuple[int, list[tuple[dict[str, Any], bytes | str | None]]] | None = None
        last_boundary = time.monotonic()

        def may_abandon() -> bool:
            """Whether the state of the last completed update is on disk or in `snapshot`
            (or no update has completed: the start is the run's beginning or its checkpoint)."""
            kept = (start_steps, checkpoints.saved_steps, snapshot and snapshot[0])
            # Ranks cannot abandon an update one by one: the others would wait in its
            # collectives. They finish it together (a second signal stops each at once).
            return learner.dist.world_size == 1 and boundary_steps in kept

        def on_update(metrics: list[MappoMetrics]) -> bool:
            nonlocal boundary_steps, snapshot, last_boundary
            for k, (trainer, seed_metrics) in enumerate(zip(trainers, metrics, strict=True)):
                if main:
                    folders[k].log(seed_metrics)
                recent[k].add(seed_metrics.episode_return, seed_metrics.episodes)
                # Only rank 0 evaluates (NaN elsewhere, and where no evaluation ran).
                best = main and seed_metrics.eval_return > trainer.best_eval_return
                if learner.dist.any(best):  # the state is gathered from every rank
                    if best:
                        trainer.best_eval_return = seed_metrics.eval_return
                    state = learner.seed_state_dict(k)
                    if main:
                        folders[k].save_best(state)
            progress.update(pooled_metrics(metrics))
            if main and learner.updates == FIRST_EPISODE_UPDATES and progress.recent.episodes == 0:
                progress.write(no_episode_hint(trainers[0]))
            # Ranks' clocks differ, and saving is collective.
            if learner.dist.any(checkpoints.due(learner.updates)):
                checkpoints.save()
            elif learner.dist.any(time.monotonic() - last_boundary >= SNAPSHOT_MIN_S):
                snapshot = (learner.env_steps, self._states(copied=True))
            boundary_steps, last_boundary = learner.env_steps, time.monotonic()
            heartbeat.beat()
            return (
                stop.signal_name is not None
                or progress.reader_gone
                or progress.failed is not None
                or (callback is not None and bool(callback(metrics)))
            )

        heartbeat = Heartbeat(learner, progress.write, HEARTBEAT_S if main and not quiet else 0)
        if main and not quiet and learner.updates == 0:
            progress.write(heartbeat.first_line())
        # One "stopping" line per run, not per rank.
        leaving: BaseException | None = None  # the error leaving the updates, if any
        stop_stream = sys.stderr if main else None
        below_bar = progress.bar_on_terminal and stop_stream is not None and stop_stream.isatty()
        with StopOnSignal(may_abandon, stop_stream, below_bar) as stop, heartbeat:
            try:
                try:
                    train_until_budget(learner, on_update)
                    stop.disarm()  # the updates are over: what is left is the final save
                    checkpoints.save_final(learner.env_steps)
                except StopRun:
                    if (
                        snapshot is not None
                        and snapshot[0] == boundary_steps != checkpoints.saved_steps
                    ):
                        self._write(snapshot[1])
                        checkpoints.saved_steps = snapshot[0]
            except DivergenceError as err:  # the weights are lost: say which are kept
                kept = checkpoints.saved_steps or start_steps
                held = f"the checkpoint holds env step {kept:,}" if kept else "nothing was saved"
                leaving = DivergenceError(f"{err}; {held}")
                raise leaving from None
            except WriteError as err:  # a full disk, a quota: say what is kept and how to go on
                kept = checkpoints.saved_steps or start_steps
                leaving = err.with_hint(self._going_on(kept, err.no_space, continue_with))
                raise leaving from err
            except EnvError as err:  # a worker killed, an env's bug: what is kept, and how on
                kept = checkpoints.saved_steps or start_steps
                # The same error (its cause and notes are the env's traceback, for --debug).
                err.args = (f"{err}; {self._going_on(kept, False, continue_with)}",)
                leaving = err
                raise
            except BaseException as err:
                leaving = err
                raise
            finally:
                stop.disarm()  # closing (curves, logs) is never abandoned but by a new signal
                stopped_by_output = progress.failed  # not a last line lost while closing
                self._close(progress, leaving)
        summary = RunSummary(
            boundary_steps,
            boundary_steps >= config.total_steps,
            [r.mean for r in recent],
            [f.path for f in folders],
            # A pipe's reader that ended would have sent SIGPIPE, which Python ignores.
            stop.signal_name or ("SIGPIPE" if progress.reader_gone else None),
        )
        if stopped_by_output is not None and not summary.finished:  # stopped, saved: say so
            name, failure = stopped_by_output
            kept = checkpoints.saved_steps or start_steps
            no_space = failure.errno in (errno.ENOSPC, errno.EDQUOT)
            raise WriteError(
                f"cannot write {name} ({failure.strerror or failure}); the run stopped after its "
                f"update at env step {boundary_steps:,}, and "
                + self._going_on(kept, no_space, continue_with),
                no_space,
            )
        if main:
            lost = boundary_steps - (checkpoints.saved_steps or start_steps)
            outcomes = set(progress.recent_stats()) - {"ret"}  # seats, wins, rewarded episodes
            closing = self._closing(summary, recent, lost, continue_with)
            if outcomes and summary.finished:
                closing += f" ({progress.recent_text()})"
            if progress.reader_gone:  # the output now goes nowhere: say it where it is seen
                progress.write(
                    f"the output's reader has gone (a closed pipe): {closing}", sys.stderr
                )
            else:
                progress.write(closing)
        return summary

    def _going_on(self, kept_steps: int, no_space: bool, continue_with: str | None) -> str:
        """After a write failed: the env step the checkpoint holds (0: none was written) and
        the command that continues from it, or how to start again."""
        fix = "make room" if no_space else "fix that"
        if kept_steps:
            command = continue_with or f"mappo train --resume {self.path}"
            return f"the checkpoint holds env step {kept_steps:,}: {fix}, then {command}"
        again = f": {continue_with}" if continue_with else " with the same command and --force"
        return f"no checkpoint was written: {fix}, then start it again{again}"

    def _close(
        self, progress: Progress | None = None, failure: BaseException | None = None
    ) -> None:
        """Close the progress lines, the run folders (releasing their locks) and the learner,
        each even if one before it raised (`close_all`, `failure` the error on its way out);
        once."""
        if self._closed:
            return
        self._closed = True
        close_all(
            [
                *([progress.close] if progress is not None else []),
                *(folder.close for folder in self.folders),
                self.learner.close,
                lambda: self.learner.dist.shutdown(together=failure is None),
            ],
            failure,
        )

    def _states(self, copied: bool = False) -> list[tuple[dict[str, Any], bytes | str | None]]:
        """Every seed's (checkpoint, pickled env copies) as they stand (a collective call on
        several ranks); `copied`: tensors of their own, which training does not change."""
        states = []
        for k, trainer in enumerate(self.trainers):
            state = self.learner.seed_state_dict(k)
            states.append((copy.deepcopy(state) if copied else state, trainer.pickled_env_state()))
        return states

    def _write(self, states: list[tuple[dict[str, Any], bytes | str | None]]) -> None:
        """Write `_states()` into the run folders (rank 0's)."""
        for folder, (state, pickled_env) in zip(self.folders, states, strict=False):
            folder.save(state, pickled_env)

    def _save(self) -> int:
        """Write every seed's checkpoint now; the env steps saved."""
        self._write(self._states())
        return self.learner.env_steps

    def _keep_best_bars(self) -> None:
        """On resume: best.pt may be newer than checkpoint.pt (a stop between the two saves),
        so its score stays the bar that a later evaluation must beat."""
        for folder, trainer in zip(self.folders, self.trainers, strict=False):
            if folder.best_path.is_file():
                best = load_checkpoint(folder.best_path).get("best_eval_return", -math.inf)
                trainer.best_eval_return = max(trainer.best_eval_return, float(best))

    def _closing(
        self,
        summary: RunSummary,
        recent: list[RecentReturns],
        lost: int,
        continue_with: str | None,
    ) -> str:
        """The last line: where the run stands and what to run next."""
        # "seed 3" in a seeds run, "lr=0.001/seed 3" in a sweep
        labels = [
            str(f.path.relative_to(self.path)).replace("seed_", "seed ") for f in self.folders
        ]
        sweep = any("/" in label for label in labels)
        per_slot = (" per run" if sweep else " per seed") if len(recent) > 1 else ""
        if not summary.finished and not self.folders[0].checkpoint_path.is_file():
            again = "Start it again with" + (
                f": {continue_with}" if continue_with else " the same command and --force"
            )
            return (
                f"stopped after {summary.env_steps} env steps{per_slot}, before its first "
                f"checkpoint: nothing to resume in {self.path}. {again}"
            )
        if not summary.finished:
            saved = (
                "checkpoint saved"
                if not lost
                else (
                    f"the checkpoint holds env step {summary.env_steps - lost} (the {lost} steps "
                    "since were not saved)"
                )
            )
            return (
                f"stopped after {summary.env_steps} env steps{per_slot}; {saved}. "
                f"Continue with: {continue_with or f'mappo train --resume {self.path}'}"
            )
        if len(recent) == 1:  # its folder: `--seeds 3` writes RUN_DIR/seed_3
            return (
                f"done: {summary.env_steps} env steps, recent episode return "
                f"{recent[0].text(3)}, run folder {self.folders[0].path}"
            )
        returns = ", ".join(f"{label} {r.text(3)}" for label, r in zip(labels, recent, strict=True))
        where = "<setting>/seed_<s>" if sweep else "seed_<s>"
        return (
            f"done: {summary.env_steps} env steps{per_slot}, recent episode return "
            f"{returns}; run folders {self.path}/{where}"
        )


def stop_training(path: str | Path, wait_s: float, say: Callable[[str], None]) -> bool:
    """`mappo stop`: SIGINT to the process training in the run folder `path` (or in its
    seeds' or sweep's folders), as Ctrl-C at its terminal: it finishes or abandons its
    update, saves and exits. Whether it did within `wait_s` seconds (0: the signal is
    sent, nothing waited for: True); `say` gets what is done. One seed's folder (or one
    setting's) of a run that trains all its seeds and settings in one process stops that
    run, and says so. A folder nothing trains in, or a process this machine cannot signal,
    is refused in one line."""
    path = Path(path)
    if not path.is_dir():
        how = "is a file, not a run folder" if path.exists() else "does not exist"
        raise RunFolderError(f"run folder {path} {how}")
    ours = {p.resolve() for p in slot_folders(path) or [path]}
    # One seed's folder, or one setting's of a sweep, whose process trains more runs beside
    # it: the stop is theirs too, and said so.
    holders = {RunLock.holder(folder) for folder in ours} - {None}
    covered, trained_with = set(ours), None
    for parent in (path.parent, path.parent.parent) if holders else ():
        # A folder above counts where the same process trains runs of it not yet counted: a
        # seeds run's parent folder lists the same seeds again, a sweep's the other settings.
        slots = {p.resolve() for p in slot_folders(parent)}
        if any(RunLock.holder(other) in holders for other in slots - covered):
            covered, trained_with = covered | slots, parent
    if trained_with is not None:
        what = "one run" if ours == {path.resolve()} else "one setting's runs"
        say(f"{path} is {what} of {trained_with}, which one process trains: stopping it")
        path = trained_with
    folders = slot_folders(path) or [path]
    held = [folder for folder in folders if RunLock.holder(folder) is not None]
    if not held:
        is_run = any((folder / name).exists() for folder in folders for name in RUN_FILES)
        what = "no process trains in it" if is_run else "not a run folder (no config.toml)"
        raise RunFolderError(f"run folder {path}: {what}, nothing to stop")
    pids = signal_holders(held, signal.SIGINT)
    say(
        f"sent SIGINT to pid {', '.join(map(str, pids))}, training in {path}: a first "
        "signal stops it at the end of an update, saved; a second stops it at once"
    )
    if wait_s <= 0:  # asked only to send the signal
        say("not waiting (--wait 0): it saves and exits by itself")
        return True
    if not wait_released(held, pids, time.monotonic() + wait_s):
        say(
            f"still running after {wait_s:g} s: an update it cannot leave (e.g. a first "
            "compile), or what its script does after training (reproduce.py scores the "
            f"runs); run mappo stop {path} again to stop an update at once, losing it"
        )
        return False
    checkpoint = held[0] / "checkpoint.pt"
    if not checkpoint.is_file():
        say(f"stopped before its first checkpoint: {path} holds nothing to resume")
    else:
        per_seed = " per seed" if len(folders) > 1 else ""
        steps = load_checkpoint(checkpoint)["env_steps"]
        say(f"stopped: its checkpoint holds env step {steps:,}{per_seed}")
    return True


def close_all(
    closers: Sequence[Callable[[], object]], failure: BaseException | None = None
) -> None:
    """Call every closer in order, even when one raises. With `failure` (the error on its
    way out), what closing raises is noted on it, not raised in its place; else the first
    closing error is raised, the later ones noted on it. A signal (not an Exception)
    stops the closing at once, as a second Ctrl-C does."""
    errors: list[Exception] = []
    for close in closers:
        try:
            close()
        except Exception as closing_error:
            errors.append(closing_error)
    first = failure if failure is not None else (errors[0] if errors else None)
    for error in errors:
        if error is not first and first is not None:
            first.add_note(f"and while closing: {type(error).__name__}: {error}")
    if failure is None and first is not None:
        raise first


def open_folders(learner: Learner, openers: Sequence[Callable[[], RunFolder]]) -> list[RunFolder]:
    """The run folders `openers` open, in turn; if one fails, the ones opened are closed
    (their locks released) and so is the learner, before the error goes on."""
    folders: list[RunFolder] = []
    try:
        for open_folder in openers:
            folders.append(open_folder())
    except BaseException as failure:
        close_all([*(folder.close for folder in folders), learner.close], failure)
        raise
    return folders


@contextlib.contextmanager
def info_lines(stream: TextIO | None) -> Iterator[None]:
    """Show this module's INFO lines (the env copies being built) on `stream` meanwhile;
    None shows nothing more than logging's own settings do."""
    if stream is None:
        yield
        return
    handler, level = _LineHandler(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _LineHandler(logging.StreamHandler):
    """A StreamHandler whose line that cannot be written is dropped, not reported with
    logging's traceback: the progress lines after it meet the same failure, which stops
    the run (`Progress`). Other errors (a bad format) are reported as logging does."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        """Drop a line the stream refused; report any other error."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)


def default_run_dir(config: MappoConfig) -> Path:
    """runs/<env>-<time> for a run started without a run folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace(':', '-')}-{stamp}"


def sweep_settings(sweep: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values, the first field varying slowest: `{"lr": [1,
    2], "gamma": [3]}` → `[{"lr": 1, "gamma": 3}, {"lr": 2, "gamma": 3}]`; `[{}]` for none."""
    for field, values in sweep.items():
        if not values:
            raise ConfigError(f"--sweep {field}: give at least one value")
        if len(set(map(repr, values))) < len(values):
            raise ConfigError(f"--sweep {field}: a value appears twice")
    return [dict(zip(sweep, combo, strict=True)) for combo in itertools.product(*sweep.values())]


def setting_name(setting: Mapping[str, Any]) -> str:
    """A slot's folder name: `lr=0.0003,ent_coef=0.01`; "" for no setting (a seeds run)."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ",".join(f"{field}={text(value)}" for field, value in setting.items())


def _trainer_at_checkpoint(
    path: Path, changes: dict[str, Any], distributed: bool = False
) -> MappoTrainer:
    """The trainer of the run folder `path`, at its checkpoint, with `changes`; on the ranks
    of this process group when `distributed`."""
    checkpoint = RunFolder.checkpoint_to_resume(path)
    payload = load_checkpoint(checkpoint)
    config = saved_config(payload, checkpoint, **changes)
    # Only a budget given now: a finished run is often past its own (whole rollouts).
    if "total_steps" in changes and config.total_steps < (reached := payload.get("env_steps", 0)):
        raise ConfigError(
            f"total_steps {config.total_steps:,}: run {path} has reached env step "
            f"{reached:,}, and a run does not go back; give more, or leave it out"
        )
    _check_folder_config(path, saved_config(payload, checkpoint))
    _say_building(config, config.num_envs)
    dist = (
        Distributed.from_environment(changes.get("device", payload["config"]["device"]))
        if distributed
        else None
    )
    pickled_env = RunFolder.read_pickled_env(path, payload)
    trainer, _ = MappoTrainer.from_checkpoint(
        checkpoint, distributed=dist, pickled_env=pickled_env, **changes
    )
    return trainer


def _check_folder_config(path: Path, held: MappoConfig) -> None:
    """The run folder's config.toml against its checkpoint's config (`held`), which a resume
    writes over it: a checkpoint of another env is not this folder's run (refused before its
    metrics are touched); a setting edited by hand is lost, and a warning says which."""
    if not (path / "config.toml").exists():
        return  # the checkpoint's config makes it anew
    try:
        written = from_dict({**BEFORE_FIELDS, **read_toml(path / "config.toml")})
    except ConfigError as err:  # damaged, or edited with a key or value mappo does not take
        logger.warning(
            "%s/config.toml is replaced by the checkpoint's config, which the run resumes with: %s",
            path,
            err,
        )
        return
    if written.env != held.env:
        raise RunFolderError(
            f"run folder {path}: its checkpoint.pt is a run of env '{held.env}', its config.toml "
            f"of env '{written.env}'; it is not this folder's checkpoint"
        )
    kept_as_saved = (*RESUME_CHANGES, *ENV_DIM_FIELDS)  # flags on --resume change these
    edited = [
        f"{name} = {getattr(written, name)!r} (the checkpoint's: {getattr(held, name)!r})"
        for name in FIELDS
        if name not in kept_as_saved
        and getattr(written, name) != getattr(held, name)
        and not (name in held.auto_decided and getattr(written, name) == AUTO)
    ]
    if edited:
        logger.warning(
            "%s/config.toml differs from the checkpoint's config, which the run resumes with "
            "and writes back: %s",
            path,
            "; ".join(edited),
        )


def _say_building(config: MappoConfig, copies: int) -> None:
    """Log (INFO) the env copies about to be built, which can take a while (a PettingZoo env
    is built copy by copy, a JaxMARL one is compiled)."""
    processes = "process" if config.num_workers == 1 else "processes"
    workers = (
        f" in {config.num_workers} worker {processes}"
        if config.num_workers and not steps_in_this_process(config.env)
        else ""
    )
    logger.info("building %d copies of env '%s'%s ...", copies, config.env, workers)


def _check_in_step(path: Path, seed_paths: list[Path], steps: list[int]) -> None:
    """The seeds of a seeds run step together: refuse checkpoints at different env steps
    (a seed resumed alone, `mappo train --resume <its folder>`), naming how to even them."""
    if len(set(steps)) == 1:
        return
    ahead = max(steps)
    behind = [p for p, n in zip(seed_paths, steps, strict=True) if n < ahead]
    # Relative to the folder: a sweep's slots are `<setting>/seed_<s>`.
    at = ", ".join(
        f"{p.relative_to(path).as_posix()} {n:,}" for p, n in zip(seed_paths, steps, strict=True)
    )
    raise RunFolderError(
        f"run folder {path}: its seeds' checkpoints are at different env steps ({at}): a "
        "seed was resumed alone, or the run was killed between the seeds' saves; they train "
        "together only from one step: bring the "
        f"others to {ahead:,} first, e.g. mappo train --resume {behind[0]} --total-steps {ahead}"
    )


def _resume_line(path: Path, trainer: MappoTrainer) -> str:
    """Where a resumed run goes on from: env steps, update and the checkpoint's time."""
    saved = time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime((path / "checkpoint.pt").stat().st_mtime)
    )
    return (
        f"resuming {path} at env step {trainer.env_steps:,} (update {trainer.updates}), "
        f"from its checkpoint of {saved}"
    )


def _refuse_other_slots(path: Path, paths: Sequence[Path]) -> None:
    """Refuse a new run in `path` (one run: `paths` empty; else the folders of its seeds
    and settings) beside the run folders of an earlier seeds run or sweep that it would not
    write: `--resume` and `mappo report` of `path` would then find the one and not the
    other, or both as one run. Even with `force`, which replaces runs but deletes no folders."""
    others = [slot for slot in slot_folders(path) if slot not in paths]
    if not others:
        return
    names = [str(slot.relative_to(path)) for slot in others]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise RunFolderError(
        f"run folder {path} holds the runs of an earlier --seeds or --sweep run ({shown}), "
        f"which this run would not write; continue them with mappo train --resume {path}, "
        "or choose another --run-dir"
    )


def _slots_line(path: Path, folders: Sequence[RunFolder]) -> str:
    """The first line of a seeds run or a sweep."""
    names = [str(f.path.relative_to(path)) for f in folders]
    settings = list(dict.fromkeys(str(Path(name).parent) for name in names))
    if settings == ["."]:
        seeds = ", ".join(name.removeprefix("seed_") for name in names)
        return (
            f"{len(names)} seeds in one process, run folders {path}/seed_<s> (seeds {seeds}); "
            "env steps and steps/s count all seeds together"
        )
    return (
        f"{len(names)} runs in one process ({len(settings)} settings x "
        f"{len(names) // len(settings)} seeds), run folders {path}/<setting>/seed_<s> "
        f"({'; '.join(settings)}); env steps and steps/s count all runs together"
    )


def no_episode_hint(trainer: MappoTrainer) -> str:
    """Why no return shows yet when the first updates finished no episode, and what helps."""
    cfg = trainer.config
    steps = FIRST_EPISODE_UPDATES * cfg.rollout_steps
    copies = cfg.num_envs * trainer.dist.world_size
    length = trainer.env.spec.max_episode_steps
    wait = (
        f"this env's episodes of up to {length:,} steps first end after "
        f"{copies * length:,} env steps"
        if length
        else f"episodes of L steps first end after {copies:,} x L env steps"
    )
    return (
        f"no episode has finished in the first {FIRST_EPISODE_UPDATES} updates "
        f"({steps} steps per env copy): returns are logged when episodes end, and with "
        f"{copies:,} env copies {wait}; fewer --num-envs make them end sooner"
    )


class Heartbeat:
    """While no update ends, a line saying what the run is waiting for (the first rollout of
    a slow env, a first compile, an evaluation): after `interval` seconds (none when 0),
    then each time the wait has doubled, so that a log of long updates stays readable."""

    def __init__(self, learner: Learner, write: Callable[[str], None], interval: float) -> None:
        self._learner, self._write, self._interval = learner, write, interval
        self._last = time.monotonic()
        self._due = interval  # seconds of waiting that the next line waits for
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mappo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self._interval > 0:
            self._last = time.monotonic()
            self._thread.start()
        return self

    def beat(self) -> None:
        """An update ended: the wait starts again."""
        self._last, self._due = time.monotonic(), self._interval

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            waited = time.monotonic() - self._last
            if waited >= self._due:
                self._due = 2 * waited  # before the write, which a full pipe may hold up
                self._write(f"{self.waiting_for()} ({waited:.0f} s since the last update)")

    def waiting_for(self) -> str:
        """What the learner is doing now, in words."""
        learner = self._learner
        first = "first update: " if learner.updates == 0 else ""
        if learner.phase == "updating" and first and learner.trainers[0].compiled:
            return f"{first}{COMPILING}"
        if learner.phase != "collecting a rollout":
            return f"{first}{learner.phase}"
        trainers, steps = learner.trainers, learner.config.rollout_steps
        # The seeds of one process roll out one after another (`collect_rollouts`): the
        # steps done over all of them, per seed (the seeds after this one hold last update's).
        k = learner.rollout_seed
        done = (k * steps + len(trainers[k].buffer)) // len(trainers)
        return (
            f"{first}collecting a rollout of {steps} steps in "
            f"{learner.config.num_envs * len(trainers)} env copies: {done} of {steps} done"
        )

    def first_line(self) -> str:
        """What the first update does, said before it starts."""
        learner = self._learner
        compiling = f", then {COMPILING}" if learner.trainers[0].compiled else ""
        copies = learner.config.num_envs * len(learner.trainers)
        steps, total = learner.config.rollout_steps, learner.config.total_steps
        end = budget_end(learner)
        whole = f"; total_steps {total:,} rounds up to whole updates: {end:,}" * (end != total)
        return f"first update: a rollout of {steps} steps in {copies} env copies{compiling}{whole}"

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()


class CheckpointSchedule:
    """When a training run writes its checkpoint: after the first update, every
    `CHECKPOINT_EVERY_UPDATES` updates, `interval` seconds after the last save, and at
    the end unless the last update is already saved. `write()` saves and returns the
    env steps it saved."""

    def __init__(self, write: Callable[[], int], interval: float) -> None:
        self._write = write
        self._interval = interval
        self.saved_steps: int | None = None  # env steps of the last save
        self._saved_time = 0.0  # time.monotonic() of the last save

    def due(self, updates: int) -> bool:
        """Whether to save after update number `updates`."""
        return (
            self.saved_steps is None
            or updates % CHECKPOINT_EVERY_UPDATES == 0
            or time.monotonic() - self._saved_time >= self._interval
        )

    def save(self) -> None:
        """Write a checkpoint now."""
        self.saved_steps = self._write()
        self._saved_time = time.monotonic()

    def save_final(self, env_steps: int) -> None:
        """Save at the end of training, unless `env_steps` is what was saved last.

        Only whole updates are saved: a crash mid-rollout keeps the last good one."""
        if env_steps != self.saved_steps:
            self.save()


class StopRun(BaseException):  # noqa: N818 - not an error: like KeyboardInterrupt
    """Raised in the main thread by `StopOnSignal` to abandon the work in progress; a
    BaseException, so that no `except Exception` on the way (a compile fallback, an env
    adapter's error report) takes it for a failure."""


class StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP (`stop_signals()`): the first asks the run to stop after the
    update in progress, says so at once, and abandons that update (`StopRun`) when it is not
    done `GRACE_S` seconds later and `may_abandon()` allows it (nothing that was completed
    would be lost); a second signal abandons it at once. Only the main thread can take
    signals: elsewhere this does nothing.
    """

    def __init__(
        self, may_abandon: Callable[[], bool], stream: TextIO | None, below_bar: bool = False
    ) -> None:
        self.signal_name: str | None = None
        self._may_abandon = may_abandon
        self._stream = stream
        # A progress bar on the same terminal ends its line with none: a line of ours
        # starts on the next one instead of after the bar.
        self._start = "\n" if below_bar else ""
        self._previous: dict[signal.Signals, Any] = {}
        self._in_grace = False  # the first signal's grace period is running
        self._terminal = terminal_outputs()  # what a SIGHUP may have left hung up

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (*stop_signals(), signal.SIGALRM):
                self._previous[sig] = signal.signal(sig, self._handle)
                # Restart the system calls a signal interrupts: a C++ library waiting in
                # one (gloo's sockets between ranks) may abort on EINTR.
                signal.siginterrupt(sig, False)
        return self

    def _say(self, line: str) -> None:
        # os.write where there is a file: a handler may run in the middle of a print to it.
        if self._stream is None:  # a rank other than 0
            return
        try:
            fileno = self._stream.fileno()
        except (AttributeError, OSError):  # a stream in memory (io.UnsupportedOperation)
            self._stream.write(f"{line}\n")
            return
        try:
            self._stream.flush()
            os.write(fileno, f"{self._start}{line}\n".encode())
        except OSError as err:  # the stop goes on without the line, whatever the failure
            if not output_lost(err, self._stream):  # not a lost reader: a full disk, say
                silence(self._stream)

    def _again(self) -> str:
        """What stops at once: a batch scheduler's SIGTERM comes from no keyboard, and a
        closed terminal asks nothing twice."""
        if self.signal_name == "SIGHUP":
            return "SIGINT or SIGTERM"
        return (
            "press Ctrl-C again" if self.signal_name == "SIGINT" else f"a second {self.signal_name}"
        )

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # A closed terminal often hangs up twice (the shell passes its SIGHUP on to its jobs,
        # then the kernel signals the foreground job as the shell exits): a stop under way
        # is not hurried by it. The output is moved off the terminal before any line.
        if take_hangup(signum, self._terminal) and self.signal_name is not None:
            return
        if signum == signal.SIGALRM:  # the grace period of the first signal is over
            if not self._in_grace:  # disarmed meanwhile: an alarm taken late changes nothing
                return
            self._in_grace = False
            if self._may_abandon():
                raise StopRun(self.signal_name)
            self._say(
                "stopping: still finishing the update in progress, so that its steps "
                f"are kept; {self._again()} to stop now without them"
            )
            return
        if self.signal_name is not None:
            self.signal_name = signal.Signals(signum).name  # a scheduler's SIGTERM after a Ctrl-C
            raise StopRun(self.signal_name)
        self.signal_name = signal.Signals(signum).name
        # Where the state before this update is kept, an update running past the grace
        # period is left: say so, not that it will be finished.
        finishing = (
            f"keeping this update if it ends within {GRACE_S:g} s, else stopping without it"
            if self._may_abandon()
            else "finishing this update, then saving"
        )
        self._say(f"stopping ({self.signal_name}): {finishing}; {self._again()} to stop at once")
        self._in_grace = True
        signal.setitimer(signal.ITIMER_REAL, GRACE_S)

    def disarm(self) -> None:
        """No abandoning from now on, unless a signal comes again."""
        self._in_grace = False
        if self._previous:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc: object) -> None:
        self.disarm()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
