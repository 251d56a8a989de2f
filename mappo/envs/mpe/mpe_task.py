"""What every built-in MPE task shares: time limits, auto-reset, snapshots, getters.

A task (spread, reference, speaker-listener) subclasses `MpeTask` and says only
what is particular to its scenario: its spec and spawning, how actions move the
world, and what agents observe and are rewarded. `MpeTask.step` strings these
together in mpe2's order:

    _advance(actions)          physics and messages
    geometry = _geometry()     what reward and observation both derive from
    reward = _reward(geometry) at the positions the episode reached
    obs = _observe(geometry)   then state = _global_state(obs)

and then truncates the envs whose episode reached `max_cycles`, restarting them
in place with `_reset_where`. A task's world state lives in the attributes that
its `_snapshot_fields` names, which `state_dict`, `load_state_dict` and
`set_state` (through `_place`) handle without further code.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

import torch

from mappo.envs.base import EnvSpec, MultiAgentEnv, MultiAgentStepResult, TaskConventions
from mappo.envs.mpe.mpe_core import PhysicsParams
from mappo.errors import ConfigError

GeometryT = TypeVar("GeometryT")


# The official MAPPO code on MPE (on-policy, `MPE_env` with `shared_reward`): scored by the
# 25-step return, the limit is terminal (`use_proper_time_limits` off), every agent gets the
# team's reward, and a shared actor sees no agent id.
OFFICIAL_MPE = TaskConventions(
    source="the official MAPPO code on MPE",
    time_limit_in_task=True,
    team_reward=True,
    agent_id=False,
)
# MPE's competitive tasks, which that code does not run: their sides' rewards oppose (in
# simple_tag a catch pays each chaser 10 and costs the prey 10), so a team reward would pay
# the prey for being caught; each agent learns from its own, as the library's default. And
# a shared actor tells the agents apart by the library's one-hot: without it, simple_crypto's
# speaker and listener (both a one-hot key and a one-hot message) look alike, and the sides
# of simple_adversary act as one.
COMPETITIVE_MPE_TASKS = (
    "simple_adversary",
    "simple_crypto",
    "simple_push",
    "simple_tag",
    "simple_world_comm",
)


def mpe_conventions(task: str) -> TaskConventions:
    """`OFFICIAL_MPE` for the MPE task that `task` names (a module such as
    `mpe2.simple_tag.simple_tag`, or JaxMARL's `MPE_simple_tag_v3`), without its team
    reward and its actor without agent ids for a competitive task."""
    if any(name in task for name in COMPETITIVE_MPE_TASKS):
        return dataclasses.replace(OFFICIAL_MPE, team_reward=None, agent_id=None)
    return OFFICIAL_MPE


def check_option(ok: bool, env: str, name: str, value: Any, allowed: str) -> None:
    """Refuse an option (`--env-kwargs`) the task `env` cannot take, in one line naming it."""
    if not ok:
        raise ConfigError(
            f"config key 'env_kwargs': env '{env}' {name} = {value!r} must be {allowed}"
        )


def is_count(value: Any) -> bool:
    """Whether `value` is a whole count of at least 1 (a bool is no count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float (a bool, a string are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# Each task's `physics` option: the order of a world step's integration (mpe_core's docstring).
PHYSICS = {
    "mpe2": "mpe2's: an agent moves with the velocity from before this step's force",
    "official": "the original MPE's and the official MAPPO code's: with the velocity after it",
}


class MpeTask(MultiAgentEnv, Generic[GeometryT]):
    """An MPE scenario over `num_envs` worlds whose episodes end by truncation only.

    `physics` picks the integration order (`PHYSICS`): "mpe2", which the tasks match
    step for step, or "official".

    Subclasses call `__init__` with their spec, create the tensors named in
    `_snapshot_fields`, then call `_begin(seed)`. Results of `step` are fresh
    tensors, except the constant masks (alive, action_mask, terminated, and the
    all-False done flags of steps where no episode ends), which are shared
    between steps: treat results as read-only.
    """

    # Attributes holding the world state `[E, ...]`, replaced (not aliased) every
    # step. Snapshots store each under its name without the leading underscore.
    _snapshot_fields: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        spec: EnvSpec,
        num_envs: int,
        max_cycles: int,
        device: str | torch.device,
        dtype: torch.dtype,
        physics: str = "mpe2",
    ) -> None:
        check_option(
            physics in PHYSICS, spec.name, "physics", physics, f"one of {', '.join(PHYSICS)}"
        )
        check_option(is_count(max_cycles), spec.name, "max_cycles", max_cycles, "an integer >= 1")
        self.spec = dataclasses.replace(spec, conventions=OFFICIAL_MPE)
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_cycles = max_cycles
        self.params = PhysicsParams(move_first=physics == "mpe2")

        E, A, dev = num_envs, spec.num_agents, self.device
        K = spec.action.logits_dim
        # Every agent of every MPE task acts at every step and no episode
        # terminates, so these are constants that `step` hands out as they are.
        self._alive = torch.ones(E, A, dtype=torch.bool, device=dev)
        self._action_mask = torch.ones(E, A, K, dtype=torch.bool, device=dev)
        self._false_ea = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self._false_e = torch.zeros(E, dtype=torch.bool, device=dev)

        self._gen = torch.Generator(device=dev)
        self._steps = torch.zeros(E, dtype=torch.long, device=dev)  # steps taken per env
        # The step count shared by all envs while they run in lockstep (after
        # `reset` or a uniform `set_state`), else None. It lets `step` skip the
        # reset path on steps where no episode can end, without reading the
        # device counters (a host-device sync).
        self._lockstep_steps: int | None = 0
        self._obs = torch.zeros(E, A, spec.obs_dim, device=dev, dtype=dtype)  # [E, A, O]
        self._state = torch.zeros(E, spec.state_dim, device=dev, dtype=dtype)  # [E, S]

    def _begin(self, seed: int | None) -> None:
        """Seed the generator (from the OS when `seed` is None) and start the first episodes."""
        if seed is None:
            self._gen.seed()
        self.reset(seed)

    # ------------------------------------------------------- scenario hooks

    @abstractmethod
    def _reset_where(self, done: torch.Tensor) -> None:
        """Start new episodes in the world of the envs where `done` `[E]` is True.

        The others keep theirs; the step counters are the caller's. Fresh starts
        are drawn for all E envs whatever `done` holds, so the generator advances
        the same way on every reset.
        """

    @abstractmethod
    def _advance(self, actions: torch.Tensor) -> None:
        """Move the world one step under validated actions `[E, A]` (long)."""

    @abstractmethod
    def _geometry(self) -> GeometryT:
        """What reward and observation both derive from, computed once per step."""

    @abstractmethod
    def _reward(self, geometry: GeometryT) -> torch.Tensor:
        """Per-agent reward `[E, A]` of the current world."""

    @abstractmethod
    def _observe(self, geometry: GeometryT) -> torch.Tensor:
        """Every agent's observation of the current world, zero-padded, `[E, A, O]`."""

    def _global_state(self, obs: torch.Tensor) -> torch.Tensor:
        """The critic's state `[E, S]`; by default mpe2's concatenated observations."""
        return obs.reshape(self.num_envs, -1)

    # ------------------------------------------------------------- helpers

    def _refresh(self) -> torch.Tensor:
        """Observe the world as it now stands after a reset or a jump; obs `[E, A, O]`."""
        self._obs = self._observe(self._geometry())
        self._state = self._global_state(self._obs)
        return self._obs

    def _place(
        self,
        step_count: torch.Tensor | None,
        given: dict[str, tuple[str, torch.Tensor, tuple[int, ...]]],
    ) -> torch.Tensor:
        """Put every env at a given world, at rest and silent, for `set_state`; obs `[E, A, O]`.

        `given` maps snapshot fields to (argument name, tensor, its expected shape);
        the tensor is reshaped to the field's own shape. Fields not given (velocities,
        messages) are zeroed. Step counters become 0, or `step_count` `[E]`.
        """
        got = [tuple(t.shape) for _, t, _ in given.values()]
        if got != [shape for _, _, shape in given.values()]:
            expected = _listing([f"{arg} {shape}" for arg, _, shape in given.values()])
            raise ValueError(f"expected {expected}, got {_listing([str(g) for g in got])}")
        for name in self._snapshot_fields:
            current: torch.Tensor = getattr(self, name)
            if name in given:
                new = given[name][1].to(self.device, current.dtype).reshape(current.shape).clone()
            else:
                new = torch.zeros_like(current)
            setattr(self, name, new)
        E = self.num_envs
        if step_count is None:
            self._steps = torch.zeros_like(self._steps)
            self._lockstep_steps = 0
        else:
            self._steps = step_count.to(self.device, torch.long).reshape(E).clone()
            lo, hi = int(self._steps.min()), int(self._steps.max())  # not the hot path
            self._lockstep_steps = lo if lo == hi else None
        return self._refresh()

    # ----------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every env, reseeding first if `seed` is given; obs `[E, A, O]`."""
        if seed is not None:
            self._gen.manual_seed(seed)
        self._reset_where(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        self._steps = torch.zeros_like(self._steps)
        self._lockstep_steps = 0
        return self._refresh()

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (long) to every env; envs at the time limit reset in place."""
        E, A = self.num_envs, self.num_agents
        if actions.shape != (E, A):
            raise ValueError(
                f"actions must have shape [E, A] = {[E, A]}, got {list(actions.shape)}"
            )
        self._advance(actions)
        self._steps = self._steps + 1
        geometry = self._geometry()
        reward = self._reward(geometry)  # [E, A], at the positions the episode reached
        obs = self._observe(geometry)  # [E, A, O]
        state = self._global_state(obs)  # [E, S]

        if self._lockstep_steps is not None:
            self._lockstep_steps += 1
            may_end = self._lockstep_steps >= self.max_cycles
        else:
            may_end = True
        if may_end:
            # mpe2 counts a step after it is taken and truncates once count >= max_cycles.
            env_done = self._steps >= self.max_cycles  # [E]
            final_obs, final_state = obs, state
            self._reset_where(env_done)
            self._steps = self._steps.masked_fill(env_done, 0)
            if self._lockstep_steps is not None:
                self._lockstep_steps = 0  # every env was at the limit and restarted
            obs = self._observe(self._geometry())
            state = self._global_state(obs)
            truncated = env_done[:, None].expand(E, A).clone()  # [E, A]
        else:
            env_done, truncated = self._false_e, self._false_ea
            final_obs, final_state = obs, state

        self._obs, self._state = obs, state
        return MultiAgentStepResult(
            obs=obs,
            state=state,
            reward=reward,
            terminated=self._false_ea,
            truncated=truncated,
            alive=self._alive,
            action_mask=self._action_mask,
            env_done=env_done,
            final_obs=final_obs,
            final_state=final_state,
            info={},
        )

    def state_dict(self) -> dict[str, Any]:
        """The world, step counters and the generator: enough to resume exactly."""
        snapshot = {name[1:]: getattr(self, name).clone() for name in self._snapshot_fields}
        snapshot["steps"] = self._steps.clone()
        snapshot["lockstep_steps"] = -1 if self._lockstep_steps is None else self._lockstep_steps
        snapshot["generator"] = self._gen.get_state()
        return snapshot

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` taken from an env of the same task and size.

        Each tensor takes this env's device and the dtype of the field it fills:
        integers (goals, step counters) stay long, floats take the env's dtype.
        """
        for name in self._snapshot_fields:
            have, want = tuple(state[name[1:]].shape), tuple(getattr(self, name).shape)
            if have != want:
                raise ValueError(
                    f"snapshot holds {name[1:]} {have}, this {self.spec.name} env {want}"
                )
        for name in (*self._snapshot_fields, "_steps"):
            setattr(self, name, state[name[1:]].to(self.device, getattr(self, name).dtype))
        lockstep = int(state["lockstep_steps"])
        self._lockstep_steps = None if lockstep < 0 else lockstep
        self._gen.set_state(state["generator"])
        self._refresh()

    def get_global_state(self) -> torch.Tensor:
        """The critic's state of the current step, `[E, S]`."""
        return self._state

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every env, zero-padded, `[E, O]`."""
        return self._obs[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Legal logits `[E, A, K]`; the same for every step of a task."""
        return self._action_mask

    def get_alive(self) -> torch.Tensor:
        """Every agent acts at every step, `[E, A]`."""
        return self._alive


def _listing(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`: items as a sentence lists them."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)
