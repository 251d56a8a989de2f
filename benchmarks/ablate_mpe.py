"""Implementation ablations on Spread, each a config change on top of the MPE table's config
(`--preset paper-mpe`, benchmarks/published.toml) or of the library's defaults
(`--base defaults`).

    python benchmarks/ablate_mpe.py [--scale 0.1] [--seeds 0,1,2] [--base paper-mpe|defaults]
                                    [--recurrent true|false] [--jobs 1] [--runs-dir DIR]

Variants of the preset (the paper's ablations): the preset; value
normalization off; more epochs (15 and 30); a larger clip (0.5); the critic on
the env's world state (agent positions and velocities, landmark positions)
instead of the concatenated observations. Variants of the defaults: each
setting that `auto` decides on MPE turned the other way (the time left in the
critic, terminal time limits, the agent one-hot, the team reward), value
normalization off, the world state.
Each variant is a `benchmarks/reproduce.py` variant of the `mpe` table's
Spread task (`--preset`, `--set`), on that table's task (the official code's:
landmarks in 0.8 U(-1, 1), its integration order; the tables in mpe.md and
mpe_defaults.md written before the table took those options trained on mpe2's
Spread), trained and scored by its functions: the seeds of a variant in one
process, `--jobs` variants at once, each final policy greedy on `--episodes`
episodes. Adds (or replaces) its table in benchmarks/results/mpe.md (`--base
defaults`: mpe_defaults.md), which names Spread's env options. Last line: one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import RESULTS_DIR, UsageError, command_line, one_line_errors  # noqa: E402
from reproduce import HERE, Task, read_suite, score, train, variant_name, variant_of  # noqa: E402

PRESET_VARIANTS: dict[str, dict[str, Any]] = {
    "preset (value norm on, 10 epochs, clip 0.2, critic on concat obs)": {},
    "value normalization off": {"value_norm": False},
    "15 epochs": {"update_epochs": 15},
    "30 epochs": {"update_epochs": 30},
    "clip 0.5": {"clip_coef": 0.5},
    "critic on env world state": {"env_kwargs": {"global_state": "world"}},
}
DEFAULTS_VARIANTS: dict[str, dict[str, Any]] = {
    "defaults (on MPE: no agent one-hot, team reward, terminal time limit, time left in the "
    "critic)": {},
    "no time left in the critic": {"critic_time_left": False},
    "time limits bootstrapped (so no time left)": {"bootstrap_time_limits": True},
    "agent one-hot": {"agent_id": True},
    "own rewards": {"team_reward": False},
    "value normalization off": {"value_norm": False},
    "critic on env world state": {"env_kwargs": {"global_state": "world"}},
}
BASES = {"paper-mpe": None, "defaults": "none"}  # --base → reproduce.py's --preset


def spread_task() -> Task:
    """The `mpe` table's Spread task."""
    _, tasks = read_suite("mpe")
    (spread,) = [t for t in tasks if t.name == "spread"]
    return spread


def run_variant(
    base: str, sets: dict[str, Any], seeds: list[int], scale: float, episodes: int, runs: Path
) -> list[float]:
    """Train one variant's seeds in one process and score them: greedy mean per-agent
    returns (mpe2 scale), one per seed."""
    (task,) = variant_of([spread_task()], BASES[base], sets)
    folder = runs / variant_name(BASES[base], sets)[1] / task.name
    steps = int(task.budget * scale)
    summary, _ = train(task, folder, seeds, steps, math.inf, quiet=True)
    if not summary.finished:
        raise UsageError(f"{folder}: training stopped before {steps:,} env steps")
    return score(task, folder, episodes)["returns"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of Spread's 20M")
    parser.add_argument("--seeds", default="0,1,2", help="seeds trained in one process")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--base", choices=sorted(BASES), default="paper-mpe")
    parser.add_argument(
        "--recurrent",
        choices=["true", "false"],
        default=None,
        help="GRU actor and critic (rMAPPO) or feed-forward ones (default: "
        "the preset's true; the defaults' false)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--runs-dir", default=str(HERE / "runs" / "ablate_mpe"))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    recurrent = (args.recurrent or ("true" if args.base == "paper-mpe" else "false")) == "true"
    variants = PRESET_VARIANTS if args.base == "paper-mpe" else DEFAULTS_VARIANTS
    runs = Path(args.runs_dir) / args.base
    steps = int(20_000_000 * args.scale)

    start = time.time()
    jobs = [
        (args.base, {"recurrent": recurrent, **sets}, seeds, args.scale, args.episodes, runs)
        for sets in variants.values()
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        scores = list(pool.map(run_variant, *zip(*jobs, strict=True)))
    rows, results = [], {}
    for (variant, sets), values in zip(variants.items(), scores, strict=True):
        mean = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        results[variant] = {"mean": mean, "std": std, "returns": values}
        change = " ".join(f"--set {k}={json.dumps(v)}" for k, v in sets.items())
        rows.append(f"| {variant} | `{change or '-'}` | {mean:.2f} ± {std:.2f} |")

    options = json.dumps(spread_task().fields.get("env_kwargs", {}))
    lines = [
        "",
        "## Ablations on Spread",
        "",
        f"Command: `{command_line()}`; {steps:,} env steps per run, "
        f"{'GRU' if recurrent else 'feed-forward'}, greedy return over {args.episodes} "
        f"episodes (mpe2 scale), Spread's env options {options}, mean ± std over "
        f"{len(seeds)} seed(s); wall time "
        f"{(time.time() - start) / 60:.1f} min.",
        "",
        f"| variant | change on top of the {'preset' if args.base == 'paper-mpe' else 'defaults'}"
        " | return |",
        "|---|---|---|",
        *rows,
    ]
    path = RESULTS_DIR / ("mpe.md" if args.base == "paper-mpe" else "mpe_defaults.md")
    path.parent.mkdir(exist_ok=True)
    previous = path.read_text() if path.exists() else ""
    if "\n## Ablations" in previous:  # replace the table of an earlier run
        previous = previous[: previous.index("\n## Ablations")]
    path.write_text(previous.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"steps": steps, "seeds": seeds, "results": results}))


if __name__ == "__main__":
    with one_line_errors("ablate_mpe.py"):
        main()
