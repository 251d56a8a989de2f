"""`mappo report`: seeds pooled into mean, IQM and bootstrap CIs, and marl-eval JSON.

Runs are grouped as `mappo plot` groups them (`plotting.group_runs`: configs
equal but for the seed and when they save and evaluate, labelled by the keys
that differ). A run's score is its final evaluation return: the mean return
of `episodes` greedy episodes of its checkpoint.pt (`evaluate_run(...,
deterministic=True)`) when `episodes` is given; else the last `eval_return` in
its metrics.csv where the run evaluated while training, and 100 greedy
episodes where it did not. With `sampled`, the episodes' actions are sampled
from the policy instead, as most published MAPPO figures are (the official
code's and JaxMARL's training returns, Mava's and EPyMARL's evaluations), and
the episodes are always played: training's `eval_return` is greedy.

Per group: the mean and the interquartile mean (IQM) of the scores, each with a
95 % stratified percentile-bootstrap CI (runs resampled with replacement within
each task). Between groups of one task: the probability of improvement
P(X > Y), with a bootstrap CI. A task is an env with its `env_kwargs`.

The IQM is computed as rliable's `aggregate_iqm` does
(`scipy.stats.trim_mean(scores, 0.25)`): whole runs are dropped, ⌊n/4⌋ at each
end, so figures compare with those of rliable and marl-eval (with 3 runs it
is their plain mean).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mappo.checkpoint import write_atomically
from mappo.episodes import return_label
from mappo.errors import ConfigError
from mappo.plotting import (
    RunCurve,
    RunGroup,
    format_value,
    group_runs,
    on_common_grid,
    open_figure,
    read_run,
    returns_label,
    run_folders,
    save_figure,
)
from mappo.run_folder import RunFolderError
from mappo.run_lock import RunLock

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

EVAL_EPISODES = 100
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
METRIC = "return"  # the marl-eval metric name of the episode return
ZERO_SUM_LABEL = "own episode return against a random legal player"

Statistic = Callable[..., np.ndarray]  # statistic(scores, axis=...) reduces the runs' axis


class ReportError(RunFolderError):
    """A run that cannot be scored; says which and why."""


def iqm(scores: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along `axis`, as rliable computes it (`scipy.stats.trim_mean`
    with 0.25): the mean after dropping the ⌊n/4⌋ lowest and highest values. [1, 2, 3, 4]
    gives 2.5, [0, 1, 2, 4, 8] gives 7/3; below 4 runs it is the plain mean.
    """
    ordered = np.moveaxis(np.sort(scores, axis=axis), axis, -1)
    n = ordered.shape[-1]
    return ordered[..., n // 4 : n - n // 4].mean(-1)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of the scores x [..., nx] against y [..., ny]: the share of pairs (x_i, y_j)
    with x_i > y_j, ties counting one half (the Mann-Whitney U over nx·ny, as rliable)."""
    xs, ys = x[..., :, None], y[..., None, :]
    return (xs > ys).mean((-2, -1)) + 0.5 * (xs == ys).mean((-2, -1))


def _resample(strata: Sequence[np.ndarray], rng: np.random.Generator, samples: int) -> np.ndarray:
    """[samples, N, ...]: each stratum's runs (axis 0) drawn with replacement, as many as it
    has, the strata side by side; N is the total of runs."""
    return np.concatenate([s[rng.integers(0, len(s), (samples, len(s)))] for s in strata], 1)


def _interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap `values` [samples, ...]."""
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail], axis=0)
    return lo, hi


