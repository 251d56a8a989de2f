"""Render episodes of a trained policy to a GIF or MP4.

The built-in `spread` env is drawn here from positions recorded while the
policy acts (agents as circles of their true radius, landmarks, each agent's
path so far), with plain numpy on a fixed-size canvas: no display and no
plotting library on the way. PettingZoo envs draw themselves: one copy is built
with `render_mode="rgb_array"` and its frame is taken after every reset and step.
VMAS envs draw themselves too (`VmasEnv(record_frames=True)`, through pyglet).
Either way the first env copy is the one shown, and imageio writes the file.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mappo.config import ConfigError, MappoConfig
from mappo.envs.base import EnvError, MultiAgentEnv, MultiAgentStepResult, error_line
from mappo.envs.mpe.spread import AGENT_SIZE, COMM_DIM
from mappo.envs.registry import JAXMARL_PREFIX, VMAS_PREFIX, make_env
from mappo.evaluation import Evaluation, play
from mappo.policy import Policy, load_policy

LANDMARK_SIZE = 0.05  # mpe2's default entity size, which simple_spread's landmarks keep
FRAME_SIZE = 400  # pixels per side of a spread frame
HOLD_FRAMES = 5  # extra copies of each episode's last frame, so the ending can be seen
BACKGROUND_RGB = (255, 255, 255)
LANDMARK_RGB = (64, 64, 64)
# matplotlib's tab10: distinct, and readable on white.
AGENT_COLORS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
VIDEO_SUFFIXES = (".gif", ".mp4")


class RenderError(ConfigError):
    """Rendering cannot be done as asked (file type, encoder, env); the message says why.

    A ConfigError, so the command line reports it like any other bad option.
    """


# --------------------------------------------------------------------- spread drawing
#
# Frames are drawn as palette indices (one byte per pixel) rather than RGB: a
# GIF is palette images anyway, and handing it ready indices skips the colour
# quantization that otherwise takes ~10x longer than drawing and writing together.

BACKGROUND, LANDMARK = 0, 1  # palette indices; agent a owns the three after them


def agent_color(agent: int) -> tuple[int, int, int]:
    """RGB colour of agent slot `agent` in spread frames."""
    return AGENT_COLORS[agent % len(AGENT_COLORS)]


def agent_indices(agent: int) -> tuple[int, int, int]:
    """Palette indices of agent `agent`'s body, rim and path."""
    first = 2 + 3 * agent
    return first, first + 1, first + 2


