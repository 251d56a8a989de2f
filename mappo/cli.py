"""`mappo train | eval | plot | report | export`: every MappoConfig field is a train flag; a TOML
file can hold any of them."""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from mappo.checkpoint import CheckpointError
from mappo.config import (
    ENV_DIM_FIELDS,
    FIELDS,
    ConfigError,
    MappoConfig,
    from_dict,
    parse_cli_value,
    read_toml,
)
from mappo.envs.base import EnvError
from mappo.presets import PRESETS
from mappo.run_folder import RunFolder, RunFolderError, require_wandb
from mappo.trainer import MappoMetrics, MappoTrainer

if TYPE_CHECKING:  # imported where used: --seeds only
    from mappo.seeds import MultiSeedTrainer

CHECKPOINT_EVERY_UPDATES = 50
EVAL_EPISODES = 100
RENDER_EPISODES = 3
RECENT_UPDATES = 10  # the "recent return" pools the episodes of this many updates
SUMMARY_INTERVAL_S = 30.0  # one progress line this often when stdout is not a terminal
FIRST_EPISODE_UPDATES = 3  # no episode finished after this many updates: say why
# The env-derived fields are read off the env, so they are no flags (a config file may hold them).
CLI_FIELDS = {name: f for name, f in FIELDS.items() if name not in ENV_DIM_FIELDS}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The `mappo` command line: `train` with one flag per config field."""
    parser = argparse.ArgumentParser(prog="mappo", description="Multi-Agent PPO")
    parser.add_argument("--debug", action="store_true", help="full tracebacks for env errors")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a MAPPO policy and write a run folder")
    train.add_argument("--config", type=Path, help="TOML file with any MappoConfig fields")
    train.add_argument("--run-dir", type=Path, help="run folder (default runs/<env>-<time>)")
    train.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    train.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a named set of settings (config file and flags win)")
    train.add_argument("--wandb", action="store_true",
                       help="also log to Weights & Biases (WANDB_MODE=offline works)")
    train.add_argument("--wandb-project", default="mappo", help="W&B project name")
    train.add_argument("--nproc", type=int, default=1,
                       help="data-parallel ranks on this node (runs torchrun for you)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its checkpoint")
    train.add_argument("--seeds", metavar="S,S,...",
                       help="train these seeds in one process as one batched network; seed s "
                            "writes the run folder RUN_DIR/seed_<s> (--resume RUN_DIR goes on)")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bar (on a terminal) or progress lines (in a log)")
    for name, f in CLI_FIELDS.items():
        kind = f.type
        metavar = {"bool": "true|false", "AutoBool": "auto|true|false",
                   "dict": "JSON"}.get(kind, kind.upper())
        default = "{}" if kind == "dict" else f.default
        train.add_argument(_flag(name), dest=f"cfg_{name}", metavar=metavar,
                           help=f"{f.metadata['help']} (default {default})")
    evaluate = commands.add_parser("eval", help="evaluate a run's trained policy")
    evaluate.add_argument("run_dir", type=Path, help="run folder holding checkpoint.pt")
    evaluate.add_argument("--episodes", type=int, default=None,
                          help=f"episodes to run (default {EVAL_EPISODES}; "
                               f"{RENDER_EPISODES} with --render)")
    evaluate.add_argument("--deterministic", action="store_true", help="greedy actions")
    evaluate.add_argument("--json", action="store_true", help="end with one JSON line")
    evaluate.add_argument("--device", default=None, help="torch device (default: the run's)")
    evaluate.add_argument("--seed", type=int, default=1000, help="seed of the eval envs")
    evaluate.add_argument("--render", type=Path, metavar="FILE",
                          help="draw the episodes (env copy 0, on cpu unless --device) "
                               "into FILE.gif or FILE.mp4")
    evaluate.add_argument("--fps", type=float, default=10.0, help="frames per second of --render")
    plot = commands.add_parser("plot", help="learning curves of runs; seeds become a mean ± std")
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    plot.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf)")
    plot.add_argument("--x", choices=("env_steps", "wall_time"), default="env_steps",
                      help="x axis (default env_steps)")
    plot.add_argument("--y", choices=("episode_return", "eval_return"), default="episode_return",
                      help="training episodes' return, or the evaluations' (--eval-interval)")
    report = commands.add_parser(
        "report", help="final returns of runs, seeds pooled: mean, IQM, bootstrap CIs, P(X > Y)")
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    report.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    report.add_argument("--json", type=Path, help="write the runs in marl-eval's JSON layout")
    report.add_argument("--episodes", type=int,
                        help="score every run by this many greedy episodes of its checkpoint.pt "
                             "(default: the last eval_return logged in training, else "
                             f"{EVAL_EPISODES} episodes)")
    report.add_argument("--plot", type=Path, help="IQM training curves with CI bands (.png)")
    export = commands.add_parser("export", help="write the actors as TorchScript (and ONNX)")
    export.add_argument("run_dir", type=Path, help="run folder holding checkpoint.pt")
    export.add_argument("--out", type=Path, required=True, help="folder for the files")
    export.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    return parser


def _cli_overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags, parsed to their types."""
    return {
        name: parse_cli_value(name, getattr(args, f"cfg_{name}"))
        for name in CLI_FIELDS
        if getattr(args, f"cfg_{name}") is not None
    }


