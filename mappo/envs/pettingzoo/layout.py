"""Reading an env's layout: how one PettingZoo env maps onto fixed-shape arrays.

`inspect_parallel_env` probes one copy of a PettingZoo `ParallelEnv` and
returns a `PettingZooLayout`: the agent slots (`env.possible_agents` in order),
each agent's observation size (padded to the largest, O), its action space
mapped onto the policy's K logits (Discrete/MultiDiscrete: sub-action blocks
sized by the largest agent) or D box dimensions (Box: the largest agent's),
where the global state comes from (`env.state()` when the critic uses it and
the env has it, else every agent's padded observation concatenated), the
episode length if the env exposes one, and whether agents take turns (an AEC
env, which the wrapper shows through `aec.AECEnvAsParallel` before probing).
Observation Boxes with 3 axes are images: every agent must then see the same
shape and dtype (images are not padded across agents), and a uint8 image stays
uint8 in the step arrays, as does a uint8 `env.state()`; everything else is float32.
An env it cannot wrap is refused here with a `ConfigError` naming the env and agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import gymnasium
import numpy as np
from gymnasium import spaces

from mappo.envs.base import ENV_CALLABLES, ActionSpec, EnvError, TaskConventions, env_raised
from mappo.envs.mpe.mpe_task import mpe_conventions
from mappo.errors import ConfigError

# Where the env's episode length may be stored, on the env or its unwrapped base
# (`_max_episode_steps`: lbforaging's, which registers its limit as an env keyword).
EPISODE_LENGTH_ATTRS = ("max_episode_steps", "max_cycles", "max_steps", "_max_episode_steps")


@dataclass(frozen=True)
class PettingZooLayout:
    """How one PettingZoo env maps onto fixed-shape arrays; read off a probe copy.

    Picklable, so worker processes build their batch from it without probing again.
    `static_mask` `[A, K]` marks each agent's own actions among the K logits (for
    Box actions, its own dimensions among the D); `mask_index[i]` lists the
    logits the env's own `action_mask` of agent i covers (its sub-actions'
    blocks, in order). `low`/`high` `[A, D]` are each agent's Box bounds, padded
    with -inf/inf on dimensions it does not have.
    """

    name: str
    agents: tuple[str, ...]
    obs_sizes: tuple[int, ...]
    dict_obs: tuple[bool, ...]  # the agent's observation is a Dict with `observation`
    action_spaces: tuple[spaces.Space, ...]
    action: ActionSpec
    static_mask: np.ndarray  # [A, K] bool
    mask_index: tuple[np.ndarray, ...]
    low: np.ndarray  # [A, D] float32, continuous only
    high: np.ndarray  # [A, D] float32, continuous only
    state_source: Literal["env", "concat_obs"]
    state_dim: int
    max_episode_steps: int | None
    # Agents take turns (an AEC env seen through `AECEnvAsParallel`): the rewards and flags
    # of agents that did not act at a step count too.
    turn_based: bool = False
    obs_shape: tuple[int, ...] = ()  # an image observation's shape, every agent's; () else
    obs_dtype: np.dtype = np.dtype(np.float32)  # uint8 for uint8 images
    state_shape: tuple[int, ...] = ()  # the env's own state when it is an image
    state_dtype: np.dtype = np.dtype(np.float32)
    conventions: TaskConventions = TaskConventions()  # of the env's family (`EnvSpec`)

    @property
    def obs_dim(self) -> int:
        """Padded observation width O: the largest agent's."""
        return max(self.obs_sizes)

    def step_space(self, k: int) -> spaces.Dict:
        """The Dict of Boxes one step of k copies fills, shared memory included; without an
        env state, no state fields (the consumer reshapes `obs` and `final_obs`)."""
        A, S, K = len(self.agents), self.state_dim, self.action.logits_dim
        obs_dim = self.obs_dim

        def real(*shape: int, dtype: np.dtype | type = np.float32) -> spaces.Box:
            if dtype == np.uint8:
                return spaces.Box(0, 255, shape, np.uint8)
            return spaces.Box(-np.inf, np.inf, shape, np.float32)

        def flag(*shape: int) -> spaces.Box:
            # gymnasium's Box accepts bool (its own dtype check allows it); its annotation omits it.
            return spaces.Box(0, 1, shape, np.bool_)  # type: ignore[arg-type]

        obs, state = self.obs_dtype, self.state_dtype
        fields: dict[str, spaces.Space] = {
            "obs": real(k, A, obs_dim, dtype=obs),
            "state": real(k, S, dtype=state),
            "reward": real(k, A),
            "terminated": flag(k, A),
            "truncated": flag(k, A),
            "alive": flag(k, A),
            "action_mask": flag(k, A, K),
            "env_done": flag(k),
            "final_obs": real(k, A, obs_dim, dtype=obs),
            "final_state": real(k, S, dtype=state),
        }
        if self.state_source == "concat_obs":  # obs and final_obs flattened: not carried twice
            del fields["state"], fields["final_state"]
        return spaces.Dict(fields)

    def action_space(self, k: int) -> spaces.Box:
        """Actions of k copies: `[k, A, n_sub]` int64, or `[k, A, D]` float32."""
        A, n = len(self.agents), self.action.action_dim
        if self.action.kind == "discrete":
            high = np.broadcast_to(np.asarray(self.action.nvec) - 1, (k, A, n))
            return spaces.Box(np.zeros((k, A, n), np.int64), high.astype(np.int64), dtype=np.int64)
        return spaces.Box(-np.inf, np.inf, (k, A, n), np.float32)


