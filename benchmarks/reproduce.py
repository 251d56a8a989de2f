"""One command per published MAPPO table: train its config at its budget, score it the same way.

    python benchmarks/reproduce.py --suite mpe|smax|lbf|rware|vmas|epymarl-lbf|epymarl-rware
        [--tasks NAME ...] [--seeds 0,1,2] [--scale 1.0] [--hours H] [--runs-dir DIR]
        [--episodes 100] [--report-only] [--resume] [--preset NAME|none] [--set FIELD=VALUE ...]
        [--torch-threads N] [--restart-changed] [--results-dir DIR]

The suites, their tasks, the published figures and their sources are in
`benchmarks/published.toml`; this script reads nothing else about them. For each
task, the seeds train in one process as one batched network (`mappo train
--seeds`) into `DIR/<suite>/<task>/seed_<s>`, to the published budget times
`--scale`. The command is resumable: a task whose folder holds a run continues
from its checkpoint (`Run.resume`), so rerun the same command in the next
session (`--resume` continues only such tasks, and refuses a `--runs-dir` with
none: it never starts a task afresh); a folder whose runs have another config
than the task's (the table or its preset edited since) is refused in one line,
or with `--restart-changed` moved aside to `<task>.superseded-<UTC time>` and
the task started afresh.
`--tasks` trains only the tasks named; the table still has a row for every task
of the suite, scored where its runs have checkpoints. `--hours` stops training
after that much wall time (saving, as Ctrl-C does, which also stops it) and
still writes the table, with the fraction of the budget reached. SIGTERM during
training (a batch scheduler's stop, whose kill follows within seconds) stops it
the same way but writes the table from the record without scoring: the next
call scores the runs. Ctrl-C or SIGTERM while a run is opened or while the
runs are scored ends that work at once; the tasks scored by then count, and
the table is written. A closed terminal (SIGHUP) stops training at the end of
the update as Ctrl-C does; the runs are then scored and the table written.
`--torch-threads` sets how the runs are computed, not what they learn (a run
started on one thread continues on two): give a recurrent suite both cores when
it trains alone.
A bad option, or runs it cannot go on from, is one line and exit code 2 (3 for
an env that broke), as for `mappo`; so is a `--results-dir` the table could not
be written to, before any training. A call that a signal stopped (training or
scoring cut short) writes the table, then exits with 128 + the signal's number
(130 after Ctrl-C, 143 after SIGTERM) as `mappo train` does, so that a script
tells it from a finished one; its last line's JSON names it (`stopped_by`).
Keep `--runs-dir` outside the repository for runs that span days, and give a
trial run (a tiny `--scale`) its own `--results-dir`: the default is the
committed tables'.

The table outlives the runs: each task's score and learning curve, with the date
and machine that scored it, are kept in `benchmarks/results/published_<suite>.json`
(the record), which the table and its plot are drawn from. Tasks with no runs in
`--runs-dir` (trained on another machine, or runs since lost) keep their recorded
rows; runs that are behind the recorded ones (a restart) replace them once they
pass them, and the table says so until then. A task of another config than its
record (the table edited since) drops the record, and runs of the old config are
not scored (the table says so). An unchanged score (the same env steps and
per-seed scores) keeps the date and machine that gave it first.

Each task's final policies are scored on `--episodes` episodes per seed,
choosing actions as the published figure's source did (the suite's `actions`:
most sources sample them, BenchMARL takes the greedy ones), and again the other
way, which the table gives beside it (both kept in `<task>/score.json` until its
checkpoints change); the table gives the interquartile mean with its 95 %
bootstrap CI (as `mappo report`),
the score converted to the published figure's scale (the data file's `scale`
says how), the published figure and its source, the budget reached, wall time
and env steps/s, and when and where it was scored. Every invocation that trains
adds a line to the record's sessions (date, load average, what it trained),
which the table's file quotes: the load stands beside the figures it slowed.
Writes `benchmarks/results/published_<suite>.md` and the learning curves
(training returns on the published scale, seeds as a band, one panel per task)
as `published_<suite>.png`; last line: one JSON object.

A variant asks what the published config's parts are worth: `--preset` trains
another preset instead of the table's (`none`: mappo's defaults) and each
`--set FIELD=VALUE` changes one config field on top (`env_kwargs` merge with
the task's). A variant trains into `DIR/<suite>/<variant>/<task>` and writes
`published_<suite>_<variant>.md`, its title naming the change: it is never
mistaken for the published config. `benchmarks/ablate_mpe.py` builds its
ablations from the same functions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import tempfile
import textwrap
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


def _interrupted_while_loading(signum: int, frame: object) -> None:
    """Ctrl-C before `main` (numpy, torch and the envs take seconds to load): one line, not
    the import's traceback; nothing has started."""
    print("reproduce.py: interrupted while loading; nothing was trained", file=sys.stderr)
    os._exit(130)  # the import in progress is abandoned: no cleanup of its half state


if __name__ == "__main__":
    signal.signal(signal.SIGINT, _interrupted_while_loading)

import numpy as np  # noqa: E402

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_common  # noqa: E402
from bench_common import (  # noqa: E402
    UsageError,
    command_line,
    machine_info,
    markdown_table,
    one_line_errors,
    write_results,
)

from mappo.checkpoint import (  # noqa: E402
    BEFORE_FIELDS,
    load_checkpoint,
    saved_config,
    write_atomically,
)
from mappo.config import (  # noqa: E402
    AUTO,
    ENV_DIM_FIELDS,
    FIELDS,
    from_dict,
    parse_cli_value,
    read_config_file,
)
from mappo.errors import CheckpointError, ConfigError, RunFolderError  # noqa: E402
from mappo.evaluation import EVALUATION_VERSION, evaluate_run  # noqa: E402
from mappo.plotting import GRID_POINTS, PlotError, RunGroup, read_run  # noqa: E402
from mappo.presets import PRESETS, build_config  # noqa: E402
from mappo.report import bootstrap_ci, iqm  # noqa: E402
from mappo.run import RESUME_CHANGES, Run, RunSummary, StopRun, setting_name  # noqa: E402
from mappo.run_folder import read_metrics, slot_folders  # noqa: E402
from mappo.run_lock import RunLock  # noqa: E402
from mappo.stop_signals import HANGUP, stop_signals, take_hangup, terminal_outputs  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "published.toml"
SCALES = {
    "same": "ours as logged",
    "team_sum": "ours x the number of agents (our team return is the agents' mean reward, "
    "theirs the sum)",
    "spread_official": "6 R - 75 for a mean per-agent return R (the official code's team sum "
    "with each agent's self-collision, mappo.envs.mpe.spread.official_team_return)",
    "win_rate": "the share of episodes won",
}


