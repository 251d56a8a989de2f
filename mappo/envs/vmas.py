"""VMAS scenarios (`--env vmas:<scenario>`) as a `MultiAgentEnv` on the training device.

VMAS simulates all E copies of a scenario in torch, on CPU or CUDA; `VmasEnv`
hands its per-agent outputs to the trainer as single tensors:

* observations: VMAS returns one `[E, O_i]` tensor per agent (its own loop over
  agents, which no caller can avoid); they become `[E, A, O]` by one
  `torch.stack` when all agents observe the same size, else by one `torch.cat`
  and one `index_copy_` into a zero-padded tensor (agent i fills its first O_i
  entries). VMAS has no global state: the critic's state is the padded
  observations concatenated, `[E, A*O]`.
* rewards `[E, A]` by one stack; VMAS's per-copy terminated and truncated
  flags `[E]` (`terminated_truncated=True`; truncated at `max_steps`) apply to
  every agent of the copy.
* actions: continuous ones `[E, A, D]` are clipped to each agent's bounds in
  one op (D = the largest agent's size; a smaller agent's extra dimensions are
  masked out of log-probabilities by the action mask and never sent); discrete
  ones `[E, A]` index each agent's own `Discrete(n_i)`, K = max n_i logits,
  the rest masked. VMAS takes a list with one view per agent.
* finished copies restart in place without a loop over copies: VMAS resets a
  single copy (`reset_at(index)`) or all of them, so every per-copy tensor of
  the simulator (those with the copies on their first axis, found by walking
  its objects, see `_walk`) is saved, all copies are reset, and the copies
  that were not done get their rows back with one `torch.where` per tensor;
  what a full reset redraws for all copies at once (simple_speaker_listener's
  goal landmark, colours) goes back as it was, as `reset_at` would keep it.
  The same walk gives the env's `state_dict` for exact resumption: the
  per-copy tensors, the shared values (numbers, small tensors, which object an
  attribute names) and the RNG states VMAS keeps. A scenario that kept
  per-copy state outside tensors would escape both (none of VMAS's does, as
  far as the tests check: balance, navigation, transport, sampling, wheel,
  simple_speaker_listener, give_way).

Each `VmasEnv` keeps its own VMAS random streams (VMAS shares one set between
all its envs in a process, so training and evaluation envs would otherwise
draw from each other's). On CUDA, scenarios draw from torch's CUDA generator,
which the trainer saves with its own RNG.
"""

from __future__ import annotations

import collections
import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mappo.config import ConfigError
from mappo.envs.base import (
    ActionSpec,
    EnvError,
    EnvSpec,
    MultiAgentEnv,
    MultiAgentStepResult,
    error_line,
)
from mappo.envs.registry import VMAS_PREFIX

# BenchMARL's VMAS tasks end episodes after 100 steps (all but a few long ones); without a
# limit, scenarios that never terminate would never finish an episode.
DEFAULT_MAX_STEPS = 100
# make_env arguments VmasEnv sets itself: its tensors need lists and separate done flags.
RESERVED_KWARGS = ("dict_spaces", "terminated_truncated", "wrapper", "wrapper_kwargs",
                   "grad_enabled", "multidiscrete_actions", "num_envs", "device", "seed")


def import_vmas(name: str) -> Any:
    """The `vmas` module, or the one line naming the pip extra."""
    try:
        import vmas
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] != "vmas":
            raise
        raise ConfigError(f"env '{name}' needs VMAS: pip install 'mappo[vmas]'") from None
    return vmas


