"""Implementation ablations on Spread, each a flag on top of `--preset paper-mpe` or of the
library's defaults (`--base defaults`).

    python benchmarks/ablate_mpe.py [--quick] [--scale 0.1] [--seeds 0 1 2] [--device cpu]
                                    [--base paper-mpe|defaults] [--recurrent true|false]
                                    [--jobs 1]

Variants of the preset (the paper's ablations): the preset; value
normalization off; more epochs (15 and 30); a larger clip (0.5); the critic on
the env's world state (agent positions and velocities, landmark positions)
instead of the concatenated observations. Variants of the defaults: each
setting that `auto` decides on MPE turned the other way (the time left in the
critic, terminal time limits, the agent one-hot, the team reward), value
normalization off, the world state.
The seeds of a variant train in one process (`mappo train --seeds`); `--jobs`
trains that many variants at once. Each final policy is evaluated greedily on
100 episodes. Adds (or replaces) its table in benchmarks/results/mpe.md (quick
runs: mpe-quick.md). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from reproduce_mpe import BASES, HERE, PAPER_BUDGETS, run_all

PRESET_VARIANTS = {
    "preset (value norm on, 10 epochs, clip 0.2, critic on concat obs)": (),
    "value normalization off": ("--value-norm", "false"),
    "15 epochs": ("--update-epochs", "15"),
    "30 epochs": ("--update-epochs", "30"),
    "clip 0.5": ("--clip-coef", "0.5"),
    "critic on env world state": ("--env-kwargs", '{"global_state": "world"}'),
}
DEFAULTS_VARIANTS = {
    "defaults (on MPE: no agent one-hot, team reward, terminal time limit, time left in the "
    "critic)": (),
    "no time left in the critic": ("--critic-time-left", "false"),
    "time limits bootstrapped (so no time left)": ("--bootstrap-time-limits", "true"),
    "agent one-hot": ("--agent-id", "true"),
    "own rewards": ("--team-reward", "false"),
    "value normalization off": ("--value-norm", "false"),
    "critic on env world state": ("--env-kwargs", '{"global_state": "world"}'),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 0.5%% of the budget")
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of Spread's 20M")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--base",
        choices=sorted(BASES),
        default="paper-mpe",
        help="the official settings, or the library's defaults",
    )
    parser.add_argument(
        "--recurrent",
        choices=["true", "false"],
        default=None,
        help="GRU actor and critic (rMAPPO) or feed-forward ones (default: "
        "the preset's true; the defaults' false)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="variants trained at the same time")
    args = parser.parse_args()
    scale, seeds = (0.005, [0]) if args.quick else (args.scale, args.seeds)
    steps = int(PAPER_BUDGETS["spread"] * scale)
    recurrent = args.recurrent or ("true" if args.base == "paper-mpe" else "false")
    variants = PRESET_VARIANTS if args.base == "paper-mpe" else DEFAULTS_VARIANTS

    start = time.time()
    jobs = [
        (
            "spread",
            seeds,
            steps,
            args.device,
            args.episodes,
            (*flags, "--recurrent", recurrent),
            f"-ablation{index}",
            True,
            args.base,
        )
        for index, flags in enumerate(variants.values())
    ]
    runs = run_all(jobs, args.jobs)
    rows, results = [], {}
    for index, (variant, flags) in enumerate(variants.items()):
        values = [r["eval_return"] for r in runs if r["name"] == f"-ablation{index}"]
        mean = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
        results[variant] = {"mean": mean, "std": std, "returns": values}
        rows.append(f"| {variant} | `{' '.join(flags) or '-'}` | {mean:.2f} ± {std:.2f} |")

    lines = [
        "",
        "## Ablations on Spread",
        "",
        f"Command: `python benchmarks/ablate_mpe.py --base {args.base} --scale {scale} "
        f"--seeds {' '.join(map(str, seeds))} --device {args.device} --recurrent {recurrent} "
        f"--jobs {args.jobs}`; {steps:,} env steps per run, "
        f"greedy return over {args.episodes} episodes (mpe2 scale), mean ± std over "
        f"{len(seeds)} seed(s); wall time {(time.time() - start) / 60:.1f} min.",
        "",
        f"| variant | flags on top of the {'preset' if args.base == 'paper-mpe' else 'defaults'}"
        " | return |",
        "|---|---|---|",
        *rows,
    ]
    stem = "mpe" if args.base == "paper-mpe" else "mpe_defaults"
    path = HERE / "results" / f"{stem}{'-quick' if args.quick else ''}.md"
    path.parent.mkdir(exist_ok=True)
    previous = path.read_text() if path.exists() else ""
    if "\n## Ablations" in previous:  # replace the table of an earlier run
        previous = previous[: previous.index("\n## Ablations")]
    path.write_text(previous.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"steps": steps, "seeds": seeds, "results": results}))


if __name__ == "__main__":
    main()