# How the scoring episodes choose actions (a suite's `actions`): as the published source did.
ACTIONS = ("sampled", "greedy")


# Fields each task or the command sets, which a `--set` variant would not change.
TABLE_SETS = {
    "env": "--tasks (each task trains its own env)",
    "seed": "--seeds",
    "total_steps": "--scale (a fraction of every task's budget)",
}


@dataclass(frozen=True)
class Task:
    """One row of a published table, as `published.toml` gives it."""

    name: str
    env: str
    budget: int  # env steps per seed in the published run
    source: str
    scale: str  # how our score converts to the published figure's (a key of SCALES)
    figure: float | None = None  # the published number, where one was read
    figure_text: str = ""  # what the source says, where there is no number to quote
    metric: str = ""
    preset: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # config fields on the preset
    actions: str = "greedy"  # how the source's scoring episodes chose actions: ACTIONS

    @property
    def other_actions(self) -> str:
        """The other way of choosing actions, which the table gives beside the source's."""
        return next(a for a in ACTIONS if a != self.actions)


def read_suite(suite: str) -> tuple[dict[str, Any], list[Task]]:
    """The suite's table of `published.toml` and its tasks."""
    data = tomllib.loads(DATA.read_text())
    if suite not in data:
        raise UsageError(f"--suite {suite!r}: {DATA.name} has {', '.join(data)}")
    table = dict(data[suite])
    shared = table.pop("fields", {})
    tasks = []
    for row in table.pop("task"):
        row = dict(row)
        row["fields"] = {**shared, **row.get("fields", {})}
        row.setdefault("preset", table.get("preset"))
        row.setdefault("actions", table.get("actions", "greedy"))
        if row["scale"] not in SCALES:
            raise UsageError(f"{DATA.name}: task {row['name']}: scale {row['scale']!r} unknown")
        if row["actions"] not in ACTIONS:
            raise UsageError(
                f"{DATA.name}: task {row['name']}: actions {row['actions']!r}, not "
                + " or ".join(ACTIONS)
            )
        tasks.append(Task(**row))
    return table, tasks


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`--set recurrent=false --set lr=1e-3` → `{"recurrent": False, "lr": 0.001}`, each value
    parsed to its field's type (JSON for `env_kwargs`); a bad item is one line."""
    sets: dict[str, Any] = {}
    for item in items:
        name, equals, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not equals or name not in FIELDS:
            raise UsageError(f"--set {item!r}: give FIELD=VALUE with a config field as FIELD")
        if name in TABLE_SETS:
            raise UsageError(f"--set {item!r}: the table sets {name}; give {TABLE_SETS[name]}")
        try:
            sets[name] = parse_cli_value(name, text.strip())
        except ConfigError as err:
            raise UsageError(f"--set: {err}") from None
    return sets


def variant_of(tasks: list[Task], preset: str | None, sets: dict[str, Any]) -> list[Task]:
    """The tasks with `preset` (`"none"`: no preset) instead of the table's and `sets` on
    their fields; `env_kwargs` merge with the task's, which set the map or scenario."""
    if preset is not None and preset != "none" and preset not in PRESETS:
        raise UsageError(f"--preset {preset!r}: the presets are none, {', '.join(PRESETS)}")
    varied = []
    for task in tasks:
        fields = {**task.fields, **sets}
        if "env_kwargs" in sets:
            fields["env_kwargs"] = {**task.fields.get("env_kwargs", {}), **sets["env_kwargs"]}
        chosen = task.preset if preset is None else (None if preset == "none" else preset)
        varied.append(replace(task, preset=chosen, fields=fields))
    return varied


def variant_name(preset: str | None, sets: dict[str, Any]) -> tuple[str, str]:
    """(`preset=none,recurrent=false`, `preset_none_recurrent_false`): a variant as the
    table names it, and as its folder and file names; ("", "") for the published config."""
    text = setting_name({**({"preset": preset} if preset is not None else {}), **sets})
    return text, re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def train(
    task: Task,
    folder: Path,
    seeds: list[int],
    steps: int,
    deadline: float,
    quiet: bool = False,
    torch_threads: int | None = None,
    restart_changed: bool = False,
    stop_asked: Callable[[], bool] = lambda: False,
) -> tuple[RunSummary, int]:
    """Train (or continue) the task's seeds to `steps` env steps each, stopping at `deadline`
    (a `time.time()`) or once `stop_asked()` after an update, on `torch_threads` (default:
    the config's); how training ended and
    the env steps per seed it started from. Runs of another config than the task's are
    refused, or with `restart_changed` moved aside (`set_aside`) and the task started afresh."""
    threads = {} if torch_threads is None else {"torch_threads": torch_threads}
    held = slot_folders(folder)
    # Stopped before its first checkpoint: the folders hold only config.toml, nothing to keep.
    afresh = bool(held) and not any((d / "checkpoint.pt").is_file() for d in held)
    if afresh and sorted(int(d.name.removeprefix("seed_")) for d in held) != sorted(seeds):
        aside = set_aside(folder, held)  # other seeds, which would stay beside the new ones
        print(f"{folder}: runs of other seeds, none checkpointed, moved to {aside}")
        held, afresh = [], False
    if afresh:
        held = []
    if held and (changed := held_changes(task, held[0])):
        if not restart_changed:
            raise UsageError(
                f"{folder} holds runs of another config than the task's ({'; '.join(changed)}); "
                "give another --runs-dir, a variant (--preset, --set) that matches them, or "
                "--restart-changed to move them aside and start afresh"
            )
        aside = set_aside(folder, held)
        print(f"{folder}: runs of another config ({'; '.join(changed)}) moved to {aside}")
        held = []
    if held:
        found = sorted(int(d.name.removeprefix("seed_")) for d in held)
        if found != sorted(seeds):
            raise UsageError(
                f"--seeds {','.join(map(str, seeds))}: {folder} holds the runs of seeds "
                f"{','.join(map(str, found))}; continue those, or give another --runs-dir"
            )
        reached = load_checkpoint(held[0] / "checkpoint.pt").get("env_steps", 0)
        if reached >= steps:  # at or past the budget (a smaller --scale): nothing to open
            return RunSummary(reached, True, [math.nan] * len(held), held), reached
        run = Run.resume(folder, total_steps=steps, **threads)
    else:
        fields = {**task.fields, "env": task.env, "total_steps": steps, **threads}
        run = Run.start(build_config(task.preset, None, fields), folder, seeds=seeds, force=afresh)
    with run:  # a stop (`Stopped`) before its updates start releases its locks and envs
        start = run.learner.env_steps
        summary = run.train(
            quiet=quiet,
            callback=lambda _: time.time() > deadline or stop_asked(),
            continue_with=command_line(),  # which also writes the table; `mappo train` would not
        )
    return summary, start