class VmasEnv(MultiAgentEnv):
    """`num_envs` copies of the VMAS scenario `scenario` on `device`.

    `continuous_actions` (BenchMARL's default for VMAS: True) picks Box or
    Discrete actions; `max_steps` truncates episodes (None: only the scenario
    ends them); `record_frames` keeps an RGB frame of copy 0 after every reset
    and step in `episodes` (for `mappo eval --render`). Other keywords go to
    the scenario (`vmas.make_env(..., **scenario_kwargs)`).
    """

    def __init__(
        self,
        num_envs: int,
        scenario: str,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        continuous_actions: bool = True,
        max_steps: int | None = DEFAULT_MAX_STEPS,
        record_frames: bool = False,
        **scenario_kwargs: Any,
    ) -> None:
        name = VMAS_PREFIX + scenario
        vmas = import_vmas(name)
        reserved = sorted(set(scenario_kwargs) & set(RESERVED_KWARGS))
        if reserved:
            raise ConfigError(f"config key 'env_kwargs' = {scenario_kwargs!r}: env '{name}' "
                              f"sets {', '.join(reserved)} itself")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(
                max_steps, int) or max_steps < 1):
            raise ConfigError(f"config key 'env_kwargs': env '{name}' max_steps = {max_steps!r} "
                              "must be an integer >= 1, or null for no time limit")
        known = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
        if scenario not in known:
            near = difflib.get_close_matches(scenario, known, n=1)
            hint = f"did you mean 'vmas:{near[0]}'? " if near else ""
            raise ConfigError(f"env '{name}': VMAS has no scenario '{scenario}'; {hint}"
                              f"its scenarios are {', '.join(known)}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.record_frames = record_frames
        self.episodes: list[list[np.ndarray]] = []  # frames of copy 0, one list per episode
        # This env's own VMAS random streams: (torch CPU, numpy, python) states.
        from vmas.simulator.environment.environment import Environment

        self._shared_rng: list[Any] = Environment.vmas_random_state
        self._rng = list(self._shared_rng)
        with self._own_rng():
            try:
                self._env = vmas.make_env(
                    scenario, num_envs=num_envs, device=self.device,
                    continuous_actions=continuous_actions, max_steps=max_steps, seed=seed,
                    dict_spaces=False, terminated_truncated=True, **scenario_kwargs,
                )
            except (AssertionError, ValueError) as err:  # scenarios check kwargs by assert
                reason = str(err).strip().splitlines()[0] if str(err).strip() else "refused"
                raise ConfigError(f"config key 'env_kwargs' = {scenario_kwargs!r}: env "
                                  f"'{name}' refused them ({reason})") from None
            first_obs = self._env.reset()
        self._layout(name, first_obs, continuous_actions)
        E, A = num_envs, self.num_agents
        dev = self.device
        self._alive = torch.ones(E, A, dtype=torch.bool, device=dev)
        K = self.spec.action.logits_dim
        self._action_mask = self._static_mask.expand(E, A, K).contiguous()  # [E, A, K]
        self._false_e = torch.zeros(E, dtype=torch.bool, device=dev)
        self._false_ea = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self._obs = self._stack_obs(first_obs)  # [E, A, O]
        self._start_recording()

    # ------------------------------------------------------------------ layout

    def _layout(self, name: str, first_obs: list[Any], continuous: bool) -> None:
        """Spec, padding indices, bounds and static mask, read off the VMAS env's spaces."""
        env, dev = self._env, self.device
        agents = tuple(agent.name for agent in env.agents)
        for agent, obs in zip(agents, first_obs, strict=True):
            if not isinstance(obs, torch.Tensor):
                raise ConfigError(f"env '{name}': agent {agent} observes a "
                                  f"{type(obs).__name__}; only tensor observations are supported")
        obs_sizes = tuple(int(np.prod(obs.shape[1:])) for obs in first_obs)
        O, A = max(obs_sizes), len(agents)  # noqa: E741 - the data layout's names
        self._obs_equal = len(set(obs_sizes)) == 1
        # Where agent i's entries go in the flattened padded `[A*O]`: i*O .. i*O + O_i.
        self._obs_index = torch.cat([
            i * O + torch.arange(size, device=dev) for i, size in enumerate(obs_sizes)
        ])  # [sum O_i]
        spaces = list(env.action_space.spaces)
        if continuous:
            dims = [int(np.prod(space.shape)) for space in spaces]
            D = max(dims)
            low = torch.zeros(A, D)  # [A, D]; a padded dimension is clipped to 0, never sent
            high = torch.zeros(A, D)
            for i, (space, d) in enumerate(zip(spaces, dims, strict=True)):
                low[i, :d] = torch.as_tensor(space.low.reshape(-1))
                high[i, :d] = torch.as_tensor(space.high.reshape(-1))
            self._action_sizes = dims
            self._low, self._high = low.to(dev), high.to(dev)
            self._static_mask = (torch.arange(D)[None, :] < torch.tensor(dims)[:, None]).to(dev)
            has_dim = self._static_mask.cpu()
            action = ActionSpec(
                kind="continuous",
                low=tuple(float(x) for x in torch.where(has_dim, low, torch.inf).amin(0)),
                high=tuple(float(x) for x in torch.where(has_dim, high, -torch.inf).amax(0)),
            )
        else:
            sizes = [int(space.n) for space in spaces]
            K = max(sizes)
            self._action_sizes = [1] * A
            self._static_mask = (torch.arange(K)[None, :] < torch.tensor(sizes)[:, None]).to(dev)
            action = ActionSpec(kind="discrete", nvec=(K,))
        self.spec = EnvSpec(
            name=name, agent_names=agents, obs_dim=O, state_dim=A * O, action=action,
            max_episode_steps=env.max_steps, state_source="concat_obs", obs_sizes=obs_sizes,
        )

    # -------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every copy (reseeding this env's VMAS streams if `seed` is given);
        obs `[E, A, O]`."""
        with self._own_rng():
            self._obs = self._stack_obs(self._env.reset(seed=seed))
        self._start_recording()
        return self._obs

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (discrete) or `[E, A, D]` (continuous); finished copies
        restart in place."""
        E, A = self.num_envs, self.num_agents
        continuous = self.spec.action.kind == "continuous"
        expected = (E, A, self.spec.action.action_dim) if continuous else (E, A)
        if tuple(actions.shape) != expected:
            raise ValueError(f"{self.spec.name}: actions must have shape {list(expected)}, "
                             f"got {list(actions.shape)}")
        if continuous:
            per_agent = actions.clamp(self._low, self._high).unbind(1)  # A views [E, D]
            if len(set(self._action_sizes)) > 1:
                per_agent = [a[:, :d] for a, d in zip(per_agent, self._action_sizes, strict=True)]
        else:
            per_agent = actions.unsqueeze(-1).unbind(1)  # A views [E, 1]
        with self._own_rng():
            try:
                obs_list, rewards, terminated, truncated, _ = self._env.step(list(per_agent))
            except (AssertionError, RuntimeError) as err:  # VMAS checks its inputs by assert
                raise EnvError(f"env '{self.spec.name}' failed in step(): "
                               f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                               ) from err
            obs = self._stack_obs(obs_list)  # [E, A, O]
            reward = torch.stack(rewards, dim=1)  # [E, A]
            env_done = terminated | truncated  # [E]
            final_obs = obs
            if self.record_frames:
                self.episodes[-1].append(self._frame())
            if bool(env_done.any()):
                obs = self._reset_where(env_done, obs)
                if self.record_frames and bool(env_done[0]):
                    self.episodes.append([self._frame()])
                per_agent_shape = (E, A)
                terminated_ea = terminated.unsqueeze(1).expand(per_agent_shape)
                truncated_ea = truncated.unsqueeze(1).expand(per_agent_shape)
            else:
                env_done, terminated_ea = self._false_e, self._false_ea
                truncated_ea = self._false_ea
        self._obs = obs
        return MultiAgentStepResult(
            obs=obs, state=obs.flatten(1), reward=reward, terminated=terminated_ea,
            truncated=truncated_ea, alive=self._alive, action_mask=self._action_mask,
            env_done=env_done, final_obs=final_obs, final_state=final_obs.flatten(1), info={},
        )

    def get_global_state(self) -> torch.Tensor:
        """All agents' padded observations concatenated, `[E, A*O]` (VMAS has no state)."""
        return self._obs.flatten(1)

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every copy, zero-padded, `[E, O]`."""
        return self._obs[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Each agent's own logits (or box dimensions), `[E, A, K]`; the same every step."""
        return self._action_mask

    def get_alive(self) -> torch.Tensor:
        """Every agent acts at every step, `[E, A]`."""
        return self._alive

    def state_dict(self) -> dict[str, Any]:
        """Every per-copy tensor of the simulator by its path from the env, the values
        shared by all copies (numbers, small tensors, which object an attribute names:
        simple_speaker_listener's goal), and this env's VMAS random streams: enough to
        continue exactly."""
        slots, objects, shared = _walk(self._env, self.num_envs)
        world = {path: get(owner, key).clone() for path, (owner, key, get, _) in slots.items()}
        path_of = {id(obj): path for path, obj in objects.items()}
        values: dict[str, tuple[str, Any]] = {}
        for path, owner, key, get, _ in shared:
            value = get(owner, key)
            if value is None or isinstance(value, (bool, int, float, str)):
                values[path] = ("value", value)
            elif isinstance(value, torch.Tensor):
                values[path] = ("tensor", value.clone())
            elif id(value) in path_of:
                values[path] = ("ref", path_of[id(value)])
        torch_rng, numpy_rng, python_rng = self._rng
        kind, keys, pos, has_gauss, cached = numpy_rng
        version, internal, gauss_next = python_rng
        return {
            "world": world,
            "shared": values,
            "obs": self._obs.clone(),
            "torch_rng": torch_rng.clone(),
            "numpy_rng": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                          int(has_gauss), float(cached)],
            "python_rng": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` from an env of the same scenario and size.

        Tensors the scenario creates on its first step may be in the snapshot and not yet
        in this env: they are created where the snapshot had them.
        """
        slots, objects, _ = _walk(self._env, self.num_envs)
        for path, tensor in state["world"].items():
            if path in slots:
                owner, key, get, put = slots[path]
                current = get(owner, key)
                if tuple(tensor.shape) != tuple(current.shape):
                    raise ValueError(f"snapshot holds {path} {tuple(tensor.shape)}, this "
                                     f"{self.spec.name} env {tuple(current.shape)}")
                _write(owner, key, put, current, tensor.to(current.device, current.dtype))
                continue
            owner_path, _, key = path.rpartition(".")
            if owner_path not in objects or tensor.shape[:1] != (self.num_envs,):
                raise ValueError(f"snapshot holds {path}, which this {self.spec.name} env of "
                                 f"{self.num_envs} copies has no place for")
            _place(objects[owner_path], key, tensor.to(self.device).clone())
        for path, (kind, saved) in state.get("shared", {}).items():
            owner_path, _, key = path.rpartition(".")
            if owner_path not in objects or (kind == "ref" and saved not in objects):
                continue  # built anew by this env's scenario, as the snapshot's was
            value = objects[saved] if kind == "ref" else saved
            if kind == "tensor":
                value = value.to(self.device).clone()
            _place(objects[owner_path], key, value)
        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        version, internal, gauss_next = state["python_rng"]
        self._rng = [
            state["torch_rng"].clone(),
            (kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)),
            (version, tuple(int(x) for x in internal.tolist()), gauss_next),
        ]
        self._obs = state["obs"].to(self.device)

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Each agent's own action box, low and high `[A, D]` (0 on padded dimensions);
        discrete actions have none (`[A, 0]`)."""
        if self.spec.action.kind == "discrete":
            empty = np.zeros((self.num_agents, 0), np.float32)
            return empty, empty
        return self._low.cpu().numpy(), self._high.cpu().numpy()

    # -------------------------------------------------------------- internals

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run VMAS calls on this env's random streams: VMAS keeps one set for all its envs
        (a class attribute its calls swap in and out), so ours go in it for the call."""
        shared = self._shared_rng
        outside = list(shared)
        shared[:] = self._rng
        try:
            yield
        finally:
            self._rng = list(shared)
            shared[:] = outside

    def _stack_obs(self, obs_list: list[torch.Tensor]) -> torch.Tensor:
        """VMAS's per-agent observations `[E, O_i]` as one zero-padded `[E, A, O]` tensor."""
        E = self.num_envs
        if self._obs_equal:
            return torch.stack([o.reshape(E, -1) for o in obs_list], dim=1)
        flat = torch.cat([o.reshape(E, -1) for o in obs_list], dim=1)  # [E, sum O_i]
        padded = torch.zeros(E, self.num_agents * self.spec.obs_dim, device=self.device,
                             dtype=flat.dtype)  # [E, A*O]
        return padded.index_copy_(1, self._obs_index, flat).view(E, self.num_agents, -1)

    def _reset_where(self, done: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Restart the copies where `done` `[E]`; the others keep their state. Returns the
        observations `[E, A, O]` to act on: the new episode's where done, `obs` elsewhere."""
        if bool(done.all()):
            return self._stack_obs(self._env.reset())
        # As VMAS's own `reset_at(i)`: only the done copies' rows change. Everything else
        # a full reset redraws (values shared by all copies, such as the goal landmark of
        # simple_speaker_listener, or colours) goes back to what it was.
        slots, _, shared = _walk(self._env, self.num_envs)
        kept = {path: get(owner, key).clone() for path, (owner, key, get, _) in slots.items()}
        kept_shared = [(owner, key, get, put, _copy(get(owner, key)))
                       for _, owner, key, get, put in shared]
        fresh = self._stack_obs(self._env.reset())  # every copy restarts ...
        for owner, key, get, put, value in kept_shared:  # ... and the rest goes back
            current = get(owner, key)
            if isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor) \
                    and current.shape == value.shape:
                _write(owner, key, put, current, value)
            elif current is not value:
                put(owner, key, value)
        for path, (owner, key, get, put) in slots.items():
            new = get(owner, key)
            if new.shape != kept[path].shape:
                raise EnvError(f"env '{self.spec.name}': reset changed the shape of {path}")
            where = done.view(-1, *[1] * (new.dim() - 1))
            _write(owner, key, put, new, torch.where(where, new, kept[path]))
        return torch.where(done[:, None, None], fresh, obs)

    def _frame(self) -> np.ndarray:
        """Copy 0 drawn by VMAS (pyglet, off screen), inside `_own_rng`."""
        try:
            frame = self._env.render(mode="rgb_array", env_index=0)
        except Exception as err:  # pyglet missing, or no display or EGL to draw off screen
            raise ConfigError(f"env '{self.spec.name}': VMAS could not render with pyglet "
                              f"({error_line(err)}); it needs pyglet<=1.5.27 and an OpenGL "
                              "display or EGL") from None
        return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)

    def _start_recording(self) -> None:
        """Begin a new episode's frames (after a reset of every copy), when recording."""
        if self.record_frames:
            with self._own_rng():
                self.episodes.append([self._frame()])


# ---------------------------------------------------------------- per-copy tensors


def _get_attr(owner: Any, key: str) -> Any:
    return getattr(owner, key)


def _set_attr(owner: Any, key: str, value: Any) -> None:
    setattr(owner, key, value)


def _get_item(owner: Any, key: Any) -> Any:
    return owner[key]


def _set_item(owner: Any, key: Any, value: Any) -> None:
    owner[key] = value


def _write(owner: Any, key: Any, put: Any, current: torch.Tensor, value: torch.Tensor) -> None:
    """Give a slot `value`: in place, so that every alias of the tensor sees it, or as a new
    tensor where the current one cannot be written (an expanded view)."""
    try:
        current.copy_(value)
    except RuntimeError:
        put(owner, key, value.clone())


def _place(owner: Any, key: str, value: Any) -> None:
    """Set `owner`'s entry `key` (as a path writes it: list indices and dict keys as text)."""
    if isinstance(owner, list):
        owner[int(key)] = value
    elif isinstance(owner, dict):
        owner[key if key in owner or not key.isdigit() else int(key)] = value
    elif getattr(owner, key, None) is not value:
        setattr(owner, key, value)


def _is_simulator_object(obj: Any) -> bool:
    """Whether `obj` belongs to VMAS: its classes, or a scenario file's, which VMAS loads
    as a module without a name. Its renderer holds no per-copy state."""
    module = type(obj).__module__ or ""
    return (module == "" or module.startswith("vmas.")) and not module.startswith(
        "vmas.simulator.rendering")


def _per_env_slots(env: Any, num_envs: int) -> dict[str, tuple[Any, Any, Any, Any]]:
    """The per-copy tensors of `_walk`: path → (owner, key, getter, setter)."""
    return _walk(env, num_envs)[0]


def _copy(value: Any) -> Any:
    """A tensor cloned (a reset may write into it), anything else as it is."""
    return value.clone() if isinstance(value, torch.Tensor) else value


def _walk(env: Any, num_envs: int) -> tuple[dict[str, tuple[Any, Any, Any, Any]],
                                            dict[str, Any], list[tuple[str, Any, Any, Any, Any]]]:
    """Every tensor with one row per copy, `[E, ...]`, reachable from the VMAS env through
    its own objects, lists and dicts: path → (owner, key, getter, setter).

    These hold the simulator's state (entity positions, velocities, step counters,
    scenario bookkeeping such as shaping terms). The walk visits each object once,
    breadth first in attribute order, so paths are the same for the same scenario.
    Rebuilt on every use: scenarios add attributes as they run. Also returns every
    object and container visited, by path, and every other entry of theirs (values and
    references shared by all copies): (path, owner, key, getter, setter).
    """
    slots: dict[str, tuple[Any, Any, Any, Any]] = {}
    objects: dict[str, Any] = {}
    shared: list[tuple[Any, Any, Any, Any]] = []
    seen: set[int] = set()
    queue: collections.deque[tuple[Any, str]] = collections.deque([(env, "env")])
    while queue:
        obj, path = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        objects[path] = obj
        if isinstance(obj, dict):  # keyed by names or numbers (object keys make no path)
            entries = [(k, v) for k, v in obj.items() if isinstance(k, (str, int))]
            get, put = _get_item, _set_item
        elif isinstance(obj, list):
            entries, get, put = list(enumerate(obj)), _get_item, _set_item
        else:
            entries, get, put = list(vars(obj).items()), _get_attr, _set_attr
        for key, value in entries:
            where = f"{path}.{key}"
            if isinstance(value, torch.Tensor) and value.dim() >= 1 \
                    and value.shape[0] == num_envs:
                if id(value) not in seen:
                    seen.add(id(value))
                    slots[where] = (obj, key, get, put)
                continue
            shared.append((where, obj, key, get, put))
            if isinstance(value, (dict, list)) or (
                    hasattr(value, "__dict__") and _is_simulator_object(value)):
                queue.append((value, where))
    return slots, objects, shared
