"""Env names → vectorized envs: built-in tasks by name, Python envs by where they live.

`module:callable` (or `module:attr.attr`, e.g. `module:Class.method`) names one of two things:

* a vectorized env: a `MultiAgentEnv` subclass, or any callable with a
  `num_envs` parameter. It is called once, as the built-in envs are, with
  `num_envs=E, device=..., seed=..., **env_kwargs`, and must return a
  `MultiAgentEnv` holding all E copies (`num_workers` does not apply).
* otherwise, a function (or class) returning one PettingZoo `ParallelEnv`,
  e.g. `mpe2.simple_spread_v3:parallel_env`, or one turn-based `AECEnv`, e.g.
  `pettingzoo.classic.tictactoe_v3:env` (one turn per step: see
  `mappo.envs.pettingzoo.aec`); it is called with `**env_kwargs` for every
  copy. A leading `pettingzoo:` is accepted and dropped.

`vmas:<scenario>` names a VMAS scenario (`vmas:balance`), run on the training
device by `VmasEnv`; `env_kwargs` go to the scenario (and `continuous_actions`,
`max_steps`). It needs the `vmas` extra.

`jaxmarl:<name>` names an env JaxMARL registers (`jaxmarl.make(name, **env_kwargs)`,
e.g. `jaxmarl:HeuristicEnemySMAX` with `{"scenario": "3m"}`): all copies step in one
jitted JAX call (`mappo.envs.jaxmarl`); it needs the `jax` extra.

`jumanji:<id>` names one of Jumanji's multi-agent envs (`jumanji:LevelBasedForaging-v0`,
`jumanji:RobotWarehouse-v0`), stepped the same way (`mappo.envs.jumanji`); `env_kwargs`
set its generator (`grid_size`, `num_agents`, ...) and the env (`time_limit`). It
needs the `jumanji` extra.

`gymnasium:[module:]id` names a Gymnasium env with Tuple spaces over agents
(lbforaging, rware, EPyMARL's envs): what follows `gymnasium:` is what
`gymnasium.make` takes, so `module`, if given, is imported to register `id`,
and every copy is `gymnasium.make(id, **env_kwargs)` seen through
`TupleEnvAsParallel`. Without a module the id must be registered already.

PettingZoo and Gymnasium envs run through `PettingZooWrapper` and need the
`pettingzoo` extra (pettingzoo and gymnasium).

`make_env(..., render=True)` builds an env that records its frames for
`MultiAgentEnv.rendered_episodes` (`mappo eval --render`): a vectorized env is built
with `record_frames=True`, and one that does not draw itself (its class keeps the
default `rendered_episodes`, JaxMARL's among them) is refused before it is built; the
copies of a PettingZoo or Gymnasium env are built with `render_mode="rgb_array"`, in
this process, and each keeps its frames (`mappo.envs.pettingzoo.frames`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from mappo.envs.base import ENV_CALLABLES, MultiAgentEnv, build_failed, does_not_draw, error_line
from mappo.errors import ConfigError, EnvError, out_of_memory

# Built-in envs, vectorized in torch: name -> (module, class).
BUILTIN_ENVS = {
    "spread": ("mappo.envs.mpe.spread", "SpreadEnv"),
    "reference": ("mappo.envs.mpe.reference", "ReferenceEnv"),
    "speaker_listener": ("mappo.envs.mpe.speaker_listener", "SpeakerListenerEnv"),
}
PETTINGZOO_PREFIX = "pettingzoo:"
VMAS_PREFIX = "vmas:"  # `vmas:<scenario>`, mappo.envs.vmas (the vmas extra)
JAXMARL_PREFIX = "jaxmarl:"  # `jaxmarl:<registered name>`: JaxMARL envs, stepped in JAX
JUMANJI_PREFIX = "jumanji:"  # `jumanji:<registered id>`: Jumanji's multi-agent envs, in JAX
GYMNASIUM_PREFIX = "gymnasium:"
PETTINGZOO_EXTRA = ("pettingzoo", "gymnasium")  # the packages of `pip install 'mappo[pettingzoo]'`
# Env packages of other extras, named where `--env` imports one that is missing.
EXTRAS = {"lbforaging": "epymarl-envs", "rware": "epymarl-envs", "supersuit": "images"}


def steps_in_this_process(name: str) -> bool:
    """Whether env `name` is known, before it is built, to step all its copies in this
    process (built-in, VMAS, JaxMARL, Jumanji), where `num_workers` does not apply."""
    return name in BUILTIN_ENVS or name.startswith((VMAS_PREFIX, JAXMARL_PREFIX, JUMANJI_PREFIX))


def make_env(
    name: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    *,
    num_workers: int = 0,
    use_state: bool = True,
    render: bool = False,
) -> MultiAgentEnv:
    """Build `num_envs` copies of the env called `name`.

    `num_workers` and `use_state` only apply to PettingZoo and Gymnasium envs
    (vectorized envs, built-in or the user's, run as they are): `use_state`
    False means nothing reads the env's own global state (the critic sees the
    observations, or only the actors act), so `env.state()` is never called.
    `render` builds an env that records copy 0's frames (its copies then run in
    this process), or raises a `RenderError` for one that does not draw itself.
    """
    env_kwargs = dict(env_kwargs or {})
    if name.startswith(VMAS_PREFIX):  # VMAS scenarios: batched in torch like the built-ins
        from mappo.envs.vmas import VmasEnv

        scenario = name.removeprefix(VMAS_PREFIX)
        factory: Callable[..., Any] = partial(VmasEnv, scenario=scenario, env_name=name)
        return _make_vectorized(name, factory, num_envs, device, seed, env_kwargs, render)
    if name in BUILTIN_ENVS:
        module_name, class_name = BUILTIN_ENVS[name]
        env_class = getattr(importlib.import_module(module_name), class_name)
        return _make_vectorized(name, env_class, num_envs, device, seed, env_kwargs, render)
    if name.startswith(JAXMARL_PREFIX):
        from mappo.envs.jaxmarl import JaxMarlEnv, make_jaxmarl_env

        if render:  # refused without building the env (and compiling its step)
            _refuse_undrawn(name, JaxMarlEnv)
        return make_jaxmarl_env(
            name, name.removeprefix(JAXMARL_PREFIX), num_envs, device, seed, env_kwargs
        )
    if name.startswith(JUMANJI_PREFIX):
        from mappo.envs.jumanji import JumanjiEnv, make_jumanji_env

        if render:
            _refuse_undrawn(name, JumanjiEnv)
        return make_jumanji_env(
            name, name.removeprefix(JUMANJI_PREFIX), num_envs, device, seed, env_kwargs
        )
    if ":" in name:
        factory = import_env_factory(name)
        if is_vectorized(factory):
            return _make_vectorized(name, factory, num_envs, device, seed, env_kwargs, render)
        wrapper = pettingzoo_wrapper(name)
        if render:
            from mappo.envs.pettingzoo.frames import check_renders_to_array, recording_copy

            check_renders_to_array(name, factory, env_kwargs)
            # The frames are read off the copies themselves, so they run in this process.
            build_copy, num_workers = partial(recording_copy, name, factory, env_kwargs), 0
        else:
            build_copy = partial(_build_copy, name, factory, env_kwargs)
        if num_workers and num_envs % num_workers:
            raise ConfigError(
                f"config key 'num_workers' = {num_workers}: num_envs = {num_envs} must be "
                "a multiple of it (every worker steps the same number of copies)"
            )
        return wrapper(
            build_copy,
            num_envs,
            num_workers=num_workers,
            seed=seed,
            device=device,
            name=name,
            use_state=use_state,
        )
    near = difflib.get_close_matches(name, BUILTIN_ENVS, n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise ConfigError(
        f"config key 'env' = '{name}': {hint}built-in envs are {', '.join(BUILTIN_ENVS)}, "
        "or name a PettingZoo env as module:callable (e.g. mpe2.simple_spread_v3:parallel_env) "
        "or a Gymnasium one as gymnasium:module:id (e.g. "
        "gymnasium:lbforaging:Foraging-8x8-2p-2f-coop-v3)"
    )


def is_vectorized(factory: Callable[..., Any]) -> bool:
    """Whether `factory` builds all copies at once: a `MultiAgentEnv` subclass, or a
    callable with a `num_envs` parameter."""
    if isinstance(factory, type) and issubclass(factory, MultiAgentEnv):
        return True
    try:
        return "num_envs" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False


def _make_vectorized(
    name: str,
    factory: Callable[..., Any],
    num_envs: int,
    device: str | torch.device,
    seed: int | None,
    env_kwargs: dict[str, Any],
    render: bool,
) -> MultiAgentEnv:
    """`factory(num_envs=, device=, seed=, **env_kwargs)`, checked to be a `MultiAgentEnv`;
    with `render`, also `record_frames=True`, and checked to draw itself."""
    if render and isinstance(factory, type):  # refused before anything is built
        _refuse_undrawn(name, factory)
    fixed: dict[str, Any] = {"num_envs": num_envs, "device": device, "seed": seed}
    if render:
        fixed["record_frames"] = True
    try:
        env = _built(name, factory, env_kwargs, fixed)
    except ConfigError:
        if render and not _takes(factory, "record_frames"):
            raise does_not_draw(name, factory) from None
        raise
    if not isinstance(env, MultiAgentEnv):
        raise ConfigError(
            f"env '{name}' takes num_envs, so it was called as a vectorized env, but it "
            f"returned a {type(env).__name__}, not a mappo MultiAgentEnv; {ENV_CALLABLES}"
        )
    if render and not _draws_itself(type(env)):  # a factory's env, asked once built
        env.close()
        raise does_not_draw(name, type(env))
    return env


def _draws_itself(env_class: type) -> bool:
    """Whether `env_class` overrides `MultiAgentEnv.rendered_episodes`."""
    return getattr(env_class, "rendered_episodes", None) is not MultiAgentEnv.rendered_episodes


def _refuse_undrawn(name: str, env_class: type) -> None:
    """The RenderError of `MultiAgentEnv.rendered_episodes` unless `env_class` draws itself."""
    if not _draws_itself(env_class):
        raise does_not_draw(name, env_class)


def _build_copy(name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any]) -> Any:
    """One PettingZoo copy, `factory(**env_kwargs)` (`_built`)."""
    return _built(name, factory, env_kwargs, {})


def _built(
    name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any], fixed: dict[str, Any]
) -> Any:
    """`factory(**fixed, **env_kwargs)`. Keywords it does not take, or that mappo gives
    (`fixed`), are a ConfigError naming them (`_kwargs_error`); an error of its own code (a
    display it cannot open, a bug) is an EnvError naming the env, not the keywords, and
    with `--debug` its traceback. A factory taking `**kwargs` passes them on: a TypeError
    from it is blamed on them still, where there are any, as is one from a factory whose
    signature cannot be read. A value the env checks and refuses (an AssertionError, a
    TypeError or a ValueError, as VMAS's and lbforaging's do) with `env_kwargs` given is a
    ConfigError naming them, as for JaxMARL and VMAS. Our own errors (a ConfigError for an
    impossible value) and running out of memory go on as they are."""
    if taken := sorted(set(env_kwargs) & set(fixed)):
        raise ConfigError(
            f"config key 'env_kwargs' = {env_kwargs!r}: env '{name}' is given "
            f"{', '.join(taken)} by mappo (num_envs, seed and device come from the config)"
        )
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins)
        signature = None
    # Keywords it passes on reach code that may refuse them by a TypeError of its own.
    passes_on = bool(env_kwargs) and (
        signature is None or any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    )
    if signature is not None and not passes_on:
        try:
            signature.bind(**fixed, **env_kwargs)
        except TypeError as err:  # worded as the call's own: "X.__init__() got an ..."
            who = getattr(factory, "__qualname__", type(factory).__name__)
            who += ".__init__" if isinstance(factory, type) else ""
            raise _kwargs_error(name, factory, env_kwargs, TypeError(f"{who}() {err}")) from None
    try:
        return factory(**fixed, **env_kwargs)
    except (ConfigError, EnvError, MemoryError):
        raise
    # How envs check their arguments, and how a value of the wrong type fails in them
    # (spread's dtype "float16": torch.zeros' TypeError).
    except (AssertionError, TypeError, ValueError) as err:
        if isinstance(err, TypeError) and passes_on:  # maybe a keyword it does not take
            raise _kwargs_error(name, factory, env_kwargs, err) from None
        refused = build_failed(name, env_kwargs, err)
        raise refused from (err if isinstance(refused, EnvError) else None)
    except Exception as err:
        if out_of_memory(err):
            raise
        raise EnvError(f"env '{name}' could not be built: {error_line(err)}") from err


def _takes(factory: Callable[..., Any], keyword: str) -> bool:
    """Whether `factory` takes `keyword` (by name, or through `**kwargs`)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return True
    return keyword in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _kwargs_error(
    name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any], err: TypeError
) -> ConfigError:
    """The one line for an env that refused its keyword arguments, with those it takes
    when its signature lists them."""
    fixed = {"num_envs", "device", "seed"} if is_vectorized(factory) else set()
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read
        params = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    takes = [
        p.name
        for p in params
        if p.name not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if any(p.kind == p.VAR_KEYWORD for p in params):  # it passes them on: no list to give
        hint = "; pass only keywords it takes"
    else:
        hint = f"; it takes {', '.join(takes) or 'none'}"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else "TypeError"
    return ConfigError(
        f"config key 'env_kwargs' = {env_kwargs!r}: env '{name}' refused them ({reason}){hint}"
    )


def pettingzoo_wrapper(name: str) -> type:
    """The `PettingZooWrapper` class that runs the env `name`, or the one line naming the
    pip extra when pettingzoo or gymnasium is not installed."""
    try:
        from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in PETTINGZOO_EXTRA:
            raise
        raise _extra_missing(name) from None
    return PettingZooWrapper


def _extra_missing(name: str) -> ConfigError:
    """The one line for a PettingZoo or Gymnasium env without the pettingzoo extra."""
    kind = "Gymnasium" if name.startswith(GYMNASIUM_PREFIX) else "PettingZoo"
    return ConfigError(
        f"env '{name}' is a {kind} env and needs the pettingzoo extra: "
        "pip install 'mappo[pettingzoo]'"
    )


def import_env_factory(name: str) -> Callable[..., Any]:
    """The callable building one copy of the env `name` names; errors name `name`.

    `[pettingzoo:]module:callable` is that callable; `gymnasium:[module:]id`
    is `TupleEnvAsParallel.make` of the id. Either is called with `**env_kwargs`.
    """
    if name.startswith(GYMNASIUM_PREFIX):
        return _gymnasium_factory(name)
    target = name.removeprefix(PETTINGZOO_PREFIX)
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"env '{name}': expected module:callable, e.g. mpe2.simple_spread_v3:parallel_env"
        )
    factory = _import_module(name, module_name)
    for part in attr.split("."):  # `module:Class.method` works too
        try:
            factory = getattr(factory, part)
        except AttributeError as err:
            gymnasium = sys.modules.get("gymnasium")  # imported by a module registering ids
            registered = gymnasium is not None and attr in gymnasium.registry
            hint = f"; a Gymnasium id: --env {GYMNASIUM_PREFIX}{target}" if registered else ""
            raise ConfigError(
                f"env '{name}': module '{module_name}' has no attribute '{attr}'{hint}"
            ) from err
    if not callable(factory):
        raise ConfigError(f"env '{name}': '{attr}' in '{module_name}' is not callable")
    return factory