def set_aside(folder: Path, held: list[Path]) -> Path:
    """Move a task's folder of runs of another config to `<task>.superseded-<UTC time>` beside
    it, where they stay as they were; refused while a process trains in one of them."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = folder.with_name(f"{folder.name}.superseded-{stamp}")
    count = 1
    while aside.exists():  # set aside twice within a second
        count += 1
        aside = folder.with_name(f"{folder.name}.superseded-{stamp}-{count}")
    locks: list[RunLock] = []
    try:
        for seed_dir in held:  # held across the move, so that no run starts in them meanwhile
            locks.append(RunLock.take(seed_dir))
        folder.rename(aside)
    finally:
        for lock in locks:
            lock.release()
    return aside


def learning_config(task: Task) -> dict[str, Any]:
    """The settings the task's runs learn with, its preset resolved: the fields a resume may
    change, the seed, what `auto` decides and what is read off the env aside."""
    wanted = build_config(task.preset, None, {**task.fields, "env": task.env})
    return {
        name: getattr(wanted, name)
        for name in FIELDS
        if name not in (*RESUME_CHANGES, *ENV_DIM_FIELDS, "seed") and getattr(wanted, name) != AUTO
    }


def held_changes(task: Task, seed_dir: Path) -> list[str]:
    """`field: held -> task's` for each setting where the run in `seed_dir` differs from the
    task's `learning_config` (a table or preset edited since it started). A field its
    config.toml predates holds what the run trained with, as a resume reads it."""
    try:
        saved, _, decided = read_config_file(seed_dir / "config.toml")
        # What `auto` became is what the run learns with, as a table setting it says.
        held = from_dict(
            {**BEFORE_FIELDS, **saved, **decided}, source=str(seed_dir / "config.toml")
        )
    except ConfigError as err:
        # Damaged by hand, or of a mappo that took other keys: the checkpoint's config, which
        # a resume writes back, says what the run learns with.
        try:
            checkpoint = seed_dir / "checkpoint.pt"
            held = saved_config(load_checkpoint(checkpoint), checkpoint)
        except CheckpointError:
            return [str(err)]
    return [
        f"{name}: {getattr(held, name)!r} -> {value!r}"
        for name, value in learning_config(task).items()
        if getattr(held, name) != value
    ]


def training_seconds(run_dir: Path) -> float:
    """Seconds spent collecting and updating: each metrics.csv row's env steps over its
    env steps/s, summed (start-up, checkpoints and the gaps between sessions not counted)."""
    total, previous = 0.0, 0
    for row in read_metrics(run_dir / "metrics.csv")[0]:
        steps, speed = int(row["env_steps"]), float(row["steps_per_second"] or 0.0)
        total += (steps - previous) / speed if speed > 0 else 0.0
        previous = steps
    return total


def converted(task: Task, scores: np.ndarray, num_agents: int) -> np.ndarray:
    """Our per-seed scores on the published figure's scale."""
    if task.scale == "team_sum":
        return scores * num_agents
    if task.scale == "spread_official":
        from mappo.envs.mpe.spread import official_team_return

        return np.array([official_team_return(s, num_agents) for s in scores])
    return scores


def score(task: Task, folder: Path, episodes: int) -> dict[str, Any]:
    """Scores of the task's seeds, their IQM and CI, on ours and the published scale, with
    actions chosen as the source's were (`task.actions`), and under `other_actions` the
    other way.

    Kept in `<folder>/score.json` and reused while the seeds' checkpoints (their env
    steps), `episodes`, the scale, the actions and the way episodes are played
    (`EVALUATION_VERSION`) stay the same: a finished task is not replayed by every later
    call that writes the suite's table.
    """
    seeds = slot_folders(folder)
    checkpoints = [load_checkpoint(seed_dir / "checkpoint.pt") for seed_dir in seeds]
    steps = [int(checkpoint["env_steps"]) for checkpoint in checkpoints]
    key = {
        "episodes": episodes,
        "env_steps": steps,
        "scale": task.scale,
        "actions": task.actions,
        "evaluation": EVALUATION_VERSION,
    }
    kept = folder / "score.json"
    if (saved := read_kept_score(kept)) is not None and saved.get("key") == key:
        return {**saved["result"], "episodes": episodes}  # kept before it held the count
    seconds = training_seconds(seeds[0])  # a damaged metrics.csv is found before the episodes
    config = checkpoints[0]["config"]
    ours = scores_of(task, seeds, episodes, task.actions)
    other = scores_of(task, seeds, episodes, task.other_actions)
    result = {
        "task": task.name,
        "env": config["env"],
        "seeds": len(seeds),
        "steps": min(steps),
        "fraction": min(steps) / task.budget,
        **ours,
        "actions": task.actions,
        "other_actions": {"actions": task.other_actions, **other},
        "hours": seconds / 3600,
        "steps_per_second": sum(steps) / seconds if seconds else None,  # no metrics rows
        "episodes": episodes,
    }
    text = json.dumps({"key": key, "result": result})
    write_atomically(kept, lambda handle: handle.write(text.encode()))
    return result