def inspect_parallel_env(env: Any, name: str, use_state: bool = True) -> PettingZooLayout:
    """Read spaces, state and episode length off one copy; raise if it cannot be wrapped.

    With `use_state` False, `env.state()` is never called (some envs' states fail at
    moments the critic does not need them) and the state is the concatenated observations.
    """
    if isinstance(env, gymnasium.Env):
        raise ConfigError(
            f"env '{name}' built a single-agent Gymnasium env ({type(env).__name__}), not a "
            f"multi-agent one; {ENV_CALLABLES}"
        )
    missing = [attr for attr in ("possible_agents", "reset", "step") if not hasattr(env, attr)]
    if missing:
        raise ConfigError(
            f"env '{name}' built a {type(env).__name__}, not a PettingZoo ParallelEnv "
            f"(it has no {', '.join(missing)}); {ENV_CALLABLES}"
        )
    agents = tuple(env.possible_agents)
    if not agents:
        raise ConfigError(f"env '{name}' has no possible_agents")

    obs_sizes: list[int] = []
    obs_boxes: list[spaces.Box] = []
    dict_obs: list[bool] = []
    mask_sizes: list[int | None] = []  # entries of the env's own action_mask, if it has one
    for agent in agents:
        space = env.observation_space(agent)
        inner = space
        is_dict = isinstance(space, spaces.Dict)
        if is_dict:
            if "observation" not in space.spaces:
                raise ConfigError(
                    f"env '{name}': agent {agent} has a Dict observation space without an "
                    f"'observation' key: {space}"
                )
            inner = space["observation"]
        if not isinstance(inner, spaces.Box):
            raise ConfigError(
                f"env '{name}': agent {agent} observes {inner}; only Box observations "
                "(or a Dict of 'observation' Box and 'action_mask') are supported"
            )
        obs_sizes.append(math.prod(inner.shape))
        obs_boxes.append(inner)
        dict_obs.append(is_dict)
        has_mask = is_dict and "action_mask" in space.spaces
        mask_sizes.append(math.prod(space["action_mask"].shape) if has_mask else None)

    action_spaces = tuple(env.action_space(agent) for agent in agents)
    if all(isinstance(s, (spaces.Discrete, spaces.MultiDiscrete)) for s in action_spaces):
        discrete = cast(tuple[spaces.Discrete | spaces.MultiDiscrete, ...], action_spaces)
        action, static_mask, mask_index = _discrete_layout(agents, discrete)
        for agent, size, index in zip(agents, mask_sizes, mask_index, strict=True):
            if size is not None and size != len(index):
                raise ConfigError(
                    f"env '{name}': agent {agent}'s action_mask has {size} entries but its "
                    f"action space has {len(index)} actions"
                )
        low = high = np.zeros((len(agents), 0), np.float32)
    elif all(isinstance(s, spaces.Box) for s in action_spaces):
        if any(size is not None for size in mask_sizes):
            raise ConfigError(f"env '{name}': an action_mask needs discrete actions")
        boxes = cast(tuple[spaces.Box, ...], action_spaces)
        action, static_mask, low, high = _box_layout(boxes)
        mask_index = tuple(np.zeros(0, np.int64) for _ in agents)
    else:
        listing = ", ".join(f"{a}: {s}" for a, s in zip(agents, action_spaces, strict=True))
        raise ConfigError(
            f"env '{name}': agents must all act in Discrete/MultiDiscrete spaces or all in "
            f"Box spaces; got {listing}"
        )

    obs_shape, obs_dtype = _image_layout(name, agents, obs_boxes)
    state = _env_state(env, name) if use_state else None
    state_source: Literal["env", "concat_obs"] = "env" if state is not None else "concat_obs"
    if state is None:  # every agent's padded observation, in their dtype
        state_dim, state_shape, state_dtype = len(agents) * max(obs_sizes), (), obs_dtype
    else:
        state_dim = state.size
        state_shape = state.shape if state.ndim == 3 else ()
        state_dtype = np.dtype(np.uint8 if state.dtype == np.uint8 else np.float32)
    return PettingZooLayout(
        name=name,
        agents=agents,
        obs_sizes=tuple(obs_sizes),
        dict_obs=tuple(dict_obs),
        action_spaces=action_spaces,
        action=action,
        static_mask=static_mask,
        mask_index=mask_index,
        low=low,
        high=high,
        state_source=state_source,
        state_dim=state_dim,
        max_episode_steps=_episode_length(env),
        turn_based=bool(getattr(env, "turn_based", False)),
        obs_shape=obs_shape,
        obs_dtype=obs_dtype,
        state_shape=tuple(state_shape),
        state_dtype=state_dtype,
        conventions=_family_conventions(env),
    )


