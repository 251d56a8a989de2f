"""One command per published MAPPO table: train its config at its budget, score it the same way.

    python benchmarks/reproduce.py --suite mpe|smax|lbf|rware|vmas [--tasks NAME ...]
        [--seeds 0,1,2] [--scale 1.0] [--hours H] [--runs-dir DIR] [--episodes 100]
        [--report-only]

The suites, their tasks, the published figures and their sources are in
`benchmarks/published.toml`; this script reads nothing else about them. For
each task, the seeds train in one process as one batched network (`mappo train
--seeds`) into `DIR/<suite>/<task>/seed_<s>`, to the published budget times
`--scale`. The command is resumable: a task whose folder holds a run continues
from its checkpoint (`Run.resume`), so rerun the same command in the next
session. `--hours` stops training after that much wall time (saving, as Ctrl-C
does, which also stops it) and still writes the table, with the fraction of the
budget reached.
Keep `--runs-dir` outside the repository for runs that span days.

Each task's final policies are scored greedily on `--episodes` episodes per
seed; the table gives the interquartile mean with its 95 % bootstrap CI (as
`mappo report`), the score converted to the published figure's scale (the
data file's `scale` says how), the published figure and its source, the
budget reached, wall time and env steps/s. Every invocation appends a line to
`DIR/<suite>/sessions.log` (date, load average, what it trained), which the
table's file quotes: the load stands beside the figures it slowed. Writes
`benchmarks/results/published_<suite>.md`; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import command_line, machine_info, markdown_table, write_results  # noqa: E402

from mappo.checkpoint import load_checkpoint  # noqa: E402
from mappo.evaluation import evaluate_run  # noqa: E402
from mappo.presets import build_config  # noqa: E402
from mappo.report import bootstrap_ci, iqm  # noqa: E402
from mappo.run import Run  # noqa: E402
from mappo.run_folder import slot_folders  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "published.toml"
SCALES = {
    "same": "ours as logged",
    "team_sum": "ours x the number of agents (our team return is the agents' mean reward, "
    "theirs the sum)",
    "spread_official": "6 R - 75 for a mean per-agent return R (the official code's team sum "
    "with each agent's self-collision, mappo.envs.mpe.spread.official_team_return)",
    "win_rate": "the share of greedy episodes won",
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


def read_suite(suite: str) -> tuple[dict[str, Any], list[Task]]:
    """The suite's table of `published.toml` and its tasks."""
    data = tomllib.loads(DATA.read_text())
    if suite not in data:
        raise SystemExit(f"--suite {suite!r}: {DATA.name} has {', '.join(data)}")
    table = dict(data[suite])
    shared = table.pop("fields", {})
    tasks = []
    for row in table.pop("task"):
        row = dict(row)
        row["fields"] = {**shared, **row.get("fields", {})}
        row.setdefault("preset", table.get("preset"))
        if row["scale"] not in SCALES:
            raise SystemExit(f"{DATA.name}: task {row['name']}: scale {row['scale']!r} unknown")
        tasks.append(Task(**row))
    return table, tasks


def train(task: Task, folder: Path, seeds: list[int], steps: int, deadline: float) -> bool:
    """Train (or continue) the task's seeds to `steps` env steps each, stopping at `deadline`
    (a `time.time()`); whether the budget was reached."""
    if slot_folders(folder):
        run = Run.resume(folder, total_steps=steps)
    else:
        fields = {**task.fields, "env": task.env, "total_steps": steps}
        run = Run.start(build_config(task.preset, None, fields), folder, seeds=seeds)
    summary = run.train(quiet=False, callback=lambda _: time.time() > deadline)
    return summary.finished


