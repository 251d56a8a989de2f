"""The one-line errors users see: each names the culprit (a config key, an env's field, a
file), and the CLI prints it as one line with an exit code instead of a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key, type or value that cannot be used; the message names it."""


class EnvMismatchError(ConfigError):
    """A config whose facts of the env (its agents, observation, state and action sizes)
    contradict the env it builds, or whose batch that env cannot fill."""


class EnvError(RuntimeError):
    """An env broke the contract or raised; the message names the env, step, agent and field
    (or the call that raised)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (e.g. it already holds a run)."""


class RenderError(ConfigError):
    """Rendering cannot be done as asked (file type, encoder, env); the message says why.

    A ConfigError, so the command line reports it like any other bad option.
    """
