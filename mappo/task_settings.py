"""`auto` settings resolved for one env: what the env family's official MAPPO code does.

The specification fixes PPO's numbers but not how a task is scored: whether the
time limit is part of the task, whether agents learn from the team's reward,
whether a shared actor sees its agent's one-hot. A config leaves these at
`auto`, and `resolve_auto` sets them from the env's `TaskConventions`, else to
the library's defaults, and says what it chose and why in one line.
"""

from __future__ import annotations

from mappo.config import AUTO, ConfigError, MappoConfig
from mappo.envs.base import EnvSpec
from mappo.policy import critic_images

# Where an env family has no convention.
LIBRARY_DEFAULTS = {"agent_id": True, "team_reward": False}


def resolve_auto(config: MappoConfig, spec: EnvSpec) -> tuple[MappoConfig, str]:
    """`config` with every `auto` setting decided for env `spec`, and a line saying what was
    decided (empty when nothing was `auto`); the decided fields do not count as given (an
    `auto` set by the user was no choice of a value), they are `auto_decided`.

    Time limits are terminal where the limit is part of the task and bootstrapped
    elsewhere. The centralized critic reads the time left (Pardo et al., 2018)
    where limits are terminal and the env has one, so that its value can tell
    the first step of an episode from the last; the actors' input never changes.
    """
    conventions = spec.conventions
    decided: dict[str, bool] = {}
    why: dict[str, str] = {}
    for name, default in LIBRARY_DEFAULTS.items():
        if getattr(config, name) == AUTO:
            own = getattr(conventions, name)
            decided[name] = default if own is None else own
            why[name] = "library default" if own is None else conventions.source
    if config.bootstrap_time_limits == AUTO:
        in_task = bool(conventions.time_limit_in_task)
        decided["bootstrap_time_limits"] = not in_task
        why["bootstrap_time_limits"] = (
            "the time limit is part of the task" if in_task else "library default"
        )
    terminal = not decided.get("bootstrap_time_limits", config.bootstrap_time_limits)
    reason = _why_no_time_left(config, spec)
    if config.critic_time_left == AUTO:
        decided["critic_time_left"] = terminal and reason is None
        why["critic_time_left"] = (
            (reason or "time limits are terminal") if terminal else "time limits are bootstrapped"
        )
    elif config.critic_time_left and reason is not None:
        raise ConfigError(f"config key 'critic_time_left' = true: {reason}")
    if not decided:
        return config, ""
    resolved = config.replace(**decided)
    resolved.given = config.given - frozenset(decided)
    resolved.auto_decided = config.auto_decided | frozenset(decided)
    said = ", ".join(
        f"{name} = {str(value).lower()} ({why[name]})" for name, value in decided.items()
    )
    return resolved, f"auto settings for env '{spec.name}': {said}"


def _why_no_time_left(config: MappoConfig, spec: EnvSpec) -> str | None:
    """Why the critic cannot read the time left in env `spec`, or None when it can."""
    if not spec.max_episode_steps:
        return f"env '{spec.name}' declares no time limit"
    if spec.turn_based:  # PettingZoo's max_cycles counts rounds of turns, not steps
        return f"turn-based env '{spec.name}' counts its time limit in rounds, not steps"
    if config.critic == "local":
        return "a local critic reads the actors' observations only"
    if critic_images(spec, config):
        return "the critic reads images"
    return None
