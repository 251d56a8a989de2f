"""JaxMARL envs (SMAX, Hanabi, Overcooked, MPE, ...) as one `MultiAgentEnv`, stepped in JAX.

`--env jaxmarl:<registered name>` builds `jaxmarl.make(name, **env_kwargs)` and
runs all E copies in one jitted, vmapped call per step: the env's own
`step_env`, the reset of every finished copy (as JaxMARL's `step` does) and the
packing of observations, masks, rewards and dones into `[E, A, ...]` arrays all
happen inside it; `mappo.envs.jax_bridge` carries the arrays to torch and back.

What the bridge reads off the env:

* observations: each agent's array, flattened and zero-padded to the largest;
* the critic's state: `obs["world_state"]` where the env gives one (SMAX), else
  all observations concatenated (as JaxMARL's MAPPO does for Hanabi);
* the action mask: `get_avail_actions` (SMAX), `get_legal_moves` (Hanabi), else
  all legal; actions beyond an agent's own `Discrete(n)` are masked;
* dead agents: `dones[agent]` before the episode ends (a SMAX unit that died);
  they are not alive until their env resets;
* time limits: an agent whose episode ends only because the state's step count
  reached the env's `max_steps` is truncated; one the env's own rules end (a SMAX
  unit killed on the last step, a battle decided on it) terminates. On a step where
  some copy reaches its limit, the env is stepped a second time from the state with
  its step count set back, which gives the dones of its rules alone (`_rule_dones`);
  other steps skip it;
* image observations: flattened like the rest (no `obs_shape`: an MLP reads them);
  JaxMARL's grids are channels last (Overcooked's `get_obs`: "height x width x
  n_layers", the order flax's convolutions read), which the spec says as
  `image_layout` "hwc" where every agent's observation has 3 axes;
* SMAX's win: all enemies dead with an ally alive at the episode's end (the
  condition of SMAX's won-battle bonus), as `info["win"]` `[E]`.

JAX runs on the CPU, or on the GPU when the training device is CUDA and JAX
sees a GPU.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import io
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import torch

from mappo.envs.base import ActionSpec, EnvSpec, TaskConventions, build_failed
from mappo.envs.jax_bridge import JaxVectorEnv, check_registered, num_entries, strongly_typed
from mappo.envs.mpe.mpe_task import mpe_conventions
from mappo.errors import ConfigError, EnvError, out_of_memory


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    """Around `import jaxmarl`: its import prints two lines on whether its submoduled envs
    (none of which mappo takes) were found, and its MABrax module points `sys.stdout` and
    `sys.stderr` at `sys.__stdout__`/`__stderr__` after silencing brax, which would undo a
    caller's redirect (a log file, pytest's capture). Both are kept as they were."""
    saved = sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__
    sys.stdout = sys.__stdout__ = io.StringIO()  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved  # type: ignore[misc]


try:
    import jax
    import jax.numpy as jnp

    with _quiet_import():
        import jaxmarl
except ModuleNotFoundError as err:  # re-raised by `make_jaxmarl_env` as one line
    _MISSING: ModuleNotFoundError | None = err
else:
    _MISSING = None

MISSING_EXTRA = "JaxMARL envs need jax and jaxmarl: pip install 'mappo[jax]'"
SMAX_ENVS = ("SMAX", "HeuristicEnemySMAX", "LearnedPolicyEnemySMAX")
# JaxMARL's MAPPO on SMAX: scored by battles won within the time limit, the limit ends an
# episode as a terminal state (GAE on the global done), and the allies share one reward.
SMAX_CONVENTIONS = TaskConventions(
    source="JaxMARL's MAPPO on SMAX", time_limit_in_task=True, team_reward=True
)
# Plain SMAX makes both sides agents, each paid its own side's reward: one team reward over
# every slot would pay each side for the other's damage too.
BOTH_SIDES_SMAX_CONVENTIONS = TaskConventions(
    source="SMAX with both sides learning: each side's own reward",
    time_limit_in_task=True,
    team_reward=False,
)


def make_jaxmarl_env(
    name: str,
    env_id: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> JaxMarlEnv:
    """The env JaxMARL registers as `env_id` (what `--env` called `name`) as a `JaxMarlEnv`,
    or one line saying why not."""
    if _MISSING is not None:
        raise ConfigError(f"env '{name}': {MISSING_EXTRA} ({_MISSING.name} is missing)")
    check_registered(
        name, env_id, list(jaxmarl.registered_envs), "JaxMARL", "jaxmarl.registered_envs"
    )
    kwargs = _jaxmarl_kwargs(name, env_id, dict(env_kwargs or {}))
    try:
        env = jaxmarl.make(env_id, **kwargs)
    except Exception as err:  # a keyword it lacks, or its own checks (asserts, attributes)
        if out_of_memory(err):
            raise
        refused = build_failed(name, env_kwargs or {}, err)
        raise refused from (err if isinstance(refused, EnvError) else None)
    read = _keywords_read(type(env))
    if read is not None and (unused := sorted(set(kwargs) - read)):
        raise ConfigError(
            f"config key 'env_kwargs' = {env_kwargs!r}: env '{name}' does not use "
            f"{', '.join(unused)}; it takes {', '.join(sorted(read))}"
        )
    return JaxMarlEnv(env, name, num_envs, device, seed, env_id)


def _keywords_read(cls: type) -> set[str] | None:
    """The keywords an env of class `cls` reads: the named parameters of its `__init__`, and
    of its bases' as far as each hands its `**kwargs` on to `super().__init__`, and the keys
    read off those `**kwargs` (`kwargs["rad"]`, `"rad" in kwargs`, `kwargs.get("rad")`),
    less those a subclass passes its base itself. JaxMARL's MPE envs take `**kwargs` and
    drop the keys they do not know, so a misspelt `num_agent` trained the default silently.
    None where that cannot be told: an `__init__` that is not a plain function, whose source
    cannot be read, or that uses its `**kwargs` otherwise (hands them to another class)."""
    names: set[str] = set()
    fixed: set[str] = set()  # keywords a subclass gives its base itself: not the caller's
    for klass in cls.__mro__[:-1]:  # object's takes nothing
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if not inspect.isfunction(init):
            return None
        parameters = list(inspect.signature(init).parameters.values())[1:]  # not `self`
        own = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        names |= own - fixed
        rest = next((p.name for p in parameters if p.kind is p.VAR_KEYWORD), None)
        if rest is None:  # the caller's keywords end here
            break
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
        except (OSError, TypeError, SyntaxError):
            return None
        use = _uses_of_rest(tree, rest)
        if use is None:
            return None
        keys, passed, handed_on = use
        names |= keys - fixed
        fixed |= passed - own
        if not handed_on:
            break
    return names


def _uses_of_rest(tree: ast.AST, rest: str) -> tuple[set[str], set[str], bool] | None:
    """How the `**rest` mapping of an `__init__` (`tree`) is used: the string keys read off
    it, the keywords its `super().__init__(...)` call names itself, and whether that call
    hands `**rest` on; None where `rest` is used in another way."""
    allowed: set[int] = set()  # ids of the `rest` Name nodes that are accounted for
    keys: set[str] = set()
    passed: set[str] = set()
    handed_on = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_name(node.value, rest):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                keys.add(node.slice.value)
                allowed.add(id(node.value))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            if isinstance(node.ops[0], ast.In | ast.NotIn) and _is_name(node.comparators[0], rest):
                if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
                    keys.add(node.left.value)
                    allowed.add(id(node.comparators[0]))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr == "get" and _is_name(func.value, rest) and node.args:
                if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    keys.add(node.args[0].value)
                    allowed.add(id(func.value))
            elif func.attr == "__init__" and isinstance(func.value, ast.Call):
                if _is_name(func.value.func, "super"):
                    passed |= {k.arg for k in node.keywords if k.arg is not None}
                    spread = [k.value for k in node.keywords if k.arg is None]
                    handed_on |= any(_is_name(value, rest) for value in spread)
                    allowed |= {id(value) for value in spread}
    used = [n for n in ast.walk(tree) if _is_name(n, rest)]
    return (keys, passed, handed_on) if all(id(n) in allowed for n in used) else None


def _is_name(node: ast.AST, name: str) -> bool:
    """Whether `node` is the bare name `name`."""
    return isinstance(node, ast.Name) and node.id == name


def _jaxmarl_kwargs(name: str, env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`env_kwargs` as `jaxmarl.make` takes them: SMAX map names (`"scenario": "3m"`) and
    Overcooked layout names (`"layout": "cramped_room"`) become the library's objects."""
    if env_id in SMAX_ENVS and isinstance(kwargs.get("scenario"), str):
        from jaxmarl.environments.smax import map_name_to_scenario
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

        if kwargs["scenario"] not in MAP_NAME_TO_SCENARIO:
            raise ConfigError(
                f"config key 'env_kwargs' = {kwargs!r}: env '{name}' has no SMAX map "
                f"'{kwargs['scenario']}'; maps: {', '.join(MAP_NAME_TO_SCENARIO)}"
            )
        kwargs["scenario"] = map_name_to_scenario(kwargs["scenario"])
    if env_id == "overcooked" and isinstance(kwargs.get("layout"), str):
        from flax.core import FrozenDict
        from jaxmarl.environments.overcooked import overcooked_layouts

        if kwargs["layout"] not in overcooked_layouts:
            raise ConfigError(
                f"config key 'env_kwargs' = {kwargs!r}: env '{name}' has no Overcooked layout "
                f"'{kwargs['layout']}'; layouts: {', '.join(overcooked_layouts)}"
            )
        kwargs["layout"] = FrozenDict(overcooked_layouts[kwargs["layout"]])
    return kwargs


