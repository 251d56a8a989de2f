"""VMAS balance and navigation with BenchMARL's fine-tuned MAPPO config (--preset benchmarl-vmas).

    python benchmarks/vmas_suite.py [--fraction 0.018] [--seeds 0] [--tasks balance navigation]
                                    [--device cpu] [--jobs 1] [--quick]

Trains each task with the preset for `--fraction` of BenchMARL's budget (10M
frames = env steps; the default 0.018 is 3 iterations of 60,000 frames, each
45 epochs over 15 minibatches of 4096 frames: 39-45 minutes per task on the
shared 2-core machine at load 12-18, two tasks at once), evaluating
greedily on 200 episodes every 120,000 frames as BenchMARL does, and writes
`benchmarks/results/suites_vmas.md` (table, command, machine) and
`benchmarks/results/suites_vmas.png` (training return per iteration, seeds as
bands). Run folders go to benchmarks/runs/. `--jobs` trains that many runs at
once (one torch thread each); `--quick`: 1 iteration per task.
Last line: one JSON object.

BenchMARL's own curves for these tasks (MAPPO, fine-tuned config, 10M frames,
3 seeds) are in its paper, arXiv:2312.01472 (the VMAS sample-efficiency figure);
they are plotted there in BenchMARL's own return units, which this table does
not convert.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from bench_common import RESULTS_DIR, command_line, machine_info, machine_line, markdown_table

from mappo.checkpoint import load_checkpoint
from mappo.cli import main as mappo_main
from mappo.config import BENCHMARL_VMAS_TASKS, benchmarl_vmas_preset
from mappo.plotting import plot_runs
from mappo.run_folder import read_curve

HERE = Path(__file__).parent
BENCHMARL_FRAMES = 10_000_000  # fine_tuned/vmas/conf/config.yaml: max_n_frames
FRAMES_PER_ITERATION = 60_000  # on_policy_collected_frames_per_batch
PAPER = ("BenchMARL (Bettini, Prorok, Moens), arXiv:2312.01472, the VMAS sample-efficiency "
         "figure: MAPPO with this fine-tuned config, 10M frames, 3 seeds")


def train_task(task: str, seed: int, frames: int, device: str) -> dict:
    """Train `vmas:<task>` with the preset for `frames`; its run folder and figures."""
    run_dir = HERE / "runs" / f"vmas-{task}-seed{seed}"
    start = time.perf_counter()
    code = mappo_main(["train", "--preset", "benchmarl-vmas", "--env", f"vmas:{task}",
                       "--seed", str(seed), "--total-steps", str(frames), "--device", device,
                       "--torch-threads", "1", "--run-dir", str(run_dir), "--force",
                       "--quiet"])
    wall = time.perf_counter() - start
    trained = load_checkpoint(run_dir / "checkpoint.pt")["env_steps"]
    if code != 0 or trained < frames:
        raise SystemExit(f"training vmas:{task} seed {seed} stopped at {trained} frames "
                         f"(exit code {code})")
    _, returns = read_curve(run_dir / "metrics.csv")
    _, evals = read_curve(run_dir / "metrics.csv", "eval_return")
    return {"task": task, "seed": seed, "frames": trained, "run_dir": str(run_dir),
            "wall_s": wall, "first_return": returns[0], "last_return": returns[-1],
            "eval_return": evals[-1] if evals else None,
            "frames_per_second": trained / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fraction", type=float, default=0.018,
                        help="fraction of BenchMARL's 10M frames (default 0.018: 3 iterations)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=["balance", "navigation"],
                        choices=sorted(BENCHMARL_VMAS_TASKS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--quick", action="store_true", help="1 iteration per task")
    args = parser.parse_args()
    fraction = FRAMES_PER_ITERATION / BENCHMARL_FRAMES if args.quick else args.fraction
    frames = max(FRAMES_PER_ITERATION, round(BENCHMARL_FRAMES * fraction
                                             / FRAMES_PER_ITERATION) * FRAMES_PER_ITERATION)
    torch.set_num_threads(1)
    info = machine_info()
    print(machine_line(info))
    runs = []
    jobs = [(task, seed, frames, args.device) for task in args.tasks for seed in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        for run in pool.map(train_task, *zip(*jobs, strict=True)):
            task, seed = run["task"], run["seed"]
            runs.append(run)
            print(f"vmas:{task} seed {seed}: {run['frames']:,} frames in {run['wall_s']:.0f} s, "
                  f"training return {run['first_return']:.3f} -> {run['last_return']:.3f}, "
                  f"greedy {run['eval_return']}", flush=True)

    def mean_std(values: list[float]) -> str:
        if not values:
            return "n/a"
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3f} ± {spread:.3f}"

    rows = []
    for task in args.tasks:
        mine = [r for r in runs if r["task"] == task]
        preset = benchmarl_vmas_preset(f"vmas:{task}")
        rows.append([
            f"vmas:{task}", f"{frames:,} ({frames / BENCHMARL_FRAMES:.1%})", len(mine),
            mean_std([r["first_return"] for r in mine]), mean_std([r["last_return"] for r in mine]),
            mean_std([r["eval_return"] for r in mine if r["eval_return"] is not None]),
            statistics.fmean(r["frames_per_second"] for r in mine),
            statistics.fmean(r["wall_s"] for r in mine) / 60,
            json.dumps(preset["env_kwargs"]),
        ])
    out_png = RESULTS_DIR / "suites_vmas.png"
    plot_runs([r["run_dir"] for r in runs], out_png)
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    load_start = ", ".join(f"{x:.2f}" for x in info["load_average"])
    lines = [
        "# VMAS with BenchMARL's fine-tuned MAPPO settings (`--preset benchmarl-vmas`)", "",
        f"Command: `{command_line()}`  ",
        f"Date: {info['date_utc']}; machine: {info['cores']} cores ({info['cpu']}), device "
        f"{args.device}, 1 torch thread, torch {torch.__version__}; load average (1/5/15 min) "
        f"{load_start} at start, {load_end} at end.", "",
        f"Budget: {frames:,} frames per run, {frames / BENCHMARL_FRAMES:.1%} of BenchMARL's "
        f"10M ({frames // FRAMES_PER_ITERATION} iterations of 600 envs x 100 steps, 45 epochs "
        "x 15 minibatches of 4096 frames each). Returns are mean per-agent episode returns: "
        "training = the episodes of the first and of the last iteration (stochastic policy); "
        "greedy = BenchMARL-style evaluation, 200 deterministic episodes, at the last "
        "multiple of 120,000 frames.", "",
        markdown_table(["task", "frames (of 10M)", "seeds", "training return, first iteration",
                        "training return, last iteration", "greedy return", "frames/s", "minutes",
                        "task settings (env_kwargs)"], rows), "",
        "![training return per iteration](suites_vmas.png)", "",
        f"For comparison: {PAPER}. Those curves run 10M frames; this table covers the first "
        f"{frames / BENCHMARL_FRAMES:.1%} of them, so it shows where learning starts, not "
        "where it ends.",
    ]
    (RESULTS_DIR / "suites_vmas.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"frames": frames, "fraction": frames / BENCHMARL_FRAMES, "runs": runs,
                      "load_average_start": info["load_average"][0]}))


if __name__ == "__main__":
    main()
