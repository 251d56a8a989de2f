"""Render episodes of a trained policy to a GIF or MP4.

The env draws itself: `make_env(..., render=True)` builds it to record the frames of
its first copy, and `MultiAgentEnv.rendered_episodes` hands them over once the policy
has acted (spread draws from the positions it records, PettingZoo envs through
`render_mode="rgb_array"`, VMAS through pyglet). imageio writes the file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from mappo.checkpoint import checkpoint_file, write_atomically
from mappo.config import MappoConfig
from mappo.envs.base import MultiAgentEnv
from mappo.envs.registry import make_env
from mappo.errors import EnvError, RenderError
from mappo.evaluation import Evaluation, play
from mappo.policy import Policy, load_policy

HOLD_FRAMES = 5  # extra copies of each episode's last frame, so the ending can be seen
VIDEO_SUFFIXES = (".gif", ".mp4")
PALETTE_SAMPLES = 16  # frames a shared GIF palette is cut from
MAX_SIDE = 400  # pixels: larger frames are shrunk to this (spread draws 400x400)


# --------------------------------------------------------------------- acting


@torch.no_grad()
def run_episodes(
    policy: Policy, env: MultiAgentEnv, episodes: int, deterministic: bool, seed: int
) -> list[float]:
    """Act until env copy 0 finishes `episodes` episodes; their returns."""
    returns: list[float] = []
    for _, result, per_episode in play(policy, env, deterministic, seed):
        if result is not None and bool(result.env_done[0]):
            assert per_episode is not None  # play() yields it with every step result
            returns.append(float(per_episode[0]))
            if len(returns) == episodes:
                return returns
    raise AssertionError("unreachable: play() never stops")


def render_errors_first(call: Callable[[], Any]) -> Any:
    """`call()`, where a RenderError that the env wrapper reported as an env failure (the
    frame is taken inside the env's reset and step) is raised as itself."""
    try:
        return call()
    except EnvError as err:
        if isinstance(err.__cause__, RenderError):
            raise err.__cause__ from None
        raise


def load_for_render(
    run_dir: str | Path, device: str = "cpu", seed: int = 1000
) -> tuple[Policy, MultiAgentEnv]:
    """(policy, one env copy that records its frames) for the run in `run_dir`."""

    def build(config: MappoConfig) -> MultiAgentEnv:
        # Only the actors act, so the env's own global state is never asked for.
        return render_errors_first(
            partial(
                make_env,
                config.env,
                1,
                config.device,
                seed,
                config.env_kwargs,
                use_state=False,
                render=True,
            )
        )

    return load_policy(checkpoint_file(run_dir), build, device)


# --------------------------------------------------------------------- writing


def check_video_path(path: str | Path) -> Path:
    """`path` if its suffix names a format that can be written here, else a RenderError."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise RenderError(f"--render {path}: the file must end in {' or '.join(VIDEO_SUFFIXES)}")
    if suffix == ".mp4" and not any(
        importlib.util.find_spec(name) for name in ("imageio_ffmpeg", "av")
    ):
        raise RenderError(
            f"--render {path}: no MP4 encoder installed (pip install imageio-ffmpeg); "
            "a .gif needs none"
        )
    return path


def _pack(rgb: np.ndarray) -> np.ndarray:
    """RGB `[..., 3]` uint8 as one uint32 per pixel, ordered as the (r, g, b) tuples are."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def exact_palette(frames: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray] | None:
    """RGB frames as palette indices `[H, W]` and their palette `[P, 3]`, if P <= 256.

    Env renderers without anti-aliasing (MPE's draws a handful of colours) fit;
    for them this is exact and ~30x faster than letting the GIF writer quantize
    every frame. None when the frames hold more than 256 colours.
    """
    from PIL import Image

    colors: set[tuple[int, int, int]] = set()
    for frame in frames:
        found = Image.fromarray(frame).getcolors(256)  # None beyond 256 colours
        if found is None:
            return None
        colors.update(cast(tuple[int, int, int], color) for _, color in found)  # RGB images
        if len(colors) > 256:
            return None
    palette = np.array(sorted(colors), np.uint8)  # sorted, so its codes are too
    codes = _pack(palette)
    return [np.searchsorted(codes, _pack(f)).astype(np.uint8) for f in frames], palette


def shared_palette(
    frames: list[np.ndarray], samples: int = PALETTE_SAMPLES
) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames mapped onto one palette of 256 colours: palette indices `[H, W]` and the
    palette `[256, 3]`.

    The palette is median-cut from up to `samples` frames spread over the clip, and
    every frame is mapped onto it (under 1 ms a 400x400 frame). Letting the GIF writer
    quantize each frame on its own (anti-aliased VMAS frames) took 36 ms a frame.
    """
    from PIL import Image

    picked = frames[:: max(1, len(frames) // samples)][:samples]
    mosaic = Image.fromarray(np.concatenate(picked, axis=0))
    cut = mosaic.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    palette = np.array(cut.getpalette() or [], np.uint8)[: 3 * 256].reshape(-1, 3)
    indices = [
        np.asarray(Image.fromarray(frame).quantize(palette=cut, dither=Image.Dither.NONE))
        for frame in frames
    ]
    return indices, palette


def fit(frame: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    """`frame` `[H, W, 3]` shrunk (area-averaged) so that its longer side is at most
    `side` pixels: VMAS draws 700x700 frames, and a GIF's size grows with the pixels."""
    from PIL import Image

    height, width = frame.shape[:2]
    if max(height, width) <= side:
        return frame
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


def write_video(frames: list[np.ndarray], path: str | Path, fps: float = 10.0) -> None:
    """Write RGB frames `[H, W, 3]` uint8 as a looping GIF or an MP4, by `path`'s suffix.

    A GIF of at most 256 colours (spread's frames) stores them exactly; more are mapped
    onto one shared palette (`shared_palette`).
    """
    import imageio.v3 as iio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        video = iio.imwrite("<bytes>", np.stack(frames), extension=".mp4", fps=fps)
        write_atomically(path, lambda handle: handle.write(video))
        return
    from PIL import Image

    indices, palette = exact_palette(frames) or shared_palette(frames)
    images = [Image.fromarray(index, mode="P") for index in indices]
    for image in images:  # each frame's own palette, so that the writer maps nothing
        image.putpalette(palette.tobytes())
    # Atomically (the MP4 too): a command stopped mid-write leaves the file there before.
    write_atomically(
        path,
        partial(images[0].save, format="GIF", save_all=True, append_images=images[1:],
                duration=1000.0 / fps, loop=0, optimize=False),
    )  # fmt: skip


def render_run(
    run_dir: str | Path,
    out: str | Path,
    episodes: int = 3,
    deterministic: bool = False,
    seed: int = 1000,
    fps: float = 10.0,
    device: str = "cpu",
) -> Evaluation:
    """Render `episodes` episodes of the run's policy (env copy 0) to `out`; their returns."""
    check_video_path(out)  # before loading anything
    if not fps > 0:
        raise RenderError(f"--fps {fps:g}: must be > 0")
    policy, env = load_for_render(run_dir, device, seed)
    try:
        returns = render_errors_first(
            partial(run_episodes, policy, env, episodes, deterministic, seed)
        )
        # Built and then reset by play(), each reset starting a list: the episodes played
        # are the last ones finished, before the one the final in-place reset began.
        clips = env.rendered_episodes()[-episodes - 1 : -1]
    finally:
        env.close()
    if len(clips) < episodes or not all(clips):
        raise RenderError(
            f"env '{env.spec.name}' recorded {len(clips)} episode(s) of frames for the "
            f"{episodes} it played: rendered_episodes() must start a list at every reset"
        )
    frames = [fit(frame) for clip in clips for frame in clip + [clip[-1]] * HOLD_FRAMES]
    write_video(frames, out, fps)
    return Evaluation.of(policy, returns)
