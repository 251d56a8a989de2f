"""Small PettingZoo `ParallelEnv`s whose every number the tests can predict.

Every env observes `[offset, episode, t, agent_index]` unless it says
otherwise, where `offset` is drawn from the env's RNG at each reset (so seeding
is visible), `episode` counts resets from 1 and `t` counts steps in the
episode. Rewards are `10 * agent_index + t`. Each env keeps the actions it
received in `received` and asserts that exactly its live agents sent one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils.ezpickle import EzPickle
from pettingzoo import ParallelEnv


class CounterEnv(ParallelEnv):
    """The shared plumbing: `num_agents` agents, every one truncated at `episode_length`."""

    metadata = {"name": "counter"}

    def __init__(self, num_agents: int = 2, episode_length: int = 5) -> None:
        self.possible_agents = [f"agent_{i}" for i in range(num_agents)]
        self.agents: list[str] = []
        self.episode_length = episode_length
        self.max_cycles = episode_length
        self.rng = np.random.default_rng()
        self.offset = 0
        self.episode = 0
        self.t = 0
        self.received: list[dict[str, Any]] = []

    # Spaces; subclasses override per agent.
    def observation_space(self, agent: str) -> spaces.Space:
        """`[offset, episode, t, agent_index]`."""
        return spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        """Five moves, as in MPE."""
        return spaces.Discrete(5)

    # Behaviour; subclasses override.
    def observe(self, agent: str) -> Any:
        """The observation of `agent` now."""
        return np.array([self.offset, self.episode, self.t, self.index(agent)], np.float32)

    def terminates(self, agent: str) -> bool:
        """Whether `agent` ends for good at this step."""
        return False

    def truncates(self, agent: str) -> bool:
        """Whether `agent` is cut off by a time limit at this step."""
        return self.t >= self.episode_length

    # ParallelEnv API.
    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Start an episode; a seed restarts the RNG that draws `offset`."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.offset = int(self.rng.integers(1000))
        self.episode += 1
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: self.observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Advance one step; finished agents leave `agents`."""
        assert set(actions) == set(self.agents), f"actions for {set(actions)}, live {self.agents}"
        self.received.append(dict(actions))
        self.t += 1
        rewards = {a: 10.0 * self.index(a) + self.t for a in self.agents}
        terminations = {a: self.terminates(a) for a in self.agents}
        truncations = {a: self.truncates(a) for a in self.agents}
        obs = {a: self.observe(a) for a in self.agents}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, infos

    def index(self, agent: str) -> int:
        """Slot of `agent` in `possible_agents`."""
        return self.possible_agents.index(agent)


class SeedLengthEnv(CounterEnv):
    """Episodes of 1 step in a copy reset with an even seed, of `odd_length` (9) in one reset
    with an odd seed, each step paying every agent 1: an episode's return is its length."""

    def __init__(self, odd_length: int = 9) -> None:
        super().__init__()
        self.odd_length = odd_length

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """A seed sets the episodes' length: 1 when even, `odd_length` when odd."""
        if seed is not None:
            self.episode_length = self.max_cycles = 1 if seed % 2 == 0 else self.odd_length
        return super().reset(seed, options)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """CounterEnv's step, paying 1."""
        obs, rewards, terminations, truncations, infos = super().step(actions)
        return obs, dict.fromkeys(rewards, 1.0), terminations, truncations, infos


class UnpicklableEnv(CounterEnv):
    """CounterEnv holding a lock, which pickle refuses."""

    def __init__(self, num_agents: int = 2, episode_length: int = 5) -> None:
        super().__init__(num_agents, episode_length)
        self.lock = threading.Lock()


class DyingAgentEnv(CounterEnv):
    """Three agents; agent_1 terminates at step 2 of 5, the others are truncated at 5."""

    def __init__(self, episode_length: int = 5) -> None:
        super().__init__(num_agents=3, episode_length=episode_length)

    def terminates(self, agent: str) -> bool:
        """agent_1 dies at step 2."""
        return agent == "agent_1" and self.t == 2


class LastStepDeathEnv(CounterEnv):
    """Three agents; agent_1 terminates at step 5 of 5, the step that truncates the others."""

    def __init__(self, episode_length: int = 5) -> None:
        super().__init__(num_agents=3, episode_length=episode_length)

    def terminates(self, agent: str) -> bool:
        """agent_1 dies at the time limit."""
        return agent == "agent_1" and self.t == self.episode_length


