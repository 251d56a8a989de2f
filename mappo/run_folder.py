"""The run folder: config.toml, metrics.csv, checkpoint.pt, curve.png and TensorBoard events,
best.pt with evaluation during training, and env_state.pkl for envs whose state lives in
Python objects (PettingZoo envs). One process at a time writes it: `.lock` (`RunLock`).

env_state.pkl holds the env copies pickled at the last checkpoint, which records
its SHA-256: only `--resume` of this folder unpickles it (the user's own run), and
only when the digest matches; eval and export never read it, so a checkpoint
passed on stays free of pickled code.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import MISSING
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from mappo.checkpoint import load_checkpoint, save_checkpoint, write_atomically
from mappo.config import MappoConfig
from mappo.episodes import return_label
from mappo.errors import ConfigError, RunFolderError, WriteError, writes_refused_as_write_error
from mappo.progress import RECENT_UPDATES
from mappo.run_lock import RunLock
from mappo.trainer import MappoMetrics

if TYPE_CHECKING:  # tensorboard is imported when the first metrics are written
    from torch.utils.tensorboard import SummaryWriter

logger = logging.getLogger(__name__)

ENV_STATE_FILE = "env_state.pkl"
NEXT_ENV_STATE_FILE = ".env_state.next.pkl"  # a save's, until its checkpoint is written
RUN_FILES = ("config.toml", "metrics.csv", "checkpoint.pt", "best.pt", ENV_STATE_FILE)
CURVE_INTERVAL_S = 20.0
METRICS_COLUMNS = [f.name for f in dataclasses.fields(MappoMetrics)]  # metrics.csv's header
# Columns left empty (not "nan") where there is nothing to report.
OPTIONAL_COLUMNS = ("eval_return", "win_rate", "first_seat_win_rate", "second_seat_win_rate",
                    "draw_rate", "rewarded_fraction")  # fmt: skip


def require_wandb() -> None:
    """Refuse `--wandb` before any work when the wandb package is missing."""
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("--wandb needs the wandb package: pip install 'mappo[wandb]'") from None


class RunFolder:
    """Writes one run's artifacts, holding the folder's `RunLock`; refuses to overwrite an
    existing run unless told to."""

    def __init__(
        self,
        path: str | Path,
        title: str,
        return_label: str = "mean per-agent episode return",
        lock: RunLock | None = None,
    ) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.metrics_path = self.path / "metrics.csv"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.best_path = self.path / "best.pt"
        self.env_state_path = self.path / ENV_STATE_FILE
        self._next_env_state = self.path / NEXT_ENV_STATE_FILE
        self.curve_path = self.path / "curve.png"
        self._writer: SummaryWriter | None = None
        self._wandb: Any = None  # a wandb Run once `use_wandb` is called (wandb is optional)
        self._purge_step: int | None = None
        self._last_curve = time.monotonic()
        self._curve_refused = False  # a damaged metrics.csv was said once
        # A resumed run's last logged updates, oldest first: its recent return goes on
        # from them (`Progress.remember`) rather than from the resume.
        self.logged_before: list[MappoMetrics] = []
        self._title, self._return_label = title, return_label
        self._lock = lock or RunLock.take(self.path)  # `lock`: this folder's, taken before
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files of atomic writes (`write_atomically`) that a process
        killed mid-write left: with the folder's lock held, no other process writes here."""
        for temporary in self.path.glob(".*.tmp"):
            if re.fullmatch(r"\..+\.\d+\.tmp", temporary.name):
                temporary.unlink(missing_ok=True)

    @staticmethod
    def check_free(path: str | Path, force: bool = False) -> None:
        """Refuse a folder that another process trains in, or that holds a run, unless
        `force`; called before any work."""
        RunLock.refuse_if_held(path)
        existing = [name for name in RUN_FILES if (Path(path) / name).exists()]
        if existing and not force and "checkpoint.pt" not in existing:
            raise RunFolderError(
                f"run folder {path} holds a run stopped before its first checkpoint "
                f"({', '.join(existing)}), nothing to resume; pass --force to start it again"
            )
        if existing and not force:
            raise RunFolderError(
                f"run folder {path} already holds a run ({', '.join(existing)}); "
                "pass --resume to continue it or --force to overwrite it"
            )

    @staticmethod
    def checkpoint_to_resume(path: str | Path) -> Path:
        """The checkpoint `--resume path` continues from; a missing one says what to run.
        The caller holds the folder's lock (`lock_to_resume`)."""
        path = Path(path)
        checkpoint = path / "checkpoint.pt"
        if checkpoint.exists():  # a folder in its place is refused by load_checkpoint
            return checkpoint
        if not path.is_dir():
            raise RunFolderError(
                f"run folder {path} does not exist; start a run there with: "
                f"mappo train --run-dir {path}"
            )
        # A saved config.toml holds every field, so it restarts the same run.
        again = (
            start_again(path)
            if (path / "config.toml").is_file()
            else f"mappo train --run-dir {path} --force and the run's flags"
        )
        raise RunFolderError(
            f"run folder {path} has no checkpoint.pt (the run stopped before its first "
            f"checkpoint, or this is not a run folder); start it again with: {again}"
        )

    @classmethod
    def create(cls, path: str | Path, config: MappoConfig, force: bool = False) -> RunFolder:
        """A new run folder holding `config.toml` (an existing run is removed only with `force`)."""
        cls.check_free(path, force)
        folder = cls(
            path, f"{config.env} (seed {config.seed})", return_label(config.decided("team_reward"))
        )
        with folder._released_on_error():
            for name in (*RUN_FILES, NEXT_ENV_STATE_FILE):
                (folder.path / name).unlink(missing_ok=True)
            if force:  # the replaced run's TensorBoard curves would be drawn beside the new ones
                for events in folder.path.glob("events.out.tfevents.*"):
                    events.unlink()
            folder.write_config(config)
        return folder

    @staticmethod
    def lock_to_resume(path: str | Path) -> RunLock | None:
        """The lock of the run folder `path`, taken before its checkpoint is read: a second
        `--resume` is refused at once, instead of training on from the checkpoint it read
        and then cutting the first one's newer rows and overwriting its checkpoint (and
        `mappo status` and `mappo stop` see a resume while its envs are built). None where
        `path` holds no checkpoint (`checkpoint_to_resume` says what to do), after refusing
        one that a run trains in before its first checkpoint: no `.lock` is left in a
        folder that holds no run."""
        if (Path(path) / "checkpoint.pt").exists():
            return RunLock.take(path)
        RunLock.refuse_if_held(path)
        return None

    @classmethod
    def resume(
        cls, path: str | Path, config: MappoConfig, env_steps: int, lock: RunLock | None = None
    ) -> RunFolder:
        """Reopen a run at its checkpoint, with `lock` (`lock_to_resume`) if taken: metrics
        rows past `env_steps` are dropped, and rows of an older mappo are rewritten in
        today's columns (new ones left empty)."""
        folder = cls(
            path,
            f"{config.env} (seed {config.seed})",
            return_label(config.decided("team_reward")),
            lock,
        )
        with folder._released_on_error():
            folder.write_config(config)
            kept = folder._cut_metrics(env_steps)
            folder.logged_before = [metrics_of_row(row) for row in kept[-RECENT_UPDATES:]]
            folder._settle_env_state()
        folder._purge_step = env_steps + 1  # TensorBoard drops events past the checkpoint
        return folder

    def _cut_metrics(self, env_steps: int) -> list[dict[str, str]]:
        """metrics.csv without rows past `env_steps` (nor a last row cut short), in today's
        columns; the rows kept."""
        if not self.metrics_path.exists():
            return []
        rows, columns = read_metrics(self.metrics_path)
        kept = [row for row in rows if int(row["env_steps"]) <= env_steps]
        cut_short = not self.metrics_path.read_bytes().endswith(b"\n")
        if len(kept) < len(rows) or columns != METRICS_COLUMNS or cut_short:
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            # Atomically: a crash or a full disk mid-rewrite would lose every row.
            write_atomically(
                self.metrics_path, lambda handle: handle.write(text.getvalue().encode())
            )
        return kept

    def write_config(self, config: MappoConfig) -> None:
        """config.toml, written atomically: a resume that fails to write it leaves the one
        before."""
        write_atomically(self.config_path, lambda handle: handle.write(config.to_toml().encode()))

    @contextlib.contextmanager
    def _released_on_error(self) -> Iterator[None]:
        """The folder's lock released if the block raises (the folder is not opened)."""
        try:
            yield
        except BaseException:
            self._lock.release()
            raise

    def log(self, metrics: MappoMetrics) -> None:
        """Append one update's row to metrics.csv and TensorBoard; redraw the curve now and then.

        `eval_return` is left empty in metrics.csv after updates with no
        evaluation, and goes to TensorBoard as `eval/return`; the other
        `OPTIONAL_COLUMNS` are left empty where the env has no such outcome (wins,
        seats of a zero-sum game) and after updates that finished no episode.
        """
        row = metrics.as_dict()
        new_file = not self.metrics_path.exists()
        # A row cut short is left out when the file is read.
        with writes_refused_as_write_error(self.metrics_path, "its rows before are kept"):
            with open(self.metrics_path, "a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                if new_file:
                    writer.writeheader()
                # Empty cells where no evaluation ran, or the env has no such outcome.
                blank = {name: "" for name in OPTIONAL_COLUMNS if math.isnan(float(row[name]))}
                writer.writerow({**row, **blank})
        scalars = {
            "eval/return" if name == "eval_return" else f"train/{name}": value
            for name, value in row.items()
            if name != "env_steps"
            and not isinstance(value, str)
            and not (isinstance(value, float) and math.isnan(value))
        }
        tensorboard = self._tensorboard()
        for name, value in scalars.items():
            tensorboard.add_scalar(name, value, metrics.env_steps)
        if self._wandb is not None:
            self._wandb.log(scalars, step=metrics.env_steps)
        if time.monotonic() - self._last_curve > CURVE_INTERVAL_S:
            self.draw_curve()

    def use_wandb(self, config: MappoConfig, project: str) -> None:
        """Also send every metrics row to Weights & Biases (`WANDB_MODE=offline` keeps it local).

        The W&B run id derives from the folder, so `--resume` continues the same W&B run.
        """
        import wandb

        run_id = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
        self._wandb = wandb.init(
            project=project,
            name=self.path.name,
            id=run_id,
            resume="allow",
            dir=str(self.path),
            config=config.to_dict(),
        )

    def save(self, payload: dict, pickled_env: bytes | str | None = None) -> None:
        """Write the checkpoint atomically, and `pickled_env` (`MappoTrainer.pickled_env_state`)
        to env_state.pkl with it, its digest in the checkpoint; a reason instead of bytes
        (the env cannot be pickled) is recorded in the checkpoint for `--resume` to say.

        The new env_state.pkl is written beside the old one first and takes its place only
        once the checkpoint is saved: a save that fails (a full disk, a crash) leaves the
        pair before it, or the new pair with the file still beside (`read_pickled_env`)."""
        if isinstance(pickled_env, bytes):
            write_atomically(self._next_env_state, lambda handle: handle.write(pickled_env))
            payload = {**payload, "env_state": {"sha256": hashlib.sha256(pickled_env).hexdigest()}}
        elif pickled_env is not None:
            payload = {**payload, "env_state": {"unpicklable": pickled_env}}
        save_checkpoint(self.checkpoint_path, payload)
        if isinstance(pickled_env, bytes):
            self._next_env_state.replace(self.env_state_path)
        else:  # files from an earlier save are no longer valid
            self.env_state_path.unlink(missing_ok=True)
            self._next_env_state.unlink(missing_ok=True)

    def _settle_env_state(self) -> None:
        """On resume: a save stopped between writing its checkpoint and moving its pickle
        (`save`) left the checkpoint's pickle waiting; it takes env_state.pkl's place, so
        the next save cannot overwrite it. One whose checkpoint was never written goes."""
        if not self._next_env_state.is_file():
            return
        recorded = load_checkpoint(self.checkpoint_path).get("env_state") or {}
        data = self._next_env_state.read_bytes()
        if recorded.get("sha256") == hashlib.sha256(data).hexdigest():
            self._next_env_state.replace(self.env_state_path)
        else:
            self._next_env_state.unlink()

    def save_best(self, payload: dict) -> None:
        """Write best.pt, the checkpoint of the best evaluation so far, atomically."""
        save_checkpoint(self.best_path, payload)

    @staticmethod
    def read_pickled_env(path: str | Path, payload: dict) -> bytes | str | None:
        """For `--resume` of the run in `path` from its checkpoint `payload`: env_state.pkl's
        bytes when they are the ones the checkpoint recorded, else why not; None when the
        checkpoint expects none (the env's own state_dict, if any, is in it)."""
        saved = payload.get("env_state")
        if saved is None:
            return None
        if "unpicklable" in saved:
            return saved["unpicklable"]
        file = Path(path) / ENV_STATE_FILE
        # Beside it: the checkpoint's own, when a save stopped before it took its place.
        for candidate in (file, file.with_name(NEXT_ENV_STATE_FILE)):
            if candidate.is_file():
                data = candidate.read_bytes()
                if hashlib.sha256(data).hexdigest() == saved["sha256"]:
                    return data
        if not file.is_file():
            return f"{file} is missing"
        return f"{file} is not the one the checkpoint recorded (another save wrote it)"

    def draw_curve(self) -> None:
        """Redraw curve.png: episode return against env steps, from metrics.csv, with the
        evaluations' returns as points when there are any."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self._last_curve = time.monotonic()
        try:
            steps, returns = read_curve(self.metrics_path)
            eval_steps, eval_returns = read_curve(self.metrics_path, "eval_return")
        except RunFolderError as err:  # a damaged metrics.csv: the training itself goes on
            if not self._curve_refused:
                logger.warning("curve.png not redrawn: %s", err)
            self._curve_refused = True
            return
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(steps, returns, lw=1.5, label="training episodes")
        if eval_steps:
            ax.plot(eval_steps, eval_returns, "o-", ms=3, lw=1.0, label="evaluation (greedy)")
            ax.legend(fontsize=8)
        ax.set_xlabel("env steps")
        ax.set_ylabel(self._return_label)
        ax.set_title(self._title)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            write_atomically(self.curve_path, lambda handle: fig.savefig(handle, format="png"))
        finally:
            plt.close(fig)

    def close(self) -> None:
        """Final curve and flushed TensorBoard events; the folder's lock released."""
        try:
            if self.metrics_path.exists():
                try:
                    self.draw_curve()
                except WriteError as err:  # the run's own files are saved: a finished run stays so
                    logger.warning("curve.png not redrawn: %s", err)
            if self._writer is not None:
                self._writer.close()
            if self._wandb is not None:
                self._wandb.finish()
        finally:
            self._lock.release()

    def _tensorboard(self) -> SummaryWriter:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path), purge_step=self._purge_step)
        return self._writer