def scores_of(task: Task, seeds: list[Path], episodes: int, actions: str) -> dict[str, Any]:
    """`episodes` episodes of each seed's checkpoint with `actions` chosen so: each seed's
    mean return and win rate, and its score on the published scale with their IQM and CI."""
    returns, wins = [], []
    for seed_dir in seeds:
        evaluation = evaluate_run(seed_dir, episodes, deterministic=actions == "greedy")
        returns.append(float(np.mean(evaluation.returns)))
        wins.append(evaluation.win_rate if evaluation.wins else math.nan)
    ours = np.array(wins if task.scale == "win_rate" else returns)
    theirs = converted(task, ours, len(evaluation.seat_names))
    (lo,), (hi,) = bootstrap_ci([theirs], lambda x, axis: iqm(x, axis)[..., None])
    return {
        "returns": returns,
        "label": evaluation.label,
        "win_rates": wins,
        "score": [float(x) for x in theirs],
        "iqm": float(iqm(theirs)),
        "ci": [float(lo), float(hi)],
    }


def read_kept_score(path: Path) -> dict[str, Any] | None:
    """The scores `score` kept in `path`, or None where there are none or the file is
    damaged (they are then computed again)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def curve_of(task: Task, folder: Path) -> dict[str, Any] | None:
    """The training curve of the task's runs in `folder` on the published scale (the
    training win rate for `win_rate`): the seeds' mean and std on at most `GRID_POINTS`
    env steps, and the number of seeds, as the record keeps it; None before every seed
    has finished an episode."""
    column = "win_rate" if task.scale == "win_rate" else "episode_return"
    try:
        curves = [read_run(d, column) for d in slot_folders(folder)]
        for curve in curves:
            curve.returns = converted(task, curve.returns, int(curve.config["num_agents"]))
        grid, mean, std = RunGroup(curves).band("env_steps")
    except PlotError:  # no episode ended yet in some seed, or the seeds share no range
        return None
    kept = np.unique(np.linspace(0, len(grid) - 1, min(len(grid), GRID_POINTS)).round())
    kept = kept.astype(int)  # a single seed's band is its every logged row: thin it
    return {
        "env_steps": grid[kept].tolist(),
        "mean": mean[kept].tolist(),
        "std": std[kept].tolist(),
        "seeds": len(curves),
    }


def plot_suite(tasks: list[Task], record: dict[str, Any], out: Path) -> Path | None:
    """The recorded training curve of each task, one panel per task, the seeds' mean ± std
    as a band and the published figure as a dashed line; None when no task has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    entries = record["tasks"]
    panels = [t for t in tasks if entries.get(t.name, {}).get("curve")]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, task in zip(axes[0], panels, strict=True):
        curve = entries[task.name]["curve"]
        grid, mean, std = (np.array(curve[k]) for k in ("env_steps", "mean", "std"))
        # A marker too: a curve of one logged point draws no line.
        ax.plot(grid, mean, lw=1.5, marker="o" if len(grid) == 1 else None,
                label=f"ours ({curve['seeds']} seeds, mean ± std)")  # fmt: skip
        ax.fill_between(grid, mean - std, mean + std, alpha=0.25, lw=0)
        if task.figure is not None:
            ax.axhline(task.figure, color="k", ls="--", lw=1, label="published")
        ax.set_title(task.name, fontsize=10)
        ax.set_xlabel("env steps per seed")
        ax.xaxis.set_major_formatter(EngFormatter())  # 2M, not 2000000
        ax.xaxis.set_major_locator(MaxNLocator(5))  # labels that do not run together
        ax.set_ylabel(textwrap.fill(f"{task.metric or 'return'}, training", 40), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def task_key(task: Task) -> dict[str, Any]:
    """What a task trains and how it is scored (env, preset, config fields, scale, and the
    settings they resolve to): a record made under another key is of a table or preset
    edited since."""
    return {
        "env": task.env,
        "preset": task.preset,
        "fields": task.fields,
        "scale": task.scale,
        "learns_with": learning_config(task),
    }


def with_fields_since(recorded: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """A record's key with each setting of `now` (a `task_key`) that mappo gained since the
    record was made (absent from its `learns_with`) at the value its runs trained with:
    what `BEFORE_FIELDS` says, else the field's default, whose behaviour is the one before
    it existed (`reward_norm` off)."""
    if "learns_with" not in recorded:
        return recorded
    before = from_dict(dict(BEFORE_FIELDS))
    held = recorded["learns_with"]
    since = {name: getattr(before, name) for name in now["learns_with"] if name not in held}
    return {**recorded, "learns_with": {**since, **held}}


def same_task(recorded: dict[str, Any] | None, task: Task) -> bool:
    """Whether a record's key is `task_key(task)`, settings added since it was made taken
    at the value its runs trained with (`with_fields_since`). Records made before
    2026-12-06 hold no `learns_with`: for them the preset's name stands for it (the
    `epymarl` ones were dropped by hand when that preset's critic changed). `merge_scores`
    keeps a record it keeps under today's full key, so that a later edit drops it too."""
    if recorded is None:
        return False
    key = task_key(task)
    if "learns_with" not in recorded:
        key.pop("learns_with")
    return with_fields_since(recorded, key) == key


def read_record(path: Path) -> dict[str, Any]:
    """The record at `path` (`{"tasks": {name: entry}, "sessions": [line]}`), empty when
    there is none yet; an unreadable one is refused in one line, not overwritten."""
    if not path.exists():
        return {"tasks": {}, "sessions": []}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("tasks"), dict) or not isinstance(record["sessions"], list):
            raise ValueError("no 'tasks' table and 'sessions' list")
        if not all(isinstance(line, str) for line in record["sessions"]):
            raise ValueError("a line of 'sessions' is not text")
        for name, entry in record["tasks"].items():  # each as `merge_scores` writes it
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("result"), dict)
                and isinstance(entry["result"].get("steps"), int)
                and all(isinstance(entry.get(key), str) for key in ("date_utc", "machine"))
            ):
                raise ValueError(f"task {name!r} has no result, steps, date_utc and machine")
    except (ValueError, KeyError, AttributeError) as err:
        raise UsageError(
            f"{path}: not a record of reproduce.py ({err}); restore it from git, or move it away"
        ) from None
    return record


