"""Torch's OpenMP threads beside another busy process: env steps/s of a training run alone
and beside busy processes, on 1 torch thread and on 2 with OpenMP's wait settings.

    python benchmarks/thread_contention.py [--busy 1] [--total-steps 32000]
        [-- mappo train arguments...]

Each run is `mappo train` in a subprocess (default `--preset paper-mpe --recurrent
true`: MPE Spread with rMAPPO, as `reproduce.py --suite mpe` trains it); the busy
processes are Python loops, one core each, started before it and stopped after. A
run's speed is the median of the env steps/s its metrics.csv logs per update, the
first two left out. An OpenMP thread that waits at a barrier spins before it sleeps
(torch's wheels bring libgomp: 300,000 spins by default); one spinning on a core
that another process wants delays the threads that the barrier waits for.
`OMP_WAIT_POLICY=PASSIVE` sleeps at once, `GOMP_SPINCOUNT` sets libgomp's spins.
Writes benchmarks/results/thread_contention.md; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine_info, markdown_table, write_results  # noqa: E402

# name: (torch threads, OpenMP's wait settings)
SETTINGS = {
    "1 torch thread": (1, {}),
    "2 torch threads": (2, {}),
    "2 torch threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 torch threads, GOMP_SPINCOUNT=10000": (2, {"GOMP_SPINCOUNT": "10000"}),
}
BUSY_LOOP = "while True: pass"
WARM_UPDATES = 2  # updates left out of a run's speed: first calls, allocations


def run_speed(
    train_args: list[str], threads: int, wait: dict[str, str], busy: int, run_dir: Path
) -> float:
    """Median env steps/s per update of `mappo train train_args` in `run_dir` on `threads`
    torch threads, with OpenMP's `wait` settings only, beside `busy` busy processes."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(wait)
    train_args = [*train_args, "--torch-threads", str(threads)]
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
    try:
        command = [sys.executable, "-m", "mappo", "train", *train_args]
        command += ["--run-dir", str(run_dir), "--force", "--quiet"]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:]
        raise SystemExit(f"mappo train failed: {' '.join(tail)}")
    with open(run_dir / "metrics.csv", newline="") as handle:
        speeds = [float(row["steps_per_second"]) for row in csv.DictReader(handle)]
    if len(speeds) <= WARM_UPDATES:
        raise SystemExit(f"{len(speeds)} updates: raise --total-steps")
    return statistics.median(speeds[WARM_UPDATES:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the run")
    parser.add_argument("--total-steps", type=int, default=32_000, help="each run's env steps")
    parser.add_argument("train_args", nargs="*", help="mappo train's arguments (after --)")
    args = parser.parse_args()
    train_args = args.train_args or ["--preset", "paper-mpe", "--recurrent", "true"]
    train_args += ["--total-steps", str(args.total_steps)]
    info = machine_info()
    speeds: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (threads, wait) in SETTINGS.items():
            speeds[name] = {
                busy: run_speed(train_args, threads, wait, busy, Path(folder) / "run")
                for busy in (0, args.busy)
            }
    rows = [
        [name, alone[0], alone[args.busy], alone[args.busy] / alone[0]]
        for name, alone in speeds.items()
    ]
    table = markdown_table(
        [
            "torch threads, OpenMP",
            "env steps/s alone",
            f"beside {args.busy} busy process(es)",
            "beside / alone",
        ],
        rows,
    )
    notes = (
        f"`mappo train {' '.join(train_args)}`, each run in a subprocess; speed: the median "
        f"of the env steps/s its metrics.csv logs per update, the first {WARM_UPDATES} "
        "left out. A busy process is a Python loop (`while True: pass`), one core."
    )
    path = write_results(
        "thread_contention",
        "Torch threads beside a busy process: OpenMP's wait settings",
        info,
        [table, notes],
        quick=False,
    )
    print(path.read_text())
    print(json.dumps({"speeds": speeds, "train_args": train_args}))


if __name__ == "__main__":
    main()
