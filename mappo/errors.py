"""The one-line errors users see: each names the culprit (a config key, an env's field, a
file), and the CLI prints it as one line with an exit code instead of a traceback."""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator


class ConfigError(ValueError):
    """A config key, type or value that cannot be used; the message names it."""


class EnvMismatchError(ConfigError):
    """A config whose facts of the env (its agents, observation, state and action sizes)
    contradict the env it builds, or whose batch that env cannot fill."""


class DivergenceError(ConfigError):
    """An update whose gradients were not numbers (NaN or inf), which the optimizer then
    wrote into the weights: nothing of it is logged or saved; the message names the update
    and what to change (a ConfigError: the settings are what let it happen)."""


class EnvError(RuntimeError):
    """An env broke the contract or raised; the message names the env, step, agent and field
    (or the call that raised)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked (e.g. it already holds a run)."""


class WriteError(RunFolderError):
    """A file that could not be written (a full disk, a quota, a folder made read-only); the
    message names it and says what was kept. `no_space`: the disk or the quota is full."""

    def __init__(self, message: str, no_space: bool = False) -> None:
        super().__init__(message)
        self.no_space = no_space

    def with_hint(self, hint: str) -> WriteError:
        """The same error with `hint` (what to do next) after its message."""
        return WriteError(f"{self}; {hint}", self.no_space)


def refused_write(path: object, err: BaseException, kept: str) -> WriteError | None:
    """The WriteError to raise for `path` when `err` is, or was raised while handling, an
    OSError (torch's zip writer turns a full disk into a RuntimeError on top of one), with
    `kept` saying what is left as it was; None when `err` has nothing of the kind."""
    seen: set[int] = set()
    found: BaseException | None = err
    while found is not None and id(found) not in seen:
        if isinstance(found, OSError):
            no_space = found.errno in (errno.ENOSPC, errno.EDQUOT)
            return WriteError(f"cannot write {path} ({found.strerror or found}); {kept}", no_space)
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None


@contextlib.contextmanager
def writes_refused_as_write_error(path: object, kept: str) -> Iterator[None]:
    """Re-raise an error of the block that `refused_write` recognizes as its WriteError for
    `path` (`kept`: what is left as it was); any other error as it is."""
    try:
        yield
    except Exception as err:
        if refused := refused_write(path, err, kept):
            raise refused from err
        raise


class RenderError(ConfigError):
    """Rendering cannot be done as asked (file type, encoder, env); the message says why.

    A ConfigError, so the command line reports it like any other bad option.
    """


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` says that memory ran out: Python's or numpy's MemoryError, torch's
    CUDA OutOfMemoryError, or the RuntimeError of its CPU allocator."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError)
        and ("can't allocate memory" in str(err) or "out of memory" in str(err).lower())
    )


def exit_line(err: BaseException) -> tuple[int, str] | None:
    """The exit code and line (after the program's name) of an error a user sees as one
    line: 2 and "error: ..." for bad input (a config, a run folder, a checkpoint, memory
    that ran out), 3 and "env error: ..." for an env that broke; None for any other error,
    a bug, which keeps its traceback."""
    if isinstance(err, ConfigError | RunFolderError | CheckpointError):
        return 2, f"error: {err}"
    if isinstance(err, EnvError):
        return 3, f"env error: {err}"
    if out_of_memory(err):
        return 2, f"error: {memory_line(err)}"
    return None


def memory_line(err: BaseException) -> str:
    """The one line for an `out_of_memory` error: how much was asked for, where the error
    says (torch's CPU allocator in bytes, numpy's and CUDA's in their own units)."""
    text = str(err)
    if found := re.search(r"allocate (\d+) bytes", text):
        asked = f"{int(found.group(1)) / 2**30:,.1f} GiB"
    elif found := re.search(r"(?i)allocate ([\d.]+ [KMGTP]i?B)", text):
        asked = found.group(1)
    else:
        asked = ""
    what = f"it asked for {asked} at once" if asked else "memory ran out"
    return (
        f"out of memory: {what}; lower num_envs, rollout_steps, hidden_dim or "
        "minibatch_size (--debug shows where)"
    )