def slot_folders(path: Path) -> list[Path]:
    """The run folders a seeds run (`path/seed_<s>`) or a sweep (`path/<setting>/seed_<s>`)
    wrote in `path`, by setting and seed; [] for any other folder."""

    def seeds_in(folder: Path) -> list[Path]:
        found = [
            p for p in folder.glob("seed_*") if p.is_dir() and p.name[5:].lstrip("-").isdigit()
        ]
        return sorted(found, key=lambda p: int(p.name[5:]))

    direct = seeds_in(path)
    if direct or not path.is_dir():
        return direct
    # A sweep's settings are named `field=value,...` (`run.setting_name`): a folder of other
    # runs, one of them a seeds run, is no sweep, and its other runs would go unseen.
    settings = [p for p in sorted(path.iterdir()) if p.is_dir() and "=" in p.name]
    return [slot for setting in settings for slot in seeds_in(setting)]


def start_again(path: Path, config: Path | None = None) -> str:
    """The command that starts the run of folder `path` afresh from its config.toml (or
    `config`), with --force; for a seeds run, all its seeds; a sweep's is its own --sweep
    command (one setting's config.toml holds no other setting)."""
    slots = slot_folders(path)
    if not slots:
        return f"mappo train --config {config or path / 'config.toml'} --run-dir {path} --force"
    if any(slot.parent != path for slot in slots):
        return f"its mappo train --sweep ... command, with --run-dir {path} --force"
    seeds = ",".join(slot.name.removeprefix("seed_") for slot in slots)
    config = config or slots[0] / "config.toml"
    return f"mappo train --config {config} --seeds {seeds} --run-dir {path} --force"


