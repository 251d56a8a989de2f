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
  everything it holds: objects' attributes, lists, tuples, dicts keyed by
  anything, such as football's opponent AI, which keys its plans by `Agent`; see
  `_walk`) is saved, all copies are reset, and the copies that were not done
  get their rows back with one `torch.where` per tensor; what a full reset
  redraws for all copies at once (simple_speaker_listener's goal landmark,
  colours) or builds anew (sampling's gaussians) goes back as it was, as
  `reset_at` would keep it, with the new episode's rows where done.
  The same walk gives the env's `state_dict` for exact resumption: the
  per-copy tensors, the shared values (numbers, small tensors, which object an
  entry names), the dicts and lists holding them, and the RNG states VMAS
  keeps. A scenario that kept per-copy state outside tensors would escape both
  (none of VMAS's does, as far as tests/test_vmas_twin.py checks, which runs
  them all). Copies still share the random streams: a reset draws for every
  copy, and football's AI draws noise for the copies where a player lacks the
  ball, so one copy's reset changes the others' later draws (as with VMAS's own
  `reset_at`), not their state.

Each `VmasEnv` keeps its own VMAS random streams (VMAS shares one set between
all its envs in a process, so training and evaluation envs would otherwise
draw from each other's). On CUDA, scenarios draw from torch's CUDA generator,
which the trainer saves with its own RNG.
"""

from __future__ import annotations

import ast
import collections
import difflib
import functools
import types
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mappo.envs.base import (
    ActionSpec,
    EnvError,
    EnvSpec,
    MultiAgentEnv,
    MultiAgentStepResult,
    error_line,
)
from mappo.errors import ConfigError

# BenchMARL's VMAS tasks end episodes after 100 steps (all but a few long ones); without a
# limit, scenarios that never terminate would never finish an episode.
DEFAULT_MAX_STEPS = 100
# make_env arguments VmasEnv sets itself: its tensors need lists and separate done flags.
RESERVED_KWARGS = (
    "dict_spaces",
    "terminated_truncated",
    "wrapper",
    "wrapper_kwargs",
    "grad_enabled",
    "multidiscrete_actions",
    "num_envs",
    "device",
    "seed",
)


def _refuse_unused(
    name: str, scenario_kwargs: dict[str, Any], caught: list[warnings.WarningMessage]
) -> None:
    """Refuse keywords the scenario did not use (VMAS only warns, "This will turn into an
    error in future versions"), where a misspelt one would train the default silently;
    VMAS's other warnings go on as they came."""
    for warning in caught:
        text = str(warning.message)
        if "passed but not used by the scenario" in text:
            unused = text.removeprefix("Scenario kwargs: ").partition(" passed but")[0]
            raise ConfigError(
                f"config key 'env_kwargs' = {scenario_kwargs!r}: env '{name}' does not use "
                f"{unused} (VMAS passes its scenario only the keywords it reads)"
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


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
    and step in `episodes` (for `mappo eval --render`); `env_name` is what
    `--env` called it (`vmas:<scenario>`). Other keywords go to the scenario
    (`vmas.make_env(..., **scenario_kwargs)`).
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
        env_name: str = "",
        **scenario_kwargs: Any,
    ) -> None:
        name = env_name or scenario  # what --env called it, for messages and the spec
        vmas = import_vmas(name)
        reserved = sorted(set(scenario_kwargs) & set(RESERVED_KWARGS))
        if reserved:
            raise ConfigError(
                f"config key 'env_kwargs' = {scenario_kwargs!r}: env '{name}' "
                f"sets {', '.join(reserved)} itself"
            )
        if not isinstance(continuous_actions, bool):  # "no" would read as true
            raise ConfigError(
                f"config key 'env_kwargs': env '{name}' continuous_actions = "
                f"{continuous_actions!r} must be true or false"
            )
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
        ):
            raise ConfigError(
                f"config key 'env_kwargs': env '{name}' max_steps = {max_steps!r} "
                "must be an integer >= 1, or null for no time limit"
            )
        known = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
        if scenario not in known:
            near = difflib.get_close_matches(scenario, known, n=1)
            prefix = name.removesuffix(scenario)  # as --env spelled it
            hint = f"did you mean '{prefix}{near[0]}'? " if near else ""
            raise ConfigError(
                f"env '{name}': VMAS has no scenario '{scenario}'; {hint}"
                f"its scenarios are {', '.join(known)}"
            )
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
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    self._env = vmas.make_env(
                        scenario,
                        num_envs=num_envs,
                        device=self.device,
                        continuous_actions=continuous_actions,
                        max_steps=max_steps,
                        seed=seed,
                        dict_spaces=False,
                        terminated_truncated=True,
                        **scenario_kwargs,
                    )
            except (AssertionError, ValueError) as err:  # scenarios check kwargs by assert
                raise ConfigError(
                    f"config key 'env_kwargs' = {scenario_kwargs!r}: env "
                    f"'{name}' refused them ({error_line(err)})"
                ) from None
            _refuse_unused(name, scenario_kwargs, caught)
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
                raise ConfigError(
                    f"env '{name}': agent {agent} observes a "
                    f"{type(obs).__name__}; only tensor observations are supported"
                )
        obs_sizes = tuple(int(np.prod(obs.shape[1:])) for obs in first_obs)
        O, A = max(obs_sizes), len(agents)  # noqa: E741 - the data layout's names
        self._obs_equal = len(set(obs_sizes)) == 1
        # Where agent i's entries go in the flattened padded `[A*O]`: i*O .. i*O + O_i.
        self._obs_index = torch.cat(
            [i * O + torch.arange(size, device=dev) for i, size in enumerate(obs_sizes)]
        )  # [sum O_i]
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
            name=name,
            agent_names=agents,
            obs_dim=O,
            state_dim=A * O,
            action=action,
            max_episode_steps=env.max_steps,
            state_source="concat_obs",
            obs_sizes=obs_sizes,
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
            raise ValueError(
                f"{self.spec.name}: actions must have shape {list(expected)}, "
                f"got {list(actions.shape)}"
            )
        per_agent: Sequence[torch.Tensor]
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
                raise EnvError(
                    f"env '{self.spec.name}' failed in step(): "
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
            obs=obs,
            state=obs.flatten(1),
            reward=reward,
            terminated=terminated_ea,
            truncated=truncated_ea,
            alive=self._alive,
            action_mask=self._action_mask,
            env_done=env_done,
            final_obs=final_obs,
            final_state=final_obs.flatten(1),
            info={},
        )

    def rendered_episodes(self) -> list[list[np.ndarray]]:
        """Copy 0's frames, one list per episode begun since the env was built (none unless
        it was built with `record_frames`)."""
        return self.episodes

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
        shared by all copies (numbers, small tensors, which object an entry names:
        simple_speaker_listener's goal), the dicts and lists that hold them, and this env's
        VMAS random streams: enough to continue exactly."""
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
            elif type(value) in (dict, list) and path_of.get(id(value)) == path:
                # Where it is first reached: a scenario may make it as it runs, so that a
                # fresh env has yet to (joint_passage's `info_stored`, made on each step).
                values[path] = (type(value).__name__, len(value))
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
            "numpy_rng": [
                kind,
                torch.from_numpy(keys.astype(np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "python_rng": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` from an env of the same scenario and size.

        Tensors the scenario creates on its first step may be in the snapshot and not yet
        in this env: they are created where the snapshot had them, and so are the dicts and
        lists that hold them.
        """
        slots, objects, shared = _walk(self._env, self.num_envs)
        entries = {path: (owner, key, get, put) for path, owner, key, get, put in shared}
        saved_shared = state.get("shared", {})
        for path, (kind, size) in saved_shared.items():  # containers first, for what they hold
            if kind in ("dict", "list") and path not in objects:
                found = _owner_of(path, objects)
                container = {} if kind == "dict" else [None] * size
                if found is not None and _place(*found, container, objects):
                    objects[path] = container
        for path, tensor in state["world"].items():
            if path in slots:
                owner, key, get, put = slots[path]
                current = get(owner, key)
                if tuple(tensor.shape) != tuple(current.shape):
                    raise ValueError(
                        f"snapshot holds {path} {tuple(tensor.shape)}, this "
                        f"{self.spec.name} env {tuple(current.shape)}"
                    )
                _write(owner, key, put, current, tensor.to(current.device, current.dtype))
                continue
            found = _owner_of(path, objects)
            if (
                found is None
                or tensor.shape[:1] != (self.num_envs,)
                or not _place(*found, tensor.to(self.device).clone(), objects)
            ):
                raise ValueError(
                    f"snapshot holds {path}, which this {self.spec.name} env of "
                    f"{self.num_envs} copies has no place for"
                )
        for path, (kind, saved) in saved_shared.items():
            if kind in ("dict", "list") or (
                kind == "ref" and (saved == path or saved not in objects)
            ):
                continue  # a container placed above, the object there, or built anew
            if kind == "ref":  # as it is now: writing a tuple's item above made a new tuple
                owner, key, get, _ = entries.get(saved, (objects, saved, _get_item, None))
                value = get(owner, key)
            else:
                value = saved
            if kind == "tensor":
                value = value.to(self.device).clone()
            if path in entries:  # through its own setter: a tuple's item makes a new tuple
                owner, key, get, put = entries[path]
                current = get(owner, key)
                if current is not value and not _equal(current, value):
                    put(owner, key, value)
            elif (found := _owner_of(path, objects)) is not None:
                _place(*found, value, objects)
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
        padded = torch.zeros(
            E, self.num_agents * self.spec.obs_dim, device=self.device, dtype=flat.dtype
        )  # [E, A*O]
        return padded.index_copy_(1, self._obs_index, flat).view(E, self.num_agents, -1)

    def _reset_where(self, done: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Restart the copies where `done` `[E]`; the others keep their state. Returns the
        observations `[E, A, O]` to act on: the new episode's where done, `obs` elsewhere."""
        if bool(done.all()):
            return self._stack_obs(self._env.reset())
        # As VMAS's own `reset_at(i)`: only the done copies' rows change. Everything else
        # a full reset redraws (values shared by all copies, such as the goal landmark of
        # simple_speaker_listener, or colours) or builds anew (objects and containers, such
        # as sampling's gaussians) goes back to what it was, and gets the new episode's
        # rows where done: those the reset left at the same path.
        slots, _, shared = _walk(self._env, self.num_envs)
        kept = {path: get(owner, key).clone() for path, (owner, key, get, _) in slots.items()}
        kept_shared = [
            (owner, key, get, put, _copy(get(owner, key))) for _, owner, key, get, put in shared
        ]
        fresh = self._stack_obs(self._env.reset())  # every copy restarts ...
        reset = {
            path: get(owner, key)
            for path, (owner, key, get, _) in _walk(self._env, self.num_envs)[0].items()
        }
        for owner, key, get, put, value in kept_shared:  # ... and the rest goes back
            current = get(owner, key)
            if (
                isinstance(value, torch.Tensor)
                and isinstance(current, torch.Tensor)
                and current.shape == value.shape
            ):
                _write(owner, key, put, current, value)
            elif current is not value:
                put(owner, key, value)
        merged = {}  # all first: a tensor the reset made may be the view of another
        for path, (owner, key, get, _) in slots.items():
            new = reset.get(path)
            if new is None:  # no longer at this path: where the entry is now
                new = get(owner, key)
            if new.shape != kept[path].shape:
                raise EnvError(f"env '{self.spec.name}': reset changed the shape of {path}")
            where = done.view(-1, *[1] * (new.dim() - 1))
            merged[path] = torch.where(where, new, kept[path])
        for path, (owner, key, get, put) in slots.items():
            _write(owner, key, put, get(owner, key), merged[path])
        return torch.where(done[:, None, None], fresh, obs)

    def _frame(self) -> np.ndarray:
        """Copy 0 drawn by VMAS (pyglet, off screen), inside `_own_rng`."""
        try:
            frame = self._env.render(mode="rgb_array", env_index=0)
        except Exception as err:  # pyglet missing, or no display or EGL to draw off screen
            raise ConfigError(
                f"env '{self.spec.name}': VMAS could not render with pyglet "
                f"({error_line(err)}); it needs pyglet<=1.5.27 and an OpenGL "
                "display or EGL"
            ) from None
        return np.ascontiguousarray(frame[..., :3], dtype=np.uint8)

    def _start_recording(self) -> None:
        """Begin a new episode's frames (after a reset of every copy), when recording."""
        if self.record_frames:
            with self._own_rng():
                self.episodes.append([self._frame()])


# ---------------------------------------------------------------- per-copy tensors

# Where the walk does not go: the renderer (pyglet's windows, VMAS's geometry) holds no
# per-copy state, and code, classes and modules hold none of one env's.
_NOT_WALKED_MODULES = ("pyglet", "vmas.simulator.rendering")
_ATOMS = (type(None), bool, int, float, complex, str, bytes)
_NOT_WALKED_TYPES = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    torch.Tensor,
    np.ndarray,
)

# (owner, key, getter, setter): one entry of an object or container, as the walk reads it.
_Entry = tuple[Any, Any, Any, Any]


def _get_attr(owner: Any, key: str) -> Any:
    return getattr(owner, key)


def _set_attr(owner: Any, key: str, value: Any) -> None:
    setattr(owner, key, value)


def _get_item(owner: Any, key: Any) -> Any:
    return owner[key]


def _set_item(owner: Any, key: Any, value: Any) -> None:
    owner[key] = value


def _tuple_setter(holder: _Entry) -> Any:
    """A setter for the items of the tuple in entry `holder`: a tuple cannot change, so a
    new one, with the item replaced, goes where the tuple is (read anew at every call, so
    that two replacements in a row both stay)."""
    holder_owner, holder_key, holder_get, holder_put = holder

    def put(owner: Any, key: int, value: Any) -> None:
        current = holder_get(holder_owner, holder_key)
        items = list(current)
        items[key] = value
        kind = type(current)
        holder_put(
            holder_owner, holder_key, kind._make(items) if hasattr(kind, "_make") else kind(items)
        )  # namedtuple

    return put


def _write(owner: Any, key: Any, put: Any, current: torch.Tensor, value: torch.Tensor) -> None:
    """Give a slot `value`: in place, so that every alias of the tensor sees it, or as a new
    tensor where the current one cannot be written (an expanded view)."""
    try:
        current.copy_(value)
    except RuntimeError:
        put(owner, key, value.clone())


def _walkable(value: Any) -> bool:
    """Whether the walk goes into `value`: containers, and any object with attributes
    (VMAS's entities and world, a scenario's helpers such as football's opponent AI,
    dataclasses, torch distributions) but code, classes, modules and the renderer."""
    if isinstance(value, (dict, list, tuple)):
        return True
    if type(value) in _ATOMS or isinstance(value, _NOT_WALKED_TYPES):
        return False
    if (type(value).__module__ or "").startswith(_NOT_WALKED_MODULES):
        return False
    return hasattr(value, "__dict__") or bool(_slot_names(value))


def _named_first(value: Any) -> bool:
    """Whether the walk visits `value` in its first round (see `_walk`): dicts, lists, and
    VMAS's objects: its classes, or a scenario file's, which VMAS loads as a module
    without a name."""
    if isinstance(value, (dict, list)):
        return True
    module = type(value).__module__ or ""
    return module == "" or module.startswith("vmas.")


@functools.cache
def _class_slots(cls: type) -> tuple[str, ...]:
    """The `__slots__` attributes of `cls` and its bases (private names as Python stores
    them)."""
    names = []
    for base in cls.__mro__:
        slots = base.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{base.__name__.lstrip('_')}{name}"
            names.append(name)
    return tuple(names)


def _slot_names(obj: Any) -> list[str]:
    """The `__slots__` attributes `obj` has set."""
    cls: type = type(obj)
    return [name for name in _class_slots(cls) if hasattr(obj, name)]


def _attributes(obj: Any) -> list[tuple[str, Any]]:
    """`obj`'s own attributes, in its `__dict__` then its `__slots__`."""
    entries = list(vars(obj).items()) if hasattr(obj, "__dict__") else []
    return entries + [(name, getattr(obj, name)) for name in _slot_names(obj)]


def _key_text(key: Any, path_of: dict[int, str]) -> str | None:
    """How a path names the entry of a dict at `key`: a name or a non-negative number as it
    is (as attributes and list items), any other key as `[expression]`, which
    `_key_from_text` reads back: literals, tuples, frozensets, and `ref('path')` for an
    object by the path the walk reached it at. None while such an object has no path."""
    if isinstance(key, str) and not key.startswith("["):
        return key
    if type(key) is int and key >= 0:
        return str(key)
    expression = _key_expression(key, path_of)
    return None if expression is None else f"[{expression}]"


def _key_expression(key: Any, path_of: dict[int, str]) -> str | None:
    """`key` as an expression for `_key_text` (frozensets sorted: their order is not)."""
    if key is None or type(key) in (bool, int, float, str, bytes):
        return repr(key)
    if type(key) in (tuple, frozenset):
        expressions = [_key_expression(k, path_of) for k in key]
        parts = [part for part in expressions if part is not None]
        if len(parts) < len(expressions):
            return None
        if type(key) is tuple:
            return "(" + "".join(f"{part}, " for part in parts) + ")"
        return f"frozenset({{{', '.join(sorted(parts))}}})" if parts else "frozenset()"
    if id(key) in path_of:
        return f"ref({path_of[id(key)]!r})"
    return None


def _key_from_text(owner: dict, text: str, objects: dict[str, Any]) -> Any:
    """The dict key that `_key_text` wrote as `text` (`objects`: the walk's, by path)."""
    if not text.startswith("["):
        return int(text) if text.isdigit() and text not in owner else text
    return _evaluate(ast.parse(text[1:-1], mode="eval").body, objects)


def _evaluate(node: ast.expr, objects: dict[str, Any]) -> Any:
    """The value of an expression of `_key_expression`, which evaluates nothing else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, objects)
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(item, objects) for item in node.elts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id == "frozenset" and len(node.args) <= 1:
            items = node.args[0].elts if node.args and isinstance(node.args[0], ast.Set) else []
            return frozenset(_evaluate(item, objects) for item in items)
        if node.func.id == "ref" and len(node.args) == 1:
            return objects[_evaluate(node.args[0], objects)]
    raise ValueError(f"not a key: {ast.unparse(node)}")


def _owner_of(path: str, objects: dict[str, Any]) -> tuple[Any, str] | None:
    """The object or container a path's last entry belongs to, and that entry's text (which
    may hold dots: dict keys), or None if the walk did not reach it."""
    end = len(path)
    while (dot := path.rfind(".", 0, end)) > 0:
        if path[:dot] in objects:
            return objects[path[:dot]], path[dot + 1 :]
        end = dot
    return None


def _place(owner: Any, text: str, value: Any, objects: dict[str, Any]) -> bool:
    """Set `owner`'s entry named `text` in a path (list items and dict keys as
    `_key_text` writes them); False where there is no such place (a tuple, a key that
    names nothing here)."""
    try:
        if isinstance(owner, list):
            owner[int(text)] = value
        elif isinstance(owner, dict):
            owner[_key_from_text(owner, text, objects)] = value
        elif isinstance(owner, tuple) or not text.isidentifier():
            return False  # an attribute of something this env has not made (yet)
        elif getattr(owner, text, None) is not value:
            setattr(owner, text, value)
    except (ValueError, SyntaxError, KeyError, IndexError, TypeError, AttributeError):
        return False
    return True


def _equal(current: Any, value: Any) -> bool:
    """Whether a snapshot's shared `value` is already what an entry holds (then it stays,
    not replaced: replacing a tuple's item replaces the tuple)."""
    if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor):
        return (
            current.dtype == value.dtype
            and current.shape == value.shape
            and current.device == value.device
            and bool(torch.equal(current, value))
        )
    return type(value) in _ATOMS and type(current) is type(value) and current == value


def _copy(value: Any) -> Any:
    """A tensor cloned (a reset may write into it), anything else as it is."""
    return value.clone() if isinstance(value, torch.Tensor) else value


def _walk(
    env: Any, num_envs: int
) -> tuple[dict[str, _Entry], dict[str, Any], list[tuple[str, Any, Any, Any, Any]]]:
    """Every tensor with one row per copy, `[E, ...]`, reachable from the VMAS env through
    any objects' attributes (`__dict__` and `__slots__`), lists, tuples and dicts (keyed by
    anything: football's opponent AI keys its plans by `Agent`): path →
    (owner, key, getter, setter).

    These hold the simulator's state (entity positions, velocities, step counters,
    scenario bookkeeping such as shaping terms or an AI's plans). The walk visits each
    object once, breadth first in attribute and insertion order, so paths are the same
    for the same scenario. It goes first through VMAS's own objects (`_named_first`),
    lists, and dicts keyed by names and numbers, so that what those reach keeps the paths
    snapshots had before the walk went further; then through the rest (tuples, other
    objects), one at a time; last through dict entries keyed by anything else (objects,
    named by their paths, which they have by then; tuples; see `_key_text`). Rebuilt on every use:
    scenarios add attributes as they run. Also returns every object and container
    visited, by path, and every other entry of theirs (values and references shared by
    all copies): (path, owner, key, getter, setter).
    """
    slots: dict[str, _Entry] = {}
    objects: dict[str, Any] = {}
    path_of: dict[int, str] = {}  # id → path of every object visited
    shared: list[tuple[str, Any, Any, Any, Any]] = []
    seen: set[int] = set()  # objects and per-copy tensors already placed
    queue: collections.deque[tuple[Any, str, _Entry | None]] = collections.deque()
    later: collections.deque[tuple[Any, str, _Entry | None]] = collections.deque()
    keyed: list[tuple[dict, str, int, Any, Any]] = []  # dict entries keyed by objects

    def visit(value: Any, path: str, holder: _Entry | None) -> None:
        seen.add(id(value))
        objects[path] = value
        path_of[id(value)] = path
        queue.append((value, path, holder))

    def entry(owner: Any, key: Any, text: str, value: Any, path: str, get: Any, put: Any) -> None:
        where = f"{path}.{text}"
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == num_envs:
            if id(value) not in seen:
                seen.add(id(value))
                slots[where] = (owner, key, get, put)
            return
        shared.append((where, owner, key, get, put))
        if type(value) in _ATOMS or id(value) in seen or not _walkable(value):
            return
        if _named_first(value):
            visit(value, where, (owner, key, get, put))
        else:  # seen only if nothing else reaches it
            later.append((value, where, (owner, key, get, put)))

    visit(env, "env", None)
    while queue or later or keyed:
        if not queue and later:
            obj, path, holder = later.popleft()
            if id(obj) in seen:
                continue
            visit(obj, path, holder)
            continue
        if not queue:  # every object reachable otherwise has its path: name the rest
            for owner, path, index, key, value in keyed:
                text = _key_text(key, path_of)
                if text is None and _walkable(key) and not isinstance(key, tuple):
                    visit(key, f"{path}.[#{index}]", None)  # reached only as a key
                    text = _key_text(key, path_of)
                entry(owner, key, text or f"[#{index}]", value, path, _get_item, _set_item)
            keyed = []
            continue
        obj, path, holder = queue.popleft()
        if isinstance(obj, dict):
            for index, (key, value) in enumerate(list(obj.items())):
                text = _key_text(key, {}) if isinstance(key, (str, int)) else None
                if text is None:
                    keyed.append((obj, path, index, key, value))
                else:
                    entry(obj, key, text, value, path, _get_item, _set_item)
        elif isinstance(obj, list):
            for index, value in enumerate(list(obj)):
                entry(obj, index, str(index), value, path, _get_item, _set_item)
        elif isinstance(obj, tuple):
            put = _tuple_setter(holder) if holder is not None else None
            for index, value in enumerate(obj):
                entry(obj, index, str(index), value, path, _get_item, put)
        else:
            for name, value in _attributes(obj):
                entry(obj, name, name, value, path, _get_attr, _set_attr)
    return slots, objects, shared
