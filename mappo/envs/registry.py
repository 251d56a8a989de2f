"""Env names → vectorized envs: built-in tasks by name, anything else by `module:callable`.

`module:callable` names a function (or class) returning one PettingZoo
`ParallelEnv`, e.g. `mpe2.simple_spread_v3:parallel_env`; it is called with
`**env_kwargs` for every copy. A leading `pettingzoo:` is accepted and dropped.
Such envs need the `pettingzoo` extra (pettingzoo and gymnasium).
"""

from __future__ import annotations

import difflib
import importlib
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


def make_env(
    name: str,
    num_envs: int,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    *,
    num_workers: int = 0,
) -> MultiAgentEnv:
    """Build `num_envs` copies of the env called `name`.

    `num_workers` only applies to PettingZoo envs (the built-in ones are
    vectorized in torch and run in this process).
    """
    env_kwargs = dict(env_kwargs or {})
    if name in BUILTIN_ENVS:
        module_name, class_name = BUILTIN_ENVS[name]
        env_class = getattr(importlib.import_module(module_name), class_name)
        try:
            return env_class(num_envs, device=device, seed=seed, **env_kwargs)
        except TypeError as err:  # an unknown or mistyped keyword
            raise ConfigError(f"config key 'env_kwargs' = {env_kwargs!r}: {err}") from None
    if ":" in name:
        try:
            from mappo.envs.thirdparty.wrapper import PettingZooWrapper
        except ModuleNotFoundError as err:
            if (err.name or "").partition(".")[0] not in PETTINGZOO_EXTRA:
                raise
            raise ConfigError(
                f"env '{name}' is a PettingZoo env and needs the pettingzoo extra: "
                "pip install 'mappo[pettingzoo]'"
            ) from None
        factory = import_env_factory(name)
        return PettingZooWrapper(
            partial(factory, **env_kwargs), num_envs, num_workers=num_workers, seed=seed,
            device=device, name=name,
        )
    near = difflib.get_close_matches(name, BUILTIN_ENVS, n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    raise ConfigError(
        f"config key 'env' = '{name}': {hint}built-in envs are {', '.join(BUILTIN_ENVS)}, "
        "or name a PettingZoo env as module:callable (e.g. mpe2.simple_spread_v3:parallel_env)"
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
