"""One Gymnasium env whose spaces are Tuples over agents, as a PettingZoo `ParallelEnv`.

Level-Based Foraging (lbforaging), the Multi-Robot Warehouse (rware) and the
envs EPyMARL runs are one `gymnasium.Env` for the whole team: the observation
and action spaces are `Tuple`s with one space per agent. `TupleEnvAsParallel`
shows such an env through the PettingZoo parallel API, so `PettingZooWrapper`
runs it as it runs any PettingZoo env: the same layout probe, padding, masks,
worker pool, errors and checkpoints.

What is read, and how it maps:

* agents: Tuple entry i is `agent_i` (`agent_0 .. agent_{n-1}`).
* rewards: a list, tuple or array with one per agent, or one float for the
  team, which every live agent receives.
* `terminated` / `truncated`: one bool for the team (every agent), or one per
  agent. An agent leaves `agents` at its own flag; the episode is over when
  none is left. A Tuple action needs an entry for every agent, so agents that
  have left are sent a placeholder (`idle_action`).
* action masks, where the env offers them: `info["action_mask"]` of reset and
  step (one mask per agent), else a method `action_mask()` or
  `get_avail_actions()` of `env.unwrapped`, called after every reset and step
  (one mask per agent). Which one is fixed when the adapter is built, from one
  reset's info and the methods present. With masks, each agent observes a
  Dict of `observation` and `action_mask`, the form the layout reads masks in.
* global state: `env.unwrapped.state()` or `get_state()` if it has one; else
  `state()` raises NotImplementedError and the critic sees all observations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import gymnasium
import numpy as np
from gymnasium import spaces

from mappo.errors import ConfigError

# Methods of the unwrapped env that return every agent's action mask, in the order asked.
MASK_METHODS = ("action_mask", "get_avail_actions")
# Methods of the unwrapped env that return the global state, in the order asked.
STATE_METHODS = ("state", "get_state")


class TupleEnvAsParallel:
    """A Gymnasium env with Tuple spaces over agents behind the PettingZoo parallel API.

    Building it resets `env` once, unseeded, to see whether the reset info holds
    an `action_mask`; `PettingZooWrapper` seeds every copy on its own first reset.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        self.env = env
        self.name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        obs_space, action_space = env.observation_space, env.action_space
        if not (isinstance(obs_space, spaces.Tuple) and isinstance(action_space, spaces.Tuple)):
            raise ConfigError(
                f"Gymnasium env '{self.name}' has a {type(obs_space).__name__} observation space "
                f"and a {type(action_space).__name__} action space; a multi-agent env needs "
                "Tuples with one space per agent"
            )
        if len(obs_space) != len(action_space) or not len(obs_space):
            raise ConfigError(
                f"Gymnasium env '{self.name}' has {len(obs_space)} observation spaces and "
                f"{len(action_space)} action spaces; it needs one of each per agent"
            )
        self.possible_agents = [f"agent_{i}" for i in range(len(obs_space))]
        self.agents: list[str] = []
        self._slots = {agent: i for i, agent in enumerate(self.possible_agents)}
        self._action_spaces: tuple[spaces.Space, ...] = tuple(action_space)
        unwrapped = env.unwrapped
        self._state_fn = _first_method(unwrapped, STATE_METHODS)
        _, info = env.reset()
        # Where the masks come from: each step's info, or a method of the env (bound, so
        # that the adapter pickles with its env for an exact --resume); None: no masks.
        self._mask_source: str | Callable[[], Sequence | None] | None = None
        if "action_mask" in info:
            self._mask_source = "info"
        else:
            self._mask_source = _first_method(unwrapped, MASK_METHODS)
        self._masks = self._read_masks(info)  # the masks of the current step, or None
        if self._masks is None:  # a mask method that returns None offers no masks
            self._mask_source = None
            self._observation_spaces: tuple[spaces.Space, ...] = tuple(obs_space)
        else:  # each mask's size as the env hands it out; the layout checks it against actions
            self._observation_spaces = tuple(
                spaces.Dict(
                    {
                        "observation": space,
                        "action_mask": spaces.Box(0, 1, (np.asarray(mask).size,), np.int8),
                    }
                )
                for space, mask in zip(obs_space, self._masks, strict=True)
            )

    @classmethod
    def make(cls, env_id: str, **kwargs: Any) -> TupleEnvAsParallel:
        """`gymnasium.make(env_id, **kwargs)`, adapted; `env_id` may be `module:id`.

        Gymnasium imports `module` itself (registering the id), so a worker
        process started fresh builds its copies from this alone. Its env checker is off
        unless `disable_env_checker=False` is given.
        """
        # Gymnasium's passive checker assumes one agent: a tuple env's list of rewards drew
        # its warning on every run, into every log. The adapter checks what it is given.
        kwargs.setdefault("disable_env_checker", True)
        return cls(gymnasium.make(env_id, **kwargs))

    # --------------------------------------------------------- PettingZoo parallel API

    def observation_space(self, agent: str) -> spaces.Space:
        """The agent's Tuple entry, or a Dict of it and its `action_mask` when masks exist."""
        return self._observation_spaces[self._slots[agent]]

    def action_space(self, agent: str) -> spaces.Space:
        """The agent's Tuple entry."""
        return self._action_spaces[self._slots[agent]]

    @property
    def metadata(self) -> dict[str, Any]:
        """The Gymnasium env's metadata (its `render_modes` among them)."""
        return self.env.metadata

    @property
    def unwrapped(self) -> gymnasium.Env:
        """The Gymnasium env without its wrappers (where the layout looks for `max_steps`)."""
        return self.env.unwrapped

    @property
    def max_episode_steps(self) -> int | None:
        """The step limit registered with the id (gymnasium's TimeLimit), if any."""
        return self.env.spec.max_episode_steps if self.env.spec is not None else None

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Reset the env; every agent is back."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        self._masks = self._read_masks(info)
        return self._observe(obs, self.agents), {agent: info for agent in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step the team with the live agents' actions; agents that have left get `idle_action`."""
        live = self.agents
        joint = tuple(
            actions[agent] if agent in actions else self.idle_action(i)
            for i, agent in enumerate(self.possible_agents)
        )
        obs, reward, terminated, truncated, info = self.env.step(joint)
        rewards = self._per_agent(reward, "rewards")
        terms = self._per_agent(terminated, "terminated flags")
        truncs = self._per_agent(truncated, "truncated flags")
        self._masks = self._read_masks(info)
        observations = self._observe(obs, live)
        slot = self._slots
        self.agents = [a for a in live if not (terms[slot[a]] or truncs[slot[a]])]
        return (
            observations,
            {a: rewards[slot[a]] for a in live},
            {a: bool(terms[slot[a]]) for a in live},
            {a: bool(truncs[slot[a]]) for a in live},
            {a: info for a in live},
        )

    def state(self) -> Any:
        """The unwrapped env's `state()` or `get_state()`; NotImplementedError if it has none."""
        if self._state_fn is None:
            raise NotImplementedError(f"Gymnasium env '{self.name}' has no state()/get_state()")
        return self._state_fn()

    def render(self) -> Any:
        """The env's own `render()`, in the `render_mode` it was made with."""
        return self.env.render()

    def close(self) -> None:
        """Close the env."""
        self.env.close()

    # ------------------------------------------------------------------- internals

    def idle_action(self, i: int) -> Any:
        """What agent i is sent once it has left: its first legal action, else its space's first.

        Envs in the SMAC convention allow a dead agent only its no-op, which its
        mask then marks as the one legal action.
        """
        space = self._action_spaces[i]
        if isinstance(space, spaces.Discrete):
            first = 0
            if self._masks is not None:
                legal = np.flatnonzero(self._masks[i])
                first = int(legal[0]) if len(legal) else 0
            return int(space.start) + first
        if isinstance(space, spaces.MultiDiscrete):
            return np.array(space.start, space.dtype)
        # A Box (the layout accepts no other kind of action): the point nearest zero.
        box = cast(spaces.Box, space)
        return np.clip(np.zeros(box.shape, box.dtype), box.low, box.high)

    def _observe(self, obs: Sequence, agents: list[str]) -> dict[str, Any]:
        """The Tuple observation as a dict over `agents`, each with its mask when masks exist."""
        slot, masks = self._slots, self._masks
        if self._mask_source is None:
            return {agent: obs[slot[agent]] for agent in agents}
        # A step whose info lacks the mask leaves every action legal for that step.
        return {
            agent: {"observation": obs[slot[agent]]}
            | ({} if masks is None else {"action_mask": masks[slot[agent]]})
            for agent in agents
        }

    def _read_masks(self, info: dict) -> Sequence | None:
        """Every agent's mask at this reset or step, from wherever the env keeps it."""
        source = self._mask_source
        masks = source() if callable(source) else info.get("action_mask") if source else None
        return None if masks is None else self._per_agent(masks, "action masks")

    def _per_agent(self, value: Any, what: str) -> Sequence:
        """A team value repeated for every agent, or the env's per-agent sequence."""
        n = len(self.possible_agents)
        # Not np.ndim: masks of agents with different action counts are ragged lists.
        if not (isinstance(value, (list, tuple)) or np.ndim(value) > 0):
            return [value] * n
        if len(value) != n:
            raise ValueError(
                f"Gymnasium env '{self.name}' returned {len(value)} {what} for {n} agents"
            )
        return value


def _first_method(obj: Any, names: tuple[str, ...]) -> Callable[[], Any] | None:
    """The first of `names` that `obj` has as a method, bound; None if none is."""
    for name in names:
        method = getattr(obj, name, None)
        if callable(method):
            return method
    return None
