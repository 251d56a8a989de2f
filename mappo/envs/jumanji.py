"""Jumanji's multi-agent envs (LBF, RWARE, Cleaner, Connector, MMST, ...), stepped in JAX.

`--env jumanji:<registered id>` builds `jumanji.make(id)` and runs all E copies
in one jitted, vmapped call per step (the env's `step`, the reset of every
finished copy, the packing into `[E, A, ...]` arrays), handed to torch by
`mappo.envs.jax_bridge` as JaxMARL's envs are. `env_kwargs` whose names the
env's generator takes (grid size, agents, food, level, shelves, ...) build a
new generator from the registered one's settings; the rest go to the env
(`time_limit`, `penalty`, ...).

What the bridge reads off the env (its observation is a NamedTuple of arrays):

* each agent's observation: fields with one row per agent (a leading axis of
  A, e.g. LBF's and RWARE's `agents_view`) give the agent its own row; other
  per-agent facts that Jumanji shows to all (`positions`, `agents_locations`)
  give its own row and then everyone's; shared fields (Cleaner's and
  Connector's `grid`, MMST's graph) are seen by every agent. The step count
  is left out (the critic gets the time left from the library) and so is the
  action mask. An env with no per-agent field but the mask (Connector) needs
  the agent's one-hot to tell agents apart: `agent_id` auto turns it on;
* the critic's state: Jumanji envs have none, so it is every field once:
  all agents' rows and the shared fields (never a shared grid A times);
* the action mask: `observation.action_mask` `[A, K]`;
* rewards: `[A]`, or one team reward `[]` given to every agent;
* ends: a `LAST` step whose discount is 0 terminates, one whose discount is
  positive is cut by the time limit (LBF's truncation); RWARE's own step ends
  its episodes at the limit with discount 0, so they terminate. No agent dies:
  one left no legal action (MMST's once its nodes are connected; the env
  ignores its actions) gets its first action as its only legal one, so that it
  draws no illegal action and learns nothing from a choice it does not have.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from mappo.envs.base import ActionSpec, EnvSpec, TaskConventions
from mappo.envs.jax_bridge import JaxVectorEnv, check_registered, num_entries, strongly_typed
from mappo.errors import ConfigError

try:
    import jax
    import jax.numpy as jnp
    import jumanji
except ModuleNotFoundError as err:  # re-raised by `make_jumanji_env` as one line
    _MISSING: ModuleNotFoundError | None = err
else:
    _MISSING = None

MISSING_EXTRA = "Jumanji envs need jax and jumanji: pip install 'mappo[jumanji]'"
# Jumanji 1.1's multi-agent envs (those with `num_agents`), for the message refusing others.
MULTI_AGENT_ENVS = (
    "LevelBasedForaging-v0",
    "RobotWarehouse-v0",
    "Cleaner-v0",
    "Connector-v3",
    "MMST-v0",
    "SearchAndRescue-v0",
)
MASK_FIELD = "action_mask"
TIME_FIELDS = ("step_count", "step")  # the library gives the critic the time left itself
# Per-agent fields that are each agent's own view: the agent sees only its row.
OWN_VIEW_FIELDS = ("agents_view", "searcher_views")
# Fields shared by all agents even when their first axis happens to be A long.
SHARED_FIELDS = ("grid", "adj_matrix", "node_types")
# EPyMARL's MAPPO trains LBF and RWARE on the common reward; the episode is scored up to the
# time limit (RWARE's own step ends it there as a terminal state).
TEAM_TASKS = ("LevelBasedForaging", "RobotWarehouse")
# What a generator given impossible settings raises when it draws its first level.
RESET_ERRORS = (TypeError, ValueError, AssertionError, IndexError, ZeroDivisionError)
# Levels drawn to check a generator given settings: at 3x3 with 4 agents Connector breaks
# about 1 in 20, so 256 draws find it. The cost is one more compile of the reset (seconds),
# paid by the envs whose levels are checked (Connector) when given env_kwargs.
LEVELS_CHECKED = 256


def make_jumanji_env(
    name: str,
    env_id: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> JumanjiEnv:
    """The env Jumanji registers as `env_id` (what `--env` called `name`) as a `JumanjiEnv`,
    or one line saying why not."""
    if _MISSING is not None:
        raise ConfigError(f"env '{name}': {MISSING_EXTRA} ({_MISSING.name} is missing)")
    registered = sorted(jumanji.registered_environments())
    check_registered(name, env_id, registered, "Jumanji", "jumanji.registered_environments()")
    env = _build(name, env_id, dict(env_kwargs or {}))
    if not isinstance(getattr(env, "num_agents", None), int):
        raise ConfigError(
            f"env '{name}' has one agent; mappo trains Jumanji's multi-agent envs: "
            + ", ".join(f"jumanji:{n}" for n in MULTI_AGENT_ENVS)
        )
    if env.num_agents < 1:
        raise ConfigError(
            f"config key 'env_kwargs': env '{name}' has {env.num_agents} agents with "
            f"{env_kwargs!r}; it needs at least 1"
        )
    if env_kwargs:
        # A generator built from values it takes one by one may still fail to draw a level
        # (no shelves, more agents than cells): a traced reset says so before any compiling.
        try:
            state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))[0]
        except RESET_ERRORS as err:
            raise ConfigError(
                f"config key 'env_kwargs': env '{name}' cannot reset with {env_kwargs!r} "
                f"({_reason(err)})"
            ) from None
        _check_levels(env, name, env_kwargs, state)
    return JumanjiEnv(env, name, num_envs, device, seed)


def _check_levels(env: Any, name: str, env_kwargs: dict[str, Any], state: Any) -> None:
    """Refuse settings under which the generator draws broken levels without an error.

    Connector's random walk places each agent's two ends one by one and, once no free cell
    is left, puts an end where another already is: a grid too small for its agents gives
    levels an agent starts solved (start on its target) or shares a cell. Levels whose
    agents have a start and a target (in `state`, a traced reset's) are drawn and checked.
    """
    agents = getattr(state, "agents", None)
    if not (hasattr(agents, "start") and hasattr(agents, "target")):
        return

    def ends_apart(key: Any) -> Any:
        ends = env.reset(key)[0].agents
        cells = jnp.concatenate([ends.start, ends.target])  # [2 * A, 2]
        same = (cells[:, None, :] == cells[None, :, :]).all(-1)  # [2A, 2A]
        return same.sum() == cells.shape[0]  # each end matches itself only

    drawn = LEVELS_CHECKED
    apart = jax.jit(jax.vmap(ends_apart))(jax.random.split(jax.random.PRNGKey(0), drawn))
    broken = drawn - int(apart.sum())
    if broken:
        raise ConfigError(
            f"config key 'env_kwargs': env '{name}' with {env_kwargs!r} draws broken levels "
            f"({broken} of {drawn} drawn put two agents' ends on one cell); give a larger "
            "grid_size or fewer num_agents"
        )


def _build(name: str, env_id: str, kwargs: dict[str, Any]) -> Any:
    """`jumanji.make(env_id)`, with the kwargs its generator takes set on a new generator
    made from the registered one's settings, and the rest passed to the env. The registered
    env builds, so whatever fails with the kwargs is their doing: any exception is refused
    in one line naming them."""
    given = dict(kwargs)
    limit = kwargs.get("time_limit")
    if "time_limit" in kwargs and (type(limit) is not int or limit < 1):
        raise ConfigError(
            f"config key 'env_kwargs': time_limit = {limit!r} for env '{name}' must be a whole "
            "number of steps, at least 1"
        )
    default = jumanji.make(env_id)
    generator = getattr(default, "generator", None) or getattr(default, "_generator", None)
    env_params = set(inspect.signature(type(default).__init__).parameters) - {"self"}
    gen_params = (
        [p for p in inspect.signature(type(generator).__init__).parameters if p != "self"]
        if generator is not None
        else []
    )
    if generator is not None:
        ours = {k: kwargs.pop(k) for k in list(kwargs) if k in gen_params}
        if ours:
            settings = {p: _setting(generator, p) for p in gen_params}
            try:
                kwargs["generator"] = type(generator)(**{**settings, **ours})
            except Exception as err:
                kept = ", ".join(f"{k}={v}" for k, v in settings.items() if k not in ours)
                raise ConfigError(
                    f"config key 'env_kwargs': the generator of env '{name}' refused {ours!r} "
                    f"({_reason(err)}); the settings not given are the registered env's: {kept}"
                ) from None
    unknown = sorted(set(kwargs) - env_params)
    if unknown:
        raise ConfigError(
            f"config key 'env_kwargs': env '{name}' takes no {', '.join(map(repr, unknown))}; "
            f"its generator takes {', '.join(gen_params) or 'nothing'}, the env "
            f"{', '.join(sorted(env_params - {'viewer', 'generator'}))}"
        )
    try:
        return jumanji.make(env_id, **kwargs)
    except Exception as err:
        raise ConfigError(
            f"config key 'env_kwargs': env '{name}' refused {given!r} ({_reason(err)})"
        ) from None


def _reason(err: BaseException) -> str:
    """An exception's first line, or its type when it says nothing."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _setting(generator: Any, param: str) -> Any:
    """The value a built generator holds for its constructor parameter `param`."""
    for attr in (param, f"_{param}"):
        if hasattr(generator, attr):
            return getattr(generator, attr)
    raise ConfigError(f"Jumanji's {type(generator).__name__} keeps no setting '{param}'")


class JumanjiEnv(JaxVectorEnv):
    """E copies of one Jumanji multi-agent env, stepped by one jitted call per step.

    `env` is the Jumanji env (`jumanji.make(id, ...)`), `name` what `--env` said.
    """

    def __init__(
        self,
        env: Any,
        name: str,
        num_envs: int,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        self.env = env
        agents = int(env.num_agents)
        # A probe reset's observation (a NamedTuple of shapes) says what each field is.
        probe = jax.eval_shape(env.reset, jax.random.PRNGKey(0))[1].observation
        self._fields = _layout(probe, agents)  # field -> "own", "row", "shared"
        shapes = {f: tuple(getattr(probe, f).shape) for f in self._fields}
        obs_dim = sum(_obs_width(shapes[f], kind) for f, kind in self._fields.items())
        state_dim = sum(num_entries(shapes[f]) for f in self._fields)
        action = _action_spec(name, env.action_spec, agents)
        self._num_actions = (
            [int(n) for n in env.action_spec.num_values] if action.kind == "discrete" else []
        )
        per_agent = any(kind != "shared" for kind in self._fields.values())
        family = type(env).__name__
        self.spec = EnvSpec(
            name=name,
            agent_names=tuple(f"agent_{i}" for i in range(agents)),
            obs_dim=obs_dim,
            state_dim=state_dim,
            action=action,
            max_episode_steps=_time_limit(env),
            state_source="concat_obs",
            obs_sizes=(obs_dim,) * agents,
            conventions=TaskConventions(
                source=f"Jumanji's {family}"
                + (" (EPyMARL's common reward)" if family in TEAM_TASKS else ""),
                time_limit_in_task=True,
                team_reward=True if family in TEAM_TASKS else None,
                agent_id=None if per_agent else True,
            ),
        )
        self._has_mask = hasattr(probe, MASK_FIELD) and action.kind == "discrete"
        self._start(num_envs, device, seed)

    # ------------------------------------------------------------------ JAX side

    def _pack(self, observation: Any) -> tuple[Any, Any, Any]:
        """One copy's observation → obs `[A, O]`, critic state `[S]`, action mask `[A, K]`."""
        agents = self.num_agents
        parts, world = [], []
        for field, kind in self._fields.items():
            value = jnp.asarray(getattr(observation, field)).astype(jnp.float32)
            world.append(jnp.ravel(value))
            if kind == "shared":
                parts.append(jnp.broadcast_to(jnp.ravel(value), (agents, value.size)))
                continue
            rows = value.reshape(agents, -1)  # [A, F]
            parts.append(rows)
            if kind == "row":  # a fact Jumanji shows to all: everyone's rows after one's own
                parts.append(jnp.broadcast_to(jnp.ravel(value), (agents, value.size)))
        own = self.own_actions()
        if self._has_mask:
            legal = jnp.asarray(getattr(observation, MASK_FIELD)).astype(bool)  # [A, n]
            width = own.shape[1]
            mask = jnp.pad(legal, ((0, 0), (0, width - legal.shape[1]))) & own
            # No legal action (the env ignores it): the first, alone, a choice it does not have.
            mask = jnp.where(mask.any(-1, keepdims=True), mask, self.first_action_alone())
        else:
            mask = own
        return jnp.concatenate(parts, axis=1), jnp.concatenate(world), mask

    def _reset_one(self, key: Any) -> tuple[Any, ...]:
        state, timestep = self.env.reset(key)
        alive = jnp.ones(self.num_agents, dtype=bool)
        return (strongly_typed(state), *self._pack(timestep.observation), alive)

    def _reset_all(self, key: Any) -> tuple[Any, ...]:
        return jax.vmap(self._reset_one)(jax.random.split(key, self.num_envs))

    def _step_one(self, key: Any, state: Any, action: Any) -> tuple[Any, ...]:
        """One copy stepped, reset from `key` if its episode ended (what it reached kept as
        final obs and state): (state, then `jax_bridge.OUTPUTS`)."""
        agents = self.num_agents
        next_state, timestep = self.env.step(state, action)
        reward = jnp.broadcast_to(jnp.asarray(timestep.reward, jnp.float32), (agents,))
        discount = jnp.broadcast_to(jnp.asarray(timestep.discount, jnp.float32), (agents,))
        done = timestep.last()
        terminated = done & (discount == 0)
        truncated = done & ~terminated
        obs, world, mask = self._pack(timestep.observation)
        fresh_state, fresh_obs, fresh_world, fresh_mask, alive = self._reset_one(key)
        state_out = jax.tree.map(
            lambda r, s: jnp.where(done, r, s), fresh_state, strongly_typed(next_state)
        )
        return (
            state_out,
            jnp.where(done, fresh_obs, obs),
            jnp.where(done, fresh_world, world),
            reward,
            terminated,
            truncated,
            alive,
            jnp.where(done, fresh_mask, mask),
            done,
            obs,
            world,
            jnp.array(False),
        )

    def _step_all(self, key: Any, state: Any, actions: Any, alive: Any) -> tuple[Any, ...]:
        key, sub = jax.random.split(key)
        out = jax.vmap(self._step_one)(jax.random.split(sub, self.num_envs), state, actions)
        return (key, *out)


def _layout(observation: Any, agents: int) -> dict[str, str]:
    """How each field of an `observation` (a NamedTuple) reaches the agents: "own" (its
    row only), "row" (its row, then everyone's) or "shared" (the same to all); the mask
    and the step count left out."""
    layout = {}
    for field in observation._fields:
        if field in (MASK_FIELD, *TIME_FIELDS):
            continue
        shape = tuple(getattr(observation, field).shape)
        if shape[:1] == (agents,) and field not in SHARED_FIELDS:
            layout[field] = "own" if field in OWN_VIEW_FIELDS else "row"
        else:
            layout[field] = "shared"
    return layout


def _obs_width(shape: tuple[int, ...], kind: str) -> int:
    """Entries a field adds to each agent's observation."""
    own = num_entries(shape[1:]) if kind != "shared" else 0
    return own + (num_entries(shape) if kind in ("row", "shared") else 0)


def _action_spec(name: str, spec: Any, agents: int) -> ActionSpec:
    """One `Discrete(n)` per agent (a `MultiDiscreteArray`, n may differ: padded and
    masked), or one continuous box `[A, D]` whose bounds every agent shares."""
    nums = getattr(spec, "num_values", None)
    if nums is not None and tuple(spec.shape) == (agents,):
        return ActionSpec(kind="discrete", nvec=(int(max(int(n) for n in nums)),))
    if tuple(spec.shape)[:1] == (agents,) and len(spec.shape) == 2 and hasattr(spec, "minimum"):
        import numpy as np

        low = np.broadcast_to(np.asarray(spec.minimum, dtype=float), spec.shape)
        high = np.broadcast_to(np.asarray(spec.maximum, dtype=float), spec.shape)
        if (low == low[:1]).all() and (high == high[:1]).all():
            return ActionSpec(
                kind="continuous", low=tuple(low[0].tolist()), high=tuple(high[0].tolist())
            )
    raise ConfigError(
        f"env '{name}': action spec {type(spec).__name__} of shape {tuple(spec.shape)} is not "
        f"supported; mappo takes one discrete action per agent ({agents}) or an [{agents}, D] box"
    )


def _time_limit(env: Any) -> int | None:
    """The env's time limit in steps, if it states one."""
    limit = getattr(env, "time_limit", None)
    return int(limit) if isinstance(limit, int | float) else None