class LoneTruncationEnv(CounterEnv):
    """Two agents; agent_0 is truncated at step 2 of 5 while agent_1 goes on."""

    def truncates(self, agent: str) -> bool:
        """agent_0's own time limit is 2 steps."""
        return self.t >= (2 if agent == "agent_0" else self.episode_length)


class MaskedEnv(CounterEnv):
    """Dict observations with an `action_mask`; agent_0 has 3 actions, agent_1 has 5.

    Action j is legal at step t when `(t + j)` is even; the env asserts that
    every action it receives was legal.
    """

    def observation_space(self, agent: str) -> spaces.Space:
        """`observation` as in CounterEnv plus an int8 `action_mask`."""
        n = self.action_space(agent).n
        return spaces.Dict(
            {
                "observation": spaces.Box(-np.inf, np.inf, (4,), np.float32),
                "action_mask": spaces.Box(0, 1, (n,), np.int8),
            }
        )

    def action_space(self, agent: str) -> spaces.Space:
        """3 actions for agent_0, 5 for agent_1."""
        return spaces.Discrete(3 if agent == "agent_0" else 5)

    def mask(self, agent: str) -> np.ndarray:
        """Legal actions of `agent` at the current step."""
        n = self.action_space(agent).n
        return ((self.t + np.arange(n)) % 2 == 0).astype(np.int8)

    def observe(self, agent: str) -> Any:
        """The counter observation and the current mask."""
        return {"observation": super().observe(agent), "action_mask": self.mask(agent)}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Refuse illegal actions, then step."""
        for agent, action in actions.items():
            assert self.mask(agent)[action] == 1, f"{agent} took illegal action {action}"
        return super().step(actions)


class HeteroObsEnv(CounterEnv):
    """Observations of 2, 2x3 (flattened to 6) and 4 floats for agents 0, 1, 2.

    Agent i observes `1000 * t + 10 * (i + 1) + arange(size)`.
    """

    SHAPES = {"agent_0": (2,), "agent_1": (2, 3), "agent_2": (4,)}

    def __init__(self) -> None:
        super().__init__(num_agents=3)

    def observation_space(self, agent: str) -> spaces.Space:
        """A Box of this agent's own shape."""
        return spaces.Box(-np.inf, np.inf, self.SHAPES[agent], np.float32)

    def observe(self, agent: str) -> Any:
        """Values that tell agent, step and position apart."""
        shape = self.SHAPES[agent]
        values = 1000 * self.t + 10 * (self.index(agent) + 1) + np.arange(np.prod(shape))
        return values.reshape(shape).astype(np.float32)


class BoxActionEnv(CounterEnv):
    """Continuous actions: agent_0 in [-1, 1]^2, agent_1 in [0, 5]^3."""

    def action_space(self, agent: str) -> spaces.Space:
        """Bounds and sizes differ per agent."""
        if agent == "agent_0":
            return spaces.Box(-1.0, 1.0, (2,), np.float32)
        return spaces.Box(0.0, 5.0, (3,), np.float32)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Refuse actions outside the agent's box, then step."""
        for agent, action in actions.items():
            assert self.action_space(agent).contains(action), f"{agent}: {action}"
        return super().step(actions)


class MultiDiscreteEnv(CounterEnv):
    """agent_0 acts in MultiDiscrete([3, 2]); agent_1 in Discrete(4, start=1)."""

    def action_space(self, agent: str) -> spaces.Space:
        """One two-part action and one single action with a start offset."""
        if agent == "agent_0":
            return spaces.MultiDiscrete([3, 2])
        return spaces.Discrete(4, start=1)


class MixedActionEnv(CounterEnv):
    """agent_0 is discrete and agent_1 continuous: the wrapper must refuse it."""

    def action_space(self, agent: str) -> spaces.Space:
        """Discrete for agent_0, Box for agent_1."""
        if agent == "agent_0":
            return spaces.Discrete(5)
        return spaces.Box(-1.0, 1.0, (2,), np.float32)


class StatefulEnv(CounterEnv):
    """CounterEnv with a global state `[offset, episode, t]`; counts calls in `state_calls`."""

    state_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    state_calls = 0

    def state(self) -> np.ndarray:
        """The env's own global state."""
        self.state_calls += 1
        return np.array([self.offset, self.episode, self.t], np.float32)


class StatefulLoneTruncationEnv(LoneTruncationEnv, StatefulEnv):
    """LoneTruncationEnv with StatefulEnv's global state."""


