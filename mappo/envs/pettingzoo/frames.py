"""Frames of a Python env run in copies, for `mappo eval --render`.

A PettingZoo (or Gymnasium) env draws itself: each copy is built with
`render_mode="rgb_array"` and wrapped in a `FrameRecorder`, which keeps `render()`'s
frame after every reset and step; `PettingZooWrapper.rendered_episodes` hands copy 0's
frames on. `check_renders_to_array` asks the env first whether it can draw so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mappo.envs.base import error_line
from mappo.envs.pettingzoo.aec import parallel_view
from mappo.errors import RenderError


class FrameRecorder:
    """A PettingZoo `ParallelEnv` that keeps `render()`'s frame after every reset and step.

    Frames are taken inside `step`, before the batch that owns the env resets
    a finished episode, so each episode's last state is kept. Everything else
    is the wrapped env's own, read through this plain delegate.
    """

    def __init__(self, env: Any, name: str = "") -> None:
        self.env = env
        self.name = name  # the env as the run names it, for messages
        self.episodes: list[list[np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet: no delegate to ask
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Reset the env and start a new episode's frame list with its first frame."""
        result = self.env.reset(seed=seed, options=options)
        self.episodes.append([self._frame()])
        return result

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        """Step the env and keep its frame."""
        result = self.env.step(actions)
        self.episodes[-1].append(self._frame())
        return result

    def _frame(self) -> np.ndarray:
        try:
            frame = self.env.render()
        except Exception as err:  # the env's own drawing code, whatever it raises
            raise RenderError(
                f"env '{self.name}' could not draw a frame: render() raised "
                f"{error_line(err)}; an env that draws with pyglet or pygame may need a "
                "display even for rgb_array (run the command under xvfb-run)"
            ) from err
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            raise RenderError(
                f"env render() returned {type(frame).__name__}, not an RGB array; "
                "does it support render_mode='rgb_array'?"
            )
        return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)


def recording_copy(name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any]) -> Any:
    """One copy of the env `name`, `factory(**env_kwargs, render_mode="rgb_array")`, whose
    frames a `FrameRecorder` keeps (an AEC env's after every turn). A `render_mode` among
    the run's own `env_kwargs` (an env that draws its observations) gives way."""
    try:
        env = factory(**{**env_kwargs, "render_mode": "rgb_array"})
    except TypeError as err:
        raise RenderError(f"env '{name}' does not take render_mode='rgb_array': {err}") from None
    return FrameRecorder(parallel_view(env), name)


def check_renders_to_array(name: str, factory: Callable[..., Any], env_kwargs: dict) -> None:
    """A RenderError unless the env may render to an array: one copy built as in training
    tells its `metadata["render_modes"]`; an env that lists none is tried as it is.

    Asked before any copy is built with `render_mode="rgb_array"`: an env that lacks the
    mode may fail anywhere (gymnasium's checker raises at the first reset), which would
    read as a failure of the env rather than of the rendering.
    """
    probe = factory(**env_kwargs)
    try:
        modes = (getattr(probe, "metadata", None) or {}).get("render_modes")
    finally:
        if hasattr(probe, "close"):
            probe.close()
    if modes is not None and "rgb_array" not in modes:
        listed = ", ".join(repr(mode) for mode in modes) or "none"
        raise RenderError(
            f"env '{name}' cannot render to an array: its render modes are {listed} "
            "('human' draws in a window), and --render records the frames of "
            "render_mode='rgb_array'; an env listing 'rgb_array' in metadata['render_modes'] "
            "renders (mappo eval without --render still scores this run)"
        )
