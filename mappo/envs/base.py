"""The env contract: a vectorized multi-agent env that speaks in batched tensors.

Every env the trainer sees (the built-in MPE tasks, PettingZoo workers) is a
`MultiAgentEnv` over `E` copies of `A` agents. Shapes are fixed for the life of
the env; agents that do not exist at a step are marked by `alive`.

| field        | shape          | dtype | meaning                                        |
|--------------|----------------|-------|------------------------------------------------|
| obs          | [E, A, O]      | obs_dtype | local observation, zero-padded to O        |
| state        | [E, S]         | state_dtype | global state for the critic              |
| action_mask  | [E, A, K]      | bool  | legal logits (K = sum of discrete sizes)       |
| reward       | [E, A]         | float | per-agent reward for the step just taken       |
| terminated   | [E, A]         | bool  | the agent's episode ended for good             |
| truncated    | [E, A]         | bool  | the agent's episode was cut by a time limit    |
| alive        | [E, A]         | bool  | the agent acts at the returned observation     |

Observations and states keep the env's own dtype (`EnvSpec.obs_dtype`,
`state_dtype`: float32, or uint8 for images), so a uint8 image costs one byte
per pixel all the way into the rollout buffer; networks turn it into floats
per forward pass. An image observation travels flattened: O = H·W·C (in the
env's own axis order, `EnvSpec.obs_shape`), and likewise an image state.
"""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from mappo.errors import ConfigError, EnvError, RenderError


@dataclass(frozen=True)
class ActionSpec:
    """What one agent's action is: discrete sub-actions or a continuous box.

    `nvec` holds the size of each discrete sub-action (one entry for Discrete,
    several for MultiDiscrete); `low`/`high` hold the bounds of a continuous box.
    """

    kind: Literal["discrete", "continuous"]
    nvec: tuple[int, ...] = ()
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def logits_dim(self) -> int:
        """Width of the policy head: sum of sub-action sizes, or D means for a box."""
        return sum(self.nvec) if self.kind == "discrete" else len(self.low)

    @property
    def action_dim(self) -> int:
        """Entries per agent in the action tensor: sub-actions, or box dimensions."""
        return len(self.nvec) if self.kind == "discrete" else len(self.low)


@dataclass(frozen=True)
class TaskConventions:
    """What an env family's official MAPPO code does where the MAPPO specification is silent;
    `auto` config settings follow it (`mappo.task_settings`). None: the family has no
    convention, and the library's own default applies.

    `time_limit_in_task`: the env is scored by its return up to the time limit, so the
    limit is part of the task (Pardo et al., 2018, "Time Limits in Reinforcement
    Learning"): it ends episodes as a terminal state does and the critic sees the time
    left. False: the limit only cuts training episodes, which are bootstrapped.
    """

    source: str = ""  # whose code, e.g. "the official MAPPO code on MPE"
    time_limit_in_task: bool | None = None
    team_reward: bool | None = None  # every agent learns from the team's reward
    agent_id: bool | None = None  # a shared actor sees its agent's one-hot


@dataclass(frozen=True)
class EnvSpec:
    """Static facts about a vectorized env, fixed when it is built.

    `turn_based`: agents take turns (a PettingZoo AEC env): at each step only the
    agent to act is alive, while every agent in the game receives rewards and
    may finish. The learner then credits an agent's rewards between its turns
    to its last action (`compute_gae` with `acting`).
    """

    name: str
    agent_names: tuple[str, ...]
    obs_dim: int
    state_dim: int
    action: ActionSpec
    max_episode_steps: int | None = None
    state_source: Literal["env", "concat_obs"] = "concat_obs"
    obs_sizes: tuple[int, ...] = field(default=())
    turn_based: bool = False
    # An image observation's shape as the env gives it (3 axes, e.g. (H, W, C)); () for a
    # vector. Every agent's image has this shape; O is its product.
    obs_shape: tuple[int, ...] = field(default=())
    obs_dtype: torch.dtype = torch.float32  # uint8 for images, kept so into the buffer
    # The env's own global state when it is an image (3 axes), else (); S is its product.
    state_shape: tuple[int, ...] = field(default=())
    state_dtype: torch.dtype = torch.float32
    conventions: TaskConventions = field(default=TaskConventions())
    # The axis order of the image observations and image state, where the env family says
    # it (JaxMARL's grids: "hwc"); None: unknown, read off the shape where that is
    # unambiguous (`mappo.networks.image_axes`), else `--image-layout` must say it.
    image_layout: Literal["hwc", "chw"] | None = None

    @property
    def num_agents(self) -> int:
        """Number of agent slots A."""
        return len(self.agent_names)