def merge_scores(
    record: dict[str, Any],
    tasks: list[Task],
    scored: dict[str, tuple[dict, dict | None]],
    root: Path,
    info: dict,
) -> list[str]:
    """Put this call's `scored` results (`{task: (score(), curve_of())}`, runs in
    `root/<task>`) into `record`, keeping each task's recorded entry where its runs are
    not here or are behind it; drops entries of tasks no longer in the table or of
    another config, each with a line in the sessions' log that keeps its figures. An
    unchanged score (env steps and per-seed scores) keeps the date and machine that scored
    it first. Returns a line for each task whose runs here are behind its record."""
    machine = f"{info['cores']} cores, {info['cpu']}"
    behind: list[str] = []
    entries = {}
    for task in tasks:
        old = record["tasks"].get(task.name)
        if old is not None and not same_task(old.get("config"), task):
            # The table or preset was edited since: its runs are of another config.
            record["sessions"].append(dropped_line(task, old))
            old = None
        elif old is not None:
            old = {**old, "config": task_key(task)}
        if task.name not in scored:
            if old is not None:
                entries[task.name] = old
            continue
        result, curve = scored[task.name]
        if old is not None and old["result"]["steps"] > result["steps"]:
            entries[task.name] = old
            behind.append(
                f"{task.name}: the runs in {root / task.name} are at {result['steps']:,} env "
                f"steps per seed, behind the recorded ones ({old['result']['steps']:,}, scored "
                f"{old['date_utc']} on {old['machine']}); they replace them once they pass them"
            )
            continue
        unchanged = ("steps", "score", "actions")  # records before 2026-12-08: greedy
        if old is not None and all(old["result"].get(k, "greedy") == result[k] for k in unchanged):
            # The same checkpoints scored the same again: when and where they were scored stays;
            # the other actions' score is this call's (a record before 2026-12-08 has none,
            # and a change to evaluation may move it alone), as is the episodes' count where an
            # older record lacks it.
            entries[task.name] = {
                **old,
                "result": {**result, **old["result"], "other_actions": result["other_actions"]},
                "curve": old.get("curve") or curve,
            }
            continue
        entries[task.name] = {
            "result": result,
            "curve": curve,
            "date_utc": utc_now(),
            "machine": machine,
            "config": task_key(task),
        }
    record["tasks"] = entries
    return behind


def dropped_line(task: Task, entry: dict[str, Any]) -> str:
    """The sessions' log line of a record dropped as another config than `task`'s: its
    figures, when and where they were scored, and the settings that changed."""
    now = task_key(task)
    held = with_fields_since(entry.get("config") or {}, now)
    changed = [
        f"{name}: {held['learns_with'].get(name)!r} -> {value!r}"
        for name, value in now["learns_with"].items()
        if "learns_with" in held and held["learns_with"].get(name) != value
    ] or [name for name in ("env", "preset", "fields", "scale") if held.get(name) != now[name]]
    result = entry.get("result") or {}

    def number(value: Any) -> str:  # a NaN score is kept as None (JSON has no NaN)
        return "n/a" if value is None else f"{value:.3f}"

    scores = ", ".join(number(s) for s in result.get("score") or [])
    scored = f"{entry.get('date_utc', 'at an unknown date')} on {entry.get('machine', 'unknown')}"
    return (
        f"{utc_now()}  record dropped, of another config than the task's now "
        f"({'; '.join(changed) or 'its key'}): {task.name} at {result.get('steps', 0):,} env "
        f"steps per seed, IQM {number(result.get('iqm'))} ({scores}), scored {scored}"
    )


def utc_now() -> str:
    """The time now, as `machine_info` gives it."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def without_nan(value: Any) -> Any:
    """`value` with each NaN float (a win rate where the env has none, a speed with no time)
    as None: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nan(v) for v in value]
    return value


def figure_cell(task: Task) -> str:
    """The published figure as the table shows it."""
    if task.figure is None:
        return task.figure_text or "not quoted"
    return f"{task.figure:g}" + (f" ({task.figure_text})" if task.figure_text else "")