class VariableLengthEnv(StatefulEnv):
    """Episodes last `2 + seed % 3` steps, fixed by the first seeded reset."""

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Fix the episode length from the seed, then reset as usual."""
        if seed is not None:
            self.episode_length = 2 + seed % 3
        return super().reset(seed, options)


class WrongObsSizeEnv(CounterEnv):
    """agent_1 observes 5 floats instead of its declared 4 from step 2 on."""

    def observe(self, agent: str) -> Any:
        """One float too many for agent_1 once t >= 2."""
        obs = super().observe(agent)
        return np.append(obs, 0.0).astype(np.float32) if agent == "agent_1" and self.t >= 2 else obs


def not_a_parallel_env(**kwargs: Any) -> dict:
    """A factory returning something that is not an env, for the registry's error."""
    return {"kwargs": kwargs}


def not_a_vectorized_env(num_envs: int, device: str, seed: int | None) -> dict:
    """A vectorized factory (it takes num_envs) returning something that is not an env."""
    return {"num_envs": num_envs}


class MalformedEnv(CounterEnv):
    """Returns `bad_value` as agent_1's `field` ("observation" or "reward") at step `bad_step`."""

    def __init__(
        self, field: str = "observation", bad_value: Any = None, bad_step: int = 2
    ) -> None:
        super().__init__(num_agents=2, episode_length=5)
        self.field, self.bad_value, self.bad_step = field, bad_value, bad_step

    def observe(self, agent: str) -> Any:
        """The counter observation, or the bad value."""
        if self.field == "observation" and agent == "agent_1" and self.t == self.bad_step:
            return self.bad_value
        return super().observe(agent)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step, then spoil agent_1's reward if asked."""
        obs, rewards, terms, truncs, infos = super().step(actions)
        if self.field == "reward" and self.t == self.bad_step and "agent_1" in rewards:
            rewards["agent_1"] = self.bad_value
        return obs, rewards, terms, truncs, infos


class LateJoinerEnv(CounterEnv):
    """Three agents; agent_2 is absent until step 2 and acts from then on."""

    def __init__(self) -> None:
        super().__init__(num_agents=3, episode_length=5)

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Start with agent_0 and agent_1 only."""
        obs, infos = super().reset(seed, options)
        self.agents.remove("agent_2")
        return (
            {a: o for a, o in obs.items() if a != "agent_2"},
            {a: i for a, i in infos.items() if a != "agent_2"},
        )

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step the live agents; agent_2 joins once step 2 is done."""
        obs, rewards, terminations, truncations, infos = super().step(actions)
        if self.t == 2:
            self.agents.append("agent_2")
            obs["agent_2"] = self.observe("agent_2")
        return obs, rewards, terminations, truncations, infos


class StateFailsAtEpisodeEndEnv(StatefulEnv):
    """StatefulEnv whose `state()` raises once the episode is over, as multiwalker's
    does at its first episode end."""

    def state(self) -> np.ndarray:
        """The global state, until the episode ends."""
        if self.t >= self.episode_length:
            raise IndexError("the episode is over")
        return super().state()


class StateFailsWhenAgentsAreGoneEnv(DyingAgentEnv, StatefulEnv):
    """DyingAgentEnv whose `state()` raises once an agent is gone, as magent2 battle's
    does when a team is wiped out."""

    def state(self) -> np.ndarray:
        """The global state, while every agent is there."""
        if len(self.agents) < len(self.possible_agents):
            raise ValueError("an agent is gone")
        return super().state()


class BrokenEnv(StatefulEnv):
    """StatefulEnv that raises `RuntimeError("<call> broke")` in `call` ("reset", "step" or
    "state") in episode `episode` at episode step `step` (a reset: the one starting
    `episode`), in the copy first reset with seed `seed` only."""

    def __init__(self, call: str = "step", episode: int = 7, step: int = 3, seed: int = 9) -> None:
        super().__init__()
        self.broken = (call, episode, step)
        self.broken_seed = seed
        self.first_seed: int | None = None

    def breaks(self, call: str, episode: int, step: int) -> None:
        """Raise if this is the broken call of the broken copy."""
        if self.first_seed == self.broken_seed and (call, episode, step) == self.broken:
            raise RuntimeError(f"{call} broke\nthe env's second line")

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Reset, unless this is the broken reset."""
        if self.first_seed is None:
            self.first_seed = seed
        self.breaks("reset", self.episode + 1, 0)
        return super().reset(seed, options)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step, unless this is the broken step."""
        self.breaks("step", self.episode, self.t + 1)
        return super().step(actions)

    def state(self) -> np.ndarray:
        """The global state, unless this is the broken moment."""
        self.breaks("state", self.episode, self.t)
        return super().state()


