"""Reproduce the MAPPO paper on MPE with the official code's settings (`--preset paper-mpe`),
or with the library's defaults (`--base defaults`: `mappo train` with no flags).

    python benchmarks/reproduce_mpe.py [--quick] [--scale 1.0] [--seeds 0 1 2] [--device cpu]
                                       [--base paper-mpe|defaults] [--recurrent true|false]
                                       [--tasks ...] [--jobs 1]

Trains Spread (20M env steps), Reference (3M) and Comm / speaker_listener
(2M) — times `--scale` — over the seeds, evaluates each final policy
deterministically on 100 episodes, and writes benchmarks/results/mpe.md (task,
steps, our mean ± std per-agent return, Spread on the official code's scale,
reference figures) and benchmarks/results/mpe.png (the learning curves);
`--base defaults` writes mpe_defaults.md and .png. Run folders go to
benchmarks/runs/mpe-<task>/seed_<s> (mpe-defaults-<task>/...): the seeds of a
task train in one process (`mappo train --seeds`). `--recurrent false` trains
the preset without its GRUs; `--jobs` trains that many tasks at once (one torch
thread each). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from mappo.checkpoint import load_checkpoint
from mappo.cli import main as mappo_main
from mappo.envs.mpe import speaker_listener, spread
from mappo.evaluation import evaluate_run
from mappo.plotting import plot_runs

HERE = Path(__file__).parent
PAPER_BUDGETS = {"spread": 20_000_000, "reference": 3_000_000, "speaker_listener": 2_000_000}
# Per-agent returns (mpe2 scale) on the official on-policy code's logged scale, and what
# the conversion cannot undo.
OFFICIAL_SCALE = {
    "spread": (spread.official_team_return, "landmarks in U(−1,1), official 0.8·U(−1,1)"),
    "speaker_listener": (
        speaker_listener.official_team_return,
        "official physics applies the force before moving",
    ),
}
NO_CONVERSION = "none exact: mpe2 scores distances, the official code squared distances"
REFERENCE = {
    "spread": "assign-and-go policy −7.78 (mpe2 scale; −119.4 official scale with the "
    "official landmarks; spread_reference_policy.py); official-code users ≈ −120 "
    "(official scale)",
    "reference": "random policy −28.4 (mpe2 scale, measured)",
    "speaker_listener": "random policy −39.7 (mpe2 scale, measured)",
}


BASES = {"paper-mpe": ("--preset", "paper-mpe"), "defaults": ()}  # --base → its flags


def run_task(
    task: str,
    seeds: list[int],
    steps: int,
    device: str,
    episodes: int,
    flags: tuple[str, ...] = (),
    name: str = "",
    train: bool = True,
    base: str = "paper-mpe",
) -> list[dict]:
    """Train the seeds of one task in one process (`mappo train --seeds`) with the preset or
    the defaults (`base`, plus `flags`), then evaluate each greedily; `train=False`
    evaluates the run folders an earlier call left."""
    run_dir = HERE / "runs" / f"mpe-{'defaults-' * (base == 'defaults')}{task}{name}"
    code = (
        mappo_main(
            [
                "train",
                *BASES[base],
                "--env",
                task,
                "--seeds",
                ",".join(map(str, seeds)),
                "--total-steps",
                str(steps),
                "--device",
                device,
                "--run-dir",
                str(run_dir),
                "--force",
                "--quiet",
                *flags,
            ]
        )
        if train
        else 0
    )
    runs = []
    for seed in seeds:
        seed_dir = run_dir / f"seed_{seed}"
        if not train and not seed_dir.exists():  # folders of this script before --seeds
            seed_dir = HERE / "runs" / f"mpe-{task}{name}-seed{seed}"
        checkpoint = load_checkpoint(seed_dir / "checkpoint.pt")
        trained = checkpoint["env_steps"]
        if code != 0 or trained < steps:  # an interrupted run exits 0 but stops short
            raise SystemExit(
                f"training {task} seed {seed} stopped at {trained} env steps (exit code {code})"
            )
        returns = evaluate_run(seed_dir, episodes, deterministic=True).returns
        runs.append(
            {
                "task": task,
                "name": name,
                "seed": seed,
                "steps": steps,
                "run_dir": str(seed_dir),
                "recurrent": checkpoint["config"]["recurrent"],
                "eval_return": statistics.fmean(returns),
            }
        )
    return runs


def run_all(jobs: list[tuple], processes: int) -> list[dict]:
    """`run_task(*job)` for every job (one task, its seeds in one process), `processes` jobs
    at a time, in order; the runs of every seed."""
    runs = []
    with ProcessPoolExecutor(processes) as pool:
        for seeds_runs in pool.map(run_task, *zip(*jobs, strict=True)):
            for run in seeds_runs:
                runs.append(run)
                print(
                    f"{run['task']:17s}{run['name']} seed {run['seed']}: {run['steps']:,} "
                    f"steps, greedy return {run['eval_return']:.2f}",
                    flush=True,
                )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1%% of the budgets")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the paper budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=list(PAPER_BUDGETS))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--base",
        choices=sorted(BASES),
        default="paper-mpe",
        help="the official settings, or the library's defaults",
    )
    parser.add_argument(
        "--recurrent",
        choices=["true", "false"],
        default=None,
        help="GRU actor and critic (rMAPPO) or feed-forward ones (default: "
        "the preset's true; the defaults' false)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="tasks trained at the same time")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="evaluate and tabulate the run folders an earlier run left",
    )
    args = parser.parse_args()
    scale, seeds = (0.01, [0]) if args.quick else (args.scale, args.seeds)
    recurrent = args.recurrent or ("true" if args.base == "paper-mpe" else "false")
    flags = ("--recurrent", recurrent)

    start = time.time()
    runs = run_all(
        [
            (
                task,
                seeds,
                int(PAPER_BUDGETS[task] * scale),
                args.device,
                args.episodes,
                flags,
                "",
                not args.no_train,
                args.base,
            )
            for task in args.tasks
        ],
        args.jobs,
    )
    if {run["recurrent"] for run in runs} != {recurrent == "true"}:
        raise SystemExit(f"the run folders do not all match --recurrent {recurrent}")

    model = "GRU actor and critic (rMAPPO)" if recurrent == "true" else "feed-forward"
    title = (
        "the official settings (`--preset paper-mpe`)"
        if args.base == "paper-mpe"
        else "the library's defaults (`mappo train`, no flags)"
    )
    lines = [
        f"# MAPPO on MPE with {title}, {model}",
        "",
        f"Command: `python benchmarks/reproduce_mpe.py --base {args.base} --scale {scale} "
        f"--seeds {' '.join(map(str, seeds))} --device {args.device} --recurrent {recurrent} "
        f"--tasks {' '.join(args.tasks)} --jobs {args.jobs}{' --no-train' * args.no_train}`  ",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores "
        f"{platform.machine()}, device {args.device}, torch {torch.__version__}; wall time "
        f"{(time.time() - start) / 60:.1f} min{' (evaluation only)' * args.no_train}",
        "",
        *(
            [
                "The run folders were trained by the same command without `--no-train`; this "
                "table re-evaluates their final checkpoints.",
                "",
            ]
            if args.no_train
            else []
        ),
        f"Budgets are {scale:g} x the paper's (Spread 20M, Reference 3M, Comm 2M env steps). "
        "Returns are mean per-agent episode returns of the final policies, greedy, "
        f"{args.episodes} episodes per seed, mean ± std over seeds.",
        "",
        "| task | env steps | seeds | ours (mpe2 scale) | ours (official scale) | reference |",
        "|---|---|---|---|---|---|",
    ]
    summary = {}
    for task in args.tasks:
        values = [r["eval_return"] for r in runs if r["task"] == task]
        mean = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        official = NO_CONVERSION
        if task in OFFICIAL_SCALE:
            convert, caveat = OFFICIAL_SCALE[task]
            converted = [convert(v) for v in values]
            spread_of = statistics.pstdev(converted) if len(converted) > 1 else 0.0
            official = f"{statistics.fmean(converted):.1f} ± {spread_of:.1f} ({caveat})"
        lines.append(
            f"| {task} | {int(PAPER_BUDGETS[task] * scale):,} | {len(values)} | "
            f"{mean:.2f} ± {std:.2f} | {official} | {REFERENCE[task]} |"
        )
        summary[task] = {"mean": mean, "std": std}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    suffix = ("_defaults" if args.base == "defaults" else "") + ("-quick" if args.quick else "")
    table = out / f"mpe{suffix}.md"
    # Keep the ablation table that benchmarks/ablate_mpe.py appends, if it is there.
    previous = table.read_text() if table.exists() else ""
    ablations = previous[previous.find("\n## Ablations") :] if "## Ablations" in previous else ""
    table.write_text("\n".join(lines) + "\n" + ablations)
    plot_runs([r["run_dir"] for r in runs], out / f"mpe{suffix}.png")  # seeds as bands
    print("\n".join(lines))
    print(json.dumps({"scale": scale, "seeds": seeds, "summary": summary, "runs": runs}))


if __name__ == "__main__":
    main()
