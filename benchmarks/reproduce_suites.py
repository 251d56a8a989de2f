"""Benchmark suites trained through `mappo train`, against the published MAPPO figures.

    python benchmarks/reproduce_suites.py [--suites lbf rware vmas smax] [--settings ...]
                                          [--seeds 0] [--scale 1.0] [--jobs 1] [--quick]
                                          [--episodes 100] [--no-train]
                                          [--jaxmarl-checkout DIR]

Each row of `ROWS` is one (suite, env, CLI flags, budget, paper figure,
citation, how returns are normalized). Every row is trained under each of
`--settings` it lists (default: its suite's published preset: `epymarl` for
LBF and RWARE, `benchmarl-vmas` for VMAS, `jaxmarl-smax` for SMAX; `default`:
mappo's defaults) and seed, for its budget times `--scale`, with `mappo
train`; the final policy is scored greedily on `--episodes` episodes with the
code of `mappo eval --deterministic`, with the win rate where the env reports
one (SMAX). Writes benchmarks/results/suites.md, one section per suite
(table, commands, wall times, env steps/s, machine and load; the sections of
suites not run this time are kept as they were), and
benchmarks/results/suites.png (training curves, one panel per env). Run
folders go to benchmarks/runs/suites/. Another suite is one more entry in
`ROWS` (and `SECTIONS`). SMAX needs the `jax` extra (run with the JAX venv).

With `--jaxmarl-checkout DIR` (a folder holding `mappo_rnn_smax.py` and its
`config/`, copied from `baselines/MAPPO/` of a JaxMARL checkout outside this
project; it needs distrax, hydra-core, omegaconf and wandb), that script
also runs on the first SMAX row's map for 1 and for 3 updates in
subprocesses; the difference of their wall times over 2 updates' env steps is
its frames/s with compilation left out, set beside mappo's on the same map.
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# One XLA thread for SMAX (JAX reads this when first imported), as mappo gets one torch thread.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
    "intra_op_parallelism_threads=1"
).strip()
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine_info, markdown_table, write_results  # noqa: E402
from reproduce import training_seconds  # noqa: E402
from smax_speed import jaxmarl_steps_per_second  # noqa: E402

from mappo.checkpoint import load_checkpoint  # noqa: E402
from mappo.cli import main as mappo_main  # noqa: E402
from mappo.evaluation import evaluate_run  # noqa: E402
from mappo.plotting import PlotError, read_run  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs" / "suites"

PAPER = (
    'Papoudakis, Christianos, Schäfer, Albrecht (2021), "Benchmarking Multi-Agent Deep '
    'Reinforcement Learning Algorithms in Cooperative Tasks", NeurIPS Datasets and '
    "Benchmarks, arXiv:2006.07869"
)
# The paper's MAPPO figures are in its Table 3 (maximum returns, 95 % CI over 5 seeds, shared
# parameters) and its appendix (average returns). They could not be read on the machine that
# wrote this script (no network; searches of the stored web pages returned only the opening
# of the paper's vdocument.in copy, nothing of its ar5iv copy), so no number is quoted: the
# cell names the table to look in.
PAPER_FIGURE = "Table 3, MAPPO row (not quoted: see the note under the table)"
BENCHMARL = (
    "BenchMARL (Bettini, Prorok, Moens), arXiv:2312.01472, the VMAS sample-efficiency "
    "figure: MAPPO with this fine-tuned config, 10M frames, 3 seeds"
)
BENCHMARL_FIGURE = "curve in the VMAS sample-efficiency figure (BenchMARL's return units)"
JAXMARL = (
    "JaxMARL paper (Rutherford et al., arXiv:2311.10090), SMAX results figure: MAPPO "
    "with this config reaches win rates near 1.0 on `3m` and `2s3z` within 1e7 env steps "
    "(read off the plotted curves; the paper gives no table of these values)"
)
JAXMARL_FIGURE = "win rate near 1.0 within 1e7 steps (SMAX figure)"


@dataclass(frozen=True)
class SuiteRow:
    """One env of one suite: how to train it here and what the paper reports for it."""

    suite: str
    env: str  # `--env` of mappo train
    paper_env: str  # the env (and version) the paper trained
    steps: dict[str, int]  # our budget at --scale 1, per settings; the first is the default
    paper_steps: int
    paper_figure: str
    citation: str
    normalization: str  # how the paper's returns are counted
    flags: tuple[str, ...] = ()  # extra `mappo train` flags, under every settings
    label: str = ""  # the name of run folders and plots where the env id is not enough
    sum_over_agents: bool = True  # the paper's return is mappo's (mean over agents) x agents

    @property
    def name(self) -> str:
        """A short name for run folders and plots."""
        return self.label or self.env.rpartition(":")[2]


LBF_NORM = (
    "team return = sum of the agents' rewards; LBF normalizes rewards so that an "
    "episode's team return is at most 1 (all food collected)"
)
RWARE_NORM = "team return = shelves delivered by the team in the 500-step episode"
VMAS_NORM = (
    "mean per-agent episode return in VMAS's reward units; BenchMARL plots its own "
    "units, not converted here"
)
SMAX_NORM = (
    "team return of the preset's team reward, in JaxMARL's SMAX reward units; "
    "win rate = episodes won / episodes ended"
)
SMAX_ENV = "jaxmarl:HeuristicEnemySMAX"
SMAX_FLAGS = ("--compile", "false")  # eager: compiling 128-step GRU sequences takes minutes here
ROWS: tuple[SuiteRow, ...] = (
    SuiteRow(
        "lbf",
        "gymnasium:lbforaging:Foraging-8x8-2p-2f-coop-v3",
        "Foraging-8x8-2p-2f-coop (gym-era lbforaging, -v0/-v1)",
        {"epymarl": 100_000, "default": 250_000},
        20_000_000,
        PAPER_FIGURE,
        PAPER,
        LBF_NORM,
    ),
    SuiteRow(
        "lbf",
        "gymnasium:lbforaging:Foraging-10x10-3p-3f-v3",
        "Foraging-10x10-3p-3f (gym-era lbforaging, -v0/-v1)",
        {"epymarl": 60_000, "default": 100_000},
        20_000_000,
        PAPER_FIGURE,
        PAPER,
        LBF_NORM,
    ),
    SuiteRow(
        "rware",
        "gymnasium:rware:rware-tiny-2ag-v2",
        "rware-tiny-2ag-v1 (gym-era rware)",
        {"epymarl": 30_000},
        40_000_000,
        PAPER_FIGURE,
        PAPER,
        RWARE_NORM,
    ),
    # 180,000 frames = 3 BenchMARL iterations of 60,000 (1.8 % of its 10M).
    SuiteRow(
        "vmas",
        "vmas:balance",
        "VMAS balance (BenchMARL's task settings)",
        {"benchmarl-vmas": 180_000},
        10_000_000,
        BENCHMARL_FIGURE,
        BENCHMARL,
        VMAS_NORM,
        sum_over_agents=False,
    ),
    SuiteRow(
        "vmas",
        "vmas:navigation",
        "VMAS navigation (BenchMARL's task settings)",
        {"benchmarl-vmas": 180_000},
        10_000_000,
        BENCHMARL_FIGURE,
        BENCHMARL,
        VMAS_NORM,
        sum_over_agents=False,
    ),
    # 163,840 env steps = 10 updates of 128 envs x 128 steps (1.6 % of the config's 1e7).
    SuiteRow(
        "smax",
        SMAX_ENV,
        "SMAX 3m (HeuristicEnemySMAX)",
        {"jaxmarl-smax": 163_840},
        10_000_000,
        JAXMARL_FIGURE,
        JAXMARL,
        SMAX_NORM,
        ("--env-kwargs", '{"scenario": "3m"}', *SMAX_FLAGS),
        "smax-3m",
        False,
    ),
    SuiteRow(
        "smax",
        SMAX_ENV,
        "SMAX 2s3z (HeuristicEnemySMAX)",
        {"jaxmarl-smax": 163_840},
        10_000_000,
        JAXMARL_FIGURE,
        JAXMARL,
        SMAX_NORM,
        ("--env-kwargs", '{"scenario": "2s3z"}', *SMAX_FLAGS),
        "smax-2s3z",
        False,
    ),
)
SETTINGS = {
    "epymarl": ("--preset", "epymarl"),
    "default": (),
    "benchmarl-vmas": ("--preset", "benchmarl-vmas"),
    "jaxmarl-smax": ("--preset", "jaxmarl-smax"),
}


def train_command(row: SuiteRow, settings: str, seed: int, steps: int) -> list[str]:
    """The `mappo train` arguments of one run."""
    run_dir = RUNS / f"{row.name}-{settings}-seed{seed}"
    return [
        "train",
        "--env",
        row.env,
        *SETTINGS[settings],
        *row.flags,
        "--seed",
        str(seed),
        "--total-steps",
        str(steps),
        "--run-dir",
        str(run_dir),
        "--force",
        "--quiet",
    ]


def win_rates(run_dir: Path) -> list[float]:
    """The training win rate of each metrics.csv row that has one (empty: none reported)."""
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [float(r["win_rate"]) for r in csv.DictReader(handle) if r.get("win_rate")]


def run_one(
    row: SuiteRow, settings: str, seed: int, steps: int, episodes: int, train: bool
) -> dict:
    """Train one run (unless `train` is False), then score its final policy greedily."""
    args = train_command(row, settings, seed, steps)
    run_dir = Path(args[args.index("--run-dir") + 1])
    load_start = os.getloadavg()[0]
    code = mappo_main(args) if train else 0
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt")
    if code != 0 or checkpoint["env_steps"] < steps:
        raise SystemExit(
            f"{row.name} ({settings}, seed {seed}) stopped at "
            f"{checkpoint['env_steps']} env steps (exit code {code})"
        )
    evaluation = evaluate_run(run_dir, episodes, deterministic=True)
    agents = checkpoint["config"]["num_agents"]
    # The paper's team return is the sum over agents where `sum_over_agents`; ours is the
    # mean (per agent, or the team reward as the mean of the agents' rewards), and every
    # agent is alive throughout on LBF and RWARE.
    scale = agents if row.sum_over_agents else 1
    try:
        returns = read_run(run_dir).returns
    except PlotError:  # no episode finished in training (a --quick budget on RWARE)
        returns = np.array([math.nan])
    tail = returns[-max(1, len(returns) // 10) :]  # the last 10 % of the logged rows
    wins = win_rates(run_dir)
    return {
        "suite": row.suite,
        "name": row.name,
        "env": row.env,
        "settings": settings,
        "seed": seed,
        "steps": int(checkpoint["env_steps"]),
        "run_dir": str(run_dir),
        "agents": agents,
        "scale": scale,
        "command": "mappo " + shlex.join(args).replace(f"{HERE.parent}/", ""),
        "wall_s": (wall := training_seconds(run_dir)),
        "steps_per_s": checkpoint["env_steps"] / wall,
        "load_1min": (load_start + os.getloadavg()[0]) / 2 if train else math.nan,
        "return_definition": evaluation.definition,
        "greedy_paper_scale": statistics.fmean(evaluation.returns) * scale,
        "train_paper_scale": float(tail.mean()) * scale,
        "first_paper_scale": float(returns[0]) * scale,
        "train_win_rate": statistics.fmean(wins[-max(1, len(wins) // 10) :]) if wins else None,
        "greedy_win_rate": evaluation.win_rate,
    }


def plot(runs: list[dict], out: Path) -> None:
    """One panel per env: the training return (paper scale) of each settings, seeds averaged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["name"] for r in runs))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for settings in dict.fromkeys(r["settings"] for r in runs if r["name"] == env):
            chosen = [r for r in runs if r["name"] == env and r["settings"] == settings]
            for run in chosen:
                if math.isnan(run["first_paper_scale"]):
                    continue  # no finished episode to draw
                curve = read_run(run["run_dir"])
                ax.plot(
                    curve.env_steps,
                    np.asarray(curve.returns) * run["scale"],
                    lw=1.2,
                    label=f"{settings} seed {run['seed']}",
                )
        ax.set_title(env, fontsize=10)
        ax.set_xlabel("env steps")
        ax.set_ylabel("team return (paper scale), training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


GYM_HEADING = "## Gymnasium suites (LBF, RWARE) against the EPyMARL benchmark paper"
HEADINGS = {
    "lbf": GYM_HEADING,
    "rware": GYM_HEADING,
    "vmas": "## VMAS with BenchMARL's fine-tuned MAPPO settings (`--preset benchmarl-vmas`)",
    "smax": "## SMAX with JaxMARL's MAPPO settings (`--preset jaxmarl-smax`)",
}


def suite_prose(heading: str, table: str, scale: float, episodes: int) -> list[str]:
    """The text of one suite section around its `table`."""
    if heading == GYM_HEADING:
        return [
            f"Paper: {PAPER}. Returns are on the paper's scale: the team return, the sum of the "
            "agents' rewards over an episode (EPyMARL's common reward is that sum). LBF: "
            f"{LBF_NORM}. RWARE: {RWARE_NORM}. mappo logs the mean over agents (the team "
            "reward of `--team-reward true` is the agents' mean reward), so every return here "
            "is mappo's times the number of agents.",
            "Env versions: the paper (2021) trained the gym-era releases of lbforaging "
            "(ids `Foraging-...-v0`/`-v1`) and rware (`rware-...-v1`); here lbforaging 2.0.0 "
            "(`-v3`) and rware 2.0.0 "
            "(`-v2`) on Gymnasium, which EPyMARL's README now lists for the same tasks. The tasks "
            "(grid, agents, food, levels, sight, 50-step LBF and 500-step RWARE episodes) are "
            "the ones named there; dynamics changes between the releases are not checked here.",
            f"Budgets: the paper trains 20M (LBF) and 40M (RWARE) env steps per run with 5 "
            f"seeds; this table is {scale:g} x the row budgets, on CPU, sized to about 10-15 "
            "minutes per run on a shared 2-core machine. Returns so far below the paper's "
            "budget say whether the env trains and the return rises, not what MAPPO reaches.",
            table,
            "`settings`: `epymarl` = `--preset epymarl` (EPyMARL's `src/config/algs/mappo.yaml`; "
            "the mapping and what has no equivalent are in `epymarl_preset`'s docstring in "
            "mappo/config.py and below); `default` = mappo's own defaults (128 copies x 25 "
            "steps, minibatches of 256, 10 epochs, MLP 64 tanh, per-agent rewards). Greedy = "
            "`mappo eval RUN --deterministic --episodes N` (the same code).",
            "Paper figure: " + PAPER_FIGURE.split("(")[0] + "of the paper. Its numbers are "
            "not copied here: the machine that ran this had no network, and searches of the "
            "stored web pages returned only the opening (abstract, introduction) of the "
            "paper's vdocument.in copy and nothing of its ar5iv copy; fill them in from "
            "the PDF, noting that Table 3 reports each algorithm's maximum evaluation "
            "return over training, the appendix the average over training.",
            "Notes. (1) The first mapping of EPyMARL's reward standardisation normalized "
            "advantages per minibatch: on LBF 8x8 coop its first 116k steps found food in 3 "
            "of 232 updates, and the normalization turned those near-zero advantages into "
            "unit-sized noise that drove the policy's entropy from 1.79 (uniform over 6 actions) "
            "to 0.58; EPyMARL does not normalize advantages, and the preset no longer does "
            "(entropy then stays near 1.78; food in 22 of 200 updates). (2) With 10 copies x "
            "50 steps a preset update sees "
            "500 env steps, so the preset's 100k steps are 200 updates; EPyMARL's 20M are 40,000. "
            "mappo's defaults see 3,200 env steps per update and solve LBF 8x8 coop (team return "
            "1.00 greedy) within this budget. (3) RWARE under the defaults (128 copies x 500-step "
            "episodes) ends its first episodes after 64k env steps; it was left out here for "
            "time on the loaded machine.",
        ]
    if heading == HEADINGS["vmas"]:
        return [
            f"Compared with: {BENCHMARL}. Budget: {scale:g} x 180,000 frames per run (1.8 % of "
            "BenchMARL's 10M: 3 iterations of 600 envs x 100 steps, 45 epochs x 15 minibatches "
            "of 4096 frames each), so the table shows where learning starts, not where it "
            f"ends. Returns: {VMAS_NORM}. Greedy = `mappo eval --deterministic --episodes "
            f"{episodes}`.",
            table,
        ]
    return [
        f"Compared with: {JAXMARL}. Budget: {scale:g} x 163,840 env steps per run (1.6 % of "
        "the config's 1e7; the learning rate anneals over the run's steps), eager (no "
        f"torch.compile), 1 torch thread and 1 XLA thread. Returns: {SMAX_NORM}. Win rate: "
        "training = metrics.csv `win_rate` of the last 10 % of the logged rows; greedy = "
        f"`mappo eval --deterministic --episodes {episodes}`.",
        table,
    ]


def merge_sections(previous: str, sections: dict[str, str]) -> list[str]:
    """The `## ` sections of `previous` in their order, those in `sections` replaced by the new
    text, new ones appended: the sections of suites not run this time stay as measured."""
    kept: dict[str, str] = {}
    for block in ("\n" + previous).split("\n## ")[1:]:
        heading, _, body = block.partition("\n")
        kept["## " + heading.strip()] = body.strip()
    merged = {**kept, **sections}
    return [f"{heading}\n\n{body}".strip() for heading, body in merged.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--suites",
        nargs="+",
        default=sorted({r.suite for r in ROWS}),
        choices=sorted({r.suite for r in ROWS}),
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=sorted(SETTINGS),
        default=None,
        help="default: each row's first (its suite's published preset)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each row's budget")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 %% of the budgets")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="score and tabulate the run folders an earlier run left",
    )
    parser.add_argument(
        "--jaxmarl-checkout",
        type=Path,
        default=None,
        help="folder with JaxMARL's mappo_rnn_smax.py and config/ (from its "
        "baselines/MAPPO/): its frames/s on the first SMAX map, beside mappo's",
    )
    args = parser.parse_args()
    scale, seeds = (0.02, args.seeds[:1]) if args.quick else (args.scale, args.seeds)
    rows = [r for r in ROWS if r.suite in args.suites]
    jobs = [
        (row, settings, seed, int(row.steps[settings] * scale), args.episodes, not args.no_train)
        for row in rows
        for settings in (args.settings or list(row.steps)[:1])
        if settings in row.steps
        for seed in seeds
    ]

    info = machine_info()
    start = time.time()
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for run in pool.map(run_one, *zip(*jobs, strict=True)):
            runs.append(run)
            print(
                f"{run['name']} {run['settings']} seed {run['seed']}: {run['steps']:,} steps, "
                f"{run['wall_s']:.0f} s, greedy team return {run['greedy_paper_scale']:.3f}",
                flush=True,
            )
    headers = [
        "suite",
        "env (ours)",
        "env in the paper",
        "settings",
        "seed",
        "env steps (of the paper's)",
        "first training return",
        "last 10 % training",
        f"greedy, {args.episodes} episodes",
        "win rate, last 10 % training",
        "win rate, greedy",
        "paper MAPPO",
        "training min",
        "env steps/s",
        "load (1 min)",
    ]
    png = HERE / "results" / ("suites-quick.png" if args.quick else "suites.png")
    plot(runs, png)
    sections: dict[str, str] = {}
    for heading in dict.fromkeys(HEADINGS[r.suite] for r in rows):
        mine = [
            (run, next(r for r in rows if r.name == run["name"]))
            for run in runs
            if HEADINGS[run["suite"]] == heading
        ]
        table = markdown_table(
            headers,
            [
                [
                    row.suite,
                    f"`{row.name}`",
                    row.paper_env,
                    run["settings"],
                    run["seed"],
                    f"{run['steps']:,} ({run['steps'] / row.paper_steps:.2%} of "
                    f"{row.paper_steps / 1e6:.0f}M)",
                    run["first_paper_scale"],
                    run["train_paper_scale"],
                    run["greedy_paper_scale"],
                    run["train_win_rate"],
                    run["greedy_win_rate"],
                    row.paper_figure,
                    f"{run['wall_s'] / 60:.1f}",
                    run["steps_per_s"],
                    run["load_1min"],
                ]
                for run, row in mine
            ],
        )
        text = suite_prose(heading, table, scale, args.episodes)
        if heading == HEADINGS["smax"] and args.jaxmarl_checkout is not None:
            first, row = mine[0]
            map_name = json.loads(row.flags[row.flags.index("--env-kwargs") + 1])["scenario"]
            fps, note = jaxmarl_steps_per_second(args.jaxmarl_checkout, map_name)
            text.append(
                f"JaxMARL's own MAPPO (`baselines/MAPPO/mappo_rnn_smax.py`, the same "
                f"config) on `{map_name}` in this run: {fps:,.0f} frames/s "
                f"({note}); mappo {first['steps_per_s']:,.0f} env steps/s, ratio "
                f"mappo / JaxMARL {first['steps_per_s'] / fps:.2f}."
            )
        text.append(
            "Commands (run folders under benchmarks/runs/suites/):\n\n"
            + "\n".join(f"    {run['command']}" for run, _ in mine)
        )
        text.append(
            f"Curves: {png.relative_to(HERE)} (training rows in which few episodes "
            "ended show as spikes). Wall time of this script: "
            f"{(time.time() - start) / 60:.1f} min, {args.jobs} run(s) at a time."
        )
        sections[heading] = "\n\n".join(text)
    name = "suites-quick" if args.quick else "suites"
    # Keep the sections of suites not run now (and those written by hand) as they were.
    previous = HERE / "results" / f"{name}.md"
    kept = previous.read_text() if previous.exists() else ""
    path = write_results(
        name, "MAPPO on benchmark suites", info, merge_sections(kept, sections), args.quick
    )
    print(path.read_text())
    print(json.dumps({"scale": scale, "seeds": seeds, "runs": runs}))


if __name__ == "__main__":
    main()