def bootstrap_ci(
    strata: Sequence[np.ndarray],
    statistic: Statistic,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified percentile-bootstrap CI of `statistic` over the runs of all `strata`.

    Each stratum (a task's scores, runs on axis 0) is resampled on its own, so
    every bootstrap sample keeps each task's number of runs, as rliable does.
    """
    rng = np.random.default_rng(seed)
    return _interval(statistic(_resample(strata, rng, samples), axis=1), confidence)


def improvement_ci(
    x: np.ndarray,
    y: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of P(X > Y), the runs of x and of y resampled separately."""
    rng = np.random.default_rng(seed)
    values = probability_of_improvement(_resample([x], rng, samples), _resample([y], rng, samples))
    lo, hi = _interval(values, confidence)
    return float(lo), float(hi)


@dataclass
class Score:
    """A run's final evaluation return, and where it comes from."""

    value: float
    episode_returns: list[float]  # what `value` is the mean of ([value] for eval_return)
    source: str  # for people: "100 greedy episodes" or "eval_return in metrics.csv"
    label: str = ""  # which return, where it is not the run's own (see score_run)


@dataclass
class GroupReport:
    """One group's scores and their statistics."""

    group: RunGroup
    task: str
    scores: list[Score]
    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]

    @property
    def return_label(self) -> str:
        """Which episode return the scores are (one config: one `team_reward`), unless the
        scores name another."""
        named = {score.label for score in self.scores} - {""}
        if named:
            return ", ".join(sorted(named))
        return return_label(bool(self.group.runs[0].config.get("team_reward", False)))

    @property
    def sources(self) -> str:
        """Where the scores come from, each distinct source once."""
        return ", ".join(dict.fromkeys(score.source for score in self.scores))


@dataclass
class Comparison:
    """P(X > Y) of two groups of one task."""

    x: GroupReport
    y: GroupReport
    probability: float
    ci: tuple[float, float]


def task_name(config: dict[str, Any]) -> str:
    """The env and its `env_kwargs`, e.g. `spread` or `spread {"num_agents": 4}`."""
    kwargs = config.get("env_kwargs") or {}
    env = str(config.get("env"))
    return f"{env} {format_value(kwargs)}" if kwargs else env


def score_run(run: RunCurve, episodes: int | None, sampled: bool = False) -> Score:
    """`episodes` greedy episodes of the run's checkpoint; without `episodes`, its
    `eval_return` from training if it logged one, else `EVAL_EPISODES` greedy ones.
    `sampled`: the episodes' actions sampled from the policy (always played).

    A zero-sum game learnt in self-play scores 0 against itself whatever it learnt, so
    its run plays `episodes` greedy episodes in each seat against a uniformly random
    legal player instead, scored by its own mean return there (where the actions are
    continuous there is no such player, and the self-play score stands, named so).
    """
    if episodes is None and run.eval_return is not None and not run.zero_sum and not sampled:
        return Score(run.eval_return, [run.eval_return], "eval_return in metrics.csv")
    from mappo.evaluation import RANDOM_OPPONENT, evaluate_run  # torch and envs: when needed

    episodes = episodes or EVAL_EPISODES
    greedy, how = not sampled, "sampled" if sampled else "greedy"
    if run.zero_sum:
        try:
            played = evaluate_run(run.path, episodes, greedy, opponent=RANDOM_OPPONENT)
        except ConfigError:  # continuous actions: no random legal player
            returns = evaluate_run(run.path, episodes, greedy).returns
            return Score(float(np.mean(returns)), returns, f"{episodes} {how} self-play episodes")
        returns = [r for seat in range(len(played.seat_names)) for r in played.seat_return(seat)]
        source = f"{episodes} {how} episodes per seat against a random legal player"
        return Score(float(np.mean(returns)), returns, source, ZERO_SUM_LABEL)
    returns = evaluate_run(run.path, episodes, greedy).returns
    return Score(float(np.mean(returns)), returns, f"{episodes} {how} episodes")


def summarize(group: RunGroup, scores: list[Score]) -> GroupReport:
    """Mean and IQM of the group's scores with their bootstrap CIs (one task: one stratum)."""
    values = np.array([score.value for score in scores])
    (mean_lo, iqm_lo), (mean_hi, iqm_hi) = bootstrap_ci(
        [values], lambda x, axis: np.stack([x.mean(axis), iqm(x, axis)], -1)
    )
    return GroupReport(
        group,
        task_name(group.runs[0].config),
        scores,
        float(values.mean()),
        (float(mean_lo), float(mean_hi)),
        float(iqm(values)),
        (float(iqm_lo), float(iqm_hi)),
    )


def build_report(
    run_dirs: Sequence[str | Path], episodes: int | None = None, sampled: bool = False
) -> tuple[list[GroupReport], list[Comparison]]:
    """Score every run (`score_run`), then the groups' statistics and every pair of groups
    of one task."""
    if episodes is not None and episodes < 1:
        raise ConfigError(f"--episodes = {episodes}: must be >= 1")
    runs = [read_run(d) for d in run_folders(run_dirs)]
    for run in runs:  # all checked before the first evaluation, which takes a while
        evaluates = run.eval_return is None or episodes is not None or run.zero_sum or sampled
        if evaluates and not (run.path / "checkpoint.pt").is_file():
            logged = "" if episodes is not None or sampled else " and no eval_return in metrics.csv"
            raise ReportError(f"run folder {run.path}: no checkpoint.pt to evaluate{logged}")
    reports = [
        summarize(group, [score_run(run, episodes, sampled) for run in group.runs])
        for group in group_runs(runs)
    ]
    comparisons = []
    for i, x in enumerate(reports):
        for y in reports[i + 1 :]:
            if x.task == y.task:
                xs = np.array([s.value for s in x.scores])
                ys = np.array([s.value for s in y.scores])
                comparisons.append(
                    Comparison(
                        x, y, float(probability_of_improvement(xs, ys)), improvement_ci(xs, ys)
                    )
                )
    return reports, comparisons


def _number(value: float) -> str:
    return f"{value:.3f}"


def _interval_text(ci: tuple[float, float]) -> str:
    return f"[{_number(ci[0])}, {_number(ci[1])}]"


def markdown(reports: Sequence[GroupReport], comparisons: Sequence[Comparison]) -> str:
    """The groups' table and the P(X > Y) table, with what the numbers are."""
    percent = f"{100 * CONFIDENCE:g} %"
    lines = [
        "Score of a run: its final evaluation return (greedy episodes of checkpoint.pt with "
        "--episodes, sampled ones with --sampled, else the last eval_return logged in "
        "training). Mean and IQM (rliable's: "
        "the mean without the lowest and highest quarter of the runs) over the runs of a "
        f"group, with {percent} stratified percentile-bootstrap "
        f"CIs ({BOOTSTRAP_SAMPLES:,} samples, seed {BOOTSTRAP_SEED}).",
        "",
        f"| group | task | runs | return | scored from | mean | {percent} CI | IQM | "
        f"{percent} CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.group.label} | {r.task} | {len(r.scores)} | {r.return_label} | "
            f"{r.sources} | {_number(r.mean)} | {_interval_text(r.mean_ci)} | "
            f"{_number(r.iqm)} | {_interval_text(r.iqm_ci)} |"
        )
    lines += ranking(reports, comparisons)
    if comparisons:
        lines += [
            "",
            "Probability of improvement: the share of pairs of runs (x from X, y from "
            "Y) with x > y, ties counting one half.",
            "",
            f"| X | Y | task | P(X > Y) | {percent} CI |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c.x.group.label} | {c.y.group.label} | {c.x.task} | "
            f"{_number(c.probability)} | {_interval_text(c.ci)} |"
            for c in comparisons
        ]
    return "\n".join(lines) + "\n"


def still_training(reports: Sequence[GroupReport]) -> str:
    """A markdown paragraph naming the runs a process still trains (their `.lock` held),
    whose scores are of what they had saved when the report read them; "" if none."""
    training = [
        f"{run.path} ({holder})"
        for report in reports
        for run in report.group.runs
        if (holder := RunLock.holder(run.path)) is not None
    ]
    if not training:
        return ""
    return (
        "\nStill training, so scored as saved so far (their checkpoint, or the last "
        f"evaluation logged): {', '.join(training)}.\n"
    )


def stopped_short(reports: Sequence[GroupReport]) -> str:
    """A markdown paragraph naming the runs that no process trains and that stopped short of
    their `total_steps` (Ctrl-C, `mappo stop`, a lost job), pooled as they are; "" if none."""
    short = [
        f"{run.path} ({run.last_env_steps:,} of {total:,})"
        for report in reports
        for run in report.group.runs
        if run.last_env_steps < (total := int(run.config.get("total_steps", 0)))
        and RunLock.holder(run.path) is None
    ]
    if not short:
        return ""
    return (
        "\nStopped short of their total_steps, so scored as saved (`mappo train --resume` "
        f"goes on): {', '.join(short)}.\n"
    )


def ranking(reports: Sequence[GroupReport], comparisons: Sequence[Comparison]) -> list[str]:
    """Markdown lines ranking the groups of each task with several (a sweep's settings) by
    IQM, each with P(it beats the next), and naming the best one's config file."""
    lines: list[str] = []
    for task in dict.fromkeys(r.task for r in reports):
        ranked = sorted((r for r in reports if r.task == task), key=lambda r: -r.iqm)
        if len(ranked) < 2:
            continue
        beats = {(c.x.group.label, c.y.group.label): c.probability for c in comparisons}
        beats |= {(y, x): 1 - p for (x, y), p in beats.items()}
        lines += [
            "",
            f"Ranked by IQM ({task}); P(> next): the probability of improvement over the "
            "group ranked below it.",
            "",
            "| rank | group | IQM | P(> next) |",
            "|---|---|---|---|",
        ]
        for rank, (r, below) in enumerate(zip(ranked, [*ranked[1:], None], strict=True), 1):
            p = "" if below is None else _number(beats[(r.group.label, below.group.label)])
            lines.append(f"| {rank} | {r.group.label} | {_number(r.iqm)} | {p} |")
        best = ranked[0].group.runs[0].path / "config.toml"
        tied = [r.group.label for r in ranked[1:] if r.iqm == ranked[0].iqm]
        tie = f", tied on IQM with {', '.join(tied)}: the scores do not rank them" * bool(tied)
        lines += [
            "",
            f"Best: {ranked[0].group.label}{tie}; its config is {best} (`mappo train --config` "
            "reads it back; `--seed` or `--seeds` to vary).",
        ]
    return lines


def marl_eval_json(reports: Sequence[GroupReport]) -> dict[str, Any]:
    """The runs in marl-eval's raw-data layout (instadeepai/marl-eval, README):

        {env: {task: {algorithm: {"run_1": {"step_1": {"step_count": int,
                                                       "return": [float]},
                                            ...,
                                            "step_k": {...},
                                            "absolute_metrics": {"return": [float, ...]}}}}}}

    env is the mappo env's name, task `task_name` (env and env_kwargs),
    algorithm the group's label, all lower-cased as marl-eval looks names up.
    The steps are the training-return curves of metrics.csv interpolated onto
    one grid per task (marl-eval expects every run of a task logged at the
    same steps) of as many points as the run with the fewest logged returns
    has, spanning the env steps all runs cover, one value each;
    absolute_metrics holds the run's final evaluation returns (one per episode
    played, or the single eval_return).
    """
    layout: dict[str, Any] = {}
    for task in dict.fromkeys(r.task for r in reports):
        in_task = [r for r in reports if r.task == task]
        runs = [run for r in in_task for run in r.group.runs]
        # No more steps than the sparsest run logged: the file holds no invented detail.
        grid, curves = on_common_grid(runs, points=min(len(run.env_steps) for run in runs))
        curve_rows = iter(curves)  # runs in the order they were put on the grid
        env = str(in_task[0].group.runs[0].config.get("env")).lower()
        for r in in_task:
            algorithm = (
                layout.setdefault(env, {})
                .setdefault(task.lower(), {})
                .setdefault(r.group.label.lower(), {})
            )
            for index, score in enumerate(r.scores, start=1):
                curve = next(curve_rows)
                run = {
                    f"step_{k + 1}": {"step_count": int(round(grid[k])), METRIC: [float(curve[k])]}
                    for k in range(len(grid))
                }
                run["absolute_metrics"] = {METRIC: [float(v) for v in score.episode_returns]}
                algorithm[f"run_{index}"] = run
    return layout


def plot_iqm_curves(reports: Sequence[GroupReport], out: str | Path, fig: Figure, ax: Axes) -> None:
    """Draw each group's IQM training return over env steps with its bootstrap-CI band
    on `open_figure`'s (fig, ax), and save it to `out`."""
    for r in reports:
        grid, curves = on_common_grid(r.group.runs)  # [P], [R, P]
        lo, hi = bootstrap_ci([curves], iqm)
        n = len(r.group.runs)
        label = f"{r.group.label} ({n} run{'s' * (n != 1)})"
        (line,) = ax.plot(grid, iqm(curves), lw=1.6, label=label)
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("env steps")
    groups = [r.group for r in reports]
    ax.set_ylabel(f"IQM {returns_label(groups)} ({100 * CONFIDENCE:g} % CI)")
    save_figure(fig, ax, groups, out)


def write_report(
    run_dirs: Sequence[str | Path],
    episodes: int | None = None,
    out: str | Path | None = None,
    json_out: str | Path | None = None,
    plot: str | Path | None = None,
    sampled: bool = False,
) -> str:
    """Build the report of `run_dirs`; write the files asked for; return the markdown."""
    figure = open_figure(plot, "--plot") if plot is not None else None  # a bad name: before work
    reports, comparisons = build_report(run_dirs, episodes, sampled)
    text = markdown(reports, comparisons) + still_training(reports) + stopped_short(reports)
    if figure is not None and plot is not None:
        plot_iqm_curves(reports, plot, *figure)
    # Atomically: a command stopped mid-write leaves the files there before as they were.
    if json_out is not None:
        written = json.dumps(marl_eval_json(reports), indent=1) + "\n"
        write_atomically(json_out, lambda handle: handle.write(written.encode()))
    if out is not None:
        write_atomically(out, lambda handle: handle.write(text.encode()))
    return text