def _gymnasium_factory(name: str) -> Callable[..., Any]:
    """`TupleEnvAsParallel.make` of the id `gymnasium:[module:]id` names, once it is registered."""
    try:
        import gymnasium

        from mappo.envs.pettingzoo.gymnasium_tuple import TupleEnvAsParallel
    except ModuleNotFoundError as err:
        if (err.name or "").partition(".")[0] not in PETTINGZOO_EXTRA:
            raise
        raise _extra_missing(name) from None

    target = name.removeprefix(GYMNASIUM_PREFIX)
    module_name, _, env_id = target.rpartition(":")
    if not env_id:
        raise ConfigError(
            f"env '{name}': expected gymnasium:module:id, e.g. "
            "gymnasium:lbforaging:Foraging-8x8-2p-2f-coop-v3"
        )
    if module_name:
        _import_module(name, module_name)
    if env_id not in gymnasium.registry:
        raise ConfigError(f"env '{name}': {_unknown_gymnasium_id(env_id, module_name)}")
    # The full `module:id`: gymnasium.make imports the module again in a fresh worker process.
    return partial(TupleEnvAsParallel.make, target)


def _unknown_gymnasium_id(env_id: str, module_name: str) -> str:
    """Why `env_id` is not registered, and what is: close ids (the module's own, if named)."""
    import gymnasium

    ids = list(gymnasium.registry)
    if module_name:
        package = module_name.partition(".")[0]
        ids = [i for i in ids if _package_of(gymnasium.registry[i].entry_point) == package]
    near = difflib.get_close_matches(env_id, ids, n=3, cutoff=0.7)
    if near:
        hint = "did you mean " + " or ".join(f"'{n}'" for n in near) + "?"
    elif module_name:
        listing = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        hint = f"{module_name} registers {listing or 'no Gymnasium env'}"
    else:
        hint = f"name the module that registers it: gymnasium:<module>:{env_id}"
    where = f" after importing {module_name}" if module_name else ""
    return f"no Gymnasium env '{env_id}' is registered{where}; {hint}"


