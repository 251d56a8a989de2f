"""The checkpoint format: written atomically, read back only through
`torch.load(weights_only=True)`, validated, and nothing more (building a trainer from one
is `MappoTrainer.from_checkpoint`'s)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mappo.config import MappoConfig, from_dict
from mappo.errors import CheckpointError, ConfigError, writes_refused_as_write_error

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "actor", "critic", "value_norm", "optimizer", "ranks")


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it into place.

    A crash mid-write leaves the previous file untouched; a write the system refuses (a
    full disk, a quota) is a WriteError naming `path`. A link takes the new file where it
    points; what is no regular file (a device, a pipe: `--out /dev/stdout`) is written
    in place, as it cannot be replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        with open(path, "wb") as handle:
            write(handle)
        return
    path = Path(os.path.realpath(path)) if path.is_symlink() else path  # a loop: itself
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with writes_refused_as_write_error(path, "the file there before, if any, is as it was"):
            with open(tmp, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def checkpoint_file(run: str | Path) -> Path:
    """The checkpoint that a command's RUN argument names: a run folder's `checkpoint.pt`,
    or a checkpoint file given itself (`RUN/best.pt`, the best evaluation's)."""
    path = Path(run)
    return path if path.is_file() or path.suffix == ".pt" else path / "checkpoint.pt"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` atomically: a crash mid-write leaves the previous checkpoint."""
    write_atomically(path, partial(torch.save, {**payload, "format_version": FORMAT_VERSION}))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint, refusing anything truncated, foreign or of another format version."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        # torch.save records a CRC-32 of every part of its zip, which torch.load does not
        # check: a flipped byte in the weights would load as other weights.
        with open(path, "rb") as handle:  # once: a file replaced meanwhile is not read
            damaged = zipfile.ZipFile(handle).testzip()
            handle.seek(0)
            payload = None if damaged else torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        # Torch's own words are no help here: a KeyError's bare byte value, or advice to load
        # with weights_only=False, which would run whatever code the file holds.
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated, or not a file torch.save wrote "
            f"({type(err).__name__} while reading it; it is only ever read as tensors and "
            "plain data)"
        ) from None
    if damaged is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its part {damaged} does not match the checksum "
            "written with it (the file changed after it was saved)"
        )
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not a mappo checkpoint (keys missing)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['format_version']}, "
            f"this mappo reads version {FORMAT_VERSION}"
        )
    return payload


def load_trained(path: str | Path) -> dict[str, Any]:
    """`load_checkpoint` for acting or training on its weights (eval, export, resume),
    refusing weights that are not numbers: acting on them looks like acting (the greedy
    action of NaN logits is the first), and a run that diverged before mappo stopped one
    (`DivergenceError`) left such files. Reads of its other fields need no such check."""
    payload = load_checkpoint(path)
    for part in ("actor", "critic"):
        weights = payload[part].values() if isinstance(payload[part], dict) else ()
        if not all(torch.isfinite(w).all() for w in weights if isinstance(w, torch.Tensor)):
            raise CheckpointError(
                f"checkpoint {path} holds {part} weights that are not numbers (NaN or inf): "
                "its run diverged; use a checkpoint from before, or train again"
            )
    return payload


def misfit_line(err: BaseException) -> str:
    """Why weights do not fit, in one line: `load_state_dict`'s first line only heads its
    list ("Error(s) in loading state_dict for Actor:"), so the first item goes with it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [repr(err)]
    return " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]


# Fields added since runs were saved, with the value such a run trained with where that is
# not the field's default: critics from before `critic_time_left` had no such input.
BEFORE_FIELDS: dict[str, Any] = {"critic_time_left": False}


def saved_config(payload: dict[str, Any], path: str | Path, **changes: Any) -> MappoConfig:
    """The config a checkpoint was trained with, `changes` on top.

    The fields its user set are those recorded at save time (`config_given`)
    plus `changes`: the rest, the env's facts among them, were not choices, so
    the checks against the env treat them as the run's defaults did. Those an
    `auto` was decided for (`config_auto_decided`) stay so in its config.toml.
    """
    saved = {**BEFORE_FIELDS, **payload["config"]}
    try:
        config = from_dict({**saved, **changes}, source=str(path))
    except ConfigError as err:
        if changes:  # the saved config alone says whose error it is: the checkpoint's or a flag's
            try:
                from_dict(saved, source=str(path))
            except ConfigError:
                pass
            else:
                raise
        raise CheckpointError(f"checkpoint {path} holds an unusable config: {err}") from None
    config.given = frozenset(payload.get("config_given", ())) | frozenset(changes)
    config.auto_decided = frozenset(payload.get("config_auto_decided", ())) - frozenset(changes)
    return config
