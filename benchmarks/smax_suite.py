"""SMAX `3m` and `2s3z` trained with `--preset jaxmarl-smax`: win rate and return curves, and
JaxMARL's own MAPPO frames/s on the same map in the same run.

    python benchmarks/smax_suite.py [--maps 3m 2s3z] [--seeds 0] [--steps 491520]
        [--minutes 10] [--jaxmarl-checkout DIR]

Needs the `jax` extra. Each (map, seed) trains JaxMARL's MAPPO SMAX config (the
preset: 128 envs x 128 steps, GRU 128 backpropagated through whole rollouts,
lr 2e-3 annealed over `--steps`) for `--steps` env steps, a stated fraction of
the config's 10M, stopping early if `--minutes` of wall time pass. mappo and
JAX each get one CPU thread. Each update's training win rate and team return
(of the episodes that ended in its rollout) are the curve; the table's final
figures pool the episodes of the last 5 updates.

With `--jaxmarl-checkout DIR` (a folder holding JaxMARL's
`baselines/MAPPO/mappo_rnn_smax.py` and its `config/`, from a checkout outside
this project; it needs distrax, hydra-core, omegaconf and wandb), that script
runs on the first map for 1 and for 3 updates in subprocesses; the difference
of their wall times over 2 updates' env steps is its frames/s with compilation
left out. Writes benchmarks/results/suites_smax.md and suites_smax.png.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                           "intra_op_parallelism_threads=1").strip()

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import RESULTS_DIR, machine_info, markdown_table, write_results  # noqa: E402

from mappo.config import MappoConfig, jaxmarl_smax_preset  # noqa: E402
from mappo.trainer import MappoTrainer  # noqa: E402

JAXMARL_BUDGET = 10_000_000  # TOTAL_TIMESTEPS of mappo_homogenous_rnn_smax.yaml
JAXMARL_BATCH = 128 * 128  # NUM_ENVS x NUM_STEPS: env steps per update
FINAL_UPDATES = 5
# What we compare with: the JaxMARL paper's SMAX results (Rutherford et al., "JaxMARL:
# Multi-Agent RL Environments and Algorithms in JAX", arXiv:2311.10090, the SMAX figure
# of win rate against env steps per map), where MAPPO with this config reaches win rates
# near 1.0 on 3m and 2s3z within its 1e7 steps.
PAPER = ("JaxMARL paper (Rutherford et al., arXiv:2311.10090), SMAX results figure: MAPPO "
         "with this config reaches win rates near 1.0 on `3m` and `2s3z` within 1e7 env steps "
         "(read off the plotted curves; the paper gives no table of these values)")


def train(map_name: str, seed: int, steps: int, minutes: float) -> dict:
    """One run of the preset on `map_name`: its per-update curve and summary."""
    preset = jaxmarl_smax_preset("jaxmarl:HeuristicEnemySMAX", {"scenario": map_name})
    # Eager: compiling a loss that backpropagates through 128-step sequences takes minutes
    # on this CPU (benchmarks/compare.py runs whole sequences eager too).
    config = MappoConfig(**{**preset, "total_steps": steps, "seed": seed, "torch_threads": 1,
                            "compile": "false"})
    start = time.perf_counter()
    trainer = MappoTrainer(config)
    setup_s = time.perf_counter() - start
    curve: list[dict] = []
    deadline = time.perf_counter() + 60 * minutes

    def record(metrics) -> bool:
        curve.append({"env_steps": metrics.env_steps, "return": metrics.episode_return,
                      "win_rate": metrics.win_rate, "episodes": metrics.episodes,
                      "fps": metrics.steps_per_second})
        print(f"{map_name} seed {seed}: {metrics.env_steps:,} steps, win rate "
              f"{metrics.win_rate:.3f}, return {metrics.episode_return:.3f}, "
              f"{metrics.steps_per_second:,.0f} steps/s", flush=True)
        return time.perf_counter() > deadline

    train_start = time.perf_counter()
    trainer.train(record)
    wall = time.perf_counter() - train_start
    trainer.close()
    last = [c for c in curve[-FINAL_UPDATES:] if c["episodes"]]
    episodes = sum(c["episodes"] for c in last)
    return {
        "map": map_name, "seed": seed, "curve": curve, "env_steps": trainer.env_steps,
        "wall_s": wall, "setup_s": setup_s,
        "stopped_early": trainer.env_steps < steps,
        "win_rate": sum(c["win_rate"] * c["episodes"] for c in last) / episodes
        if episodes else math.nan,
        "return": sum(c["return"] * c["episodes"] for c in last) / episodes
        if episodes else math.nan,
        "fps": statistics.median(c["fps"] for c in curve[1:]) if len(curve) > 1
        else curve[0]["fps"],
    }


def jaxmarl_frames_per_second(checkout: Path, map_name: str) -> tuple[float, str]:
    """JaxMARL's MAPPO SMAX script's frames/s on `map_name` (compile excluded), and a note."""
    times = {}
    for updates in (1, 3):
        command = [sys.executable, str(checkout / "mappo_rnn_smax.py"),
                   f"TOTAL_TIMESTEPS={updates * JAXMARL_BATCH}", f"MAP_NAME={map_name}",
                   "WANDB_MODE=disabled", "hydra.run.dir=/tmp/jaxmarl_hydra",
                   "hydra.output_subdir=null"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "WANDB_MODE": "disabled"})
        times[updates] = time.perf_counter() - start
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            return math.nan, f"JaxMARL's script failed: {' '.join(tail)}"
        print(f"JaxMARL MAPPO {map_name}, {updates} update(s): {times[updates]:.1f} s", flush=True)
    fps = 2 * JAXMARL_BATCH / (times[3] - times[1])
    return fps, (f"wall time of 1 update {times[1]:.1f} s and of 3 updates {times[3]:.1f} s "
                 "(each including its compile)")


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in runs:
        xs = [c["env_steps"] for c in run["curve"] if c["episodes"]]
        label = f"{run['map']} seed {run['seed']}"
        axes[0].plot(xs, [c["win_rate"] for c in run["curve"] if c["episodes"]], label=label)
        axes[1].plot(xs, [c["return"] for c in run["curve"] if c["episodes"]], label=label)
    for ax, name in zip(axes, ("training win rate", "team episode return"), strict=True):
        ax.set_xlabel("env steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mappo --preset jaxmarl-smax on SMAX (HeuristicEnemySMAX)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=30 * JAXMARL_BATCH)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time cap per run")
    parser.add_argument("--jaxmarl-checkout", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = machine_info()
    runs = [train(m, s, args.steps, args.minutes) for m in args.maps for s in args.seeds]
    jaxmarl_fps, jaxmarl_note = math.nan, "not run (no --jaxmarl-checkout)"
    if args.jaxmarl_checkout is not None:
        jaxmarl_fps, jaxmarl_note = jaxmarl_frames_per_second(args.jaxmarl_checkout,
                                                              args.maps[0])
    rows = [[r["map"], r["seed"], f"{r['env_steps']:,}",
             f"{r['env_steps'] / JAXMARL_BUDGET:.1%}", r["win_rate"], r["return"],
             f"{r['fps']:,.0f}", f"{r['wall_s'] / 60:.1f}",
             "yes" if r["stopped_early"] else "no"] for r in runs]
    table = markdown_table(
        ["map", "seed", "env steps", "of JaxMARL's 1e7", f"win rate (last {FINAL_UPDATES} "
         "updates)", "team return", "frames/s", "minutes", "stopped by the time cap"], rows)
    plot(runs, RESULTS_DIR / "suites_smax.png")
    ours = next(r["fps"] for r in runs if r["map"] == args.maps[0])
    speed = (f"JaxMARL's own MAPPO (`baselines/MAPPO/mappo_rnn_smax.py`, the same config) on "
             f"`{args.maps[0]}` in this run: {jaxmarl_fps:,.0f} frames/s ({jaxmarl_note}); "
             f"mappo {ours:,.0f} frames/s, ratio mappo / JaxMARL "
             f"{ours / jaxmarl_fps:.2f}." if not math.isnan(jaxmarl_fps) else
             f"JaxMARL's own MAPPO frames/s: {jaxmarl_note}.")
    text = (
        f"`--preset jaxmarl-smax` (JaxMARL's `mappo_homogenous_rnn_smax.yaml`) for "
        f"{args.steps:,} env steps per run ({args.steps / JAXMARL_BUDGET:.1%} of the config's "
        f"1e7; the learning rate anneals over these steps), seeds {args.seeds}, wall-time "
        f"cap {args.minutes} min per run, 1 torch thread and 1 XLA thread, eager (no "
        "torch.compile). Win rate and return are training figures (stochastic policy) of the "
        "episodes that ended in each "
        f"update's rollout.\n\nCompared with: {PAPER}.\n\n{speed}"
    )
    write_results("suites_smax", "SMAX with the jaxmarl-smax preset", info,
                  [text, table, "![curves](suites_smax.png)"], quick=False)
    print(table)


if __name__ == "__main__":
    main()