class WorkerTroubleEnv(BrokenEnv):
    """BrokenEnv whose broken step does `how` instead of raising: "kill" (SIGKILL to its own
    process, as the kernel's out-of-memory killer does), "os_exit" (`os._exit(7)`, as a
    crash in C code ends a process), "exit" (`sys.exit(7)`), "hang" (sleeps 600 s, having
    created the file `marker` if given), "rewards_list" (rewards as a list), "four_tuple"
    (no infos) or "raise" (as BrokenEnv). The copy first reset with `slow_seed` takes 1.5 s
    over that step."""

    def __init__(
        self,
        how: str = "kill",
        episode: int = 7,
        step: int = 3,
        marker: str = "",
        slow_seed: int | None = None,
    ) -> None:
        super().__init__("step", episode, step)
        self.how, self.marker, self.slow_seed = how, marker, slow_seed

    def step(self, actions: dict[str, Any]) -> Any:
        """Step, and at the broken step do `how`."""
        if self.first_seed == self.slow_seed and (self.episode, self.t + 1) == self.broken[1:]:
            time.sleep(1.5)
        try:
            self.breaks("step", self.episode, self.t + 1)
        except RuntimeError:
            if self.how == "raise":
                raise
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.how == "os_exit":
                os._exit(7)
            if self.how == "exit":
                sys.exit(7)
            if self.how == "hang":
                if self.marker:
                    open(self.marker, "w").close()
                time.sleep(600)
            obs, rewards, terms, truncs, infos = StatefulEnv.step(self, actions)
            if self.how == "rewards_list":
                return obs, list(rewards.values()), terms, truncs, infos
            if self.how == "four_tuple":
                return obs, rewards, terms, truncs
            return obs, rewards, terms, truncs, infos
        return StatefulEnv.step(self, actions)


class StateFailsAfterTerminationEnv(StatefulEnv):
    """StatefulEnv whose agents all terminate at `episode_length`, after which `state()`
    raises, as multiwalker's does once a walker fell (its episode then ends for all)."""

    def terminates(self, agent: str) -> bool:
        """Every agent terminates at the end of the episode."""
        return self.t >= self.episode_length

    def truncates(self, agent: str) -> bool:
        """No time limit: the episode ends by termination."""
        return False

    def state(self) -> np.ndarray:
        """The global state, until the episode ends."""
        if self.t >= self.episode_length:
            raise IndexError("the episode is over")
        return super().state()


class SketchEnv(CounterEnv, EzPickle):
    """Observes a 3x2 pygame canvas it draws on a little every step, as pistonball draws
    its screen: filled with a colour drawn from the RNG at reset, then pixel `t - 1` set to
    the step's colour (agent_0's action times 40) at step t; the canvas has an alpha
    channel, whose pixel `t - 1` takes agent_1's action times 40. Observation (every
    agent's): the canvas's RGB then alpha values, 24 numbers. Needs pygame."""

    def __init__(self, num_agents: int = 2, episode_length: int = 5) -> None:
        import pygame

        EzPickle.__init__(self, num_agents, episode_length)
        super().__init__(num_agents, episode_length)
        self.canvas = pygame.Surface((3, 2), pygame.SRCALPHA, 32)  # the constructor's: blank

    def observation_space(self, agent: str) -> spaces.Space:
        """RGB `[3, 2, 3]` then alpha `[3, 2]`, flattened."""
        return spaces.Box(0, 255, (24,), np.float32)

    def observe(self, agent: str) -> Any:
        """The canvas as it is drawn now."""
        import pygame

        rgb = pygame.surfarray.array3d(self.canvas).reshape(-1)
        return np.concatenate([rgb, pygame.surfarray.array_alpha(self.canvas).reshape(-1)])

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Fill the canvas with a colour from the RNG, then start as CounterEnv does."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.canvas.fill(tuple(int(c) for c in self.rng.integers(256, size=4)))
        return super().reset(options=options)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Set one more pixel (colour and alpha from the actions), then step as CounterEnv."""
        x, y = self.t % 3, self.t // 3 % 2
        colour = 40 * int(actions.get("agent_0", 0))
        self.canvas.set_at((x, y), (colour, colour, colour, 40 * int(actions.get("agent_1", 0))))
        return super().step(actions)


class BulkyEnv(CounterEnv):
    """CounterEnv holding 1 MB of constant bytes, as an image env holds its spaces' bounds
    (pistonball's state Box: 5.9 MB a copy)."""

    def __init__(self, num_agents: int = 2, episode_length: int = 5) -> None:
        super().__init__(num_agents, episode_length)
        self.bounds = np.full((1024, 1024), 255, np.uint8)