class JaxMarlEnv(JaxVectorEnv):
    """E copies of one JaxMARL env, stepped by one jitted call per step.

    `env` is the JaxMARL env (`jaxmarl.make(env_id, ...)`), `name` what `--env` said.
    """

    def __init__(
        self,
        env: Any,
        name: str,
        num_envs: int,
        device: str | torch.device = "cpu",
        seed: int | None = None,
        env_id: str = "",
    ) -> None:
        self.env = env
        agents = list(env.agents)
        self._agents = agents
        obs_sizes = tuple(num_entries(env.observation_space(a).shape) for a in agents)
        action = _action_spec(name, env, agents)
        self._num_actions = (
            [int(env.action_space(a).n) for a in agents] if action.kind == "discrete" else []
        )
        # Probe one reset for what the spaces do not say: a world state, and obs sizes
        # (Overcooked's space is [W, H, C] where its obs are [H, W, C]; the size agrees).
        probe_obs, _ = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        self._world_state = "world_state" in probe_obs
        grids = all(len(getattr(probe_obs.get(a), "shape", ())) == 3 for a in agents)
        obs_dim = max(obs_sizes)
        state_dim = (
            num_entries(probe_obs["world_state"].shape)
            if self._world_state
            else obs_dim * len(agents)
        )
        self.spec = EnvSpec(
            name=name,
            agent_names=tuple(agents),
            obs_dim=obs_dim,
            state_dim=state_dim,
            action=action,
            max_episode_steps=_max_steps(env),
            state_source="env" if self._world_state else "concat_obs",
            obs_sizes=obs_sizes,
            conventions=_conventions(env_id),
            image_layout="hwc" if grids else None,
        )
        self._mask_fn = _mask_function(env)
        self._smax = hasattr(env, "num_allies") and env_id in SMAX_ENVS
        self._start(num_envs, device, seed)

    # ------------------------------------------------------------------ JAX side

    def _pack(self, obs: dict, state: Any, alive: Any) -> tuple[Any, Any, Any]:
        """One copy's obs dict → obs `[A, O]` (zeros where not alive), critic state `[S]`,
        action mask `[A, K]`."""
        rows = [jnp.ravel(obs[a]).astype(jnp.float32) for a in self._agents]
        obs_dim = self.spec.obs_dim
        packed = jnp.stack([jnp.pad(r, (0, obs_dim - r.shape[0])) for r in rows])  # [A, O]
        packed = packed * alive[:, None]
        world = (
            jnp.ravel(obs["world_state"]).astype(jnp.float32)
            if self._world_state
            else packed.reshape(-1)
        )  # [S]
        return packed, world, self._mask(state, alive)

    def _mask(self, state: Any, alive: Any) -> Any:
        """Legal logits `[A, K]`: the env's own mask within each agent's `Discrete(n)`."""
        own = self.own_actions()  # [A, K]
        if self._mask_fn is None or not self._num_actions:
            return own
        width = max(self._num_actions)
        legal = self._mask_fn(state)
        rows = [
            jnp.pad(jnp.asarray(legal[a]).astype(bool), (0, width - n))
            for a, n in zip(self._agents, self._num_actions, strict=True)
        ]
        mask = jnp.stack(rows) & own
        # A dead agent's action is ignored, but it still needs one legal logit to sample.
        return jnp.where(alive[:, None], mask, self.first_action_alone())

    def _reset_one(self, key: Any) -> tuple[Any, ...]:
        obs, state = self.env.reset(key)
        state = strongly_typed(state)
        alive = jnp.ones(len(self._agents), dtype=bool)
        return (state, *self._pack(obs, state, alive), alive)

    def _reset_all(self, key: Any) -> tuple[Any, ...]:
        """Every copy reset: (state, obs `[E, A, O]`, critic state `[E, S]`, mask, alive)."""
        return jax.vmap(self._reset_one)(jax.random.split(key, self.num_envs))

    def _env_step(self, key: Any, state: Any, action: Any) -> tuple[Any, ...]:
        """One copy's `step_env`: obs, next state, rewards `[A]`, agent dones `[A]` and the
        env's done."""
        actions = {a: action[i] for i, a in enumerate(self._agents)}
        obs, next_state, reward, dones, _ = self.env.step_env(key, state, actions)
        agent_done = jnp.stack([dones[a] for a in self._agents])  # [A]
        reward = jnp.stack([reward[a] for a in self._agents]).astype(jnp.float32)  # [A]
        return obs, next_state, reward, agent_done, dones["__all__"]

    def _rule_dones(
        self, key: Any, state: Any, actions: Any, next_state: Any, agent_done: Any, env_done: Any
    ) -> tuple[Any, Any]:
        """Every copy's dones `[E, A]`, `[E]` by the env's own rules, as if no time limit
        were reached: the env stepped again, with the same keys and actions, from `state`
        with its step count set back (`_set_back`).

        Only where some copy ends something at its time limit; `lax.cond` outside the
        vmap really skips the second step elsewhere, so ordinary steps pay one `any`.
        """
        limit = _max_steps(self.env)
        if limit is None or not hasattr(_inner_state(state), "step"):
            return agent_done, env_done  # no limit the bridge can see: every end is the env's
        time_up = jax.vmap(lambda s: _time_up(self.env, s))(next_state)  # [E]
        hit = (time_up & (env_done | agent_done.any(-1))).any()

        def without_limit() -> tuple[Any, Any]:
            earlier = jax.vmap(lambda s: _set_back(s, limit))(state)
            _, _, _, agent, env = jax.vmap(self._env_step)(key, earlier, actions)
            # Running out of time only adds dones: a done of the rules is a done of the step.
            return agent & agent_done, env & env_done

        return jax.lax.cond(hit, without_limit, lambda: (agent_done, env_done))

    def _finish_one(
        self,
        key_reset: Any,
        obs: Any,
        next_state: Any,
        reward: Any,
        agent_done: Any,
        env_done: Any,
        rule_agent: Any,
        rule_env: Any,
        alive: Any,
    ) -> tuple[Any, ...]:
        """One copy after its step: terminated where the env's rules (`rule_agent`,
        `rule_env`) end the agent, truncated where only the time limit does; reset where
        the episode ended (JaxMARL's `step`), keeping what it reached as final obs and
        state."""
        ended = alive & (agent_done | env_done)  # [A] the agent's episode ends with this step
        terminated = ended & (rule_agent | rule_env)
        truncated = ended & ~terminated
        still = alive & ~ended  # [A] alive at the next step, if the episode goes on
        final_obs, final_state, _ = self._pack(obs, next_state, alive)
        win = self._won(next_state) & env_done
        reset = self._reset_one(key_reset)
        state_out = jax.tree.map(
            lambda r, s: jnp.where(env_done, r, s), reset[0], strongly_typed(next_state)
        )
        alive_out = jnp.where(env_done, reset[4], still)
        new_obs, new_world, _ = self._pack(obs, next_state, still)
        obs_out = jnp.where(env_done, reset[1], new_obs)
        world_out = jnp.where(env_done, reset[2], new_world)
        mask_out = self._mask(state_out, alive_out)
        return (
            state_out,
            obs_out,
            world_out,
            reward,
            terminated,
            truncated,
            alive_out,
            mask_out,
            env_done,
            final_obs,
            final_state,
            win,
        )

    def _step_all(self, key: Any, state: Any, actions: Any, alive: Any) -> tuple[Any, ...]:
        """Every copy stepped by actions `[E, A]` (or `[E, A, D]`); finished copies reset."""
        key, sub = jax.random.split(key)
        keys = jax.vmap(jax.random.split)(jax.random.split(sub, self.num_envs))  # [E, 2, ...]
        key_step, key_reset = keys[:, 0], keys[:, 1]
        obs, next_state, reward, agent_done, env_done = jax.vmap(self._env_step)(
            key_step, state, actions
        )
        rule_agent, rule_env = self._rule_dones(
            key_step, state, actions, next_state, agent_done, env_done
        )
        out = jax.vmap(self._finish_one)(
            key_reset, obs, next_state, reward, agent_done, env_done, rule_agent, rule_env, alive
        )
        return (key, *out)

    def _won(self, state: Any) -> Any:
        """SMAX: all enemies dead and an ally alive (its won-battle bonus); else False."""
        if not self._smax:
            return jnp.array(False)
        inner = state.state if hasattr(state, "enemy_policy_state") else state
        allies = self.env.num_allies
        return ~inner.unit_alive[allies:].any() & inner.unit_alive[:allies].any()

    def _info(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"win": out["win"]} if self._smax else {}

    @property
    def changing_action_mask(self) -> bool:
        """Whether legal actions change from step to step (the env has a mask function)."""
        return self._mask_fn is not None


