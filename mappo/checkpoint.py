"""Checkpoints: written atomically, read back only through `torch.load(weights_only=True)`."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import torch

from mappo.config import MappoConfig, from_dict
from mappo.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from mappo.distributed import Distributed
    from mappo.envs.base import MultiAgentEnv
    from mappo.trainer import MappoTrainer

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "config", "actor", "critic", "value_norm", "optimizer",
                 "ranks")


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """`write(handle)` into a temporary file beside `path`, then rename it into place.

    A crash mid-write leaves the previous file untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` atomically: a crash mid-write leaves the previous checkpoint."""
    write_atomically(path, partial(torch.save, {**payload, "format_version": FORMAT_VERSION}))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint, refusing anything truncated, foreign or of another format version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {reason}") from None
    if not isinstance(payload, dict) or any(key not in payload for key in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not a mappo checkpoint (keys missing)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload['format_version']}, "
            f"this mappo reads version {FORMAT_VERSION}"
        )
    return payload


def saved_config(payload: dict[str, Any], path: str | Path, **changes: Any) -> MappoConfig:
    """The config a checkpoint was trained with, `changes` on top.

    The fields its user set are those recorded at save time (`config_given`)
    plus `changes`: the rest, the env's facts among them, were not choices, so
    the checks against the env treat them as the run's defaults did.
    """
    # Checkpoints from before `critic_time_left` existed hold critics without that input.
    before_fields = {"critic_time_left": False}
    try:
        config = from_dict({**before_fields, **payload["config"], **changes}, source=str(path))
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} holds an unusable config: {err}") from None
    config.given = frozenset(payload.get("config_given", ())) | frozenset(changes)
    return config


def load_trainer(
    path: str | Path,
    resume_rollout: bool = True,
    distributed: Distributed | None = None,
    env: MultiAgentEnv | None = None,
    pickled_env: bytes | str | None = None,
    **config_changes: Any,
) -> tuple[MappoTrainer, dict[str, Any]]:
    """A trainer rebuilt from a checkpoint file: its config (with `config_changes`) and state.

    `resume_rollout` also restores the env and the episodes in flight (for
    `--resume`), from the checkpoint's env snapshot or from `pickled_env`
    (`MappoTrainer.load_state_dict`); without it, fresh episodes start.
    Returns the trainer and the raw payload. A checkpoint whose shapes do not
    fit the env its config builds is refused with a `CheckpointError`.
    """
    from mappo.trainer import MappoTrainer

    path = Path(path)
    payload = load_checkpoint(path)
    config = saved_config(payload, path, **config_changes)
    try:
        trainer = MappoTrainer(config, env=env, distributed=distributed)
    except ConfigError as err:  # the saved env facts contradict the env the config builds
        raise CheckpointError(f"checkpoint {path} does not fit env '{config.env}': {err}") from None
    try:
        trainer.load_state_dict(payload, resume_rollout, pickled_env)
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        trainer.close()
        raise CheckpointError(
            f"checkpoint {path} does not fit env '{config.env}': {first}"
        ) from None
    return trainer, payload
