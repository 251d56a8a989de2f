"""`mappo status`: where each run of a folder stands, one line per run, read off its files.

For a run that trains out of sight (`nohup mappo train ... &`, a batch job, a
reproduction): whether a process trains in it now (its `.lock`), the env step
of its last logged update against its budget, the recent episodes as the
progress line words them, how long ago that update was logged, the env step
its checkpoint holds, and the command that goes on from there. It reads the
files and the checkpoint's counters; it writes nothing and scores nothing
(`mappo report` scores).
"""

from __future__ import annotations

import math
import time
import tomllib
from pathlib import Path

from mappo.checkpoint import CheckpointError, load_checkpoint
from mappo.errors import RunFolderError
from mappo.progress import RECENT_UPDATES, Progress
from mappo.run_folder import metrics_of_row, read_metrics, slot_folders, start_again
from mappo.run_lock import RunLock


def status_lines(path: Path) -> list[str]:
    """One line for the run in folder `path`, or for each run of a `--seeds` run or sweep
    there; a folder that holds no run is a `RunFolderError`."""
    if not path.is_dir():
        how = "is a file, not a run folder" if path.exists() else "does not exist"
        raise RunFolderError(f"run folder {path} {how}")
    slots = slot_folders(path)
    if not slots and not (path / "config.toml").is_file():
        raise RunFolderError(f"run folder {path}: not a run folder (no config.toml)")
    # A seeds run or sweep goes on as a whole, from its own folder.
    return [run_status(folder, path) for folder in slots] or [run_status(path, _owner(path))]


def _owner(folder: Path) -> Path:
    """The folder of the seeds run or sweep that `folder` is one run of, else `folder`."""
    for above in (folder.parent.parent, folder.parent):  # a sweep's, then a seeds run's
        if folder.resolve() in {slot.resolve() for slot in slot_folders(above)}:
            return above
    return folder


def run_status(folder: Path, resume: Path) -> str:
    """Where the run in `folder` stands, in one line; `resume` is the folder `--resume`
    takes to go on with it (its own, or that of the seeds run or sweep it belongs to)."""
    config_path = folder / "config.toml"
    try:
        config = tomllib.loads(config_path.read_text(encoding="utf-8-sig"))
        total = int(config["total_steps"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        return f"{folder}: its config.toml cannot be read ({type(err).__name__}: {err})"
    metrics = folder / "metrics.csv"
    damaged: str | None = None
    try:
        rows = read_metrics(metrics)[0] if metrics.is_file() else []
    except RunFolderError as err:  # the checkpoint still says where the run stands
        rows, damaged = [], str(err)
    holder = RunLock.holder(folder)
    checkpoint, saved = folder / "checkpoint.pt", None
    if checkpoint.is_file():
        try:
            saved = int(load_checkpoint(checkpoint)["env_steps"])
        except CheckpointError as err:
            return f"{folder}: {err}"
    logged = int(rows[-1]["env_steps"]) if rows else saved or 0  # rows unreadable: the save's
    dropped = 0  # rows logged after the checkpoint of a stopped run
    if holder is not None:
        state = f"training ({holder}), env step {logged:,}"
    elif saved is None:
        state = "stopped before its first checkpoint, env step 0"
    else:
        state = ("finished" if saved >= total else "stopped") + f" at env step {saved:,}"
        logged = saved  # what a resume continues from (it drops rows logged after it)
        kept = [row for row in rows if int(row["env_steps"]) <= saved]
        dropped, rows = len(rows) - len(kept), kept  # the recent return is the resumed one's
    if saved is not None and saved > total and holder is None:  # as progress counts it
        parts = [f"{state} (total_steps {total:,}, rounded up to whole updates)"]
    else:
        parts = [f"{state} of {total:,} ({100 * logged / max(total, 1):.1f} %)"]
    if dropped:  # a kill -9 after updates the checkpoint has not caught
        parts.append(f"{dropped} later update{'s' * (dropped > 1)} logged, which a resume drops")
    if rows:
        parts.append(_recent(rows))
        parts.append(f"last update logged {_ago(metrics)} ago")
    if damaged is not None:  # what a resume would refuse, and how to go on
        parts.append(damaged)
    line = f"{folder}: " + ", ".join(parts)
    if holder is not None:
        held = f"env step {saved:,}, {_ago(checkpoint)} ago" if saved is not None else "none yet"
        return f"{line}; checkpoint: {held}"
    if saved is None:
        return f"{line}; start it again with: {start_again(resume, folder / 'config.toml')}"
    if saved < total:
        return f"{line}; continue with: mappo train --resume {resume}"
    return f"{line}; train it further with: mappo train --resume {resume} --total-steps N"


def _recent(rows: list[dict[str, str]]) -> str:
    """The last updates' episodes as the progress line words them ("recent return -3.10",
    the win rate where the env reports wins, and so on)."""
    progress = Progress(total=1, env_steps=0, quiet=True)
    for row in rows[-RECENT_UPDATES:]:
        progress.remember(metrics_of_row(row))
    return progress.recent_text()


def _ago(path: Path) -> str:
    """How long ago `path` was last written: "14 s", "3 min", "2 h 5 min", "3 days"."""
    seconds = max(0.0, time.time() - path.stat().st_mtime)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = math.floor(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h {minutes % 60} min" if hours < 48 else f"{hours // 24} days"