def write_table(
    name: str,
    table: dict[str, Any],
    tasks: list[Task],
    record: dict[str, Any],
    unshown: list[str],
    args: argparse.Namespace,
    info: dict,
    variant: str = "",
    plot: Path | None = None,
) -> Path:
    """benchmarks/results/<name>.md: a row per task of the table (its recorded score, or
    no checkpoint yet), the `unshown` lines (runs here that the table does not show), their
    plot and the sessions."""
    rows = []
    for task in tasks:
        if task.name not in record["tasks"]:
            budget = f"0 / {task.budget:,} (0%)"
            rows.append(
                [task.name, budget, 0, "no checkpoint yet", "", "", figure_cell(task)]
                + [task.metric, "", ""]
            )
            continue
        entry = record["tasks"][task.name]
        r = entry["result"]
        sps = r["steps_per_second"]  # NaN in a score.json kept from before it was None
        rate = f"{sps:,.0f}/s" if sps is not None and math.isfinite(sps) else "env steps/s unknown"
        rows.append(
            [
                task.name,
                f"{r['steps']:,} / {task.budget:,} ({share(r['steps'] / task.budget)})",
                r["seeds"],
                f"{r['iqm']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}], "
                + r.get("actions", "greedy"),
                ", ".join(f"{x:.3f}" for x in r["score"]),
                other_actions_cell(r),
                figure_cell(task),
                task.metric,
                f"{duration(r['hours'])}, {rate}",
                f"{entry['date_utc']}, {entry['machine']}",
            ]
        )
    headers = [
        "task",
        "env steps per seed / published budget",
        "seeds",
        "ours: IQM [95 % CI], published scale, actions as the source's",
        "ours per seed",
        "ours with the other actions: IQM (per seed)",
        "published",
        "metric",
        "training wall time, env steps/s (all seeds in one process)",
        "scored",
    ]
    scales = "\n".join(
        f"- {t.name}: `{t.env}`, {SCALES[t.scale]}; source: {t.source}" for t in tasks
    )
    actions = table.get("actions_source", "")
    sessions = "\n".join(record["sessions"]) or "(none yet)"
    changed = (
        f"**A variant, not the published config**: {variant} (`--preset`/`--set` of "
        "reproduce.py on top of the table's config)."
        if variant
        else ""
    )
    curves = f"Learning curves: [{plot.name}]({plot.name})." if plot else ""
    if missing := [t for t, entry in record["tasks"].items() if not entry.get("curve")]:
        curves += (
            f" The record has no curve of {', '.join(missing)} (scored before it kept curves, or "
            "before an episode ended)."
        )
    sections = [
        table.get("about", ""),
        *([changed] if changed else []),
        markdown_table(headers, rows),
        *(
            ["Runs here that the table does not show:\n\n" + "\n".join(f"- {u}" for u in unshown)]
            if unshown
            else []
        ),
        *([curves.strip()] if curves else []),
        f"Scores: {episodes_text(tasks, record)} per seed of each seed's last checkpoint; "
        "IQM and its 95 % CI from a 2,000-sample percentile bootstrap over the seeds "
        "(`mappo report`'s statistics). Where the budget is not reached, the row scores the "
        "policy at the env steps it gives. Actions are chosen as the source's scores chose "
        "them (sampled from the policy, or greedy: its most likely action), and the other way "
        "beside them" + (f": {actions}" if actions else "") + "."
        "\n\nHow each task is trained and scaled:\n" + scales,
        "Sessions (date, load average 1/5/15 min at start, what ran):\n\n```\n"
        + sessions
        + "\n```",
    ]
    title = table["title"] + (f"; variant {variant}" if variant else "")
    return write_results(name, title, info, sections, quick=False)


def other_actions_cell(result: dict[str, Any]) -> str:
    """The table's cell for a result's score with the other actions: "greedy 0.812 (0.836,
    0.837, 0.764)"; records before 2026-12-08 hold none."""
    other = result.get("other_actions")
    if other is None:
        return "not scored (recorded before scores took both)"
    per_seed = ", ".join(f"{x:.3f}" for x in other["score"])
    return f"{other['actions']} {other['iqm']:.3f} ({per_seed})"


def duration(hours: float) -> str:
    """Wall time for the table: hours, or minutes where that would read 0.00 h."""
    return f"{hours:.2f} h" if hours >= 0.1 or not math.isfinite(hours) else f"{hours * 60:.1f} min"


def share(fraction: float) -> str:
    """A fraction of the budget as a percentage, with the digits that show a small one, and
    never 100% short of the budget (99.7% is not done)."""
    if 0.995 <= fraction < 1:
        return f"{math.floor(fraction * 1000) / 10:.1f}%"
    return f"{fraction:.0%}" if fraction >= 0.01 or fraction == 0 else f"{fraction * 100:.2g}%"


def episodes_text(tasks: list[Task], record: dict[str, Any]) -> str:
    """How many episodes scored the recorded rows (`100 episodes`, or each count with its
    tasks where they differ); records kept none before 2026-12-07."""
    by_count: dict[Any, list[str]] = {}
    for task in (t for t in tasks if t.name in record["tasks"]):
        by_count.setdefault(record["tasks"][task.name]["result"].get("episodes"), []).append(
            task.name
        )
    if len(by_count) <= 1 and None not in by_count:
        return f"{next(iter(by_count), '')} episodes".lstrip()
    parts = [
        f"{'an unrecorded number (scored before the record kept it)' if n is None else n} for "
        + ", ".join(names)
        for n, names in by_count.items()
    ]
    return "episodes (" + "; ".join(parts) + ")"


def resumable(tasks: list[Task], root: Path) -> list[Task]:
    """`--resume`: the tasks whose folders in `root` hold checkpointed runs, a line for each
    left out; none of them is an error (a mistyped `--runs-dir` would start afresh)."""

    def held(task: Task) -> bool:
        return any((d / "checkpoint.pt").is_file() for d in slot_folders(root / task.name))

    kept = [t for t in tasks if held(t)]
    if not kept:
        raise UsageError(
            f"--resume: {root} holds no runs of {', '.join(t.name for t in tasks)} to continue; "
            "check --runs-dir, or leave out --resume to start them"
        )
    for task in tasks:
        if task not in kept:
            print(
                f"--resume: {root / task.name} holds no runs to continue; {task.name} not started"
            )
    return kept


def remove_empty(folders: list[Path]) -> None:
    """Remove `folders` (deepest first) up to the first that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # a run started in it, or something else did
            return


def positive(kind: type) -> Any:
    """An argparse type: a finite number of `kind` above zero (a zero or negative `--hours`
    would rewrite the table with nothing trained; an infinite `--scale`, no budget)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not 0 < value < math.inf:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number above 0")
        return value

    return parse


