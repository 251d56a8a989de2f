"""Several seeds in one process (`mappo train --seeds`) against the same seeds one after another.

    python benchmarks/seeds.py [--updates 2] [--warmup 1] [--compile auto|true|false]

The default config (spread, 128 envs x 25 steps, 10 epochs, minibatches of 256
agent-steps), seeds 0-7. Each measurement runs in a fresh process: `warmup`
whole iterations (rollout + update) untimed, then `updates` timed, and counts
the env steps of all seeds together per second of the timed iterations.

- one thread: K = 1, 2, 4, 8 seeds in one process (`MultiSeedTrainer`) against
  the same K seeds trained one after another in one process (the first K of
  one pass over seeds 0-7);
- both cores: 8 seeds in one process with two threads, and two processes of 4
  seeds at once (one thread each), against two solo processes at once, each
  training 4 seeds one after another (one thread each); the two processes'
  rates are added.

`--compile auto` lets the trainer choose as it does for a run of this budget
(it compiles only runs of `COMPILE_MIN_STEPS` or more, so these short
measurements run eager); `true` compiles solo and batched losses alike.
Writes benchmarks/results/seeds.md; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from bench_common import machine_info, machine_line, markdown_table, write_results

SEEDS = list(range(8))


def measure(batched: bool, seeds: list[int], threads: int, updates: int, warmup: int,
            compile_mode: str) -> list[tuple[int, float, bool]]:
    """(env steps, timed seconds, compiled) of training `seeds`: one `MultiSeedTrainer` when
    `batched`, else one `MappoTrainer` after another (one entry per seed)."""
    from mappo import MappoConfig, MappoTrainer
    from mappo.seeds import MultiSeedTrainer

    torch.set_num_threads(threads)
    config = MappoConfig(torch_threads=threads, compile=compile_mode)
    config = config.replace(
        total_steps=(updates + warmup) * config.num_envs * config.rollout_steps)
    if batched:
        runs = [(MultiSeedTrainer(config, seeds), MultiSeedTrainer.collect_rollouts)]
    else:
        runs = [(MappoTrainer(config.replace(seed=s)), MappoTrainer.collect_rollout)
                for s in seeds]
    results = []
    for trainer, collect in runs:
        for _ in range(warmup):
            collect(trainer)
            trainer.update()
        before = trainer.env_steps
        start = time.perf_counter()
        for _ in range(updates):
            collect(trainer)
            trainer.update()
        seconds = time.perf_counter() - start
        steps = (trainer.env_steps - before) * (len(seeds) if batched else 1)
        results.append((steps, seconds, trainer.compiled))
        trainer.close()
    return results


def in_processes(jobs: list[tuple]) -> list[list[tuple[int, float, bool]]]:
    """`measure(*job)` for every job, each in a fresh process, all at the same time."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        return list(pool.map(measure, *zip(*jobs, strict=True)))


def rate(results: list[tuple[int, float, bool]]) -> float:
    """Env steps per second of measurements run one after another."""
    return sum(r[0] for r in results) / sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=2, help="timed updates per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates before them")
    parser.add_argument("--compile", choices=("auto", "true", "false"), default="auto")
    args = parser.parse_args()
    info = machine_info()
    start = time.perf_counter()
    common = (args.updates, args.warmup, args.compile)

    # One thread each. The 8-seed pair first and back to back (the load of a shared machine
    # drifts); K = 1, 2, 4 one after another are the first K seeds of the same solo pass.
    [solo] = in_processes([(False, SEEDS, 1, *common)])
    print(f"8 seeds one after another, 1 thread: {rate(solo):,.0f} env steps/s", flush=True)
    rows, summary = [], {}
    for k in (8, 4, 2, 1):
        [batched] = in_processes([(True, SEEDS[:k], 1, *common)])
        ours, theirs = rate(batched), rate(solo[:k])
        print(f"{k} seeds in one process, 1 thread: {ours:,.0f} env steps/s", flush=True)
        rows.insert(0, [f"{k} seeds, 1 thread", ours, theirs, ours / theirs])
        summary[f"k{k}_1thread"] = {"batched": ours, "one_after_another": theirs}
    # Both cores.
    half = len(SEEDS) // 2
    solo_pair = in_processes([(False, SEEDS[:half], 1, *common),
                              (False, SEEDS[half:], 1, *common)])
    theirs = sum(rate(r) for r in solo_pair)
    print(f"8 seeds, two solo processes at once: {theirs:,.0f} env steps/s", flush=True)
    [two_threads] = in_processes([(True, SEEDS, 2, *common)])
    pair = in_processes([(True, SEEDS[:half], 1, *common), (True, SEEDS[half:], 1, *common)])
    for label, ours in (("8 seeds, 1 process, 2 threads", rate(two_threads)),
                        ("8 seeds, 2 processes of 4, 1 thread each",
                         sum(rate(r) for r in pair))):
        rows.append([label, ours, theirs, ours / theirs])
    summary["both_cores"] = {"batched_2_threads": rate(two_threads),
                             "batched_2_processes": sum(rate(r) for r in pair),
                             "solo_2_processes": theirs}
    compiled = {r[2] for group in (solo, two_threads) for r in group}
    minutes = (time.perf_counter() - start) / 60

    headers = ["measurement", "seeds in one process: env steps/s",
               "seeds one after another: env steps/s", "ratio"]
    table = markdown_table(headers, rows)
    lines = [
        f"{machine_line(info)}; load average at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}",
        f"default config (spread, 128 envs x 25 steps, 10 epochs, minibatch 256 agent-steps); "
        f"per measurement {args.warmup} untimed + {args.updates} timed iterations (rollout + "
        f"update) per seed, env steps of all seeds counted; minibatch loss compiled: "
        f"{' / '.join(sorted(map(str, compiled)))} (--compile {args.compile}); "
        f"wall time {minutes:.1f} min",
        "Both cores, one after another = two solo processes at once, each training 4 seeds "
        "one after another; their rates added.",
    ]
    print("\n".join(lines))
    print(table)
    write_results("seeds", "Seeds in one process against seeds one after another", info,
                  ["\n\n".join(lines), table], quick=False)
    print(json.dumps({"compiled": sorted(compiled), "summary": summary}))


if __name__ == "__main__":
    main()
