"""Image envs trained through the CLI: env steps/s, peak memory and the return curve.

    python benchmarks/image_env.py [--quick] [--pong-steps 1280] [--pistonball-steps 700]
                                   [--before DIR] [--reuse]

Two `mappo train` runs in child processes, on examples/image_env.py's envs
(SuperSuit's blue channel, 84x84 resize and 4-frame stack: uint8 (84, 84, 4)
per agent), both with `--use-global-state false`, so the critic reads the
agents' frames through its CNN instead of the raw RGB screen `state()` returns:

1. Cost at the default number of copies (128), on cooperative_pong_v6, the
   env of the issue's "before" figures (9 GiB within 30 s; 4 env steps/s with
   8 copies): the default config but for `--rollout-steps 10`, one iteration
   (rollout and update). Pong's frames are black (examples/image_env.py says
   why), which changes nothing in what a step costs.
2. The return curve, on pistonball_v6 (its 20 pistons, discrete moves), 2
   copies (so that its episodes of up to 125 steps end within the budget),
   `--update-epochs 4`, as far as the budget goes: on a shared 2-core CPU a few
   hundred env steps, far from what pistonball takes to learn.

The run folders are kept in benchmarks/runs/image_env/.

Samples each child's resident memory (VmRSS) every 0.5 s, and reads env
steps/s and returns from the run's metrics.csv. Writes
benchmarks/results/image_env.md and image_env.png (the pistonball return
curve, `mappo plot`'s drawing). Needs `pip install 'mappo[images]'`. The
rollout storage of observations is also computed by formula, beside what the
previous float32 flattening of the raw frames cost for the same rollout.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO_ROOT, RESULTS_DIR, machine_info, markdown_table, write_results

from mappo.config import MappoConfig
from mappo.plotting import plot_runs

FRAME = 84 * 84 * 4  # bytes of one preprocessed observation, uint8
PONG_SCREEN = 280 * 480 * 3  # values of one raw cooperative_pong observation, and of state()
PONG_AGENTS = 2
GIB = 2**30


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` now, from /proc (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def train(run_dir: Path, flags: list[str], code: Path = REPO_ROOT, reuse: bool = False) -> dict:
    """`mappo train` with `flags` in a child process, running the mappo found in `code`:
    its metrics.csv rows, wall time, RSS 30 s after start, peak RSS, and the command.
    With `reuse`, a run folder that holds these from an earlier call is read instead."""
    saved = run_dir / "measured.json"
    if not (reuse and saved.exists()):
        command = [
            sys.executable,
            "-m",
            "mappo",
            "train",
            "--run-dir",
            str(run_dir),
            "--force",
            "--quiet",
            "--use-global-state",
            "false",
            "--seed",
            "0",
            *flags,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(code), str(REPO_ROOT / "examples"), env.get("PYTHONPATH", "")]
        )
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env)
        peak = at_30s = 0
        while child.poll() is None:
            rss = rss_bytes(child.pid)
            peak = max(peak, rss)
            if not at_30s and time.perf_counter() - start >= 30:
                at_30s = rss
            time.sleep(0.5)
        if child.returncode:
            raise SystemExit(f"mappo train exited with {child.returncode}")
        saved.write_text(
            json.dumps(
                {
                    "wall_s": time.perf_counter() - start,
                    "peak_rss": peak,
                    "rss_30s": at_30s,
                    "command": "mappo " + " ".join(command[3:]).replace(str(REPO_ROOT) + "/", ""),
                }
            )
        )
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return {"rows": rows, **json.loads(saved.read_text())}


def rates(run: dict) -> tuple[int, float, float]:
    """Env steps, env steps/s over the iterations (rollout + update), and over the whole
    run with start-up."""
    rows = run["rows"]
    steps = int(rows[-1]["env_steps"])
    iteration_time = sum(
        (int(b["env_steps"]) - int(a["env_steps"])) / float(b["steps_per_second"])
        for a, b in zip([{"env_steps": 0}, *rows[:-1]], rows, strict=True)
    )
    return steps, steps / iteration_time, steps / run["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 copies, 200 steps each run")
    parser.add_argument(
        "--pong-steps",
        type=int,
        default=1280,
        help="env steps of the pong run (128 copies x 10 steps = 1 iteration)",
    )
    parser.add_argument(
        "--pistonball-steps",
        type=int,
        default=700,
        help="env steps of the pistonball run (2 copies x 25 steps per iteration)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a folder holding the mappo package before image support "
        "(git archive 711447f mappo | tar -x -C DIR): pong on 8 copies "
        "with that code and with this one",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read runs measured earlier from benchmarks/runs/ instead",
    )
    args = parser.parse_args()
    copies = 8 if args.quick else MappoConfig().num_envs
    rollout = 25 if args.quick else 10
    pong_steps = 200 if args.quick else args.pong_steps
    piston_steps = 200 if args.quick else args.pistonball_steps
    info = machine_info()
    name = "image_env_quick" if args.quick else "image_env"
    runs = REPO_ROOT / "benchmarks" / "runs" / name
    # Before and after on the same 8 copies, default config: one iteration each.
    pong_8 = ["--env", "image_env:cooperative_pong", "--num-envs", "8", "--total-steps", "200"]
    pairs = (
        []
        if args.before is None
        else [
            (
                "before (float32, MLP)",
                train(runs / "pong8_before", pong_8, args.before, args.reuse),
            ),
            ("now (uint8, CNN)", train(runs / "pong8_now", pong_8, reuse=args.reuse)),
        ]
    )
    pong = train(
        runs / "pong",
        [
            "--env",
            "image_env:cooperative_pong",
            "--num-envs",
            str(copies),
            "--rollout-steps",
            str(rollout),
            "--total-steps",
            str(pong_steps),
        ],
        reuse=args.reuse,
    )
    piston = train(
        runs / "pistonball",
        [
            "--env",
            "image_env:pistonball",
            "--num-envs",
            "2",
            "--update-epochs",
            "4",
            "--total-steps",
            str(piston_steps),
        ],
        reuse=args.reuse,
    )
    finished = [r for r in piston["rows"] if int(r["episodes"])]
    if finished:
        plot_runs([runs / "pistonball"], RESULTS_DIR / f"{name}.png")

    T, E, A = rollout, copies, PONG_AGENTS
    uint8_bytes = 2 * T * E * A * FRAME  # observations, and the critic's copy of both frames
    before_bytes = T * E * A * PONG_SCREEN * 4 + T * E * PONG_SCREEN * 4  # obs + state
    rows = []
    for label, run, num_envs in (
        ("cooperative_pong_v6", pong, copies),
        ("pistonball_v6", piston, 2),
    ):
        steps, per_iteration, whole = rates(run)
        rows.append(
            [
                label,
                num_envs,
                steps,
                per_iteration,
                whole,
                run["wall_s"],
                run["rss_30s"] / GIB,
                run["peak_rss"] / GIB,
            ]
        )
    curve = [
        (int(r["env_steps"]), float(r["episode_return"]), int(r["episodes"]))
        for r in piston["rows"]
    ]
    before_after = []
    if pairs:
        table = []
        for label, run in pairs:
            steps, per_iteration, whole = rates(run)
            table.append(
                [label, steps, per_iteration, whole, run["rss_30s"] / GIB, run["peak_rss"] / GIB]
            )
        before_after = [
            f"Before and after in this run, cooperative_pong_v6 on 8 copies, the default config "
            f"(25 steps x 8 copies, 10 epochs) but `--use-global-state false`, one iteration; "
            f"before = the code in `{args.before}`:\n\n- `{pairs[0][1]['command']}`\n\n"
            + markdown_table(
                [
                    "code",
                    "env steps",
                    "env steps/s (iterations)",
                    "env steps/s (whole run)",
                    "RSS at 30 s (GiB)",
                    "peak RSS (GiB)",
                ],
                table,
            )
            + f"\n\nnow / before: {table[1][2] / table[0][2]:.2f}x the env steps/s, "
            f"{table[1][5] / table[0][5]:.2f}x the peak memory."
        ]
    sections = [
        "Commands (with `PYTHONPATH=.:examples`; 1 torch thread, the default; env copies "
        "stepped in process, the default):\n\n"
        + "\n".join(f"- `{run['command']}`" for run in (pong, piston)),
        markdown_table(
            [
                "env",
                "copies",
                "env steps",
                "env steps/s (iterations)",
                "env steps/s (whole run)",
                "wall time (s)",
                "RSS at 30 s (GiB)",
                "peak RSS (GiB)",
            ],
            rows,
        ),
        f"Pong rollout storage by formula (T = {T}, E = {E}, A = {A}): observations and "
        "the critic's frames as uint8 now, 2·T·E·A·84·84·4 bytes = "
        f"{uint8_bytes / 2**20:.0f} MiB; the same rollout as before (raw frames flattened "
        "to float32, plus the RGB state), T·E·A·280·480·3·4 + T·E·280·480·3·4 bytes = "
        f"{before_bytes / GIB:.2f} GiB. The issue's before: 9 GiB of memory within 30 s "
        "at 128 copies, 4 env steps/s with 8 copies (its other settings unknown).",
        *before_after,
        "Pistonball return curve (mean per-agent episode return of the episodes finished "
        f"in each rollout; {name}.png):\n\n"
        + markdown_table(["env steps", "episode return", "episodes"], curve),
    ]
    path = write_results(
        name, "Image envs (84x84x4 uint8 frames) through the CLI", info, sections, args.quick
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
