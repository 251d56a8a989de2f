"""How the built-in `spread` env draws itself: agents as circles of their true radius,
landmarks, and each agent's path so far, with plain numpy on a fixed-size canvas (no
display and no plotting library on the way).

Frames are drawn as palette indices (one byte per pixel) into `spread_palette`, which
turns them into RGB; the few colours let the GIF writer store them exactly. This module
knows nothing of the env: the agents' radius comes with each `SpreadEpisode`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mappo.errors import RenderError

LANDMARK_SIZE = 0.05  # mpe2's default entity size, which simple_spread's landmarks keep
FRAME_SIZE = 400  # pixels per side of a spread frame
BACKGROUND_RGB = (255, 255, 255)
LANDMARK_RGB = (64, 64, 64)
# matplotlib's tab10: distinct, and readable on white.
AGENT_COLORS = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
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
    colors: list[tuple[int, ...]] = [BACKGROUND_RGB, LANDMARK_RGB]
    for a in range(num_agents):
        body = agent_color(a)
        colors += [body, tuple(c // 2 for c in body), tuple((c + 255) // 2 for c in body)]
    if len(colors) > 256:
        raise RenderError(f"cannot draw {num_agents} agents: a GIF palette holds 256 colours")
    return np.asarray(colors, np.uint8)


def spread_positions(obs: torch.Tensor, num_agents: int) -> tuple[np.ndarray, np.ndarray]:
    """Agent `[A, 2]` and landmark `[A, 2]` positions of one spread env from its obs `[A, O]`.

    Spread observations start with `[self_vel, self_pos, landmark_rel_pos...]`, one
    landmark per agent (see `mappo.envs.mpe.spread`), so positions come from the env's
    public output, the final observation of a finished episode included.
    """
    values = obs.detach().cpu().double().numpy()
    agents = values[:, 2:4]
    landmarks = agents[0] + values[0, 4 : 4 + 2 * num_agents].reshape(num_agents, 2)
    return agents.astype(np.float32), landmarks.astype(np.float32)


@dataclass
class SpreadEpisode:
    """What one spread episode did: positions at every step, and the agents' radius."""

    agents: np.ndarray  # [T + 1, A, 2]: at reset, then after each step
    landmarks: np.ndarray  # [L, 2], fixed for the episode
    agent_size: float  # the radius agents are drawn with, their true one


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

    def disc(
        self, img: np.ndarray, center: np.ndarray, radius: float, fill: int, rim: int | None = None
    ) -> None:
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

    def draw_bodies(
        self, img: np.ndarray, agents: np.ndarray, landmarks: np.ndarray, agent_size: float
    ) -> None:
        """Agents `[A, 2]` of radius `agent_size`, then landmarks `[L, 2]` on top (a covered
        landmark stays visible)."""
        for a, pos in enumerate(agents):
            body, rim, _ = agent_indices(a)
            self.disc(img, pos, agent_size, body, rim)
        for landmark in landmarks:
            self.disc(img, landmark, LANDMARK_SIZE, LANDMARK)


def episode_extent(episode: SpreadEpisode) -> float:
    """Half-width of a view holding the whole episode: at least the spawn square, plus margin."""
    reach = max(float(np.abs(episode.agents).max()), float(np.abs(episode.landmarks).max()))
    return max(reach, 1.0) + episode.agent_size + 0.05


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
        painter.draw_bodies(frame, agents, episode.landmarks, episode.agent_size)
        frames.append(frame)
    return frames
