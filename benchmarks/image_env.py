"""An image env trained through the CLI: env steps/s, peak memory and the return curve.

    python benchmarks/image_env.py [--quick] [--num-envs 128] [--total-steps 12800]
                                   [--rollout-steps 10] [--update-epochs 4]

Runs `mappo train --env image_env:cooperative_pong` (examples/image_env.py:
cooperative_pong_v6 with SuperSuit's blue channel, 84x84 resize and 4-frame
stack, uint8 (84, 84, 4) per paddle) in a child process with
`--use-global-state false`, so the critic reads the two preprocessed frames
through its CNN instead of the 280x480 RGB screen `state()` returns. Samples
the child's resident memory (VmRSS) every 0.5 s, and reads env steps/s and the
returns from the run's metrics.csv. Writes benchmarks/results/image_env.md and
image_env.png (the return curve, `mappo plot`'s drawing). Needs
`pip install 'mappo[images]'`. The rollout storage of observations is also
computed by formula for this config, beside what float32 flattening costs.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import REPO_ROOT, RESULTS_DIR, machine_info, markdown_table, write_results

from mappo.config import MappoConfig
from mappo.plotting import plot_runs

FRAME = 84 * 84 * 4  # bytes of one preprocessed observation, uint8
SCREEN = 280 * 480 * 3  # values of one raw cooperative_pong observation (and of its state())
AGENTS = 2
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


def train(run_dir: Path, args: argparse.Namespace) -> dict:
    """`mappo train` in a child process; wall time, RSS at 30 s and peak RSS."""
    command = [
        sys.executable, "-m", "mappo", "train", "--run-dir", str(run_dir), "--quiet",
        "--env", "image_env:cooperative_pong", "--use-global-state", "false",
        "--num-envs", str(args.num_envs), "--rollout-steps", str(args.rollout_steps),
        "--update-epochs", str(args.update_epochs), "--total-steps", str(args.total_steps),
        "--seed", "0",
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), str(REPO_ROOT / "examples"), env.get("PYTHONPATH", "")])
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
    return {"wall_s": time.perf_counter() - start, "peak_rss": peak, "rss_30s": at_30s,
            "command": " ".join(command[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 copies, 400 steps")
    parser.add_argument("--num-envs", type=int, default=MappoConfig().num_envs)
    parser.add_argument("--total-steps", type=int, default=12_800)
    parser.add_argument("--rollout-steps", type=int, default=10)
    parser.add_argument("--update-epochs", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.num_envs, args.total_steps, args.rollout_steps = 8, 400, 25
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "pong"
        measured = train(run_dir, args)
        with open(run_dir / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        png = RESULTS_DIR / ("image_env_quick.png" if args.quick else "image_env.png")
        plot_runs([run_dir], png)

    steps = int(rows[-1]["env_steps"])
    # Iterations' own rate (rollout + update), and the whole run's with start-up.
    iteration_time = sum(
        (int(b["env_steps"]) - int(a["env_steps"])) / float(b["steps_per_second"])
        for a, b in zip([{"env_steps": 0}, *rows[:-1]], rows, strict=True))
    T, E = args.rollout_steps, args.num_envs
    obs_bytes = T * E * AGENTS * FRAME  # uint8 frames, as stored now
    critic_bytes = T * E * AGENTS * FRAME  # the critic's view: both frames
    flat_float = T * E * AGENTS * SCREEN * 4 + T * E * SCREEN * 4  # before: obs + state
    curve = [(int(r["env_steps"]), float(r["episode_return"]), int(r["episodes"]))
             for r in rows]
    sections = [
        f"Run: `{measured['command']}` with `PYTHONPATH=.:examples`; {info['cores']} cores "
        "shared with other work, 1 torch thread (the default), env copies stepped in "
        "process (`--num-workers 0`, the default).",
        markdown_table(
            ["measure", "value"],
            [["env copies", E],
             ["env steps", steps],
             ["env steps/s, iterations (rollout + update)", steps / iteration_time],
             ["env steps/s, whole run with start-up", steps / measured["wall_s"]],
             ["wall time (s)", measured["wall_s"]],
             ["resident memory 30 s after start (GiB)", measured["rss_30s"] / GIB],
             ["peak resident memory (GiB)", measured["peak_rss"] / GIB],
             ["observations in the rollout buffer, uint8 (MiB, T·E·A·84·84·4)",
              obs_bytes / 2**20],
             ["critic's view in the rollout buffer, uint8 (MiB, T·E·A·84·84·4)",
              critic_bytes / 2**20],
             ["the same rollout stored as before, float32 raw screens (GiB, "
              "T·E·(A+1)·280·480·3·4)", flat_float / GIB]]),
        "Return curve (mean per-agent episode return of the episodes finished in each "
        "rollout; image_env.png):\n\n" + markdown_table(
            ["env steps", "episode return", "episodes"], curve),
    ]
    name = "image_env_quick" if args.quick else "image_env"
    path = write_results(name, "cooperative_pong_v6 (84x84x4 uint8 frames) through the CLI",
                         info, sections, args.quick)
    print(path.read_text())


if __name__ == "__main__":
    main()
