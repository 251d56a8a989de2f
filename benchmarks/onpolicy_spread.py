"""Spread side by side with the official MAPPO code (marlbenchmark/on-policy): its rMAPPO
script and ours (`--preset paper-mpe --recurrent true`), same seeds, their curves on one axes.

    python benchmarks/onpolicy_spread.py --onpolicy-checkout DIR [--onpolicy-python PY]
        [--train-onpolicy] [--seeds 1,2,3] [--steps 2000000] [--runs-dir RUNS]

The official runs are its `train_mpe_spread.sh` settings (rmappo, 128 rollout
threads, 25-step episodes, 10 epochs, 1 minibatch, lr 7e-4, tanh: its
`--use_ReLU` flag turns ReLU off) with `--num_env_steps` set to `--steps` and
wandb off. `--train-onpolicy` runs those missing from the checkout's results
folder, one after another, with `--onpolicy-python` (a Python with its
requirements: torch, gym, tensorboardX, absl-py, setproctitle, seaborn, imageio;
this project installs none of them). Their curve is the `summary.json` the
script writes at its end: `average_episode_rewards`, the mean over envs of an
episode's team return on its scale (every agent gets the sum of the agents'
rewards, self-collision included).

Ours trains the MPE table's Spread config of `benchmarks/published.toml` to
`--steps` (`reproduce.py`'s functions; the seeds in one process, resumable) on
three tasks: the official code's (`--env-kwargs '{"landmark_range": 0.8,
"physics": "official"}'`: its landmarks in 0.8 U(-1, 1), its integration
order), the same with mpe2's integration order, and mpe2's own (landmarks in
U(-1, 1) too): how much each difference of the task moves the curve. mappo
logs the mean per-agent team return R, which is `6 R - 75` on the official
scale (`mappo.envs.mpe.spread.official_team_return`). A uniformly random
policy plays 2,000 episodes of each task and of the official env (run by
`--onpolicy-python`): where the tasks are the same, its returns agree.

Writes benchmarks/results/onpolicy_spread.md and .png: the bands (mean ± std
over seeds), the returns at four points, the random policy's returns, and each
code's env steps/s with the load. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import (  # noqa: E402
    RESULTS_DIR,
    UsageError,
    machine_info,
    markdown_table,
    one_line_errors,
    write_band_plot,
    write_results,
)
from reproduce import HERE, converted, read_suite, train, training_seconds  # noqa: E402

from mappo.envs.mpe.spread import OFFICIAL_TASK, SpreadEnv, official_team_return  # noqa: E402
from mappo.plotting import RunCurve, on_common_grid, read_run  # noqa: E402
from mappo.run_folder import slot_folders  # noqa: E402

TAG = "average_episode_rewards"
# mappo's runs: (label, folder under --runs-dir, Spread's task options).
OURS = (
    ("mappo rMAPPO", "mappo", OFFICIAL_TASK),
    ("mappo rMAPPO, mpe2's integration", "mappo_mpe2_physics", {"landmark_range": 0.8}),
    ("mappo rMAPPO, mpe2's task", "mappo_mpe2_task", {}),
)
TASK_OPTIONS = ("landmark_range", "physics")  # what OURS sets, over the table's
RANDOM_EPISODES = 2000  # episodes of the uniformly random policy on each task
# The official env's team return of a uniformly random policy, run by its own Python.
OFFICIAL_RANDOM = """
import json, sys, types
import numpy as np
from onpolicy.envs.mpe.MPE_env import MPEEnv
args = types.SimpleNamespace(
    scenario_name="simple_spread", num_agents=3, num_landmarks=3, episode_length=25
)
env, rng, returns = MPEEnv(args), np.random.default_rng(0), []
env.seed(0)
for _ in range(int(sys.argv[1])):
    env.reset()
    total = 0.0
    for _ in range(25):
        moves = np.eye(5)[rng.integers(0, 5, 3)]  # one-hot actions of the 3 agents
        total += float(np.mean(env.step(list(moves))[1]))  # each agent gets the team sum
    returns.append(total)