class MultiAgentStepResult(NamedTuple):
    """What one vectorized step returns; every field holds all envs and agents.

    Envs whose episode ended this step are reset in place: `obs`, `state`,
    `alive` and `action_mask` already belong to the new episode. `final_obs`
    holds each agent's observation at the end of this step, agents that just
    terminated or were truncated included (their `obs` reads zeros, as they are
    no longer alive), and `final_state` the global state of that view; where
    `env_done` they hold what the finished episode reached. The trainer
    bootstraps a truncated agent from them, whether or not its env goes on.
    Where the state is the observations concatenated, `state` and `final_state`
    may be views of `obs` and `final_obs`: treat every field as read-only.
    """

    obs: torch.Tensor  # [E, A, O]
    state: torch.Tensor  # [E, S]
    reward: torch.Tensor  # [E, A]
    terminated: torch.Tensor  # [E, A] bool
    truncated: torch.Tensor  # [E, A] bool
    alive: torch.Tensor  # [E, A] bool, for the returned obs
    action_mask: torch.Tensor  # [E, A, K] bool, for the returned obs
    env_done: torch.Tensor  # [E] bool, the env finished its episode and was reset
    final_obs: torch.Tensor  # [E, A, O], each agent's view after this step, before any reset
    final_state: torch.Tensor  # [E, S], the global state of final_obs's view
    info: dict

    @property
    def agent_done(self) -> torch.Tensor:
        """`[E, A]` bool: the agent's own episode ended with this step (it terminated, was
        truncated, or its env finished), so its next observation starts a new one."""
        return self.terminated | self.truncated | self.env_done.unsqueeze(-1)


# What `--env module:callable` may name; error messages about the env's kind end with it.
ENV_CALLABLES = (
    "--env takes module:callable (or module:attr.attr, e.g. module:Class.method) returning a "
    "PettingZoo ParallelEnv or AECEnv, or a mappo MultiAgentEnv subclass or callable taking "
    "num_envs"
)


def error_line(err: BaseException) -> str:
    """`err` in one line: its type and the first line of its message, or for a bare
    `assert` (how VMAS and JaxMARL check their keywords) the line that asserted."""
    text = str(err).strip()
    if not text and err.__traceback__ is not None:
        text = traceback.extract_tb(err.__traceback__)[-1].line or ""
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def does_not_draw(env: str, builder: Any) -> RenderError:
    """The one line refusing to render env `env`, whose class or factory `builder` draws
    nothing: `MultiAgentEnv.rendered_episodes`'s own, and the registry's before building."""
    who = getattr(builder, "__qualname__", type(builder).__name__)
    return RenderError(
        f"env '{env}' does not draw itself: {who} records no frames (an env that draws "
        "itself takes record_frames=True and overrides MultiAgentEnv.rendered_episodes); "
        "mappo eval without --render still scores the run"
    )


def build_failed(env: str, env_kwargs: dict[str, Any], err: BaseException) -> Exception:
    """The one-line error for env `env` failing to build with `err`: the user's
    `env_kwargs` refused (a ConfigError naming them) where there are any, else the env's own
    failure (an EnvError); raise it `from err`."""
    if not env_kwargs:  # nothing of the user's to refuse: the env's own failure
        return EnvError(f"env '{env}' could not be built: {error_line(err)}")
    return ConfigError(
        f"config key 'env_kwargs' = {env_kwargs!r}: env '{env}' refused them ({error_line(err)})"
    )


def env_raised(env: str, call: str, where: str, err: BaseException) -> EnvError:
    """The one-line `EnvError` for an exception env `env` raised in `call` (e.g. "step()"),
    `where` naming the copy and step; raise it `from err` to keep the traceback."""
    return EnvError(f"env '{env}' failed in {call} of {where}: {error_line(err)}")