def _action_spec(name: str, env: Any, agents: list[str]) -> ActionSpec:
    """Discrete actions (one `Discrete(n)` per agent, n may differ: padded and masked), or
    one continuous box shared by all agents."""
    spaces = [env.action_space(a) for a in agents]
    kinds = {type(s).__name__ for s in spaces}
    if kinds == {"Discrete"}:
        return ActionSpec(kind="discrete", nvec=(max(int(s.n) for s in spaces),))
    if kinds == {"Box"} and len({tuple(s.shape) for s in spaces}) == 1:
        import numpy as np

        low = np.broadcast_to(np.asarray(spaces[0].low, dtype=float), spaces[0].shape).ravel()
        high = np.broadcast_to(np.asarray(spaces[0].high, dtype=float), spaces[0].shape).ravel()
        return ActionSpec(kind="continuous", low=tuple(low.tolist()), high=tuple(high.tolist()))
    raise ConfigError(
        f"env '{name}': action spaces {sorted(kinds)} are not supported; mappo "
        "takes Discrete, or one Box shape shared by every agent"
    )


def _mask_function(env: Any) -> Any:
    """The env's legal-action function (`get_avail_actions`, Hanabi's `get_legal_moves`),
    or None when it has none."""
    for attr in ("get_avail_actions", "get_legal_moves"):
        fn = getattr(env, attr, None)
        if fn is None:
            continue
        try:
            jax.eval_shape(fn, jax.eval_shape(env.reset, jax.random.PRNGKey(0))[1])
        except NotImplementedError:
            continue
        return fn
    return None