class Stopped(BaseException):  # noqa: N818 - not an error: a stop asked for, as KeyboardInterrupt
    """SIGINT or SIGTERM outside a run's updates (`Stops`): the work in progress (opening a
    run, scoring) ends at once."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name  # the signal's ("SIGTERM")


class Stops:
    """The stop signals while no run trains (a run trains under its own `StopOnSignal`, which
    saves first): SIGINT and SIGTERM raise `Stopped`; SIGHUP (the terminal closed, often
    twice: the shell passes one on, the kernel sends another) points the output at
    /dev/null and sets `hung_up`, which stops training at its next update while scoring and
    the table go on, as nobody waits on them. On leaving, the handlers before come back
    (a SIGINT while the table is written is not caught: its writes are atomic), SIGHUP
    ignored once the terminal is gone."""

    def __init__(self) -> None:
        self.hung_up = False
        self._terminal = terminal_outputs()
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> Stops:
        self._previous = {sig: signal.signal(sig, self._handle) for sig in stop_signals()}
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if take_hangup(signum, self._terminal):
            self.hung_up = True
            return
        raise Stopped(signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            hung_up = self.hung_up and sig == HANGUP
            signal.signal(sig, signal.SIG_IGN if hung_up else handler)


def train_tasks(
    training: list[Task],
    root: Path,
    seeds: list[int],
    deadline: float,
    args: argparse.Namespace,
    trained: list[str],
    stops: Stops,
) -> str | None:
    """Train `training` in turn until `deadline` or a closed terminal (`stops.hung_up`),
    each from its runs in `root/<task>`, adding a line per task to `trained` for the
    sessions log; the signal that stopped a run (`RunSummary.stopped_by`), after which no
    further task trains."""
    for at, task in enumerate(training):
        if time.time() > deadline or stops.hung_up:
            trained.append(not_started(training[at:], stops))
            break
        steps = int(task.budget * args.scale)
        summary, start = train(
            task,
            root / task.name,
            seeds,
            steps,
            deadline,
            torch_threads=args.torch_threads,
            restart_changed=args.restart_changed,
            stop_asked=lambda: stops.hung_up,
        )
        if start >= steps:
            trained.append(f"{task.name} already at {start:,}")
        elif summary.finished:  # whole updates: often past the budget
            trained.append(f"{task.name} to {summary.env_steps:,}")
        else:
            trained.append(f"{task.name} stopped at {summary.env_steps:,} of {steps:,}")
        if summary.stopped_by:
            return summary.stopped_by
        if not summary.finished:  # --hours ran out, or the terminal closed: no further task
            if rest := training[at + 1 :]:
                trained.append(not_started(rest, stops))
            break
    return None


def not_started(tasks: list[Task], stops: Stops) -> str:
    """The sessions log's words for `tasks` left untrained, and why."""
    why = "the terminal closed" if stops.hung_up else "--hours ran out"
    return f"{', '.join(t.name for t in tasks)} not started: {why}"


def score_task(
    task: Task, folder: Path, episodes: int, scored: dict[str, Any], unshown: list[str]
) -> None:
    """Score the runs in `folder` into `scored[task.name]` (score and curve), or say in
    `unshown` why they are not: no checkpoint yet, another config, a damaged file."""
    if not (seed_dirs := slot_folders(folder)):
        return
    if unready := [d.name for d in seed_dirs if not (d / "checkpoint.pt").is_file()]:
        unshown.append(
            f"{task.name}: {', '.join(unready)} in {folder} have no checkpoint yet; not scored"
        )
        return
    if changed := held_changes(task, seed_dirs[0]):
        unshown.append(
            f"{task.name}: the runs in {folder} are of another config than the "
            f"task's ({'; '.join(changed)}); not scored"
        )
        return
    try:
        scored[task.name] = (score(task, folder, episodes), curve_of(task, folder))
    except (CheckpointError, RunFolderError, PlotError) as err:  # the other tasks still count
        unshown.append(f"{task.name}: {err}; not scored")