def _package_of(entry_point: Any) -> str:
    """The top-level package an env spec's entry point (`module:attr` or a callable) is in."""
    module = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    return (module or "").partition(":")[0].partition(".")[0]


def _near_modules(missing: str) -> str:
    """A hint naming the modules of `missing`'s installed package close to it (another
    version suffix: cooperative_pong_v5 where v6 is installed), or ""."""
    parent, _, leaf = missing.rpartition(".")
    package = sys.modules.get(parent)
    if not leaf or package is None or not hasattr(package, "__path__"):
        return ""
    names = [m.name for m in pkgutil.iter_modules(package.__path__)]
    near = difflib.get_close_matches(leaf, names, n=2, cutoff=0.8)
    return f"; {parent} has {' and '.join(near)}" if near else ""


OLD_MPE = "pettingzoo.mpe."  # PettingZoo's MPE until 1.25; mpe2 since


def _import_module(name: str, module_name: str) -> Any:
    """`module_name` imported; a ConfigError naming the env `name` where it cannot be found
    (a missing extra named), an EnvError where its own code fails as it is imported."""
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        # A package missing as a whole (mpe2 without pettingzoo), not a module absent from an
        # installed one (pettingzoo.butterfly.cooperative_pong_v5, where v6 is installed).
        if err.name in PETTINGZOO_EXTRA:
            raise _extra_missing(name) from None
        extra = f"; pip install 'mappo[{EXTRAS[err.name]}]'" if err.name in EXTRAS else ""
        if module_name.startswith(OLD_MPE) and importlib.util.find_spec("mpe2") is not None:
            # PettingZoo's MPE moved to mpe2, whose module names are the same.
            extra = f"; mpe2 is installed: --env {'mpe2.' + name[len(OLD_MPE) :]}"
        raise ConfigError(
            f"env '{name}': cannot import module '{module_name}' ({err}){extra}"
            + _near_modules(err.name or "")
        ) from err
    except Exception as err:  # the module's own code failed (a SyntaxError, a check it makes)
        raise EnvError(
            f"env '{name}': importing module '{module_name}' failed: {error_line(err)}"
        ) from err
