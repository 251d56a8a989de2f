"""Learning curves of several runs on one figure, seeds of one config folded into a band.

Runs whose `config.toml` differ only in `seed` form a group, drawn as the
mean ± std (over its runs) of `episode_return` (or, with `y = "eval_return"`, of
the evaluations during training) interpolated onto a common x
grid; a group of one run is drawn as its own curve. Each group is labelled
by the config keys whose values differ between groups, e.g.
`share_policy=False`.
"""

from __future__ import annotations

import json
import logging
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mappo.checkpoint import write_atomically
from mappo.config import AUTO_DECIDED, ENV_DIM_FIELDS, READ_OFF_ENV, field_defaults
from mappo.episodes import return_label
from mappo.run_folder import RunFolderError, read_metrics, slot_folders

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

X_AXES = ("env_steps", "wall_time")
Y_COLUMNS = ("episode_return", "eval_return")  # metrics.csv columns a curve can show
# Keys that do not change what a run learns: its seed, when it saves and evaluates
# (evaluation leaves training bitwise unchanged), and how its envs and math are spread
# over processes and threads (workers step the same copies; threads change only float
# rounding), so runs differing only there pool.
GROUP_IGNORED_KEYS = (
    "seed",
    "checkpoint_interval",
    "eval_interval",
    "eval_episodes",
    "num_workers",
    "torch_threads",
)
GRID_POINTS = 200


class PlotError(RunFolderError):
    """Runs that cannot be plotted, or an output file matplotlib cannot write; says why."""


@dataclass
class RunCurve:
    """One run's learning curve: episode return against env steps and wall time."""

    path: Path
    config: dict[str, Any]
    env_steps: np.ndarray  # [N], rows with a finished episode only
    wall_time: np.ndarray  # [N] seconds of training up to each of those rows
    returns: np.ndarray  # [N], of the column read (`read_run`'s y)
    # The last non-empty `eval_return` of metrics.csv, where the run evaluated while training.
    eval_return: float | None = None
    # A two-seat zero-sum game in self-play (metrics.csv logs the seats' win rates): its
    # seats' returns cancel, so its mean return says nothing of how well it plays.
    zero_sum: bool = False
    last_env_steps: int = 0  # of the last row logged, with or without a finished episode

    def x(self, axis: str) -> np.ndarray:
        """The x values for axis `env_steps` or `wall_time`."""
        return self.env_steps if axis == "env_steps" else self.wall_time