class _StopOnSignal:
    """SIGINT/SIGTERM ask training to stop after the current update; a second one kills."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous = {}

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _open_run(args: argparse.Namespace) -> tuple[MappoTrainer, RunFolder | None]:
    """(trainer, run folder or None off rank 0) for a new run or `--resume RUN_DIR`."""
    from mappo.checkpoint import load_checkpoint
    from mappo.distributed import Distributed

    overrides = _cli_overrides(args)
    if args.resume is not None:
        _check_resume_flags(args, overrides)
        path = RunFolder.checkpoint_to_resume(args.resume)
        payload = load_checkpoint(path)
        dist = Distributed.from_environment(payload["config"]["device"])
        pickled_env = RunFolder.read_pickled_env(args.resume, payload)
        trainer, _ = MappoTrainer.from_checkpoint(path, distributed=dist, pickled_env=pickled_env,
                                                  **overrides)
        folder = (RunFolder.resume(args.resume, trainer.config, trainer.env_steps)
                  if dist.is_main else None)
        if folder is not None:
            _keep_best_bar(folder, trainer)
        return trainer, folder
    config = _new_config(args, overrides)
    run_dir = args.run_dir or _default_run_dir(config)
    dist = Distributed.from_environment(config.device)
    if dist.is_main:
        RunFolder.check_free(run_dir, args.force)  # before any work
    trainer = MappoTrainer(config, distributed=dist)
    folder = RunFolder.create(run_dir, trainer.config, force=args.force) if dist.is_main else None
    return trainer, folder


def _check_resume_flags(args: argparse.Namespace, overrides: dict) -> None:
    """`--resume` takes no config but `--total-steps`: refuse anything else, naming it."""
    extra = sorted(set(overrides) - {"total_steps"})
    if extra or args.config or args.run_dir or args.preset:
        given = extra + [f for f in ("config", "run_dir", "preset") if getattr(args, f)]
        raise ConfigError(
            f"--resume continues a run with its own config; only --total-steps may "
            f"change (got {', '.join(given)})"
        )


def _new_config(args: argparse.Namespace, overrides: dict) -> MappoConfig:
    """A new run's config: the preset, then the config file, then the flags."""
    from_file = read_toml(args.config) if args.config else {}
    env = overrides.get("env", from_file.get("env", MappoConfig().env))
    env_kwargs = overrides.get("env_kwargs", from_file.get("env_kwargs"))
    preset = PRESETS[args.preset](env, env_kwargs) if args.preset else {}
    merged = {**preset, **from_file, **overrides}
    if "env_kwargs" in preset:  # the preset's env settings with the user's on top
        merged["env_kwargs"] = preset["env_kwargs"]
    config = from_dict(merged, source="command line")
    # A preset's values are a bundle, not the user's choices: no warning that one of them
    # has no effect (the file's and the flags' are).
    config.given = frozenset(from_file) | frozenset(overrides)
    return config


