"""Any PettingZoo `ParallelEnv` as a `MultiAgentEnv`: E copies, batched tensors out.

Two layers:

* `PettingZooBatch`, a `gymnasium.Env` that owns k copies of the PettingZoo env
  and presents them as fixed-shape arrays. Its *observation* is a `Dict` of
  Boxes carrying everything a step produces (obs, state, reward, flags, masks,
  final obs/state), and it resets finished copies itself. To gymnasium it is an
  env that never ends: it always reports reward 0 and terminated/truncated
  False, so gymnasium's own autoreset never fires.
* `PettingZooWrapper`, the `MultiAgentEnv`. With `num_workers=0` it holds one
  `PettingZooBatch` of all E copies and calls it directly. With W workers it
  runs W batches of E/W copies in gymnasium's `AsyncVectorEnv` with
  `shared_memory=True`: each worker writes its batch's arrays into shared
  memory, so per step only the actions and gymnasium's scalar placeholders go
  through the pipes. Either way the arrays become torch tensors once per step.

Agent slots are `env.possible_agents` in order. A slot whose agent has finished
or is absent from the observation dict is not alive: zero observation, every
action legal (so distributions stay valid), reward 0, and no action is sent
for it. A copy's episode ends when no agent is left alive (or `env.agents` is
empty); it is then reset in place and `final_obs`/`final_state` keep what the
finished episode reached.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from pettingzoo.utils.env import AECEnv

from mappo.envs.base import (
    ActionSpec,
    EnvError,
    EnvSpec,
    MultiAgentEnv,
    MultiAgentStepResult,
)

logger = logging.getLogger(__name__)

# Where the env's episode length may be stored, on the env or its unwrapped base.
EPISODE_LENGTH_ATTRS = ("max_episode_steps", "max_cycles", "max_steps")


@dataclass(frozen=True)
class PettingZooLayout:
    """How one PettingZoo env maps onto fixed-shape arrays; read off a probe copy.

    Picklable, so worker processes build their batch from it without probing again.
    `static_mask` `[A, K]` marks each agent's own actions among the K logits;
    `mask_index[i]` lists the logits the env's own `action_mask` of agent i
    covers (its sub-actions' blocks, in order). `low`/`high` `[A, D]` are each
    agent's Box bounds, padded with -inf/inf on dimensions it does not have.
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

    @property
    def obs_dim(self) -> int:
        """Padded observation width O: the largest agent's."""
        return max(self.obs_sizes)

    def step_space(self, k: int) -> spaces.Dict:
        """The Dict of Boxes one step of k copies fills, shared memory included."""
        A, S, K = len(self.agents), self.state_dim, self.action.logits_dim
        obs_dim = self.obs_dim

        def real(*shape: int) -> spaces.Box:
            return spaces.Box(-np.inf, np.inf, shape, np.float32)

        def flag(*shape: int) -> spaces.Box:
            return spaces.Box(0, 1, shape, np.bool_)

        return spaces.Dict({
            "obs": real(k, A, obs_dim), "state": real(k, S), "reward": real(k, A),
            "terminated": flag(k, A), "truncated": flag(k, A), "alive": flag(k, A),
            "action_mask": flag(k, A, K), "env_done": flag(k),
            "final_obs": real(k, A, obs_dim), "final_state": real(k, S),
        })

    def action_space(self, k: int) -> spaces.Box:
        """Actions of k copies: `[k, A, n_sub]` int64, or `[k, A, D]` float32."""
        A, n = len(self.agents), self.action.action_dim
        if self.action.kind == "discrete":
            high = np.broadcast_to(np.asarray(self.action.nvec) - 1, (k, A, n))
            return spaces.Box(np.zeros((k, A, n), np.int64), high.astype(np.int64), dtype=np.int64)
        return spaces.Box(-np.inf, np.inf, (k, A, n), np.float32)


class PettingZooBatch(gymnasium.Env):
    """k copies of a PettingZoo `ParallelEnv` as one gymnasium env of arrays.

    `reset(seed=s)` resets copy j with seed `s + j`; `step(actions)` takes
    `[k, A, n]` actions and returns the Dict of step arrays (`PettingZooLayout.step_space`) as its
    observation (reward 0, never terminated or truncated: finished copies are
    reset here). The copies are created on the first reset, so the throwaway
    instance `AsyncVectorEnv` makes in the parent process to read the spaces
    costs nothing. The returned arrays are reused between calls.
    """

    def __init__(
        self, env_fn: Callable[[], Any], layout: PettingZooLayout, num_copies: int
    ) -> None:
        self.env_fn, self.layout, self.num_copies = env_fn, layout, num_copies
        self.observation_space = layout.step_space(num_copies)
        self.action_space = layout.action_space(num_copies)
        self.envs: list[Any] = []
        k, A = num_copies, len(layout.agents)
        self._out = {
            key: np.zeros(space.shape, space.dtype)
            for key, space in self.observation_space.spaces.items()
        }
        # [k, A, O]: the last obs dict as read, agents that just finished included
        self._raw_obs = np.zeros((k, A, layout.obs_dim), np.float32)
        self._env_mask: list[dict[int, np.ndarray]] = [{} for _ in range(k)]
        self._episode_steps = np.zeros(k, np.int64)  # [k]: steps into each copy's episode

    # ------------------------------------------------------------- gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Reset every copy (copy j with seed `seed + j`, if given); the step arrays."""
        super().reset(seed=seed)
        if not self.envs:
            self.envs = [self.env_fn() for _ in range(self.num_copies)]
        out = self._out
        self._episode_steps[:] = 0
        for j, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + j)
            self._read_obs(j, obs, np.zeros(len(self.layout.agents), np.bool_))
            self._publish(j)
        for key in ("reward", "terminated", "truncated", "env_done"):
            out[key][:] = 0
        out["final_obs"][:] = out["obs"]
        out["final_state"][:] = out["state"]
        return out, {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Step every copy with `[k, A, n]` actions; finished copies start over."""
        if self.layout.action.kind == "continuous":
            # One vectorized clip to each agent's own bounds, before any per-agent work.
            actions = np.clip(actions, self.layout.low, self.layout.high)
        acted = self._out["alive"].copy()  # [k, A]: the agents whose actions count this step
        for j in range(self.num_copies):
            self._step_copy(j, actions[j], acted[j])
        return self._out, 0.0, False, False, {}

    def close(self) -> None:
        """Close every copy."""
        for env in self.envs:
            env.close()
        self.envs = []

    # ----------------------------------------------------------------- internals

    def _step_copy(self, j: int, actions: np.ndarray, acted: np.ndarray) -> None:
        """Step copy j with its `[A, n]` actions, sending only those of `acted` `[A]` agents."""
        layout, out, env = self.layout, self._out, self.envs[j]
        sent = {
            name: self._env_action(i, actions[i])
            for i, name in enumerate(layout.agents) if acted[i]
        }
        obs, rewards, terminations, truncations, _ = env.step(sent)
        self._episode_steps[j] += 1
        finished = np.zeros(len(layout.agents), np.bool_)  # [A], as the env reports it
        for i, name in enumerate(layout.agents):
            term = bool(terminations.get(name, False))
            trunc = bool(truncations.get(name, False))
            finished[i] = term or trunc
            # Agents that did not act neither earn rewards nor finish (again).
            reward = rewards.get(name, 0.0) if acted[i] else 0.0
            out["reward"][j, i] = self._floats(reward, j, name, "reward", 1)[0]
            out["terminated"][j, i] = term and acted[i]
            out["truncated"][j, i] = trunc and acted[i]
        self._read_obs(j, obs, finished)
        done = not env.agents or not out["alive"][j].any()
        out["env_done"][j] = done
        if done:
            # The finished episode's last view, agents that just finished included.
            out["final_obs"][j] = self._raw_obs[j]
            out["final_state"][j] = self._state(j, self._raw_obs[j])
            self._episode_steps[j] = 0
            obs, _ = env.reset()
            self._read_obs(j, obs, np.zeros(len(layout.agents), np.bool_))
            self._publish(j)
        else:
            self._publish(j)
            out["final_obs"][j] = out["obs"][j]
            out["final_state"][j] = out["state"][j]

    def _read_obs(self, j: int, obs: dict[str, Any], finished: np.ndarray) -> None:
        """Copy j's observation dict into `_raw_obs[j]`; set alive for who may act next."""
        layout = self.layout
        raw = self._raw_obs[j]  # [A, O]
        raw[:] = 0.0
        present = np.zeros(len(layout.agents), np.bool_)  # [A]: in the obs dict
        masks = self._env_mask[j]
        masks.clear()
        for i, name in enumerate(layout.agents):
            if name not in obs:
                continue
            ob = obs[name]
            if layout.dict_obs[i]:
                if not isinstance(ob, dict) or "observation" not in ob:
                    problem = f"expected a dict with 'observation', got {type(ob).__name__}"
                    raise self._error(j, name, "observation", problem)
                if "action_mask" in ob:
                    size = len(layout.mask_index[i])
                    masks[i] = self._floats(ob["action_mask"], j, name, "action_mask", size)
                ob = ob["observation"]
            raw[i, : layout.obs_sizes[i]] = self._floats(
                ob, j, name, "observation", layout.obs_sizes[i]
            )
            present[i] = True
        self._out["alive"][j] = present & ~finished

    def _floats(self, value: Any, j: int, agent: str, field: str, size: int) -> np.ndarray:
        """`value` as `size` float32s, or an EnvError naming env, copy, step, agent and field."""
        try:
            # A float64 beyond float32's range becomes inf, which the trainer's check names.
            with np.errstate(over="ignore"):
                flat = np.asarray(value, np.float32).reshape(-1)
        except (TypeError, ValueError) as err:
            raise self._error(j, agent, field, f"not numbers ({err})") from None
        if flat.size != size:
            raise self._error(j, agent, field, f"{flat.size} values where its space has {size}")
        return flat

    def _error(self, j: int, agent: str, field: str, problem: str) -> EnvError:
        """An EnvError for a malformed value of one agent's field in copy j."""
        return EnvError(
            f"env '{self.layout.name}' returned a bad {field} for agent '{agent}' in env copy "
            f"{j} at episode step {self._episode_steps[j]}: {problem}"
        )

    def _publish(self, j: int) -> None:
        """Fill obs, action_mask and state of copy j from `_raw_obs[j]` and alive."""
        layout, out = self.layout, self._out
        alive = out["alive"][j]  # [A]
        out["obs"][j] = self._raw_obs[j] * alive[:, None]  # dead slots read zeros
        mask = out["action_mask"][j]  # [A, K]
        mask[:] = layout.static_mask
        for i, env_mask in self._env_mask[j].items():
            mask[i, layout.mask_index[i]] = np.asarray(env_mask).reshape(-1) != 0
        mask[~alive] = True  # any action is "legal" for a slot whose action is dropped
        out["state"][j] = self._state(j, out["obs"][j])

    def _state(self, j: int, obs: np.ndarray) -> np.ndarray:
        """Global state of copy j, `[S]`: the env's own, or the given `[A, O]` obs flattened."""
        if self.layout.state_source == "env":
            return self._floats(self.envs[j].state(), j, "(global)", "state", self.layout.state_dim)
        return obs.reshape(-1)

    def _env_action(self, i: int, action: np.ndarray) -> Any:
        """Agent i's slice of its padded action row, in the form its space takes."""
        space = self.layout.action_spaces[i]
        if isinstance(space, spaces.Discrete):
            return int(action[0]) + int(space.start)
        if isinstance(space, spaces.MultiDiscrete):
            n = space.nvec.size
            return (action[:n].reshape(space.shape) + space.start).astype(space.dtype)
        return action[: math.prod(space.shape)].reshape(space.shape).astype(space.dtype)


class PettingZooWrapper(MultiAgentEnv):
    """E copies of a PettingZoo `ParallelEnv` behind the batched-tensor env contract.

    `env_fn()` must build one fresh copy. `num_workers=0` steps every copy in
    this process; `num_workers=W` splits them over W processes of gymnasium's
    `AsyncVectorEnv` (shared memory), E/W copies each. Copy i is first reset
    with seed `seed + i`; later auto-resets continue each copy's own RNG.
    Returned tensors are fresh every step.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        num_envs: int,
        num_workers: int = 0,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        name: str | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if num_workers and num_envs % num_workers:
            raise ValueError(
                f"num_envs ({num_envs}) must be a multiple of num_workers ({num_workers}): "
                "every worker steps the same number of copies"
            )
        self.num_envs, self.num_workers = num_envs, num_workers
        self.device = torch.device(device)
        name = name or getattr(env_fn, "__qualname__", None) or repr(env_fn)
        probe = env_fn()
        try:
            layout = inspect_parallel_env(probe, name)
        finally:
            if hasattr(probe, "close"):  # a wrong object still gets its error, not this one
                probe.close()
        self.layout = layout
        self.spec = EnvSpec(
            name=name,
            agent_names=layout.agents,
            obs_dim=layout.obs_dim,
            state_dim=layout.state_dim,
            action=layout.action,
            max_episode_steps=layout.max_episode_steps,
            state_source=layout.state_source,
            obs_sizes=layout.obs_sizes,
        )
        if layout.state_source == "env":
            logger.info("%s: global state from env.state(), %d floats", name, layout.state_dim)
        else:
            logger.info(
                "%s: no env.state(); global state = all agents' padded observations, %d floats",
                name, layout.state_dim,
            )

        copies = num_envs // max(num_workers, 1)
        make_batch = partial(PettingZooBatch, env_fn, layout, copies)
        self._batch: PettingZooBatch | None = None
        self._pool: AsyncVectorEnv | None = None
        if num_workers == 0:
            self._batch = make_batch()
        else:
            self._pool = AsyncVectorEnv(
                [make_batch] * num_workers,
                shared_memory=True,
                copy=False,  # we copy once, into torch
                autoreset_mode=AutoresetMode.DISABLED,  # the batch resets its own copies
            )
        self._copies_per_batch = copies
        # Per-field shape with the worker axis folded into E: [W, k, ...] -> [E, ...].
        step_space = layout.step_space(num_envs)
        self._shapes = {key: space.shape for key, space in step_space.spaces.items()}
        self._action_shape = layout.action_space(num_envs).shape  # [E, A, n]
        self._action_dtype = np.int64 if layout.action.kind == "discrete" else np.float32
        self._closed = False
        self._fields: dict[str, torch.Tensor] = {}
        try:
            self.reset(seed)
        except BaseException:
            self.close()  # do not leave worker processes behind a failed start
            raise

    # ------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy, copy i with seed `seed + i` if given; obs `[E, A, O]`."""
        if self._pool is None:
            arrays, _ = self._batch.reset(seed=seed)
        else:
            k = self._copies_per_batch
            seeds = None if seed is None else [seed + w * k for w in range(self.num_workers)]
            arrays, _ = self._pool.reset(seed=seeds)
        self._load(arrays)
        return self._fields["obs"]

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (Discrete), `[E, A, n]` (MultiDiscrete) or `[E, A, D]` (Box)."""
        E, A, n = self._action_shape
        # A single Discrete sub-action may come without its trailing axis, as the trainer sends it.
        allowed = [(E, A, n), (E, A)] if n == 1 else [(E, A, n)]
        if tuple(actions.shape) not in allowed:
            raise ValueError(
                f"{self.spec.name}: actions must have shape "
                f"{' or '.join(str(list(s)) for s in allowed)}, got {list(actions.shape)}"
            )
        batch = actions.detach().cpu().numpy().astype(self._action_dtype, copy=False)
        batch = batch.reshape(E, A, n)
        if self._pool is None:
            arrays, *_ = self._batch.step(batch)
        else:
            arrays, *_ = self._pool.step(batch.reshape(self.num_workers, -1, A, n))
        self._load(arrays)
        f = self._fields
        return MultiAgentStepResult(
            obs=f["obs"], state=f["state"], reward=f["reward"], terminated=f["terminated"],
            truncated=f["truncated"], alive=f["alive"], action_mask=f["action_mask"],
            env_done=f["env_done"], final_obs=f["final_obs"], final_state=f["final_state"],
            info={},
        )

    def get_global_state(self) -> torch.Tensor:
        """Global state of the current step, `[E, S]`."""
        return self._fields["state"]

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every copy, `[E, O]`."""
        return self._fields["obs"][:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Legal logits of the current step, `[E, A, K]` bool."""
        return self._fields["action_mask"]

    def get_alive(self) -> torch.Tensor:
        """Which agent slots act at the current step, `[E, A]` bool."""
        return self._fields["alive"]

    @property
    def local_envs(self) -> list[Any]:
        """The PettingZoo copies, in order, when they run in this process; [] with workers."""
        return self._batch.envs if self._batch is not None else []

    def close(self) -> None:
        """Shut the worker processes down, or close the in-process copies."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        else:
            self._batch.close()

    # ----------------------------------------------------------------- internals

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        """Turn the batch's (or the shared memory's) arrays into fresh tensors on `device`."""
        # copy=True: the arrays are overwritten by the next step, the tensors must not be.
        self._fields = {
            key: torch.from_numpy(arrays[key].reshape(shape)).to(self.device, copy=True)
            for key, shape in self._shapes.items()
        }


# ---------------------------------------------------------------------- probing


def inspect_parallel_env(env: Any, name: str) -> PettingZooLayout:
    """Read spaces, state and episode length off one copy; raise if it cannot be wrapped."""
    missing = [attr for attr in ("possible_agents", "reset", "step") if not hasattr(env, attr)]
    if missing:
        raise ValueError(
            f"env '{name}' built a {type(env).__name__}, not a PettingZoo ParallelEnv "
            f"(it has no {', '.join(missing)}); for an AEC env pass its parallel_env"
        )
    if isinstance(env, AECEnv):  # has reset/step too, but one agent at a time
        raise ValueError(
            f"env '{name}' built an AEC env ({type(env).__name__}); pass the module's "
            "parallel_env, or wrap it with pettingzoo.utils.conversions.aec_to_parallel"
        )
    agents = tuple(env.possible_agents)
    if not agents:
        raise ValueError(f"env '{name}' has no possible_agents")

    obs_sizes: list[int] = []
    dict_obs: list[bool] = []
    mask_sizes: list[int | None] = []  # entries of the env's own action_mask, if it has one
    for agent in agents:
        space = env.observation_space(agent)
        inner = space
        is_dict = isinstance(space, spaces.Dict)
        if is_dict:
            if "observation" not in space.spaces:
                raise ValueError(
                    f"env '{name}': agent {agent} has a Dict observation space without an "
                    f"'observation' key: {space}"
                )
            inner = space["observation"]
        if not isinstance(inner, spaces.Box):
            raise ValueError(
                f"env '{name}': agent {agent} observes {inner}; only Box observations "
                "(or a Dict of 'observation' Box and 'action_mask') are supported"
            )
        obs_sizes.append(math.prod(inner.shape))
        dict_obs.append(is_dict)
        has_mask = is_dict and "action_mask" in space.spaces
        mask_sizes.append(math.prod(space["action_mask"].shape) if has_mask else None)

    action_spaces = tuple(env.action_space(agent) for agent in agents)
    if all(isinstance(s, (spaces.Discrete, spaces.MultiDiscrete)) for s in action_spaces):
        action, static_mask, mask_index = _discrete_layout(agents, action_spaces)
        for agent, size, index in zip(agents, mask_sizes, mask_index, strict=True):
            if size is not None and size != len(index):
                raise ValueError(
                    f"env '{name}': agent {agent}'s action_mask has {size} entries but its "
                    f"action space has {len(index)} actions"
                )
        low = high = np.zeros((len(agents), 0), np.float32)
    elif all(isinstance(s, spaces.Box) for s in action_spaces):
        if any(size is not None for size in mask_sizes):
            raise ValueError(f"env '{name}': an action_mask needs discrete actions")
        action, low, high = _box_layout(action_spaces)
        static_mask = np.ones((len(agents), action.logits_dim), np.bool_)
        mask_index = tuple(np.zeros(0, np.int64) for _ in agents)
    else:
        listing = ", ".join(f"{a}: {s}" for a, s in zip(agents, action_spaces, strict=True))
        raise ValueError(
            f"env '{name}': agents must all act in Discrete/MultiDiscrete spaces or all in "
            f"Box spaces; got {listing}"
        )

    state_dim = _env_state_dim(env)
    state_source: Literal["env", "concat_obs"] = "env" if state_dim is not None else "concat_obs"
    if state_dim is None:
        state_dim = len(agents) * max(obs_sizes)
    return PettingZooLayout(
        name=name, agents=agents, obs_sizes=tuple(obs_sizes), dict_obs=tuple(dict_obs),
        action_spaces=action_spaces, action=action, static_mask=static_mask,
        mask_index=mask_index, low=low, high=high, state_source=state_source,
        state_dim=state_dim, max_episode_steps=_episode_length(env),
    )


def _discrete_layout(
    agents: tuple[str, ...], action_spaces: tuple[spaces.Space, ...]
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
    action_spaces: tuple[spaces.Space, ...],
) -> tuple[ActionSpec, np.ndarray, np.ndarray]:
    """A D-dimensional box (D = largest agent) and per-agent bounds `[A, D]` for clipping."""
    dims = [math.prod(s.shape) for s in action_spaces]
    D = max(dims)
    low = np.full((len(action_spaces), D), -np.inf, np.float32)  # [A, D]
    high = np.full((len(action_spaces), D), np.inf, np.float32)  # [A, D]
    for i, (space, d) in enumerate(zip(action_spaces, dims, strict=True)):
        low[i, :d] = space.low.reshape(-1)
        high[i, :d] = space.high.reshape(-1)
    # The spec's bounds cover every agent having the dimension: the loosest bound in each.
    has_dim = np.arange(D)[None, :] < np.asarray(dims)[:, None]  # [A, D]
    spec = ActionSpec(
        kind="continuous",
        low=tuple(float(x) for x in np.where(has_dim, low, np.inf).min(0)),
        high=tuple(float(x) for x in np.where(has_dim, high, -np.inf).max(0)),
    )
    return spec, low, high


def _env_state_dim(env: Any) -> int | None:
    """Size of `env.state()` after a reset, or None when the env has no global state."""
    # Asked of the env itself rather than read off `state_space`: some envs
    # declare the space and still raise in state().
    env.reset(seed=0)
    try:
        return int(np.asarray(env.state()).size)
    except (AttributeError, NotImplementedError):
        return None


def _episode_length(env: Any) -> int | None:
    """The env's step limit if it exposes one under a usual name, else None."""
    for obj in (env, getattr(env, "unwrapped", None)):
        for attr in EPISODE_LENGTH_ATTRS:
            value = getattr(obj, attr, None)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                return int(value)
    return None