def checked_reset(env: MultiAgentEnv, seed: int | None) -> torch.Tensor:
    """`env.reset(seed)` as the learner and the evaluator call it: an exception becomes one
    `EnvError` line, and observations of another shape than `[E, A, O]` are refused."""
    try:
        obs = env.reset(seed=seed)
    except EnvError:  # already one line (PettingZoo's copies name theirs)
        raise
    except (Exception, SystemExit) as err:  # sys.exit in an env ends no run unexplained
        raise env_raised(env.spec.name, "reset()", "its copies", err) from err
    if problem := _shape_problem("obs", obs, (env.num_envs, env.num_agents, env.spec.obs_dim)):
        raise EnvError(f"env '{env.spec.name}' reset() returned {problem}")
    return obs


def checked_start(env: MultiAgentEnv) -> tuple[torch.Tensor, torch.Tensor]:
    """After `checked_reset`: the env's action mask `[E, A, K]` and alive flags `[E, A]`,
    refused in one line where one has another shape or dtype than the contract's (as
    `checked_step` refuses a step's)."""
    E, A = env.num_envs, env.num_agents
    mask_shape = (E, A, env.spec.action.logits_dim)
    return (
        _checked_get(env, "get_action_mask", env.get_action_mask, mask_shape, torch.bool),
        _checked_get(env, "get_alive", env.get_alive, (E, A), torch.bool),
    )


def checked_global_state(env: MultiAgentEnv) -> torch.Tensor:
    """After `checked_reset`: the env's global state `[E, S]`, checked as `checked_start`."""
    shape = (env.num_envs, env.spec.state_dim)
    return _checked_get(env, "get_global_state", env.get_global_state, shape, None)


def _checked_get(
    env: MultiAgentEnv,
    call: str,
    getter: Callable[[], Any],
    shape: tuple[int, ...],
    dtype: torch.dtype | None,
) -> torch.Tensor:
    """`getter()`, env `call`, as one `EnvError` line if it raises or returns another shape
    or dtype."""
    try:
        value = getter()
    except EnvError:
        raise
    except (Exception, SystemExit) as err:
        raise env_raised(env.spec.name, f"{call}()", "its copies after reset", err) from err
    if problem := _shape_problem(call.removeprefix("get_"), value, shape, dtype):
        raise EnvError(f"env '{env.spec.name}' {call}() returned {problem}")
    return value


def checked_step(env: MultiAgentEnv, actions: torch.Tensor, step: int) -> MultiAgentStepResult:
    """`env.step(actions)` as the learner and the evaluator call it: an exception becomes
    one `EnvError` line naming the env and `step` (env.step calls since the reset), and a
    result whose fields have other shapes or dtypes than the contract's (this module's
    table) is refused in one line naming the field, before anything reads it."""
    try:
        result = env.step(actions)
    except EnvError:
        raise
    except (Exception, SystemExit) as err:  # sys.exit in an env ends no run unexplained
        raise env_raised(env.spec.name, "step()", f"step {step} of its copies", err) from err
    E, A, spec = env.num_envs, env.num_agents, env.spec
    per_agent, per_env = (E, A), (E,)
    obs, state, flag = (E, A, spec.obs_dim), (E, spec.state_dim), torch.bool
    try:  # the common case in a few comparisons: this runs at every step
        r = result
        if (
            r.obs.shape == obs == r.final_obs.shape
            and r.state.shape == state == r.final_state.shape
            and r.reward.shape == per_agent
            and r.reward.is_floating_point()
            and r.terminated.shape == per_agent == r.truncated.shape == r.alive.shape
            and r.terminated.dtype == flag == r.truncated.dtype == r.alive.dtype
            and r.action_mask.shape == (E, A, spec.action.logits_dim)
            and r.action_mask.dtype == flag == r.env_done.dtype
            and r.env_done.shape == per_env
            and isinstance(r.info, dict)
        ):
            return result
    except AttributeError:  # a field that is no tensor, or none at all: named below
        pass
    missing = [f for f in MultiAgentStepResult._fields if not hasattr(result, f)]
    if missing:
        whole = len(missing) == len(MultiAgentStepResult._fields)
        fields_said = "none of its fields" if whole else f"no {', '.join(missing)}"
        raise EnvError(
            f"env '{spec.name}' step() {step} returned a {type(result).__name__}, not a "
            f"MultiAgentStepResult (it has {fields_said})"
        )
    if not isinstance(result.info, dict):
        raise EnvError(
            f"env '{spec.name}' step() {step} returned a {type(result.info).__name__} as "
            "info, not a dict (give {} for none)"
        )
    expected = (
        ("obs", obs, None),
        ("state", state, None),
        ("reward", per_agent, "float"),
        ("terminated", per_agent, torch.bool),
        ("truncated", per_agent, torch.bool),
        ("alive", per_agent, torch.bool),
        ("action_mask", (E, A, spec.action.logits_dim), torch.bool),
        ("env_done", per_env, torch.bool),
        ("final_obs", obs, None),
        ("final_state", state, None),
    )
    for name, shape, dtype in expected:
        if problem := _shape_problem(name, getattr(result, name), shape, dtype):
            raise EnvError(f"env '{spec.name}' step() {step} returned {problem}")
    return result