def _image_layout(
    name: str, agents: tuple[str, ...], boxes: list[spaces.Box]
) -> tuple[tuple[int, ...], np.dtype]:
    """The image shape every agent shares (() for vector observations) and the dtype the
    observations are stored in: uint8 when every agent's Box is uint8, else float32.

    Images of different shapes would need padding inside the picture, which no
    encoder can read sensibly: they are refused naming the agents.
    """
    images = [len(box.shape) == 3 for box in boxes]
    uint8 = all(box.dtype == np.uint8 for box in boxes)
    dtype = np.dtype(np.uint8 if uint8 else np.float32)
    if not any(images):
        return (), dtype
    shapes = {tuple(box.shape) for box in boxes}
    if not all(images) or len(shapes) > 1:
        listing = ", ".join(f"{a}: {tuple(b.shape)}" for a, b in zip(agents, boxes, strict=True))
        raise ConfigError(
            f"env '{name}': image observations (Boxes with 3 axes) must have one shape for "
            f"every agent, as images are not padded; got {listing}. Resize them to one shape "
            "(e.g. supersuit.resize_v1)"
        )
    return tuple(boxes[0].shape), dtype


def _discrete_layout(
    agents: tuple[str, ...], action_spaces: tuple[spaces.Discrete | spaces.MultiDiscrete, ...]
) -> tuple[ActionSpec, np.ndarray, tuple[np.ndarray, ...]]:
    """Sub-action sizes (max over agents), each agent's legal logits, its env-mask targets.

    An agent with fewer sub-actions than the longest gets a dummy sub-action in
    each missing position whose only legal choice is 0; it is never sent.
    """
    own = [
        (int(s.n),) if isinstance(s, spaces.Discrete) else tuple(int(n) for n in s.nvec.reshape(-1))
        for s in action_spaces
    ]
    positions = max(len(nvec) for nvec in own)
    nvec = tuple(max(v[p] for v in own if p < len(v)) for p in range(positions))
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]]).astype(np.int64)  # [n_sub]
    static_mask = np.zeros((len(agents), sum(nvec)), np.bool_)  # [A, K]
    mask_index = []
    for i, agent_nvec in enumerate(own):
        for p in range(positions):
            size = agent_nvec[p] if p < len(agent_nvec) else 1
            static_mask[i, starts[p] : starts[p] + size] = True
        mask_index.append(
            np.concatenate([starts[p] + np.arange(n) for p, n in enumerate(agent_nvec)])
        )
    return ActionSpec(kind="discrete", nvec=nvec), static_mask, tuple(mask_index)


