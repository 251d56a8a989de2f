"""Built-in `spread` against `mpe2.simple_spread_v3` through the PettingZoo wrapper.

    python benchmarks/pettingzoo_parity.py [--quick] [--steps N] [--seeds 0 1 2] [--num-workers W]

Trains both envs with the default config, the same seeds and the same budget,
and prints the final return of each run (mean of the last 10 updates' episode
returns, mpe2 scale), the mean ± std over seeds, and both throughputs.
The two envs are the same task, so their returns should agree within seed
noise. Writes benchmarks/results/pettingzoo_parity.md; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mappo import MappoConfig, MappoTrainer

ENVS = {"spread": {}, "mpe2.simple_spread_v3:parallel_env": {"N": 3}}


def train_once(env: str, env_kwargs: dict, seed: int, steps: int, workers: int) -> dict:
    """Final return and throughput of one run."""
    config = MappoConfig(
        env=env,
        env_kwargs=env_kwargs,
        seed=seed,
        total_steps=steps,
        num_workers=0 if env == "spread" else workers,
    )
    trainer = MappoTrainer(config)
    start = time.perf_counter()
    history = trainer.train()
    elapsed = time.perf_counter() - start
    trainer.env.close()
    final = statistics.fmean(m.episode_return for m in history[-10:])
    return {
        "env": env,
        "seed": seed,
        "final_return": final,
        "env_steps_per_second": trainer.env_steps / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 30k steps")
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-workers", type=int, default=2, help="workers for the mpe2 runs")
    args = parser.parse_args()
    steps, seeds = (30_000, [0]) if args.quick else (args.steps, args.seeds)

    runs = []
    for seed in seeds:
        for env, kwargs in ENVS.items():
            run = train_once(env, kwargs, seed, steps, args.num_workers)
            runs.append(run)
            print(
                f"{env:40s} seed {seed}: final return {run['final_return']:8.3f}, "
                f"{run['env_steps_per_second']:7,.0f} env steps/s",
                flush=True,
            )

    summary = {}
    for env in ENVS:
        finals = [r["final_return"] for r in runs if r["env"] == env]
        speeds = [r["env_steps_per_second"] for r in runs if r["env"] == env]
        summary[env] = {
            "mean": statistics.fmean(finals),
            "std": statistics.pstdev(finals) if len(finals) > 1 else 0.0,
            "env_steps_per_second": statistics.fmean(speeds),
        }
    lines = [
        "# Built-in spread vs mpe2.simple_spread_v3 (PettingZoo wrapper)",
        "",
        f"Command: `python benchmarks/pettingzoo_parity.py --steps {steps} --seeds "
        f"{' '.join(map(str, seeds))} --num-workers {args.num_workers}`  ",
        f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores, "
        f"{platform.machine()}, torch {torch.__version__}, load average at the end "
        f"{os.getloadavg()[0]:.2f}",
        "",
        "| env | seeds | steps | final return (mean ± std over seeds) | env steps/s |",
        "|---|---|---|---|---|",
    ]
    for env, s in summary.items():
        lines.append(
            f"| `{env}` | {len(seeds)} | {steps:,} | {s['mean']:.2f} ± {s['std']:.2f} "
            f"| {s['env_steps_per_second']:,.0f} |"
        )
    lines += [
        "",
        "Final return: mean of the last 10 updates' mean per-agent episode return (mpe2 scale).",
    ]
    if not args.quick:
        out = Path(__file__).parent / "results" / "pettingzoo_parity.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"steps": steps, "seeds": seeds, "runs": runs, "summary": summary}))


if __name__ == "__main__":
    main()