print(json.dumps(returns))
"""


def official_args(seed: int, steps: int) -> list[str]:
    """`train_mpe.py`'s arguments in the official `train_mpe_spread.sh`, for one seed."""
    return [
        *("--env_name", "MPE", "--algorithm_name", "rmappo", "--scenario_name", "simple_spread"),
        *("--experiment_name", f"spread_{steps}_s{seed}", "--seed", str(seed)),
        *("--num_agents", "3", "--num_landmarks", "3", "--n_training_threads", "1"),
        *("--n_rollout_threads", "128", "--num_mini_batch", "1", "--episode_length", "25"),
        *("--num_env_steps", str(steps), "--ppo_epoch", "10", "--use_ReLU", "--gain", "0.01"),
        *("--lr", "7e-4", "--critic_lr", "7e-4", "--use_wandb", "--cuda"),
    ]  # store_false flags: --use_ReLU means tanh, --use_wandb no wandb, --cuda the CPU


def official_curve(checkout: Path, seed: int, steps: int) -> tuple[RunCurve, float]:
    """The newest finished official run of `seed` as a curve (team return against env steps)
    and its env steps/s; raises FileNotFoundError when there is none."""
    runs = (
        checkout / "onpolicy/scripts/results/MPE/simple_spread/rmappo" / f"spread_{steps}_s{seed}"
    )
    summaries = sorted(runs.glob("run*/logs/summary.json"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        raise FileNotFoundError(f"no finished official run in {runs}")
    data = json.loads(summaries[-1].read_text())
    (rows,) = [v for k, v in data.items() if k.endswith(f"/{TAG}/{TAG}")]
    wall, x, y = (np.array(column, dtype=np.float64) for column in zip(*rows, strict=True))
    speed = (x[-1] - x[0]) / (wall[-1] - wall[0]) if len(x) > 1 else math.nan
    return RunCurve(summaries[-1], {"seed": seed}, x, wall - wall[0], y), speed


def random_returns(
    checkout: Path, python: str, env_kwargs: dict[str, dict[str, Any]], episodes: int
) -> dict[str, np.ndarray]:
    """Team returns `[episodes]` on the official scale of a uniformly random policy: on the
    official env (run by `python` in `checkout`) and on ours with each of `env_kwargs`. Near
    equal where the tasks are the same: no policy is involved."""
    command = [python, "-c", OFFICIAL_RANDOM, str(episodes)]
    done = subprocess.run(command, cwd=checkout, check=True, capture_output=True, text=True)
    out = {"official env": np.array(json.loads(done.stdout.splitlines()[-1]))}
    generator = torch.Generator().manual_seed(0)
    for label, options in env_kwargs.items():
        env = SpreadEnv(episodes, seed=0, **options)
        total = torch.zeros(episodes)  # [E]: one episode per copy
        for _ in range(env.spec.max_episode_steps):
            actions = torch.randint(0, 5, (episodes, 3), generator=generator)
            total += env.step(actions).reward.mean(-1)
        out[label] = np.array([official_team_return(r) for r in total.tolist()])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onpolicy-checkout", type=Path, required=True, help="its repo root")
    parser.add_argument("--onpolicy-python", default=sys.executable)
    parser.add_argument("--train-onpolicy", action="store_true", help="run its missing seeds")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--steps", type=int, default=2_000_000, help="env steps per seed")
    parser.add_argument("--runs-dir", default=str(HERE / "runs" / "onpolicy_spread"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    info = machine_info()

    official, their_speeds = [], []
    for seed in seeds:
        try:
            curve, speed = official_curve(args.onpolicy_checkout, seed, args.steps)
        except FileNotFoundError:
            if not args.train_onpolicy:
                raise UsageError(
                    f"seed {seed}: no finished official run; pass --train-onpolicy"
                ) from None
            script = args.onpolicy_checkout / "onpolicy/scripts/train/train_mpe.py"
            command = [args.onpolicy_python, str(script), *official_args(seed, args.steps)]
            subprocess.run(command, cwd=script.parent, check=True)
            curve, speed = official_curve(args.onpolicy_checkout, seed, args.steps)
        official.append(curve)
        their_speeds.append(speed)

    _, tasks = read_suite("mpe")
    (spread,) = [t for t in tasks if t.name == "spread"]
    runs: dict[str, list[RunCurve]] = {"official on-policy rMAPPO": official}
    keys = {"official on-policy rMAPPO": "official"}  # the JSON line's names
    task_options: dict[str, dict[str, Any]] = {}
    for label, name, options in OURS:
        table_options = spread.fields.get("env_kwargs", {}).items()
        env_kwargs = {k: v for k, v in table_options if k not in TASK_OPTIONS} | options
        task = replace(spread, fields={**spread.fields, "env_kwargs": env_kwargs})
        task_options[label] = env_kwargs
        folder = Path(args.runs_dir) / name
        summary, _ = train(task, folder, seeds, args.steps, math.inf)
        if not summary.finished:
            raise UsageError(f"{folder}: training stopped before {args.steps:,} env steps")
        runs[label], keys[label] = [read_run(seed_dir) for seed_dir in slot_folders(folder)], name
        for curve in runs[label]:  # on the official scale
            curve.returns = converted(task, curve.returns, 3)

    # Every run's seeds on the env steps all of them cover: [runs * seeds, points].
    grid, ys = on_common_grid([c for curves in runs.values() for c in curves])
    sizes = np.cumsum([len(curves) for curves in runs.values()])[:-1]
    bands = dict(zip(runs, np.split(ys, sizes), strict=True))
    write_band_plot(
        grid,
        bands,
        "team episode return, official scale (training)",
        "MPE Spread (3 agents): official code vs mappo",
        RESULTS_DIR / "onpolicy_spread.png",
    )

    points = [int(grid[-1] * f) for f in (0.25, 0.5, 0.75, 1.0)]
    rows = []
    for label, curves in runs.items():
        at = np.stack([np.interp(points, c.env_steps, c.returns) for c in curves])
        rows.append(
            [label, *(f"{m:.1f} ± {s:.1f}" for m, s in zip(at.mean(0), at.std(0), strict=True))]
        )
    ours = runs[OURS[0][0]]
    our_speed = sum(c.env_steps[-1] for c in ours) / training_seconds(ours[0].path)
    their_speed = float(np.mean(their_speeds))
    first = {label: np.mean([c.returns[0] for c in curves]) for label, curves in runs.items()}
    random_play = random_returns(
        args.onpolicy_checkout, args.onpolicy_python, task_options, RANDOM_EPISODES
    )
    random_table = markdown_table(
        ["task", "uniformly random policy: team return, official scale (mean ± s.e.)"],
        [
            [label, f"{r.mean():.1f} ± {r.std() / math.sqrt(len(r)):.1f}"]
            for label, r in random_play.items()
        ],
    )
    table = markdown_table(["code", *(f"{p:,} env steps" for p in points)], rows)
    sections = [
        f"Seeds {args.seeds}, {args.steps:,} env steps each. Training curves on the official "
        "scale: the team episode return (the sum of the three agents' rewards, each agent's "
        "self-collision counted: -75 per episode), mean ± std over seeds, each curve "
        "interpolated onto the env steps all runs cover.",
        table,
        "![Spread, official code against mappo](onpolicy_spread.png)",
        "mappo's first run is the official code's task: `--env-kwargs "
        '\'{"landmark_range": 0.8, "physics": "official"}\'`, landmarks spawned in '
        "0.8 U(-1, 1) and the velocity updated before the move. The second keeps mpe2's "
        "integration order, which moves an agent with the velocity from before its action "
        "(its control lags a step); the third also mpe2's landmarks in U(-1, 1), farther "
        "apart. At the first logged update, with policies still near uniform, the curves "
        "read "
        + ", ".join(f"{v:.1f} ({label})" for label, v in first.items())
        + ". What else differs beyond the code: the official code logs one 25-step "
        "episode per env per update, mappo the episodes ended in its rollout.",
        f"The tasks without a policy: {RANDOM_EPISODES:,} episodes of uniformly random "
        "actions on the official code's env and on mappo's (each row's options of the runs "
        "above; the label names the run):",
        random_table,
        f"Env steps/s as the runs logged them: the official code {their_speed:,.0f} per seed "
        f"(one seed at a time, 128 env processes), mappo {our_speed:,.0f} for its "
        f"{len(seeds)} seeds together in one process. Where the runs shared the cores with "
        "each other or other work, this is no speed comparison: 129 processes take a larger "
        "share of a loaded CPU than one does.",
    ]
    path = write_results(
        "onpolicy_spread", "Spread: the official MAPPO code against mappo", info, sections, False
    )
    print(path.read_text())
    print(
        json.dumps(
            {
                "points": points,
                **{keys[label]: band[:, -1].tolist() for label, band in bands.items()},
                "random_policy": {
                    "official": float(random_play["official env"].mean()),
                    **{keys[k]: float(random_play[k].mean()) for k in task_options},
                },
                "official_steps_per_second": their_speed,
                "mappo_steps_per_second": our_speed,
            }
        )
    )


if __name__ == "__main__":
    with one_line_errors("onpolicy_spread.py"):
        main()
