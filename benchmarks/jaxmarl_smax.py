"""SMAX at JaxMARL's MAPPO budget, JaxMARL's own script beside mappo: their training win
rates on one axes, on this machine.

    python benchmarks/jaxmarl_smax.py --jaxmarl-checkout DIR [--map 3m] [--jaxmarl-seeds 0]
        [--train-jaxmarl] [--runs-dir RUNS] [--ours DIR]

DIR holds `mappo_rnn_smax.py` and its `config/`, copied from `baselines/MAPPO/` of a
JaxMARL checkout (outside this project; it needs distrax, hydra-core, omegaconf and
wandb). `--train-jaxmarl` runs its script for each seed of `--jaxmarl-seeds` whose
log in `RUNS/<map>/seed_<s>.jsonl` is missing or short of the budget, one after
another, with its own config (`mappo_homogenous_rnn_smax.yaml`: 10M env steps)
and `MAP_NAME`; wandb stays disabled and what the script hands to `wandb.log`
after each update (training returns and win rate, losses) goes to that log with
the wall time. Its win rate is the share of the episodes that ended in the
update's rollout that were won, with sampled actions.

mappo's side is `benchmarks/reproduce.py --suite smax`'s run of the map
(`--ours`, default `benchmarks/runs/reproduce/smax/<map>`: `--preset
jaxmarl-smax`, 3 seeds in one process), whose metrics.csv logs the same training
win rate. Writes benchmarks/results/jaxmarl_smax_<map>.md and .png: both curves
(mean ± std over seeds), the win rates at four points and over the last 5 % of
the budget, and each side's env steps/s with the load. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402
    RESULTS_DIR,
    machine_info,
    markdown_table,
    write_band_plot,
    write_results,
)
from reproduce import HERE, training_seconds  # noqa: E402

from mappo.plotting import RunCurve, on_common_grid, read_run  # noqa: E402
from mappo.run_folder import slot_folders  # noqa: E402

BATCH = 128 * 128  # NUM_ENVS x NUM_STEPS of JaxMARL's SMAX config: env steps per update
BUDGET = 10_000_000  # its TOTAL_TIMESTEPS
UPDATES = BUDGET // BATCH  # its NUM_UPDATES: one log row each
# Runs JaxMARL's script with wandb.log written to a JSON-lines file: argv log, script,
# then the script's hydra overrides. wandb.init sets the module's `log` to its run's, so
# the file's writer goes in after it.
CAPTURE = """
import json, runpy, sys, time
import numpy as np
import wandb
log_path, script = sys.argv[1], sys.argv[2]
handle, start, init = open(log_path, "w"), time.time(), wandb.init
def log(data, *args, **kwargs):
    row = {k: float(np.mean(np.asarray(v))) for k, v in data.items()}
    handle.write(json.dumps({**row, "wall_s": time.time() - start}) + "\\n")
    handle.flush()
def init_then_capture(*args, **kwargs):
    run = init(*args, **kwargs)
    wandb.log = log
    return run