def main() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # loaded: Ctrl-C as usual
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a table of benchmarks/published.toml")
    parser.add_argument(
        "--tasks", nargs="+", help="train only these (default: all); the table scores all with runs"
    )
    parser.add_argument(
        "--seeds", default="0,1,2", help="seeds trained in one process (default %(default)s)"
    )
    parser.add_argument(
        "--scale",
        type=positive(float),
        default=1.0,
        help="fraction of the budgets (default %(default)s)",
    )
    parser.add_argument(
        "--hours",
        type=positive(float),
        default=math.inf,
        help="wall time to train (default: no limit)",
    )
    parser.add_argument(
        "--runs-dir",
        default=str(HERE / "runs" / "reproduce"),
        help="where the runs train (default %(default)s): keep it outside the repository for "
        "runs that span days",
    )
    parser.add_argument(
        "--episodes",
        type=positive(int),
        default=100,
        help="scoring episodes per seed, for each way of choosing actions (default %(default)s)",
    )
    parser.add_argument("--report-only", action="store_true", help="score, do not train")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="only continue tasks that have runs in --runs-dir (without it, those continue "
        "too and the others start)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        help="where the table, its record and plot go (default benchmarks/results, the "
        "committed ones: give another for trial runs)",
    )
    parser.add_argument(
        "--preset", help="a variant: this preset instead of the table's (none: mappo's defaults)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a variant: this config field on top of the table's (repeatable)",
    )
    parser.add_argument(
        "--restart-changed",
        action="store_true",
        help="move runs of another config than the task's (a preset or table edited since) "
        "aside to <task>.superseded-<time> and start the task afresh, instead of refusing",
    )
    parser.add_argument(
        "--torch-threads",
        type=positive(int),
        help="torch's threads for training (default: the config's)",
    )
    args = parser.parse_args()
    if args.results_dir is not None:
        bench_common.RESULTS_DIR = args.results_dir
    try:
        with one_line_errors("reproduce.py"):
            stopped_by = reproduce(args)
    except KeyboardInterrupt:  # before training, or while the table is written (`Stops`)
        print(
            "reproduce.py: interrupted; the runs keep their checkpoints: the same command goes "
            "on and writes the table",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    if stopped_by is not None:  # the table is written, the budget not reached: as `mappo train`
        raise SystemExit(128 + signal.Signals[stopped_by])


def check_writable_results(folder: Path) -> None:
    """Refuse a results folder the table could not be written to, in one line: one that is a
    file, lies under a file, or takes no new file."""
    flag = f"--results-dir {folder}"
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        what = "a file" if existing == folder else f"under the file {existing}"
        raise UsageError(f"{flag}: {what}, not a folder")
    try:  # what a permission check misses (root, an immutable folder); nothing is made
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise UsageError(f"{flag}: the table cannot be written there ({err.strerror})") from None


def reproduce(args: argparse.Namespace) -> str | None:
    """Train, score and tabulate what `args` (main's options) ask for; the signal that stopped
    the training or the scoring, if one did."""
    table, tasks = read_suite(args.suite)
    if args.tasks:
        unknown = set(args.tasks) - {t.name for t in tasks}
        if unknown:
            raise UsageError(
                f"--tasks: {args.suite} has no {', '.join(map(repr, sorted(unknown)))}; its tasks "
                f"are {', '.join(t.name for t in tasks)}"
            )
    sets = parse_sets(args.set)
    tasks = variant_of(tasks, args.preset, sets)
    variant, slug = variant_name(args.preset, sets)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds {args.seeds!r}: give integers joined by commas") from None
    training = [
        t for t in tasks if not args.report_only and (not args.tasks or t.name in args.tasks)
    ]
    if too_short := [t for t in training if int(t.budget * args.scale) < 1]:
        least = float(f"{1 / min(t.budget for t in too_short):.1e}")  # 2 digits, rounded up:
        while any(int(t.budget * least) < 1 for t in too_short):
            least = float(f"{least + 10 ** (math.floor(math.log10(least)) - 1):.1e}")
        raise UsageError(
            f"--scale {args.scale:g}: {too_short[0].name}'s budget of {too_short[0].budget:,} "
            f"env steps scales to none; give at least {least:.2g}"
        )
    if not args.runs_dir.strip():
        raise UsageError("--runs-dir: give a folder")
    root = Path(args.runs_dir) / args.suite / slug  # no variant: the suite's own folder
    for flag, does in (("report_only", "trains nothing"), ("restart_changed", "starts afresh")):
        if args.resume and getattr(args, flag):
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"--resume only continues runs; {name} {does}: give one of them")
    if args.resume and training:
        training = resumable(training, root)
    if args.report_only and not root.is_dir():  # a mistyped --runs-dir scores nothing
        print(
            f"--report-only: {root} does not exist; nothing to score, the table is written "
            "from the record",
            file=sys.stderr,
        )
    check_writable_results(bench_common.RESULTS_DIR)  # before hours of training, not after
    made: list[Path] = []  # the folders this call makes, deepest first
    if not args.report_only:  # scoring alone makes no folder
        made = [p for p in (root, *root.parents) if not p.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            says = f"cannot make {root}: {err.strerror}"
            raise UsageError(f"--runs-dir {args.runs_dir}: {says}") from None
    # Not `<suite>.md`: mpe.md holds the history of earlier MPE reproductions.
    name = f"published_{args.suite}" + f"_{slug}" * bool(slug)
    record_path = bench_common.RESULTS_DIR / f"{name}.json"
    read_record(record_path)  # a bad record is refused before training, not after
    info = machine_info()
    deadline = time.time() + args.hours * 3600
    trained: list[str] = []
    scored: dict[str, Any] = {}
    unshown: list[str] = []
    # A stop signal while a run trains is the run's (it saves; `summary.stopped_by`); SIGINT
    # or SIGTERM while a run is opened or scored raises `Stopped` (`Stops`).
    with Stops() as stops:
        try:
            stopped_by = train_tasks(training, root, seeds, deadline, args, trained, stops)
            run_stopped = True  # if stopped_by: a run's own stop, at an update
        except (Stopped, StopRun) as stop:  # StopRun: a second signal while a run closed
            stopped_by, run_stopped = str(stop.args[0]), False
            trained.append(f"{stopped_by} outside a run's updates")
        except BaseException:  # a config or env refused: no empty variant folder stays
            remove_empty(made)
            raise
        if stops.hung_up and stopped_by is None:  # not a run's own: it stopped at its update
            stopped_by = "SIGHUP"
            trained.append("SIGHUP outside a run's updates")
        stops.hung_up |= stopped_by == "SIGHUP"  # its second SIGHUP may come yet
        # The table is the suite's: every task with checkpoints is scored, not only those
        # `--tasks` named (another process may be training one: no checkpoint before its first
        # update ends); runs of another config than the task's are left out.
        with_runs = [t for t in tasks if slot_folders(root / t.name)]
        if stopped_by == "SIGTERM":
            # A batch scheduler's stop: its kill follows within a grace period (SLURM: 30 s)
            # that scoring (minutes) would overrun. The table is written from the record.
            during = "training" if run_stopped else "the opening or closing of a run"
            unscored, stopped_while = with_runs, f"SIGTERM came during {during}"
        else:
            unscored, stopped_while = [], ""
            for at, task in enumerate(with_runs):
                try:
                    score_task(task, root / task.name, args.episodes, scored, unshown)
                except Stopped as stop:
                    unscored, stopped_while = with_runs[at:], f"{stop.name} came while scoring"
                    trained.append(f"{stop.name} while scoring")
                    stopped_by = stopped_by or stop.name
                    break
    if unscored:
        unshown.append(
            f"{', '.join(t.name for t in unscored)} (runs in {root}): not scored, "
            f"{stopped_while}; their rows are as recorded before, and the same command (or "
            "with --report-only) scores them"
        )
    # Read again: another process of the suite may have written it while these trained.
    record = read_record(record_path)
    if trained:
        load = " ".join(f"{x:.2f}" for x in info["load_average"])
        record["sessions"].append(
            f"{info['date_utc']}  load {load}  {'; '.join(trained)}  ({command_line()})"
        )
    unshown += merge_scores(record, tasks, scored, root, info)
    bench_common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(without_nan(record), indent=1, allow_nan=False) + "\n"
    write_atomically(record_path, lambda handle: handle.write(text.encode()))
    png = bench_common.RESULTS_DIR / f"{name}.png"
    plot = plot_suite(tasks, record, png) or (png if png.exists() else None)  # else: as drawn
    path = write_table(name, table, tasks, record, unshown, args, info, variant, plot)
    print(path.read_text())
    results = [record["tasks"][t.name]["result"] for t in tasks if t.name in record["tasks"]]
    last = {"suite": args.suite, "results": results, "stopped_by": stopped_by}
    print(json.dumps(without_nan(last), allow_nan=False))
    return stopped_by


if __name__ == "__main__":
    main()
