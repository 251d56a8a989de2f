"""Small PettingZoo `ParallelEnv`s with uint8 image observations, for the CNN path.

`ColourEnv`: each agent sees a dark `size`x`size` RGB image holding one 3x3
patch, red or green, at a random place; action 0 says "red", 1 "green". The
reward is 1 when the agent names its own patch's colour, else 0, and the
image is redrawn every step, so only looking at the image earns more than
chance: a random policy's episode return is `episode_length / 2`, a seeing
one's `episode_length`.

`GridEnv`: images of any 3-axis `shape` (a gridworld's feature planes, e.g.
Overcooked's `(4, 5, 26)`), random bits, no reward: for reading axis orders.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

PATCH = 3


class ColourEnv(ParallelEnv):
    """`num_agents` agents naming the colour of the patch in their own image.

    `layout` "hwc" gives `(size, size, 3)` images, "chw" `(3, size, size)`.
    With `image_state`, `state()` is one image of the same shape: every agent's
    image summed (saturated). `ragged` gives the last agent a larger image, which
    mappo refuses (images are not padded).
    """

    metadata = {"name": "colour"}

    def __init__(
        self,
        num_agents: int = 2,
        size: int = 12,
        episode_length: int = 8,
        layout: str = "hwc",
        image_state: bool = False,
        ragged: bool = False,
    ) -> None:
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self.agents: list[str] = []
        self.size, self.episode_length, self.layout = size, episode_length, layout
        self.max_cycles = episode_length
        self.image_state, self.ragged = image_state, ragged
        self.rng = np.random.default_rng()
        self.t = 0
        self.colour = np.zeros(num_agents, np.int64)  # [A]: 0 red, 1 green
        self.images = np.zeros((num_agents, size, size, 3), np.uint8)  # [A, H, W, C]

    def _shape(self, agent: str) -> tuple[int, int, int]:
        size = self.size + 2 if self.ragged and agent == self.possible_agents[-1] else self.size
        return (size, size, 3) if self.layout == "hwc" else (3, size, size)

    def observation_space(self, agent: str) -> spaces.Space:
        """A uint8 RGB image."""
        return spaces.Box(0, 255, self._shape(agent), np.uint8)

    def action_space(self, agent: str) -> spaces.Space:
        """0: red, 1: green."""
        return spaces.Discrete(2)

    def _draw(self) -> None:
        """A new patch of a random colour at a random place in each agent's image."""
        A = len(self.possible_agents)
        self.colour = self.rng.integers(2, size=A)
        self.images[:] = 0
        corners = self.rng.integers(self.size - PATCH + 1, size=(A, 2))
        for i, (row, col) in enumerate(corners):
            self.images[i, row : row + PATCH, col : col + PATCH, self.colour[i]] = 255

    def _observe(self, i: int) -> np.ndarray:
        image = self.images[i]
        if self.ragged and i == len(self.possible_agents) - 1:
            image = np.pad(image, ((1, 1), (1, 1), (0, 0)))
        return image if self.layout == "hwc" else image.transpose(2, 0, 1).copy()

    def state(self) -> np.ndarray:
        """Every agent's image summed, saturated at 255 (only with `image_state`)."""
        if not self.image_state:
            raise NotImplementedError
        image = np.minimum(self.images.astype(np.int64).sum(0), 255).astype(np.uint8)
        return image if self.layout == "hwc" else image.transpose(2, 0, 1).copy()

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Start an episode with fresh images."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        self._draw()
        return (
            {a: self._observe(i) for i, a in enumerate(self.agents)},
            {a: {} for a in self.agents},
        )

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Reward 1 for naming the colour shown, then new images."""
        self.t += 1
        rewards = {
            a: float(int(actions[a]) == self.colour[i])
            for i, a in enumerate(self.possible_agents)
            if a in actions
        }
        self._draw()
        done = self.t >= self.episode_length
        obs = {a: self._observe(i) for i, a in enumerate(self.possible_agents)}
        flags = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, {a: False for a in flags}, flags, infos


class GridEnv(ParallelEnv):
    """Two agents seeing random 0/1 images of `shape`, for `episode_length` steps."""

    metadata = {"name": "grid"}

    def __init__(self, shape: tuple[int, ...] = (4, 5, 26), episode_length: int = 4) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.shape, self.episode_length = tuple(shape), episode_length
        self.max_cycles = episode_length
        self.rng = np.random.default_rng()
        self.t = 0

    def observation_space(self, agent: str) -> spaces.Space:
        """A uint8 image of `shape`."""
        return spaces.Box(0, 1, self.shape, np.uint8)

    def action_space(self, agent: str) -> spaces.Space:
        """Two actions, both ignored."""
        return spaces.Discrete(2)

    def _observe(self) -> dict[str, np.ndarray]:
        return {
            a: self.rng.integers(2, size=self.shape, dtype=np.uint8) for a in self.possible_agents
        }

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Start an episode."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """New images, reward 0; truncated after `episode_length` steps."""
        self.t += 1
        done = self.t >= self.episode_length
        flags = {a: done for a in self.agents}
        infos = {a: {} for a in self.agents}
        if done:
            self.agents = []
        return (self._observe(), {a: 0.0 for a in flags}, {a: False for a in flags}, flags, infos)