def _inner_state(state: Any) -> Any:
    """The env state holding the step count (SMAX-with-enemies wraps SMAX's in `.state`)."""
    return state.state if not hasattr(state, "step") and hasattr(state, "state") else state


def _conventions(registered: str) -> TaskConventions:
    """What the official MAPPO code of the family of JaxMARL env `registered` does where the
    specification is silent: SMAX's, MPE's (`MPE_*`: the same tasks), else nothing."""
    if registered == "SMAX":
        return BOTH_SIDES_SMAX_CONVENTIONS
    if registered in SMAX_ENVS:
        return SMAX_CONVENTIONS
    return mpe_conventions(registered) if registered.startswith("MPE_") else TaskConventions()


def _max_steps(env: Any) -> int | None:
    """The env's time limit in steps, if it states one."""
    limit = getattr(env, "max_steps", None)
    return int(limit) if isinstance(limit, int | float) else None


def _time_up(env: Any, state: Any) -> Any:
    """Whether `state`, as a step returns it, counts `max_steps` steps or more (False when
    the env states no limit): that step is where the limit ends the episode in envs that
    compare the count after counting the step, or the one before it in envs that compare
    before (SMAX, MPE); `_rule_dones` tells which ends the limit made."""
    limit = _max_steps(env)
    inner = _inner_state(state)
    if limit is None or not hasattr(inner, "step"):
        return jnp.array(False)
    return inner.step >= limit


def _set_back(state: Any, limit: int) -> Any:
    """`state` with its step count at most `limit - 2`, where no time limit bites whether
    the env compares the count before counting the step (SMAX, MPE: `step >= max_steps`,
    or switch_riddle's `step + 1 >= max_steps`) or after (Overcooked)."""
    inner = _inner_state(state)
    step = jnp.minimum(inner.step, max(limit - 2, 0)).astype(inner.step.dtype)
    earlier = dataclasses.replace(inner, step=step)
    return earlier if inner is state else dataclasses.replace(state, state=earlier)