wandb.init = init_then_capture
sys.argv = [script, *sys.argv[3:]]
runpy.run_path(script, run_name="__main__")
"""


def jaxmarl_curve(log: Path) -> RunCurve:
    """A finished JaxMARL log as a curve of its training win rate; FileNotFoundError when
    it is missing or short of the budget."""
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    if len(rows) < UPDATES:
        raise FileNotFoundError(f"{log}: {len(rows)} of {UPDATES} updates")
    # Its env_step counts the updates before this one: the rollout logged ends a batch later.
    return RunCurve(
        log,
        {},
        np.array([row["env_step"] + BATCH for row in rows]),
        np.array([row["wall_s"] for row in rows]),
        np.array([row["win_rate"] for row in rows]),
    )


def run_jaxmarl(
    checkout: Path, log: Path, overrides: list[str], **run_kwargs: Any
) -> subprocess.CompletedProcess:
    """Run JaxMARL's `mappo_rnn_smax.py` of `checkout` with its hydra `overrides`, what it
    hands to `wandb.log` written to `log` with the wall time; wandb disabled, hydra's
    outputs beside the log. `run_kwargs` go to subprocess.run."""
    log.parent.mkdir(parents=True, exist_ok=True)
    overrides = [
        *overrides,
        "WANDB_MODE=disabled",
        f"hydra.run.dir={log.parent / 'hydra'}",
        "hydra.output_subdir=null",
    ]
    script = checkout / "mappo_rnn_smax.py"
    command = [sys.executable, "-c", CAPTURE, str(log), str(script), *overrides]
    return subprocess.run(command, env={**os.environ, "WANDB_MODE": "disabled"}, **run_kwargs)


def train_jaxmarl(checkout: Path, map_name: str, seed: int, log: Path) -> None:
    """Run JaxMARL's script for one seed, its updates logged to `log`."""
    run_jaxmarl(checkout, log, [f"MAP_NAME={map_name}", f"SEED={seed}"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jaxmarl-checkout", type=Path, required=True, help="its MAPPO folder")
    parser.add_argument("--map", default="3m", help="the SMAX map (MAP_NAME)")
    parser.add_argument("--jaxmarl-seeds", default="0", help="its seeds, one run each")
    parser.add_argument("--train-jaxmarl", action="store_true", help="run its missing seeds")
    parser.add_argument("--runs-dir", type=Path, default=HERE / "runs" / "jaxmarl_smax")
    parser.add_argument("--ours", type=Path, help="reproduce.py's folder of the map's seeds")
    args = parser.parse_args()
    ours_dir = args.ours or HERE / "runs" / "reproduce" / "smax" / args.map
    info = machine_info()

    theirs = []
    for seed in (int(s) for s in args.jaxmarl_seeds.split(",")):
        log = args.runs_dir / args.map / f"seed_{seed}.jsonl"
        try:
            theirs.append(jaxmarl_curve(log))
        except FileNotFoundError as why:
            if not args.train_jaxmarl:
                raise SystemExit(f"JaxMARL seed {seed}: {why}; pass --train-jaxmarl") from None
            train_jaxmarl(args.jaxmarl_checkout, args.map, seed, log)
            theirs.append(jaxmarl_curve(log))
    ours = [read_run(seed_dir, "win_rate") for seed_dir in slot_folders(ours_dir)]
    if not ours or min(c.env_steps[-1] for c in ours) < BUDGET:
        raise SystemExit(f"{ours_dir}: mappo's runs have not reached {BUDGET:,} env steps")
    runs = {"JaxMARL mappo_rnn_smax.py": theirs, "mappo --preset jaxmarl-smax": ours}

    grid, ys = on_common_grid([*theirs, *ours])
    bands = dict(zip(runs, np.split(ys, [len(theirs)]), strict=True))
    plot = RESULTS_DIR / f"jaxmarl_smax_{args.map}.png"
    write_band_plot(
        grid,
        bands,
        "win rate (training, sampled actions)",
        f"SMAX {args.map}: JaxMARL's MAPPO vs mappo",
        plot,
        ylim=(0.0, 1.02),
    )
    points = [1_000_000, 2_500_000, 5_000_000, int(grid[-1])]
    rows, finals = [], {}
    for label, curves in runs.items():
        at = np.stack([np.interp(points, c.env_steps, c.returns) for c in curves])
        last = [c.returns[c.env_steps >= 0.95 * BUDGET].mean() for c in curves]
        finals[label] = last
        rows.append(
            [
                f"{label} ({len(curves)} seed{'s' * (len(curves) > 1)})",
                *(f"{m:.3f} ± {s:.3f}" for m, s in zip(at.mean(0), at.std(0), strict=True)),
                ", ".join(f"{x:.3f}" for x in last),
            ]
        )
    their_speed = float(
        np.mean([BATCH * (UPDATES - 1) / (c.wall_time[-1] - c.wall_time[0]) for c in theirs])
    )
    our_speed = sum(c.env_steps[-1] for c in ours) / training_seconds(ours[0].path)
    table = markdown_table(
        ["code", *(f"{p:,} env steps" for p in points), "last 5 % of the budget, per seed"],
        rows,
    )
    sections = [
        f"Map `{args.map}`, HeuristicEnemySMAX, JaxMARL's MAPPO config on both sides, "
        f"{BUDGET:,} env steps per seed. Training win rate: the share of the episodes that "
        "ended in an update's rollout that were won, with sampled actions; mean ± std over "
        "seeds, each curve interpolated onto the env steps both cover.",
        table,
        f"![{args.map}: JaxMARL against mappo]({plot.name})",
        f"Env steps/s: JaxMARL {their_speed:,.0f} per seed (one seed at a time, its jitted "
        f"training, compile left out), mappo {our_speed:,.0f} for its {len(ours)} seeds "
        "together over the whole run (its sessions, with their loads, are in "
        "`published_smax.md`): no speed comparison, which is `smax_speed.py`'s.",
    ]
    path = write_results(
        f"jaxmarl_smax_{args.map}",
        f"SMAX {args.map}: JaxMARL's own MAPPO against mappo, at its budget",
        info,
        sections,
        False,
    )
    print(path.read_text())
    print(
        json.dumps(
            {
                "map": args.map,
                "points": points,
                "final_win_rates": finals,
                "jaxmarl_steps_per_second": their_speed,
                "mappo_steps_per_second": our_speed,
            }
        )
    )


if __name__ == "__main__":
    main()