def _shape_problem(
    name: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype | str | None = None
) -> str | None:
    """What is wrong with field `name` against its `shape` and `dtype` ("float": any
    floating type), or None."""
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__} as {name}, not a tensor of shape {list(shape)}"
    if tuple(value.shape) != shape:
        return f"{name} of shape {list(value.shape)}, not {list(shape)}"
    if dtype == "float" and not value.is_floating_point():
        return f"{name} of dtype {value.dtype}, not a floating type"
    if isinstance(dtype, torch.dtype) and value.dtype != dtype:
        return f"{name} of dtype {value.dtype}, not {dtype}"
    return None


class MultiAgentEnv(ABC):
    """A vectorized multi-agent env: `num_envs` copies, `num_agents` agent slots.

    Observations, states and masks stay readable between steps through the
    getters, so the trainer never needs per-agent Python objects.
    """

    spec: EnvSpec
    num_envs: int
    device: torch.device

    @property
    def num_agents(self) -> int:
        """Number of agent slots A."""
        return self.spec.num_agents

    @abstractmethod
    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy; return observations `[E, A, O]`."""

    @abstractmethod
    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Advance every copy by one step; actions `[E, A]` (long) or `[E, A, D]`."""

    @abstractmethod
    def get_global_state(self) -> torch.Tensor:
        """Global state of the current step, `[E, S]`."""

    @abstractmethod
    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of one agent slot across all copies, `[E, O]`."""

    @abstractmethod
    def get_action_mask(self) -> torch.Tensor:
        """Legal logits of the current step, `[E, A, K]` bool."""

    @abstractmethod
    def get_alive(self) -> torch.Tensor:
        """Which agent slots act at the current step, `[E, A]` bool."""

    def state_dict(self) -> dict[str, Any] | None:
        """A snapshot of every copy's state for exact resumption, or None if the env has none.

        Tensors and plain values only: it goes into the checkpoint, which is loaded
        with `torch.load(weights_only=True)`.
        """
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by `state_dict`."""
        raise NotImplementedError(f"env '{self.spec.name}' cannot restore a snapshot")

    def pickled_state(self) -> bytes | None:
        """Every copy pickled, for exact resumption of an env whose state lives in Python
        objects (a PettingZoo env's); None when it has none beyond `state_dict`.

        Raises `pickle.PicklingError` saying why when a copy cannot be pickled.
        """
        return None

    def load_pickled_state(self, data: bytes) -> None:
        """Continue from bytes `pickled_state` returned. Unpickling runs code: only for
        bytes the user wrote themselves (`--resume` of their own run folder)."""
        raise NotImplementedError(f"env '{self.spec.name}' keeps no pickled state")

    def rendered_episodes(self) -> list[list[np.ndarray]]:
        """The RGB frames `[H, W, 3]` uint8 of env copy 0, one list per episode begun since
        the env was built to record (`make_env(..., render=True)`): the first frame after
        its reset, then one after every step. A finished episode's last frame is its final
        state, taken before the in-place reset; an in-place reset starts the next list.

        By default the env does not draw itself, and this raises a `RenderError`.
        """
        raise does_not_draw(self.spec.name, type(self))

    def close(self) -> None:  # noqa: B027 - optional hook, most envs hold nothing
        """Release worker processes or other resources; a no-op by default."""