def _default_run_dir(config: MappoConfig) -> Path:
    """runs/<env>-<time> for a run started without --run-dir."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.env.replace(':', '-')}-{stamp}"


def _keep_best_bar(folder: RunFolder, trainer: MappoTrainer) -> None:
    """On --resume: best.pt may be newer than checkpoint.pt (a stop between the two saves),
    so its score stays the bar that a later evaluation must beat."""
    from mappo.checkpoint import load_checkpoint

    if folder.best_path.is_file():
        best = load_checkpoint(folder.best_path).get("best_eval_return", -math.inf)
        trainer.best_eval_return = max(trainer.best_eval_return, float(best))


def _launch_ranks(args: argparse.Namespace, argv: list[str]) -> int:
    """`mappo train --nproc N`: rerun this command as N ranks under torchrun on this node."""
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            rest.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "mappo", *rest]
    return subprocess.call(command)


class RecentReturns:
    """Mean per-agent return of the episodes finished in the last `RECENT_UPDATES` updates.

    Every episode weighs the same, so an update that finished 4 episodes counts
    4 times one that finished 1; an update that finished none still takes its
    slot, so old returns age out while no episode ends.
    """

    def __init__(self, updates: int = RECENT_UPDATES) -> None:
        self._window: deque[tuple[float, int]] = deque(maxlen=updates)  # (return sum, episodes)

    def add(self, episode_return: float, episodes: int) -> None:
        """One update: the mean return of the `episodes` it finished (NaN when none)."""
        self._window.append((episode_return * episodes if episodes else 0.0, episodes))

    @property
    def episodes(self) -> int:
        """Episodes finished in the window."""
        return sum(count for _, count in self._window)

    @property
    def mean(self) -> float:
        """Their mean return; NaN when none finished."""
        episodes = self.episodes
        return sum(total for total, _ in self._window) / episodes if episodes else math.nan

    def text(self, digits: int = 2) -> str:
        """The mean for people: `digits` decimals, or n/a."""
        return f"{self.mean:.{digits}f}" if self.episodes else "n/a"


class Progress:
    """Training progress on `stream` (stdout by default), for a person or for a log.

    On a terminal, a tqdm bar with steps/s and the recent return. Otherwise
    (batch jobs, CI, `> log`) no carriage returns: one summary line every
    `SUMMARY_INTERVAL_S` seconds and one at the end. `quiet` shows neither.
    """

    def __init__(self, total: int, env_steps: int, quiet: bool,
                 stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.stream = stream or sys.stdout
        self.total = total
        self.env_steps = env_steps
        self.recent = RecentReturns()
        self.recent_wins = RecentReturns()  # the same window, over won (1) and lost (0) episodes
        terminal = self.stream.isatty()
        self._bar = tqdm(total=total, initial=env_steps, unit="step", unit_scale=True,
                         dynamic_ncols=True, file=self.stream) if terminal and not quiet else None
        self._lines = not terminal and not quiet
        self._start = self._line_time = time.monotonic()
        self._line_steps = env_steps

    def write(self, line: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, metrics: MappoMetrics) -> None:
        """Take one update's metrics; redraw the bar, or print a line when one is due."""
        self.env_steps = metrics.env_steps
        self.recent.add(metrics.episode_return, metrics.episodes)
        if not math.isnan(metrics.win_rate):
            self.recent_wins.add(metrics.win_rate, metrics.episodes)
        if self._bar is not None:
            self._bar.update(metrics.env_steps - self._bar.n)
            wins = {"win": self.recent_wins.text()} if self.recent_wins.episodes else {}
            self._bar.set_postfix(steps_s=f"{metrics.steps_per_second:,.0f}",
                                  ret=self.recent.text(), **wins)
        elif self._lines and time.monotonic() - self._line_time >= SUMMARY_INTERVAL_S:
            self._summary_line()

    def close(self) -> None:
        """Close the bar, or print the last summary line."""
        if self._bar is not None:
            self._bar.close()
        elif self._lines and self.env_steps > self._line_steps:
            self._summary_line()

    def _summary_line(self) -> None:
        now = time.monotonic()
        rate = (self.env_steps - self._line_steps) / max(now - self._line_time, 1e-9)
        elapsed = round(now - self._start)
        self.write(
            f"env steps {self.env_steps:,} / {self.total:,} "
            f"({100 * self.env_steps / self.total:.1f} %), {rate:,.0f} steps/s, "
            f"recent return {self.recent.text()}, "
            + (f"win rate {self.recent_wins.text()}, " if self.recent_wins.episodes else "")
            + f"elapsed {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        )
        self._line_time, self._line_steps = now, self.env_steps


def _no_episode_hint(trainer: MappoTrainer) -> str:
    """Why no return shows yet when the first updates finished no episode, and what helps."""
    cfg = trainer.config
    steps = FIRST_EPISODE_UPDATES * cfg.rollout_steps
    copies = cfg.num_envs * trainer.dist.world_size
    length = trainer.env.spec.max_episode_steps
    wait = (f"this env's episodes of up to {length:,} steps first end after "
            f"{copies * length:,} env steps" if length else
            f"episodes of L steps first end after {copies:,} x L env steps")
    return (f"no episode has finished in the first {FIRST_EPISODE_UPDATES} updates "
            f"({steps} steps per env copy): returns are logged when episodes end, and with "
            f"{copies:,} env copies {wait}; fewer --num-envs make them end sooner")


class _CheckpointSchedule:
    """When a training run writes its checkpoint: after the first update, every
    `CHECKPOINT_EVERY_UPDATES` updates, `interval` seconds after the last save, and at
    the end unless the last update is already saved. `write()` saves and returns the
    env steps it saved."""

    def __init__(self, write: Callable[[], int], interval: float) -> None:
        self._write = write
        self._interval = interval
        self._saved_steps: int | None = None
        self._saved_time = 0.0  # time.monotonic() of the last save

    def due(self, updates: int) -> bool:
        """Whether to save after update number `updates`."""
        return (self._saved_steps is None or updates % CHECKPOINT_EVERY_UPDATES == 0
                or time.monotonic() - self._saved_time >= self._interval)

    def save(self) -> None:
        """Write a checkpoint now."""
        self._saved_steps = self._write()
        self._saved_time = time.monotonic()

    def save_final(self, env_steps: int) -> None:
        """Save at the end of training, unless `env_steps` is what was saved last.

        Only whole updates are saved: a crash mid-rollout keeps the last good one."""
        if env_steps != self._saved_steps:
            self.save()


def _parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` → [0, 1, 2]; anything else is refused naming the flag."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds = {text!r}: give integers separated by commas, "
                          "e.g. --seeds 0,1,2") from None


def _seed_folders(path: Path) -> list[Path]:
    """The seed_<s> run folders a `--seeds` run wrote in `path`, by seed."""
    found = [p for p in path.glob("seed_*") if p.is_dir() and p.name[5:].lstrip("-").isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _is_seeds_run(args: argparse.Namespace) -> bool:
    """`--seeds`, or `--resume D` of a folder that a `--seeds` run wrote."""
    if args.seeds is not None:
        return True
    resume = args.resume
    return (resume is not None and not (resume / "checkpoint.pt").is_file()
            and bool(_seed_folders(resume)))


def _open_seeds(args: argparse.Namespace) -> tuple[MultiSeedTrainer, list[RunFolder]]:
    """(MultiSeedTrainer, one run folder per seed) for `--seeds` or `--resume` of its folder."""
    from mappo.checkpoint import load_checkpoint
    from mappo.seeds import MultiSeedTrainer, SeedStreams

    if args.nproc > 1 or args.wandb:
        raise ConfigError(f"--seeds trains every seed in one process; it does not combine "
                          f"with {'--nproc' if args.nproc > 1 else '--wandb'}")
    overrides = _cli_overrides(args)
    if args.resume is not None:
        _check_resume_flags(args, overrides)
        trainers, paths, streams = [], _seed_folders(args.resume), None
        try:
            for path in paths:
                checkpoint = RunFolder.checkpoint_to_resume(path)
                pickled_env = RunFolder.read_pickled_env(path, load_checkpoint(checkpoint))
                trainer, _ = MappoTrainer.from_checkpoint(checkpoint, pickled_env=pickled_env,
                                                          **overrides)
                trainers.append(trainer)
                streams = streams or SeedStreams(trainer.device)
                streams.capture()  # the seed's stream, as its checkpoint saved it
            multi = MultiSeedTrainer.from_trainers(trainers, streams)
        except BaseException:
            for trainer in trainers:
                trainer.close()
            raise
        folders = [RunFolder.resume(path, t.config, t.env_steps)
                   for path, t in zip(paths, trainers, strict=True)]
        for folder, trainer in zip(folders, trainers, strict=True):
            _keep_best_bar(folder, trainer)
        return multi, folders
    if "seed" in overrides:
        raise ConfigError("--seed and --seeds: give the seeds of the runs with --seeds only")
    seeds = _parse_seeds(args.seeds)
    config = _new_config(args, overrides)
    run_dir = args.run_dir or _default_run_dir(config)
    if (run_dir / "checkpoint.pt").exists():  # --resume D would find that run, not the seeds
        raise RunFolderError(f"run folder {run_dir} holds a run of its own (checkpoint.pt); "
                             "--seeds writes its runs in RUN_DIR/seed_<s>: choose another "
                             "--run-dir")
    paths = [run_dir / f"seed_{seed}" for seed in seeds]
    for path in paths:
        RunFolder.check_free(path, args.force)  # before any work
    multi = MultiSeedTrainer(config, seeds)
    folders = [RunFolder.create(path, t.config, force=args.force)
               for path, t in zip(paths, multi.trainers, strict=True)]
    return multi, folders


def train_seeds(args: argparse.Namespace) -> int:
    """`train --seeds`: every seed to the budget in one process, each writing its own run
    folder as a solo run does (checkpoints on the same schedule, best.pt, Ctrl-C saves)."""
    from mappo.seeds import pooled_metrics

    multi, folders = _open_seeds(args)
    trainers = multi.trainers
    run_dir = folders[0].path.parent
    progress = Progress(len(trainers) * multi.config.total_steps,
                        len(trainers) * multi.env_steps, quiet=args.quiet)
    progress.write(f"{len(trainers)} seeds in one process, run folders {run_dir}/seed_<s> "
                   f"(seeds {', '.join(map(str, multi.seeds))}); env steps and steps/s count "
                   "all seeds together")
    if trainers[0].auto_settings:
        progress.write(trainers[0].auto_settings)
    recent = [RecentReturns() for _ in trainers]

    def write() -> int:
        for k, folder in enumerate(folders):
            folder.save(multi.seed_state_dict(k), trainers[k].pickled_env_state())
        return multi.env_steps

    checkpoints = _CheckpointSchedule(write, multi.config.checkpoint_interval)

    with _StopOnSignal() as stop:

        def on_update(metrics: list[MappoMetrics]) -> bool:
            for k, (folder, seed_metrics) in enumerate(zip(folders, metrics, strict=True)):
                folder.log(seed_metrics)
                recent[k].add(seed_metrics.episode_return, seed_metrics.episodes)
                if seed_metrics.eval_return > trainers[k].best_eval_return:
                    trainers[k].best_eval_return = seed_metrics.eval_return
                    folder.save_best(multi.seed_state_dict(k))
            progress.update(pooled_metrics(metrics))
            if multi.updates == FIRST_EPISODE_UPDATES and progress.recent.episodes == 0:
                progress.write(_no_episode_hint(trainers[0]))
            if checkpoints.due(multi.updates):
                checkpoints.save()
            return stop.signal_name is not None

        try:
            multi.train(on_update)
            checkpoints.save_final(multi.env_steps)
        finally:
            progress.close()
            for folder in folders:
                folder.close()
            multi.close()
    if multi.env_steps < multi.config.total_steps:
        print(f"stopped after {multi.env_steps} env steps per seed; checkpoints saved. "
              f"Continue with: mappo train --resume {run_dir}")
        return 0
    returns = ", ".join(f"seed {seed} {r.text(3)}" for seed, r in zip(multi.seeds, recent,
                                                                       strict=True))
    print(f"done: {multi.env_steps} env steps per seed, recent episode return {returns}; "
          f"run folders {run_dir}/seed_<s>")
    return 0


def train(args: argparse.Namespace) -> int:
    """Train to the configured budget; rank 0 writes the run folder as it goes.

    A checkpoint is written after the first update, then whenever
    `checkpoint_interval` seconds or `CHECKPOINT_EVERY_UPDATES` updates have
    passed, and at the end: a hard kill (SIGKILL, out of memory, a lost node)
    loses at most one interval.
    """
    if _is_seeds_run(args):
        return train_seeds(args)
    if args.wandb:
        require_wandb()
    trainer, folder = _open_run(args)
    main_rank = folder is not None
    if main_rank and args.wandb:
        folder.use_wandb(trainer.config, args.wandb_project)
    progress = Progress(trainer.config.total_steps, trainer.env_steps,
                        quiet=args.quiet or not main_rank)
    if main_rank:
        progress.write(f"run folder: {folder.path}")
        if trainer.auto_settings:
            progress.write(trainer.auto_settings)

    def write() -> int:
        state = trainer.state_dict()  # collective calls: every rank takes part
        pickled_env = trainer.pickled_env_state()
        if main_rank:
            folder.save(state, pickled_env)
        return trainer.env_steps

    checkpoints = _CheckpointSchedule(write, trainer.config.checkpoint_interval)

    with _StopOnSignal() as stop:

        def on_update(metrics: MappoMetrics) -> bool:
            if main_rank:
                folder.log(metrics)
            progress.update(metrics)
            # Only rank 0 evaluates (NaN elsewhere, and where no evaluation ran).
            best = main_rank and metrics.eval_return > trainer.best_eval_return
            if trainer.dist.any(best):  # the state is gathered from every rank
                if best:
                    trainer.best_eval_return = metrics.eval_return
                state = trainer.state_dict()
                if main_rank:
                    folder.save_best(state)
            if (main_rank and trainer.updates == FIRST_EPISODE_UPDATES
                    and progress.recent.episodes == 0):
                progress.write(_no_episode_hint(trainer))
            # Ranks' clocks differ, and saving is collective.
            if trainer.dist.any(checkpoints.due(trainer.updates)):
                checkpoints.save()
            return stop.signal_name is not None

        try:
            trainer.train(on_update)
            checkpoints.save_final(trainer.env_steps)
        finally:
            progress.close()
            if main_rank:
                folder.close()
            trainer.close()
            trainer.dist.shutdown()
    if not main_rank:
        return 0
    if trainer.env_steps < trainer.config.total_steps:
        print(f"stopped after {trainer.env_steps} env steps; checkpoint saved. "
              f"Continue with: mappo train --resume {folder.path}")
        return 0
    print(f"done: {trainer.env_steps} env steps, recent episode return "
          f"{progress.recent.text(3)}, run folder {folder.path}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Print mean and std of the episode return of a trained run (per-agent mean, or the
    team return with `team_reward`)."""
    from mappo.evaluation import evaluate_run

    if args.episodes is None:
        args.episodes = EVAL_EPISODES if args.render is None else RENDER_EPISODES
    if args.episodes < 1:
        raise ConfigError(f"--episodes = {args.episodes}: must be >= 1")
    if args.render is not None:
        return render(args)
    result = evaluate_run(args.run_dir, args.episodes, args.deterministic, args.device,
                          args.seed)
    mean = statistics.fmean(result.returns)
    std = statistics.pstdev(result.returns)
    mode = "deterministic" if args.deterministic else "stochastic"
    wins = "" if result.win_rate is None else f", win rate {result.win_rate:.3f}"
    print(f"{args.run_dir}: {result.label} {mean:.3f} ± {std:.3f}{wins} "
          f"over {len(result.returns)} episodes ({mode})")
    if args.json:
        print(json.dumps({"mean_episode_return": mean, "std_episode_return": std,
                          **({} if result.win_rate is None else {"win_rate": result.win_rate}),
                          "return_definition": result.definition,
                          "episodes": len(result.returns), "deterministic": args.deterministic,
                          "run_dir": str(args.run_dir)}))
    return 0


def render(args: argparse.Namespace) -> int:
    """`eval --render`: draw episodes of the run's policy into a GIF or MP4."""
    from mappo.render import render_run

    start = time.perf_counter()
    result = render_run(args.run_dir, args.render, args.episodes, args.deterministic,
                        args.seed, args.fps, args.device or "cpu")
    mean = statistics.fmean(result.returns)
    print(f"{args.render}: {len(result.returns)} episodes rendered in "
          f"{time.perf_counter() - start:.1f} s, {result.label} {mean:.3f}")
    if args.json:
        print(json.dumps({"mean_episode_return": mean, "episode_returns": result.returns,
                          "return_definition": result.definition,
                          "episodes": len(result.returns), "deterministic": args.deterministic,
                          "run_dir": str(args.run_dir), "render": str(args.render)}))
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw the learning curves of several runs on one figure."""
    from mappo.plotting import plot_runs

    groups = plot_runs(args.run_dirs, args.out, args.x, args.y)
    for group in groups:
        print(f"{group.label}: {len(group.runs)} run(s)")
    print(f"wrote {args.out}")
    return 0


def report(args: argparse.Namespace) -> int:
    """Print the runs' pooled final returns; write the markdown, JSON and plot asked for."""
    from mappo.report import write_report

    print(write_report(args.run_dirs, args.episodes, args.out, args.json, args.plot), end="")
    for written in (args.out, args.json, args.plot):
        if written is not None:
            print(f"wrote {written}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Write a run's actors, one file per policy, and layout.json."""
    from mappo.export import export_run

    layout = export_run(args.run_dir, args.out, onnx=False if args.no_onnx else None)
    for policy in layout["policies"]:
        files = " + ".join(f for f in (policy["file"], policy.get("onnx")) if f)
        print(f"{files}: agents {', '.join(policy['agent_names'])}")
    print(f"wrote {args.out / 'layout.json'}")
    return 0


def _unknown_flag_error(unknown: list[str], command: argparse.ArgumentParser,
                        name_of_command: str) -> ConfigError:
    """A ConfigError for the first unrecognized argument, with the nearest flag of the
    command it was given to suggested (a train option given to another command says so)."""
    flag = next((u for u in unknown if u.startswith("--")), unknown[0])
    name = flag.lstrip("-").split("=")[0].replace("-", "_")
    if name_of_command == "train" and name in ENV_DIM_FIELDS:
        return ConfigError(f"unknown option '{flag}'; {name} is read off the env, not set "
                           "(the env's own options go in --env-kwargs)")
    options = [o for action in command._actions for o in action.option_strings
               if o.startswith("--")]
    if name_of_command != "train" and name in CLI_FIELDS:
        return ConfigError(f"'mappo {name_of_command}' has no option '{flag}': it reads the "
                           f"run's own config.toml (options: {', '.join(options)})")
    near = difflib.get_close_matches(name, [o[2:].replace("-", "_") for o in options], n=1)
    hint = f"; did you mean {_flag(near[0])}?" if near else ""
    return ConfigError(f"unknown option '{flag}' for 'mappo {name_of_command}'{hint}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mappo` command: one line and exit code 2 for bad input."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            commands = next(a for a in parser._actions
                            if isinstance(a, argparse._SubParsersAction))
            raise _unknown_flag_error(unknown, commands.choices[args.command], args.command)
        if (args.command == "train" and args.nproc > 1 and "WORLD_SIZE" not in os.environ
                and not _is_seeds_run(args)):  # which refuses --nproc itself
            return _launch_ranks(args, sys.argv[1:] if argv is None else argv)
        if args.command == "train":
            return train(args)
        if args.command == "eval":
            return evaluate(args)
        if args.command == "plot":
            return plot(args)
        if args.command == "report":
            return report(args)
        if args.command == "export":
            return export(args)
    except (ConfigError, RunFolderError, CheckpointError) as err:
        print(f"mappo: error: {err}", file=sys.stderr)
        return 2
    except EnvError as err:
        if args.debug:
            raise
        print(f"mappo: env error: {err}", file=sys.stderr)
        return 3
    return 1


if __name__ == "__main__":
    sys.exit(main())
