"""Small Gymnasium envs with Tuple spaces over agents, registered on import.

`TupleCounter-v0` is `TupleCounterEnv`: agent i observes `3 + i` floats,
`[offset, t, i, 100, 101, ...]`, where `offset` is drawn from the env's seeded
`np_random` at each reset and `t` counts steps in the episode, and acts in
Discrete(3 + i). Its action j is legal at step t when `t + j` is even; once the
agent has finished, only its last action (its no-op) is. The masks come in
`info["action_mask"]`, and the env asserts every action it receives (the whole
Tuple, finished agents included) was legal. It keeps them in `received`.
Rewards are `10 * i + t` per agent, or the team float `t`.

The other ids: `TupleCounterMethodMask-v0` hands its masks out by
`get_avail_actions()` instead, `TupleCounterState-v0` has a `get_state()`,
`TupleCounterTimeLimit-v0` is cut at 3 steps by gymnasium's TimeLimit,
`WindowOnly-v0` renders only in a window ('human'), `NoDisplay-v0`'s render()
fails as pyglet's does without a display, `OwnLimit-v0` keeps its 6-step limit in
`_max_episode_steps` alone (as lbforaging).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium
import numpy as np
from gymnasium import spaces


class TupleCounterEnv(gymnasium.Env):
    """`num_agents` agents in one env; every number predictable (see the module docstring).

    `flags="team"`: one `terminated` bool at `t == episode_length`, `truncated`
    False (how lbforaging and rware end). `flags="agents"`: lists, agent_1
    terminated at step 2, the others truncated at `episode_length`.
    `episode_length=None`: `2 + seed % 3`, fixed by the first seeded reset.
    """

    def __init__(
        self,
        num_agents: int = 3,
        episode_length: int | None = 4,
        reward: Literal["agents", "team"] = "agents",
        flags: Literal["team", "agents"] = "team",
        masks: bool = True,
    ) -> None:
        self.num_agents = num_agents
        self.observation_space = spaces.Tuple(
            spaces.Box(-np.inf, np.inf, (3 + i,), np.float32) for i in range(num_agents)
        )
        self.action_space = spaces.Tuple(spaces.Discrete(3 + i) for i in range(num_agents))
        self.episode_length = episode_length
        self.reward, self.flags, self.masks = reward, flags, masks
        self.enforce_masks = masks
        self.offset = 0
        self.t = 0
        self.finished = np.zeros(num_agents, np.bool_)
        self.received: list[tuple[int, ...]] = []

    def mask(self, i: int) -> np.ndarray:
        """Agent i's legal actions now, as int8."""
        n = 3 + i
        if self.finished[i]:
            return (np.arange(n) == n - 1).astype(np.int8)
        return ((self.t + np.arange(n)) % 2 == 0).astype(np.int8)

    def info(self) -> dict[str, Any]:
        """The step's info: every agent's mask, if this env hands them out there."""
        return {"action_mask": [self.mask(i) for i in range(self.num_agents)]} if self.masks else {}

    def observe(self) -> tuple[np.ndarray, ...]:
        """`[offset, t, i, 100, 101, ...]` for each agent i."""
        return tuple(
            np.array([self.offset, self.t, i, *(100 + np.arange(i))], np.float32)
            for i in range(self.num_agents)
        )

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
        """Start an episode; a seed restarts `np_random` (and may fix the episode length)."""
        super().reset(seed=seed)
        if seed is not None and self.episode_length is None:
            self.length = 2 + seed % 3
        elif self.episode_length is not None:
            self.length = self.episode_length
        self.offset = int(self.np_random.integers(1000))
        self.t = 0
        self.finished[:] = False
        return self.observe(), self.info()

    def step(self, actions: tuple) -> tuple[tuple, Any, Any, Any, dict[str, Any]]:
        """Refuse illegal actions (with masks), then advance one step."""
        assert len(actions) == self.num_agents, actions
        if self.enforce_masks:
            for i, action in enumerate(actions):
                assert self.mask(i)[action], f"agent_{i} took illegal action {action} at {self.t}"
        self.received.append(tuple(int(a) for a in actions))
        self.t += 1
        end = self.t >= self.length
        if self.flags == "team":
            terminated: Any = end
            truncated: Any = False
        else:
            terminated = [i == 1 and self.t == 2 for i in range(self.num_agents)]
            truncated = [end and not self.finished[i] for i in range(self.num_agents)]
            self.finished |= np.array(terminated) | np.array(truncated)
        rewards = [10.0 * i + self.t for i in range(self.num_agents)]
        reward = rewards if self.reward == "agents" else float(self.t)
        return self.observe(), reward, terminated, truncated, self.info()


