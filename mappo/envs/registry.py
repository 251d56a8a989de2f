"""Env names → vectorized envs: built-in tasks by name, anything else by `module:callable`.

`module:callable` (or `module:attr.attr`, e.g. `module:Class.method`) names one of two things:

* a vectorized env: a `MultiAgentEnv` subclass, or any callable with a
  `num_envs` parameter. It is called once, as the built-in envs are, with
  `num_envs=E, device=..., seed=..., **env_kwargs`, and must return a
  `MultiAgentEnv` holding all E copies (`num_workers` does not apply).
* otherwise, a function (or class) returning one PettingZoo `ParallelEnv`,
  e.g. `mpe2.simple_spread_v3:parallel_env`; it is called with `**env_kwargs`
  for every copy. A leading `pettingzoo:` is accepted and dropped. Such envs
  need the `pettingzoo` extra (pettingzoo and gymnasium).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from mappo.config import ConfigError
from mappo.envs.base import MultiAgentEnv

# Built-in envs, vectorized in torch: name -> (module, class).
BUILTIN_ENVS = {
    "spread": ("mappo.envs.spread", "SpreadEnv"),
    "reference": ("mappo.envs.reference", "ReferenceEnv"),
    "speaker_listener": ("mappo.envs.speaker_listener", "SpeakerListenerEnv"),
}
PETTINGZOO_PREFIX = "pettingzoo:"
PETTINGZOO_EXTRA = ("pettingzoo", "gymnasium")  # the packages of `pip install 'mappo[pettingzoo]'`
# What `--env module:callable` may name; error messages about the env's kind end with it.
ENV_CALLABLES = (
    "--env takes module:callable (or module:attr.attr, e.g. module:Class.method) returning a "
    "PettingZoo ParallelEnv, or a mappo MultiAgentEnv subclass or callable taking num_envs"
)


def make_env(
    name: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    *,
    num_workers: int = 0,
    use_state: bool = True,
) -> MultiAgentEnv:
    """Build `num_envs` copies of the env called `name`.

    `num_workers` and `use_state` only apply to PettingZoo envs (vectorized
    envs, built-in or the user's, run as they are): `use_state` False means
    nothing reads the env's own global state (the critic sees the
    observations, or only the actors act), so `env.state()` is never called.
    """
    env_kwargs = dict(env_kwargs or {})
    if name in BUILTIN_ENVS:
        module_name, class_name = BUILTIN_ENVS[name]
        env_class = getattr(importlib.import_module(module_name), class_name)
        return _make_vectorized(name, env_class, num_envs, device, seed, env_kwargs)
    if ":" in name:
        factory = import_env_factory(name)
        if is_vectorized(factory):
            return _make_vectorized(name, factory, num_envs, device, seed, env_kwargs)
        try:
            from mappo.envs.thirdparty.wrapper import PettingZooWrapper
        except ModuleNotFoundError as err:
            if (err.name or "").partition(".")[0] not in PETTINGZOO_EXTRA:
                raise
            raise _extra_missing(name) from None
        return PettingZooWrapper(
            partial(_build_copy, name, factory, env_kwargs), num_envs, num_workers=num_workers,
            seed=seed, device=device, name=name, use_state=use_state,
        )
    near = difflib.get_close_matches(name, BUILTIN_ENVS, n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise ConfigError(
        f"config key 'env' = '{name}': {hint}built-in envs are {', '.join(BUILTIN_ENVS)}, "
        "or name a PettingZoo env as module:callable (e.g. mpe2.simple_spread_v3:parallel_env)"
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
    name: str, factory: Callable[..., Any], num_envs: int, device: str | torch.device,
    seed: int | None, env_kwargs: dict[str, Any],
) -> MultiAgentEnv:
    """`factory(num_envs=, device=, seed=, **env_kwargs)`, checked to be a `MultiAgentEnv`."""
    try:
        env = factory(num_envs=num_envs, device=device, seed=seed, **env_kwargs)
    except TypeError as err:  # an unknown or mistyped keyword
        raise _kwargs_error(name, factory, env_kwargs, err) from None
    if not isinstance(env, MultiAgentEnv):
        raise ConfigError(
            f"env '{name}' takes num_envs, so it was called as a vectorized env, but it "
            f"returned a {type(env).__name__}, not a mappo MultiAgentEnv; {ENV_CALLABLES}"
        )
    return env


def _build_copy(name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any]) -> Any:
    """One PettingZoo copy, `factory(**env_kwargs)`; a TypeError names the keywords."""
    try:
        return factory(**env_kwargs)
    except TypeError as err:
        raise _kwargs_error(name, factory, env_kwargs, err) from None


def _kwargs_error(name: str, factory: Callable[..., Any], env_kwargs: dict[str, Any],
                  err: TypeError) -> ConfigError:
    """The one line for an env that refused its keyword arguments, with those it takes
    when its signature lists them."""
    fixed = {"num_envs", "device", "seed"} if is_vectorized(factory) else set()
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no signature to read
        params = [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    takes = [p.name for p in params if p.name not in fixed and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if any(p.kind == p.VAR_KEYWORD for p in params):  # it passes them on: no list to give
        hint = "; pass only keywords it takes"
    else:
        hint = f"; it takes {', '.join(takes) or 'none'}"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else "TypeError"
    return ConfigError(
        f"config key 'env_kwargs' = {env_kwargs!r}: env '{name}' refused them ({reason}){hint}"
    )


def _extra_missing(name: str) -> ConfigError:
    """The one line for a PettingZoo env without the pettingzoo extra installed."""
    return ConfigError(
        f"env '{name}' is a PettingZoo env and needs the pettingzoo extra: "
        "pip install 'mappo[pettingzoo]'"
    )


def import_env_factory(name: str) -> Callable[..., Any]:
    """The callable a `[pettingzoo:]module:callable` env name refers to; errors name `name`."""
    target = name.removeprefix(PETTINGZOO_PREFIX)
    module_name, _, attr = target.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"env '{name}': expected module:callable, e.g. mpe2.simple_spread_v3:parallel_env"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if (err.name or "").partition(".")[0] in PETTINGZOO_EXTRA:  # e.g. mpe2 without it
            raise _extra_missing(name) from None
        raise ConfigError(f"env '{name}': cannot import module '{module_name}' ({err})") from err
    factory = module
    for part in attr.split("."):  # `module:Class.method` works too
        try:
            factory = getattr(factory, part)
        except AttributeError as err:
            raise ConfigError(
                f"env '{name}': module '{module_name}' has no attribute '{attr}'"
            ) from err
    if not callable(factory):
        raise ConfigError(f"env '{name}': '{attr}' in '{module_name}' is not callable")
    return factory