def spread_palette(num_agents: int) -> np.ndarray:
    """RGB palette `[2 + 3A, 3]` uint8 of spread frames: background, landmark, then per agent."""
    colors = [BACKGROUND_RGB, LANDMARK_RGB]
    for a in range(num_agents):
        body = agent_color(a)
        colors += [body, tuple(c // 2 for c in body), tuple((c + 255) // 2 for c in body)]
    if len(colors) > 256:
        raise RenderError(f"cannot draw {num_agents} agents: a GIF palette holds 256 colours")
    return np.asarray(colors, np.uint8)


def spread_positions(obs: torch.Tensor, num_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """Agent `[A, 2]` and landmark `[L, 2]` positions of one spread env from its obs `[A, O]`.

    Spread observations start with `[self_vel, self_pos, landmark_rel_pos...]`
    (see `mappo.envs.mpe.spread`), so positions come from the env's public output,
    the final observation of a finished episode included.
    """
    obs = obs.detach().cpu().double().numpy()
    num_landmarks = (obs.shape[-1] - 4 - (2 + COMM_DIM) * (num_agents - 1)) // 2
    agents = obs[:, 2:4]
    landmarks = agents[0] + obs[0, 4 : 4 + 2 * num_landmarks].reshape(num_landmarks, 2)
    return agents.astype(np.float32), landmarks.astype(np.float32)


@dataclass
class SpreadEpisode:
    """What one spread episode did: positions at every step and its return."""

    agents: np.ndarray  # [T + 1, A, 2]: at reset, then after each step
    landmarks: np.ndarray  # [L, 2], fixed for the episode
    episode_return: float  # mean per-agent return


class SpreadPainter:
    """Draws spread states as palette-index frames `[size, size]` of `[-extent, extent]²`."""

    def __init__(self, extent: float, size: int = FRAME_SIZE) -> None:
        self.extent, self.size = extent, size
        self.scale = size / (2.0 * extent)  # pixels per world unit

    def to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """World `[..., 2]` (x right, y up) to pixel `[..., 2]` (column, row), as floats."""
        col = (xy[..., 0] + self.extent) * self.scale
        row = (self.extent - xy[..., 1]) * self.scale  # image rows grow downwards
        return np.stack([col, row], -1)

    def blank(self) -> np.ndarray:
        """An empty frame `[size, size]` uint8 of background."""
        return np.full((self.size, self.size), BACKGROUND, np.uint8)

    def disc(self, img: np.ndarray, center: np.ndarray, radius: float, fill: int,
             rim: int | None = None) -> None:
        """Fill a world-space disc in place; a 2-pixel `rim` keeps overlapping discs apart."""
        cx, cy = self.to_pixel(center)
        r = max(radius * self.scale, 1.0)
        # Only the disc's bounding box is tested, not the whole frame.
        c0, c1 = max(int(cx - r), 0), min(int(cx + r) + 2, self.size)
        r0, r1 = max(int(cy - r), 0), min(int(cy + r) + 2, self.size)
        if c0 >= c1 or r0 >= r1:
            return
        rows, cols = np.ogrid[r0:r1, c0:c1]
        dist2 = (cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2  # from pixel centres
        inside = dist2 <= r * r
        patch = img[r0:r1, c0:c1]
        patch[inside] = fill
        if rim is not None:
            patch[inside & (dist2 > max(r - 2.0, 0.0) ** 2)] = rim

    def segment(self, img: np.ndarray, start: np.ndarray, end: np.ndarray, color: int) -> None:
        """Draw a 2-pixel-wide world-space line segment in place."""
        p0, p1 = self.to_pixel(start), self.to_pixel(end)
        n = int(np.ceil(np.abs(p1 - p0).max())) + 1
        points = np.floor(p0 + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0)).astype(np.int64)
        for dc, dr in ((0, 0), (1, 0), (0, 1), (1, 1)):
            c, r = points[:, 0] + dc, points[:, 1] + dr
            keep = (c >= 0) & (c < self.size) & (r >= 0) & (r < self.size)
            img[r[keep], c[keep]] = color

    def draw_bodies(self, img: np.ndarray, agents: np.ndarray, landmarks: np.ndarray) -> None:
        """Agents `[A, 2]`, then landmarks `[L, 2]` on top (a covered landmark stays visible)."""
        for a, pos in enumerate(agents):
            body, rim, _ = agent_indices(a)
            self.disc(img, pos, AGENT_SIZE, body, rim)
        for landmark in landmarks:
            self.disc(img, landmark, LANDMARK_SIZE, LANDMARK)


def episode_extent(episode: SpreadEpisode) -> float:
    """Half-width of a view holding the whole episode: at least the spawn square, plus margin."""
    reach = max(float(np.abs(episode.agents).max()), float(np.abs(episode.landmarks).max()))
    return max(reach, 1.0) + AGENT_SIZE + 0.05


def spread_frames(episode: SpreadEpisode, size: int = FRAME_SIZE) -> list[np.ndarray]:
    """One palette-index frame `[size, size]` per recorded state, with the paths so far.

    `spread_palette(A)[frame]` turns a frame into RGB.
    """
    painter = SpreadPainter(episode_extent(episode), size)
    paths = painter.blank()  # paths accumulate here, one segment per step
    frames = []
    for t, agents in enumerate(episode.agents):
        if t > 0:
            for a in range(len(agents)):
                painter.segment(paths, episode.agents[t - 1, a], agents[a], agent_indices(a)[2])
        frame = paths.copy()
        painter.draw_bodies(frame, agents, episode.landmarks)
        frames.append(frame)
    return frames


# --------------------------------------------------------------------- acting


@torch.no_grad()
def run_episodes(
    policy: Policy, env: MultiAgentEnv, episodes: int, deterministic: bool, seed: int,
    on_step: Callable[[torch.Tensor, MultiAgentStepResult | None], None] | None = None,
) -> list[float]:
    """Act until env copy 0 finishes `episodes` episodes; their returns.

    `on_step(obs, None)` sees the first observation, then `on_step(obs, result)`
    every step (`obs` being the one the policy acted on).
    """
    returns: list[float] = []
    for obs, result, per_episode in play(policy, env, deterministic, seed):
        if on_step is not None:
            on_step(obs, result)
        if result is not None and bool(result.env_done[0]):
            returns.append(float(per_episode[0]))
            if len(returns) == episodes:
                return returns
    raise AssertionError("unreachable: play() never stops")


def record_spread(policy: Policy, env: MultiAgentEnv, episodes: int,
                  deterministic: bool = False, seed: int = 1000) -> list[SpreadEpisode]:
    """Positions of env copy 0 over `episodes` episodes of the policy on spread."""
    num_agents = env.num_agents
    positions: list[np.ndarray] = []
    finished: list[tuple[np.ndarray, np.ndarray]] = []
    landmarks: list[np.ndarray] = []

    def on_step(obs: torch.Tensor, result: MultiAgentStepResult | None) -> None:
        if result is None:
            agents, marks = spread_positions(obs[0], num_agents)
            positions.append(agents)
            landmarks.append(marks)
            return
        # A finished episode was reset in place: its last state is in final_obs.
        agents, _ = spread_positions(result.final_obs[0], num_agents)
        positions.append(agents)
        if bool(result.env_done[0]):
            finished.append((np.stack(positions), landmarks[-1]))
            positions.clear()
            agents, marks = spread_positions(result.obs[0], num_agents)
            positions.append(agents)
            landmarks.append(marks)

    returns = run_episodes(policy, env, episodes, deterministic, seed, on_step)
    return [SpreadEpisode(agents, marks, ret)
            for (agents, marks), ret in zip(finished, returns, strict=True)]


class RecordsFrames(Protocol):
    """An env (or env copy) that keeps a list of RGB frames per episode it played."""

    episodes: list[list[np.ndarray]]


class FrameRecorder:
    """A PettingZoo `ParallelEnv` that keeps `render()`'s frame after every reset and step.

    Frames are taken inside `step`, before the batch that owns the env resets
    a finished episode, so each episode's last state is kept. Everything else
    is the wrapped env's own. (A plain delegate rather than PettingZoo's
    wrapper class: pettingzoo need not be installed to render spread.)
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


def _pettingzoo_recorder(config_env: str, env_kwargs: dict,
                         seed: int) -> tuple[MultiAgentEnv, FrameRecorder]:
    """(one-copy PettingZooWrapper whose copy records frames, that copy's FrameRecorder)."""
    from mappo.envs.registry import import_env_factory, pettingzoo_wrapper

    PettingZooWrapper = pettingzoo_wrapper(config_env)  # noqa: N806 - a class
    from mappo.envs.pettingzoo.aec import parallel_view  # importable once the wrapper is
    try:
        factory = import_env_factory(config_env)
    except ValueError as err:  # module or callable missing here
        raise RenderError(str(err)) from None

    _check_renders_to_array(config_env, factory, env_kwargs)

    def make() -> FrameRecorder:
        try:
            env = factory(**env_kwargs, render_mode="rgb_array")
        except TypeError as err:
            raise RenderError(
                f"env '{config_env}' does not take render_mode='rgb_array': {err}"
            ) from None
        # An AEC env's frames after every turn.
        return FrameRecorder(parallel_view(env), config_env)

    env = render_errors_first(partial(
        PettingZooWrapper, make, 1, num_workers=0, seed=seed, name=config_env, use_state=False))
    return env, env.local_envs[0]


def render_errors_first(call: Callable[[], Any]) -> Any:
    """`call()`, where a RenderError that the env wrapper reported as an env failure (the
    frame is taken inside the env's reset and step) is raised as itself."""
    try:
        return call()
    except EnvError as err:
        if isinstance(err.__cause__, RenderError):
            raise err.__cause__ from None
        raise


def _check_renders_to_array(config_env: str, factory: Callable[..., Any],
                            env_kwargs: dict) -> None:
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
            f"env '{config_env}' cannot render to an array: its render modes are {listed} "
            "('human' draws in a window), and --render records the frames of "
            "render_mode='rgb_array'; an env listing 'rgb_array' in metadata['render_modes'] "
            "renders (mappo eval without --render still scores this run)"
        )


def load_for_render(run_dir: str | Path, device: str = "cpu", seed: int = 1000
                    ) -> tuple[Policy, MultiAgentEnv, RecordsFrames | None]:
    """(policy, one env copy, its frame recorder or None) for the run in `run_dir`.

    Spread needs nothing more than its positions; a PettingZoo env is rebuilt
    with `render_mode="rgb_array"` and wrapped to record its frames; a VMAS env
    records its own.
    """
    recorders: list[RecordsFrames] = []

    def build(config: MappoConfig) -> MultiAgentEnv:
        if config.env.startswith(VMAS_PREFIX):
            env = make_env(config.env, 1, config.device, seed,
                           {**config.env_kwargs, "record_frames": True})
            recorders.append(env)
            return env
        if config.env.startswith(JAXMARL_PREFIX):
            raise RenderError(f"env '{config.env}': JaxMARL envs are not rendered; "
                              "`mappo eval` without --render measures the policy")
        if ":" in config.env:
            env, recorder = _pettingzoo_recorder(config.env, config.env_kwargs, seed)
            recorders.append(recorder)
            return env
        if config.env != "spread":
            raise RenderError(
                f"env '{config.env}': rendering supports the built-in spread env, VMAS envs and "
                "PettingZoo envs (module:callable)"
            )
        return make_env(config.env, 1, config.device, seed, config.env_kwargs)

    policy, env = load_policy(Path(run_dir) / "checkpoint.pt", build, device)
    return policy, env, (recorders[0] if recorders else None)


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
        colors.update(color for _, color in found)
        if len(colors) > 256:
            return None
    palette = np.array(sorted(colors), np.uint8)  # sorted, so its codes are too
    codes = _pack(palette)
    return [np.searchsorted(codes, _pack(f)).astype(np.uint8) for f in frames], palette


def write_video(frames: list[np.ndarray], path: str | Path, fps: float = 10.0,
                palette: np.ndarray | None = None) -> None:
    """Write frames as a looping GIF or an MP4, by `path`'s suffix.

    Frames are RGB `[H, W, 3]` uint8, or palette indices `[H, W]` into
    `palette` `[P, 3]` uint8, which a GIF stores as they are.
    """
    import imageio.v3 as iio

    path = check_video_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4":
        stack = np.stack(frames)
        iio.imwrite(path, stack if palette is None else palette[stack], extension=".mp4",
                    fps=fps)
        return
    if palette is None and (indexed := exact_palette(frames)) is not None:
        frames, palette = indexed
    stack = np.stack(frames)
    options: dict[str, Any] = {"duration": 1000.0 / fps, "loop": 0}
    if palette is not None:
        options.update(mode="P", palette=palette.tobytes(), is_batch=True)
    iio.imwrite(path, stack, extension=".gif", **options)


def render_run(run_dir: str | Path, out: str | Path, episodes: int = 3,
               deterministic: bool = False, seed: int = 1000, fps: float = 10.0,
               device: str = "cpu") -> Evaluation:
    """Render `episodes` episodes of the run's policy (env copy 0) to `out`; their returns."""
    check_video_path(out)  # before loading anything
    if not fps > 0:
        raise RenderError(f"--fps {fps}: must be > 0")
    policy, env, recorder = load_for_render(run_dir, device, seed)
    palette = None
    try:
        if recorder is None:
            recorded = record_spread(policy, env, episodes, deterministic, seed)
            clips = [spread_frames(episode) for episode in recorded]
            returns = [episode.episode_return for episode in recorded]
            palette = spread_palette(env.num_agents)
        else:
            # The wrapper reset the env once on construction; only our episodes count.
            returns = render_errors_first(partial(
                run_episodes, policy, env, episodes, deterministic, seed,
                partial(_drop_earlier_episodes, recorder)))
            clips = recorder.episodes[:episodes]
    finally:
        env.close()
    frames = [frame for clip in clips for frame in clip + [clip[-1]] * HOLD_FRAMES]
    write_video(frames, out, fps, palette)
    return Evaluation.of(policy, returns)


def _drop_earlier_episodes(recorder: RecordsFrames, obs: torch.Tensor,
                           result: MultiAgentStepResult | None) -> None:
    """On the first observation, forget the frames of resets before it."""
    if result is None:
        del recorder.episodes[:-1]