class MethodMaskEnv(TupleCounterEnv):
    """TupleCounterEnv whose masks come from `get_avail_actions()`, not the info."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(masks=False, **kwargs)
        self.enforce_masks = True

    def get_avail_actions(self) -> list[list[int]]:
        """Every agent's legal actions now, as lists of 0/1 (the SMAC convention)."""
        return [self.mask(i).tolist() for i in range(self.num_agents)]


class StateEnv(TupleCounterEnv):
    """TupleCounterEnv with a global state `[offset, t]`."""

    def get_state(self) -> np.ndarray:
        """The env's own global state."""
        return np.array([self.offset, self.t], np.float32)


class MixedActionEnv(TupleCounterEnv):
    """Two agents in Discrete(3, start=1), MultiDiscrete([2, 3], start=[1, 2]) and Box [1, 2]^2.

    The layout refuses mixed kinds; this env only shows what `idle_action` sends each kind.
    """

    def __init__(self) -> None:
        super().__init__(num_agents=3, masks=False)
        self.action_space = spaces.Tuple(
            [
                spaces.Discrete(3, start=1),
                spaces.MultiDiscrete([2, 3], start=[1, 2]),
                spaces.Box(1.0, 2.0, (2,), np.float32),
            ]
        )


class WindowOnlyEnv(TupleCounterEnv):
    """TupleCounterEnv that draws only in a window, as lbforaging: its one render mode is
    'human' (gymnasium's checker then refuses `render_mode="rgb_array"` at the first reset)."""

    metadata = {"render_modes": ["human"]}

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.render_mode = render_mode


class NoDisplayEnv(WindowOnlyEnv):
    """WindowOnlyEnv that lists 'rgb_array' but cannot draw without a display, as rware's
    pyglet renderer on a headless machine."""

    metadata = {"render_modes": ["human", "rgb_array"]}

    def render(self) -> np.ndarray:
        """Fail as pyglet does without a display."""
        raise RuntimeError('Cannot connect to "None"')


class OwnLimitEnv(TupleCounterEnv):
    """TupleCounterEnv whose time limit is only its `_max_episode_steps`, as lbforaging's:
    it registers the limit as a keyword of the env, not of `gymnasium.register`."""

    def __init__(self, max_episode_steps: int = 6, **kwargs: Any) -> None:
        super().__init__(episode_length=max_episode_steps, **kwargs)
        self._max_episode_steps = max_episode_steps


gymnasium.register("TupleCounter-v0", entry_point=TupleCounterEnv)
gymnasium.register("TupleCounterMethodMask-v0", entry_point=MethodMaskEnv)
gymnasium.register("TupleCounterState-v0", entry_point=StateEnv)
gymnasium.register(
    "TupleCounterTimeLimit-v0",
    entry_point=TupleCounterEnv,
    max_episode_steps=3,
    kwargs={"episode_length": 100},
)
gymnasium.register("WindowOnly-v0", entry_point=WindowOnlyEnv)
gymnasium.register("NoDisplay-v0", entry_point=NoDisplayEnv)
gymnasium.register("OwnLimit-v0", entry_point=OwnLimitEnv, kwargs={"max_episode_steps": 6})