def _box_layout(
    action_spaces: tuple[spaces.Box, ...],
) -> tuple[ActionSpec, np.ndarray, np.ndarray, np.ndarray]:
    """A D-dimensional box (D = largest agent): spec, static mask and bounds, each `[A, D]`.

    The static mask is True on an agent's own dimensions: the padded ones are
    never sent to the env, so the trainer leaves them out of log-probabilities
    and entropy. `low`/`high` are each agent's bounds, for clipping.
    """
    dims = [math.prod(s.shape) for s in action_spaces]
    D = max(dims)
    has_dim = np.arange(D)[None, :] < np.asarray(dims)[:, None]  # [A, D]
    low = np.full((len(action_spaces), D), -np.inf, np.float32)  # [A, D]
    high = np.full((len(action_spaces), D), np.inf, np.float32)  # [A, D]
    for i, (space, d) in enumerate(zip(action_spaces, dims, strict=True)):
        low[i, :d] = space.low.reshape(-1)
        high[i, :d] = space.high.reshape(-1)
    # The spec's bounds cover every agent having the dimension: the loosest bound in each.
    spec = ActionSpec(
        kind="continuous",
        low=tuple(float(x) for x in np.where(has_dim, low, np.inf).min(0)),
        high=tuple(float(x) for x in np.where(has_dim, high, -np.inf).max(0)),
    )
    return spec, has_dim, low, high


def _env_state(env: Any, name: str) -> np.ndarray | None:
    """`env.state()` after a reset, or None when the env has no global state."""
    # Asked of the env itself rather than read off `state_space`: some envs
    # declare the space and still raise in state().
    where = "the probe copy, after reset(seed=0)"
    try:
        env.reset(seed=0)
    except Exception as err:
        raise env_raised(name, "reset()", where, err) from err
    try:
        return np.asarray(env.state())
    except (AttributeError, NotImplementedError):
        return None
    except Exception as err:
        error = env_raised(name, "state()", where, err)
        raise EnvError(f"{error}; --use-global-state false never calls it") from err


MPE_MODULES = ("mpe2.", "pettingzoo.mpe.")  # PettingZoo's MPE, in its old and new homes
# EPyMARL's MAPPO on the Gymnasium LBF and RWARE (`gymnasium:<module>:<id>`): the common
# reward, scored up to the time limit, which both packages' own steps report as a terminal
# step (`truncated` is always False), so no cut is ever there to bootstrap.
EPYMARL_CONVENTIONS = {
    module: TaskConventions(
        source=f"EPyMARL's common reward; {module} ends its time limit as a terminal step",
        time_limit_in_task=True,
        team_reward=True,
    )
    for module in ("lbforaging", "rware")
}


def _family_conventions(env: Any) -> TaskConventions:
    """What the official MAPPO code does on the env's family: MPE's for PettingZoo's MPE
    tasks (the same tasks as the built-in ones), EPyMARL's for LBF and RWARE, else nothing."""
    module = type(getattr(env, "unwrapped", env)).__module__ + "."
    if module.startswith(MPE_MODULES):
        return mpe_conventions(module)
    return EPYMARL_CONVENTIONS.get(module.partition(".")[0], TaskConventions())


def _episode_length(env: Any) -> int | None:
    """The env's step limit if it exposes one under a usual name, else None."""
    for obj in (env, getattr(env, "unwrapped", None)):
        for attr in EPISODE_LENGTH_ATTRS:
            value = getattr(obj, attr, None)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)
    return None
