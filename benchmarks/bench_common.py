"""Helpers shared by the benchmark scripts: machine facts, timing summaries, results files.

Not a benchmark itself. Each script records the machine (cores, load average at
its start) beside its figures, because on a shared machine the load decides
how far the numbers can be trusted.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mappo.errors import exit_line

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """An option a script refuses, or a state of its folders or files it cannot go on from."""


@contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """A user's error in script `prog` as one line on stderr with `mappo`'s exit codes: 2 for
    bad input (an option, a config, a run folder or checkpoint, memory that ran out), 3 for
    an env that broke. Anything else is a bug and keeps its traceback."""
    try:
        yield
    except Exception as err:
        said = (2, f"error: {err}") if isinstance(err, UsageError) else exit_line(err)
        if said is None:
            raise
        code, line = said
        print(f"{prog}: {line}", file=sys.stderr)
        raise SystemExit(code) from None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Cores, CPU, load averages (1, 5, 15 min) and the time, taken now."""
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "load_average": [round(x, 2) for x in load],
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
    }


def machine_line(info: dict) -> str:
    """One human-readable line describing `machine_info()`."""
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    return (
        f"machine: {info['cores']} cores ({info['cpu']}), load average {load} "
        f"(1/5/15 min) at start, {info['date_utc']}"
    )


def command_line() -> str:
    """The command that ran this script, as it could be typed again."""
    script = os.path.relpath(sys.argv[0], REPO_ROOT)
    return " ".join(shlex.quote(x) for x in ["python", script, *sys.argv[1:]])


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return statistics.median(values)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed with a sensible number of digits."""

    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            if value != value:  # NaN
                return "n/a"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            if abs(value) >= 1:
                return f"{value:.2f}"
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, title: str, info: dict, sections: Sequence[str], quick: bool) -> Path:
    """Write `benchmarks/results/<name>.md`: title, command, date, machine, then `sections`."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.md"
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    load_end = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    header = [
        f"# {title}",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{command_line()}` |",
        f"| mode | {'quick (--quick)' if quick else 'full'} |",
        f"| date | {info['date_utc']} |",
        f"| machine | {info['cores']} cores, {info['cpu']}, Python {info['python']} |",
        f"| load average at start (1/5/15 min, `uptime`) | {load} |",
        f"| load average at end | {load_end} |",
        "",
    ]
    path.write_text("\n".join(header) + "\n" + "\n\n".join(sections).rstrip() + "\n")
    return path


def write_band_plot(
    grid: Sequence[float],
    bands: dict,
    ylabel: str,
    title: str,
    out: Path,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Each code's band (mean ± std over its seeds, `bands[label]` `[seeds, points]` on the
    env steps `grid`) on one axes, written to `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, ys in bands.items():
        (line,) = ax.plot(
            grid, ys.mean(0), lw=1.6, label=f"{label} ({len(ys)} seed{'s' * (len(ys) != 1)})"
        )
        low, high = ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, lw=0)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