@dataclass
class RunGroup:
    """Runs sharing one config but for `GROUP_IGNORED_KEYS`, and what tells the group
    apart."""

    runs: list[RunCurve]
    label: str = ""
    differing: dict[str, Any] = field(default_factory=dict)  # key → value, keys that vary

    def band(
        self, axis: str, points: int = GRID_POINTS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x grid, mean, std) of the runs' returns, each run interpolated onto the grid.

        The grid spans the x range every run covers, so each point averages all
        runs; std is the population std over runs (0 for a single run).
        """
        if len(self.runs) == 1:  # nothing to align: keep the run's own points
            run = self.runs[0]
            return run.x(axis), run.returns, np.zeros_like(run.returns)
        grid, ys = on_common_grid(self.runs, axis, points)
        return grid, ys.mean(0), ys.std(0)


def on_common_grid(
    runs: Sequence[RunCurve], axis: str = "env_steps", points: int = GRID_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """(grid [P], returns [R, P]): each run's returns interpolated onto `points` x values
    spanning the range every run covers, so each grid point holds all runs."""
    xs = [run.x(axis) for run in runs]
    lo, hi = max(float(x[0]) for x in xs), min(float(x[-1]) for x in xs)
    if hi < lo:
        names = ", ".join(str(run.path) for run in runs)
        raise PlotError(f"runs {names} share no {axis} range to average over")
    grid = np.linspace(lo, hi, points)
    return grid, np.stack([np.interp(grid, run.x(axis), run.returns) for run in runs])


def read_run(run_dir: str | Path, y: str = "episode_return") -> RunCurve:
    """Load `config.toml` and column `y` of `metrics.csv` of one run folder."""
    path = Path(run_dir)
    config_path, metrics_path = path / "config.toml", path / "metrics.csv"
    if not path.is_dir():
        raise PlotError(
            f"run folder {path} " + ("is a file" if path.exists() else "does not exist")
        )
    for needed in (config_path, metrics_path):
        if not needed.is_file():
            raise PlotError(f"run folder {path}: no {needed.name}")
    try:
        saved = tomllib.loads(config_path.read_text(encoding="utf-8-sig"))
        facts, decided = saved.pop(READ_OFF_ENV, {}), saved.pop(AUTO_DECIDED, {})
        config = {**field_defaults(), **saved, **facts, **decided}
    except tomllib.TOMLDecodeError as err:
        raise PlotError(f"run folder {path}: config.toml is not valid TOML ({err})") from None
    except UnicodeDecodeError as err:
        raise PlotError(
            f"run folder {path}: config.toml is not UTF-8 text (byte "
            f"{err.object[err.start]:#04x} at position {err.start})"
        ) from None
    steps, wall, returns = [], [], []
    elapsed, previous_steps, eval_return, zero_sum = 0.0, 0, None, False
    for row in read_metrics(metrics_path)[0]:
        env_steps = int(row["env_steps"])
        # Each row is one update; its wall time is the steps it added at its own rate.
        speed = float(row.get("steps_per_second") or 0.0)
        if speed > 0 and math.isfinite(speed):
            elapsed += (env_steps - previous_steps) / speed
        previous_steps = env_steps
        value = float(row.get(y) or "nan")
        if not math.isnan(value):  # updates with no finished episode, or no evaluation
            steps.append(env_steps)
            wall.append(elapsed)
            returns.append(value)
        if row.get("eval_return"):  # empty in updates that did not evaluate
            eval_return = float(row["eval_return"])
        zero_sum = zero_sum or bool(row.get("first_seat_win_rate"))
    if not returns:
        what = "no finished episode" if y == "episode_return" else f"no {y} (--eval-interval)"
        raise PlotError(f"run folder {path}: metrics.csv holds {what} yet")
    return RunCurve(
        path,
        config,
        np.asarray(steps, np.float64),
        np.asarray(wall, np.float64),
        np.asarray(returns, np.float64),
        eval_return,
        zero_sum,
        previous_steps,
    )


def run_folders(run_dirs: Sequence[str | Path]) -> list[Path]:
    """The run folders `run_dirs` name, in order, a folder of a seeds run or a sweep
    standing for its runs (`slot_folders`). A run named more than once (overlapping shell
    globs: `base base/`, `base base/seed_0`, or a link to it) counts once, as first named,
    and a warning says which: twice, it would count as two seeds that agree exactly."""
    folders: dict[Path, Path] = {}  # resolved path → the folder as first named
    repeated: dict[Path, list[Path]] = {}  # resolved path → the other names it was given
    for run_dir in run_dirs:
        for folder in slot_folders(Path(run_dir)) or [Path(run_dir)]:
            first = folders.setdefault(folder.resolve(), folder)
            if first is not folder:
                others = repeated.setdefault(folder.resolve(), [])
                if folder != first and folder not in others:
                    others.append(folder)
    if repeated:
        named = [
            f"{folders[key]}" + (f" (also as {', '.join(map(str, others))})" if others else "")
            for key, others in repeated.items()
        ]
        logger.warning("run folders named more than once are counted once: %s", "; ".join(named))
    return list(folders.values())


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a config value (dicts such as env_kwargs included)."""
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def format_value(value: Any) -> str:
    """A config value as a label shows it: `False`, `0.0005`, `spread`, `{"num_agents": 4}`."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def group_runs(
    runs: Sequence[RunCurve], ignored: Sequence[str] = GROUP_IGNORED_KEYS
) -> list[RunGroup]:
    """Group runs whose configs agree on every key but `ignored`; label by the keys that vary.

    Groups keep the order of their first run. Env sizes (`num_agents`,
    `obs_dim`, ...) appear in labels only when nothing else varies. With a
    single group the label is the env name.
    """
    groups: dict[tuple, RunGroup] = {}
    for run in runs:
        key = tuple(sorted((k, _frozen(v)) for k, v in run.config.items() if k not in ignored))
        groups.setdefault(key, RunGroup(runs=[])).runs.append(run)
    result = list(groups.values())
    keys = sorted({k for run in runs for k in run.config} - set(ignored))
    varying = [
        k for k in keys if len({_frozen(group.runs[0].config.get(k)) for group in result}) > 1
    ]
    if any(k not in ENV_DIM_FIELDS for k in varying):
        # Sizes read off the env follow from the keys that changed it; they only add noise.
        varying = [k for k in varying if k not in ENV_DIM_FIELDS]
    for group in result:
        config = group.runs[0].config
        group.differing = {k: config.get(k) for k in varying}
        group.label = ", ".join(
            f"{k}={format_value(v)}" for k, v in group.differing.items()
        ) or str(config.get("env", "run"))
    return result


def plot_runs(
    run_dirs: Sequence[str | Path], out: str | Path, x: str = "env_steps", y: str = "episode_return"
) -> list[RunGroup]:
    """Draw the learning curves (metrics.csv column `y`) of `run_dirs` (or of the runs in a
    seeds or sweep folder) on one figure saved to `out`; return the groups."""
    if x not in X_AXES:
        raise PlotError(f"--x {x}: must be one of {', '.join(X_AXES)}")
    if y not in Y_COLUMNS:
        raise PlotError(f"--y {y}: must be one of {', '.join(Y_COLUMNS)}")
    groups = group_runs([read_run(d, y) for d in run_folders(run_dirs)])
    fig, ax = open_figure(out, "--out")
    for group in groups:
        grid, mean, std = group.band(x)
        n = len(group.runs)
        label = f"{group.label} ({n} seeds)" if n > 1 else group.label
        (line,) = ax.plot(grid, mean, lw=1.6, label=label)
        if n > 1:
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("env steps" if x == "env_steps" else "wall time (s)")
    label = returns_label(groups)
    ax.set_ylabel(label if y == "episode_return" else f"{label}, greedy evaluation")
    save_figure(fig, ax, groups, out)
    return groups


def open_figure(out: str | Path, option: str) -> tuple[Figure, Axes]:
    """(figure, axes) for a file `out` matplotlib can write; `option` names it in the error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    formats = fig.canvas.get_supported_filetypes()
    if Path(out).suffix.lstrip(".").lower() not in formats:
        plt.close(fig)
        raise PlotError(
            f"{option} {out}: the file must end in one of "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    return fig, ax


def returns_label(groups: Sequence[RunGroup]) -> str:
    """Which episode return the groups' runs log: team, mean per-agent, or a mix."""
    team = {bool(run.config.get("team_reward", False)) for g in groups for run in g.runs}
    return (
        return_label(team.pop())
        if len(team) == 1
        else "episode return (team or mean per-agent, by run)"
    )


def save_figure(fig: Figure, ax: Axes, groups: Sequence[RunGroup], out: str | Path) -> None:
    """Title by env, grid, legend below the axes; write `out` and close the figure."""
    import matplotlib.pyplot as plt

    envs = sorted({str(run.config.get("env")) for group in groups for run in group.runs})
    ax.set_title(envs[0] if len(envs) == 1 else f"{len(envs)} envs")
    ax.grid(alpha=0.3)
    # Below the axes, so long labels (several differing keys) neither cover curves nor clip.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.14), frameon=False)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    try:  # atomically: a command stopped mid-write leaves the figure there before as it was
        image_format = Path(out).suffix[1:].lower() or None
        write_atomically(out, lambda handle: fig.savefig(handle, format=image_format,
                                                         bbox_inches="tight"))  # fmt: skip
    finally:
        plt.close(fig)