def is_slots_folder(path: Path) -> bool:
    """Whether `path` holds the run folders of a seeds run or a sweep (no run of its own)."""
    return not (path / "checkpoint.pt").is_file() and bool(slot_folders(path))


KINDS = get_type_hints(MappoMetrics)  # each column's type
# The columns that today's writer fills with numbers ("nan", or empty, where it has none).
NUMBER_COLUMNS = frozenset(name for name, kind in KINDS.items() if kind in (int, float))
# What a row of an older mappo lacks reads as NaN (the fields with no default: the losses).
UNSET = {f.name: math.nan for f in dataclasses.fields(MappoMetrics) if f.default is MISSING}


def metrics_of_row(row: dict[str, str]) -> MappoMetrics:
    """One `read_metrics` row as the update's metrics: NaN where a column is empty or missing
    (a row of an older mappo), and the return's definition where the row gives it."""
    values: dict[str, Any] = {
        name: KINDS[name](float(text))
        for name, text in row.items()
        if name in NUMBER_COLUMNS and text != ""
    }
    if row.get("return_definition"):  # team and per-agent returns are pooled apart
        values["return_definition"] = row["return_definition"]
    return MappoMetrics(**{**UNSET, **values})


def read_metrics(metrics_path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """The rows and columns of a metrics.csv, checked: a header naming `env_steps` and
    `episode_return`, and whole rows with an integer `env_steps` and a number (or nothing)
    in each of `NUMBER_COLUMNS`. A last line cut short (no line end: the process was killed
    while it appended that row) is left out, as `RunFolder.resume` drops it; any other
    damage is a `RunFolderError` naming the line and what is wrong there."""
    try:
        text = metrics_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:  # a file overwritten, or another file in its place
        line = err.object[: err.start].count(b"\n") + 1
        raise _damaged(
            metrics_path, line, f"byte {err.object[err.start]:#04x} is not text"
        ) from None
    whole = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(whole, newline=""))
    columns = list(reader.fieldnames or [])
    missing = [name for name in ("env_steps", "episode_return") if name not in columns]
    if whole and missing:  # every mappo writes both: this header is not one it wrote
        raise _damaged(metrics_path, 1, f"its header has no {' or '.join(missing)} column")
    numbers = [name for name in columns if name in NUMBER_COLUMNS]
    rows = []
    for row in reader:
        if None in row or None in row.values() or not row.get("env_steps", "").isdigit():
            raise _damaged(
                metrics_path, reader.line_num, "not a whole row with an integer env_steps"
            )
        for name in numbers:
            try:
                number = float(row[name] or "nan")
            except ValueError:
                what = f"{name} is {row[name]!r}, not a number"
                raise _damaged(metrics_path, reader.line_num, what) from None
            if KINDS[name] is int and not number.is_integer():  # a count: episodes
                what = f"{name} is {row[name]!r}, not a whole number"
                raise _damaged(metrics_path, reader.line_num, what)
        rows.append(row)
    return rows, columns


def _damaged(metrics_path: Path, line: int, what: str) -> RunFolderError:
    """The error for a metrics.csv damaged at `line`, saying `what` is wrong there."""
    return RunFolderError(
        f"{metrics_path} is damaged at line {line} ({what}): restore it, or move it away (a "
        "resumed run then starts a new one)"
    )


def read_curve(metrics_path: Path, column: str = "episode_return") -> tuple[list[int], list[float]]:
    """(env_steps, column) of every row where `column` holds a number: the rows with a
    finished episode, or with an evaluation for `eval_return`."""
    steps, returns = [], []
    for row in read_metrics(metrics_path)[0]:
        value = float(row.get(column) or "nan")
        if not math.isnan(value):
            steps.append(int(row["env_steps"]))
            returns.append(value)
    return steps, returns
