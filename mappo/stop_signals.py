"""The signals that ask a run to stop and save: SIGINT (Ctrl-C, `mappo stop`), SIGTERM (a
batch scheduler) and SIGHUP (the terminal it runs in was closed: an ssh connection lost, a
window shut). A hangup also fails every later write to that terminal (EIO), the run's
last lines included, so `take_hangup` points them at /dev/null first. An output whose
reader is gone for another reason (a pipe's reader ended: `mappo train | head`, EPIPE; a
terminal closed under a run started with `& disown`, which gets no SIGHUP: EIO) is
pointed there by `output_lost` when a write meets it.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
from typing import TextIO

STANDARD_OUTPUTS = (1, 2)  # stdout and stderr's file descriptors
HANGUP = getattr(signal, "SIGHUP", None)  # a closed terminal's signal; none on Windows
TORCHRUN_RANK = "TORCHELASTIC_RUN_ID"  # in the environment of each rank torchrun starts


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT, SIGTERM and SIGHUP, less SIGHUP where this process ignores it: `nohup` asks
    that a closed terminal change nothing (and sends the output elsewhere), and a signal
    ignored when a process starts is meant to stay ignored."""
    if HANGUP is None or signal.getsignal(HANGUP) == signal.SIG_IGN:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT, signal.SIGTERM, HANGUP)


class StoppedBySignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a run's training (`stop_as_interrupt`), raised where
    Python raises KeyboardInterrupt for SIGINT: what a command cleans up after a Ctrl-C
    is cleaned up after these too, and it ends by the signal, with one line."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_as_interrupt() -> None:
    """Have SIGTERM and SIGHUP (`stop_signals()`: not one this process ignores) raise
    `StoppedBySignal` in the main thread, as SIGINT raises KeyboardInterrupt. By default they
    killed a command on the spot, silently: a batch scheduler's SIGTERM left an `--out`
    folder half written, where Ctrl-C removed it. A run's training takes them over
    (`mappo.run.StopOnSignal`), to stop after its update, saved. A rank of a torchrun job
    keeps the defaults: torchrun's agent ends the other ranks with SIGTERM when one fails,
    which is no stop, and its launcher reports the failure."""
    if TORCHRUN_RANK in os.environ:
        return
    terminal = terminal_outputs()

    def raise_stopped(signum: int, frame: object) -> None:
        take_hangup(signum, terminal)
        raise StoppedBySignal(signum)

    for sig in stop_signals():
        if sig != signal.SIGINT:
            signal.signal(sig, raise_stopped)


def terminal_outputs() -> tuple[int, ...]:
    """Which of stdout and stderr are a terminal now (a hung-up one no longer reads as one)."""
    return tuple(fd for fd in STANDARD_OUTPUTS if os.isatty(fd))


def take_hangup(signum: int, was_terminal: tuple[int, ...]) -> bool:
    """Whether `signum` is SIGHUP. If it is, each of `was_terminal` (`terminal_outputs()`,
    taken before) that is no longer a terminal, its terminal hung up, now points at
    /dev/null, so that the lines written after it go nowhere instead of failing; one still
    open (a SIGHUP sent by hand) keeps its output."""
    if HANGUP is None or signum != HANGUP:
        return False
    _point_at_null([fd for fd in was_terminal if not os.isatty(fd)])
    return True


def output_lost(err: OSError, stream: TextIO) -> bool:
    """Whether `err`, met writing to `stream`, says that nothing reads it any more: its
    pipe's reader ended (EPIPE) or its terminal hung up (EIO). If so, `stream`'s file now
    points at /dev/null, so that the lines after it (and Python's flush at exit) go
    nowhere instead of failing."""
    if err.errno not in (errno.EPIPE, errno.EIO):
        return False
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError):  # a stream in memory: nothing to repoint
        return True
    if not _read_by_another(fileno):  # EIO from a file on disk: the disk failed, not a reader
        return False
    _point_at_null([fileno])
    return True


def silence(stream: TextIO) -> None:
    """Point `stream`'s file at /dev/null: after a write to it failed (a full disk under a
    log file), the lines after it go nowhere instead of failing in turn."""
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError):  # a stream in memory: nothing to repoint
        return
    _point_at_null([fileno])


def stream_name(stream: TextIO) -> str:
    """`stdout`, `stderr`, or the stream's own name, for messages."""
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError):
        fileno = -1
    return {1: "stdout", 2: "stderr"}.get(fileno, str(getattr(stream, "name", "the output")))


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has ended (`mappo report | head -1`): only
    then is a BrokenPipeError the output's, not an env's or a worker's pipe."""
    try:
        poller = select.poll()
        poller.register(STANDARD_OUTPUTS[0], select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll (Windows), stdout closed
        return False
    return any(mask & select.POLLERR for _, mask in events)


def _read_by_another(fd: int) -> bool:
    """Whether `fd` is read by another process as it is written: a pipe, a socket or a
    terminal, not a file."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


def _point_at_null(fds: list[int]) -> None:
    """Make each of `fds` write to /dev/null."""
    if not fds:
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(null, fd)
    finally:
        os.close(null)