def training_seconds(run_dir: Path) -> float:
    """Seconds spent collecting and updating: each metrics.csv row's env steps over its
    env steps/s, summed (start-up, checkpoints and the gaps between sessions not counted)."""
    total, previous = 0.0, 0
    with open(run_dir / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
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
    """Greedy scores of the task's seeds, their IQM and CI, on ours and the published scale."""
    seeds = slot_folders(folder)
    returns, wins, steps = [], [], []
    for seed_dir in seeds:
        evaluation = evaluate_run(seed_dir, episodes, deterministic=True)
        returns.append(float(np.mean(evaluation.returns)))
        wins.append(evaluation.win_rate if evaluation.wins else math.nan)
        steps.append(int(load_checkpoint(seed_dir / "checkpoint.pt")["env_steps"]))
    config = load_checkpoint(seeds[0] / "checkpoint.pt")["config"]
    ours = np.array(wins if task.scale == "win_rate" else returns)
    theirs = converted(task, ours, len(evaluation.seat_names))
    (lo,), (hi,) = bootstrap_ci([theirs], lambda x, axis: iqm(x, axis)[..., None])
    seconds = training_seconds(seeds[0])
    return {
        "task": task.name,
        "env": config["env"],
        "seeds": len(seeds),
        "steps": min(steps),
        "fraction": min(steps) / task.budget,
        "returns": returns,
        "label": evaluation.label,
        "win_rates": wins,
        "score": [float(x) for x in theirs],
        "iqm": float(iqm(theirs)),
        "ci": (float(lo), float(hi)),
        "hours": seconds / 3600,
        "steps_per_second": sum(steps) / seconds if seconds else math.nan,
    }


def figure_cell(task: Task) -> str:
    """The published figure as the table shows it."""
    if task.figure is None:
        return task.figure_text or "not quoted"
    return f"{task.figure:g}" + (f" ({task.figure_text})" if task.figure_text else "")


def write_table(
    suite: str,
    table: dict[str, Any],
    tasks: list[Task],
    results: list[dict],
    log: Path,
    args: argparse.Namespace,
    info: dict,
) -> Path:
    """benchmarks/results/published_<suite>.md from the scored tasks and the sessions log."""
    by_name = {t.name: t for t in tasks}
    rows = []
    for r in results:
        task = by_name[r["task"]]
        rows.append(
            [
                task.name,
                f"{r['steps']:,} / {task.budget:,} ({r['fraction']:.0%})",
                r["seeds"],
                f"{r['iqm']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]",
                ", ".join(f"{x:.3f}" for x in r["score"]),
                figure_cell(task),
                task.metric,
                f"{r['hours']:.2f} h, {r['steps_per_second']:,.0f}/s",
            ]
        )
    headers = [
        "task",
        "env steps per seed / published budget",
        "seeds",
        "ours: IQM [95 % CI], published scale",
        "ours per seed",
        "published",
        "metric",
        "training wall time, env steps/s (all seeds in one process)",
    ]
    scales = "\n".join(
        f"- {t.name}: `{t.env}`, {SCALES[t.scale]}; source: {t.source}" for t in tasks
    )
    sessions = log.read_text().strip() if log.exists() else "(none yet)"
    sections = [
        table.get("about", ""),
        markdown_table(headers, rows) if rows else "No task has a checkpoint yet.",
        f"Scores: {args.episodes} greedy episodes per seed of each seed's last checkpoint; "
        "IQM and its 95 % CI from a 2,000-sample percentile bootstrap over the seeds "
        "(`mappo report`'s statistics). Where the budget is not reached, the row scores the "
        "policy at the env steps it gives.\n\nHow each task is trained and scaled:\n" + scales,
        "Sessions (date, load average 1/5/15 min at start, what ran):\n\n```\n"
        + sessions
        + "\n```",
    ]
    # Not `<suite>.md`: mpe.md holds the history of earlier MPE reproductions.
    return write_results(f"published_{suite}", table["title"], info, sections, quick=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", required=True, help="a table of benchmarks/published.toml")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: all)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds trained in one process")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the budgets")
    parser.add_argument("--hours", type=float, default=math.inf, help="wall time to train")
    parser.add_argument("--runs-dir", default=str(HERE / "runs" / "reproduce"))
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed")
    parser.add_argument("--report-only", action="store_true", help="score, do not train")
    args = parser.parse_args()
    table, tasks = read_suite(args.suite)
    if args.tasks:
        unknown = set(args.tasks) - {t.name for t in tasks}
        if unknown:
            raise SystemExit(f"--tasks: {args.suite} has no {', '.join(sorted(unknown))}")
        tasks = [t for t in tasks if t.name in args.tasks]
    seeds = [int(s) for s in args.seeds.split(",")]
    root = Path(args.runs_dir) / args.suite
    root.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    deadline = time.time() + args.hours * 3600
    log = root / "sessions.log"
    trained = []
    for task in tasks:
        if args.report_only or time.time() > deadline:
            break
        steps = int(task.budget * args.scale)
        done = train(task, root / task.name, seeds, steps, deadline)
        trained.append(f"{task.name} {'to' if done else 'stopped short of'} {steps:,}")
        if not done:  # --hours ran out, or Ctrl-C: no further task, but the table is written
            break
    if trained:
        load = " ".join(f"{x:.2f}" for x in info["load_average"])
        with open(log, "a") as handle:
            handle.write(
                f"{info['date_utc']}  load {load}  {'; '.join(trained)}  ({command_line()})\n"
            )
    results = [score(t, root / t.name, args.episodes) for t in tasks if slot_folders(root / t.name)]
    path = write_table(args.suite, table, tasks, results, log, args, info)
    print(path.read_text())
    print(json.dumps({"suite": args.suite, "results": results}))


if __name__ == "__main__":
    main()
