"""Several seeds in one process (`mappo train --seeds`) against the same seeds one after another.

    python benchmarks/seeds.py [--updates 2] [--warmup 1] [--compile auto|true|false]
                               [--counts 8 4 2 1] [--one-thread-only]
                               [--env spread] [--env-kwargs JSON] [--num-envs N]
                               [--preset NAME [--recurrent false]]

The default config (spread, 128 envs x 25 steps, 10 epochs, minibatches of 256
agent-steps), or a preset's config for spread, seeds 0-7. Each measurement
runs in a fresh process: `warmup` whole iterations (rollout + update) untimed,
then `updates` timed, and counts the env steps of all seeds together per
second of the timed iterations.

- one thread: K = 1, 2, 4, 8 seeds in one process (`MultiSeedTrainer`) against
  the same K seeds trained one after another in one process (the first K of
  one pass over seeds 0-7);
- both cores: 8 seeds in one process with two threads, and two processes of 4
  seeds at once (one thread each), against two solo processes at once, each
  training 4 seeds one after another (one thread each); the two processes'
  rates are added.

`--sweep` measures eight settings of seed 0 (`SWEEP`: 4 learning rates x 2
entropy coefficients, `mappo train --sweep`) instead of eight seeds, and writes
benchmarks/results/sweep.md; `benchmarks/sweep.py` runs it.

`--env`, `--env-kwargs` and `--num-envs` measure another env (e.g. SMAX with
`--preset jaxmarl-smax`; fewer copies keep an iteration short, with as many
minibatches per epoch as the config's).

`--compile auto` lets the trainer choose as it does for a run of this budget
(it compiles only runs of `COMPILE_MIN_STEPS` or more, so these short
measurements run eager); `true` compiles solo and batched steps alike, as
every run of the default 1.5M steps does. `--counts` picks the K of the
one-thread part, `--one-thread-only` skips the both-cores part. `--preset`
measures a preset's config instead of the defaults (paper-mpe: one
whole-rollout minibatch, so an update is 10 large steps instead of 375 small
ones); `--recurrent` overrides its choice of a GRU.
Writes benchmarks/results/seeds.md (seeds_compiled.md with `--compile true`,
seeds_<preset>[_compiled].md with `--preset`, seeds_<preset>_<env>.md for
another env than spread); last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor

import torch

# One XLA thread for JAX envs (SMAX), as each measurement gets one torch thread; spawned
# measurements inherit it.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
from bench_common import machine_info, machine_line, markdown_table, write_results  # noqa: E402

from mappo.config import MappoConfig  # noqa: E402
from mappo.presets import PRESETS  # noqa: E402

SEEDS = list(range(8))
# `--sweep`: eight settings of one seed instead of eight seeds (4 learning rates x 2 entropy
# coefficients), as `mappo train --sweep lr=... --sweep ent_coef=...` trains them.
SWEEP = [{"lr": lr, "ent_coef": ent} for lr in (3e-4, 7e-4, 1e-3, 1.5e-3) for ent in (0.0, 0.01)]


def measure(
    batched: bool, slots: list[dict], threads: int, updates: int, warmup: int, settings: dict
) -> list[tuple[int, float, bool, float]]:
    """(env steps, timed seconds, compiled, CPU seconds of this process in that time) of
    training `slots` (each a seed or a sweep's settings: config fields): one
    `MultiSeedTrainer` when `batched`, else one `MappoTrainer` after another (one entry per
    slot). `settings` are the config's fields that differ from the defaults."""
    from mappo import MappoTrainer
    from mappo.seeds import MultiSeedTrainer

    torch.set_num_threads(threads)
    config = MappoConfig(**settings, torch_threads=threads)
    config = config.replace(total_steps=(updates + warmup) * config.num_envs * config.rollout_steps)
    configs = [config.replace(**slot) for slot in slots]
    if batched:
        runs = [(MultiSeedTrainer.of_configs(configs), MultiSeedTrainer.collect_rollouts)]
    else:
        runs = [(MappoTrainer(c), MappoTrainer.collect_rollout) for c in configs]
    results = []
    for trainer, collect in runs:
        for _ in range(warmup):
            collect(trainer)
            trainer.update()
        before = trainer.env_steps
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(updates):
            collect(trainer)
            trainer.update()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        steps = (trainer.env_steps - before) * (len(slots) if batched else 1)
        results.append((steps, seconds, trainer.compiled, cpu))
        trainer.close()
    return results


def in_processes(jobs: list[tuple]) -> list[list[tuple[int, float, bool, float]]]:
    """`measure(*job)` for every job, each in a fresh process, all at the same time."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        return list(pool.map(measure, *zip(*jobs, strict=True)))


def rate(results: list[tuple[int, float, bool, float]]) -> float:
    """Env steps per (wall-clock) second of measurements run one after another."""
    return sum(r[0] for r in results) / sum(r[1] for r in results)


def cpu_rate(results: list[tuple[int, float, bool, float]]) -> float:
    """Env steps per CPU second of this process (all its threads): what the measurement
    got done with the CPU time it was given, which other work on the cores changes less."""
    return sum(r[0] for r in results) / sum(r[3] for r in results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sweep", action="store_true", help="eight settings of seed 0 (SWEEP) for the seeds"
    )
    parser.add_argument("--updates", type=int, default=2, help="timed updates per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed updates before them")
    parser.add_argument("--compile", choices=("auto", "true", "false"), default="auto")
    parser.add_argument(
        "--counts",
        type=int,
        nargs="+",
        default=[8, 4, 2, 1],
        choices=range(1, len(SEEDS) + 1),  # SWEEP has as many
        metavar="K",
        help=f"seeds per process in the one-thread part (1-{len(SEEDS)})",
    )
    parser.add_argument("--one-thread-only", action="store_true", help="skip the both-cores part")
    parser.add_argument("--env", default="spread", help="the env measured")
    parser.add_argument("--env-kwargs", type=json.loads, default=None, help="its settings, JSON")
    parser.add_argument("--num-envs", type=int, help="env copies per seed, over the config's")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="measure this preset's config for the env"
    )
    parser.add_argument(
        "--recurrent", choices=("true", "false"), help="GRU or not, over the preset's choice"
    )
    args = parser.parse_args(argv)
    slots = SWEEP if args.sweep else [{"seed": seed} for seed in SEEDS]
    kind = "settings" if args.sweep else "seeds"
    info = machine_info()
    start = time.perf_counter()
    settings = {
        "env": args.env,
        **({"env_kwargs": args.env_kwargs} if args.env_kwargs else {}),
        **(PRESETS[args.preset](args.env, args.env_kwargs) if args.preset else {}),
        "compile": args.compile,
    }
    if args.recurrent:
        settings["recurrent"] = args.recurrent == "true"
    if args.num_envs:  # minibatches shrink with the rollout: as many of them per epoch
        copies = settings.get("num_envs", MappoConfig.num_envs)
        minibatch = settings.get("minibatch_size", MappoConfig.minibatch_size)
        settings["num_envs"] = args.num_envs
        settings["minibatch_size"] = minibatch * args.num_envs // copies
    config = MappoConfig(**settings)
    common = (args.updates, args.warmup, settings)

    minibatch = (
        f"minibatch {config.minibatch_size} agent-steps"
        if config.minibatch_size
        else "one whole-rollout minibatch"
    )
    described = (
        f"{'preset ' + args.preset if args.preset else 'default'} config ({args.env}"
        f"{' ' + json.dumps(args.env_kwargs) if args.env_kwargs else ''}, "
        f"{config.num_envs} envs x {config.rollout_steps} steps, "
        f"{config.update_epochs} epochs, {minibatch}"
        f"{', GRU' if config.recurrent else ''})"
    )
    rows, summary = [], {}

    def write(compiled: set[bool], missing: str = "") -> None:
        """The table as it stands (rewritten after each part, so a cut run keeps its figures)."""
        headers = [
            "measurement",
            f"{kind} in one process: env steps/s",
            f"{kind} one after another: env steps/s",
            "ratio",
            "in one process: env steps per CPU s",
            "one after another: per CPU s",
            "ratio (CPU time)",
        ]
        lines = [
            f"{machine_line(info)}; load average at end "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; torch {torch.__version__}",
            f"{described}; per measurement {args.warmup} untimed + {args.updates} timed "
            f"iterations (rollout + update) per seed, env steps of all seeds counted; "
            f"minibatch loss compiled: {' / '.join(sorted(map(str, compiled)))} (--compile "
            f"{args.compile}); wall time {(time.perf_counter() - start) / 60:.1f} min",
            "Both cores, one after another = two solo processes at once, each training 4 "
            "seeds one after another; their rates added. Env steps/s are over wall-clock "
            "time; per CPU s, over the CPU time the measuring processes got (all their "
            "threads), which the other work on a shared machine changes less: on a loaded "
            "machine read the CPU-time ratio; on an idle one the two agree at one thread.",
            *([missing] if missing else []),
        ]
        table = markdown_table(headers, rows)
        name = "_".join(
            [
                "sweep" if args.sweep else "seeds",
                *([args.preset] if args.preset else []),
                *([] if args.env == "spread" else [re.sub(r"\W+", "-", args.env).strip("-")]),
                *(["compiled"] if args.compile == "true" else []),
            ]
        )
        write_results(
            name,
            f"{kind.capitalize()} in one process against {kind} one after another",
            info,
            ["\n\n".join(lines), table],
            quick=False,
        )
        print("\n".join(lines))
        print(table, flush=True)

    # One thread each. The 8-seed pair first and back to back (the load of a shared machine
    # drifts); K = 1, 2, 4 one after another are the first K seeds of the same solo pass.
    counts = sorted(set(args.counts), reverse=True)
    [solo] = in_processes([(False, slots[: counts[0]], 1, *common)])
    print(
        f"{counts[0]} {kind} one after another, 1 thread: {rate(solo):,.0f} env steps/s", flush=True
    )
    for k in counts:
        [batched] = in_processes([(True, slots[:k], 1, *common)])
        ours, theirs = rate(batched), rate(solo[:k])
        ours_cpu, theirs_cpu = cpu_rate(batched), cpu_rate(solo[:k])
        print(f"{k} {kind} in one process, 1 thread: {ours:,.0f} env steps/s", flush=True)
        rows.insert(
            0,
            [
                f"{k} {kind}, 1 thread",
                ours,
                theirs,
                ours / theirs,
                ours_cpu,
                theirs_cpu,
                ours_cpu / theirs_cpu,
            ],
        )
        summary[f"k{k}_1thread"] = {
            "batched": ours,
            "one_after_another": theirs,
            "batched_per_cpu_s": ours_cpu,
            "one_after_another_per_cpu_s": theirs_cpu,
        }
    compiled = {r[2] for r in solo}
    if args.one_thread_only:
        write(compiled)
        print(json.dumps({"compiled": sorted(compiled), "summary": summary}))
        return
    # Both cores: two processes at once, then one process with two threads.
    half = len(SEEDS) // 2
    solo_pair = in_processes([(False, slots[:half], 1, *common), (False, slots[half:], 1, *common)])
    theirs, theirs_cpu = sum(rate(r) for r in solo_pair), cpu_rate(sum(solo_pair, []))
    print(f"8 {kind}, two solo processes at once: {theirs:,.0f} env steps/s", flush=True)
    pair = in_processes([(True, slots[:half], 1, *common), (True, slots[half:], 1, *common)])
    ours = sum(rate(r) for r in pair)
    rows.append(
        [
            f"8 {kind}, 2 processes of 4, 1 thread each",
            ours,
            theirs,
            ours / theirs,
            cpu_rate(sum(pair, [])),
            theirs_cpu,
            cpu_rate(sum(pair, [])) / theirs_cpu,
        ]
    )
    summary["both_cores"] = {"batched_2_processes": ours, "solo_2_processes": theirs}
    write(compiled, f"(8 {kind} in 1 process with 2 threads: still running when this was written)")
    [two_threads] = in_processes([(True, slots, 2, *common)])
    ours = rate(two_threads)
    rows.append(
        [
            f"8 {kind}, 1 process, 2 threads",
            ours,
            theirs,
            ours / theirs,
            cpu_rate(two_threads),
            theirs_cpu,
            cpu_rate(two_threads) / theirs_cpu,
        ]
    )
    summary["both_cores"]["batched_2_threads"] = ours
    write(compiled)
    print(json.dumps({"compiled": sorted(compiled), "summary": summary}))


if __name__ == "__main__":
    main()
