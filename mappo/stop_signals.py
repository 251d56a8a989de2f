"""The signals that ask a run to stop and save: SIGINT (Ctrl-C, `mappo stop`), SIGTERM (a
batch scheduler) and SIGHUP (the terminal it runs in was closed: an ssh connection lost, a
window shut). A hangup also fails every later write to that terminal (EIO), the run's
last lines included, so `take_hangup` points them at /dev/null first.
"""

from __future__ import annotations

import os
import signal

STANDARD_OUTPUTS = (1, 2)  # stdout and stderr's file descriptors
HANGUP = getattr(signal, "SIGHUP", None)  # a closed terminal's signal; none on Windows


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT, SIGTERM and SIGHUP, less SIGHUP where this process ignores it: `nohup` asks
    that a closed terminal change nothing (and sends the output elsewhere), and a signal
    ignored when a process starts is meant to stay ignored."""
    if HANGUP is None or signal.getsignal(HANGUP) == signal.SIG_IGN:
        return (signal.SIGINT, signal.SIGTERM)
    return (signal.SIGINT, signal.SIGTERM, HANGUP)


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
    hung_up = [fd for fd in was_terminal if not os.isatty(fd)]
    if hung_up:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in hung_up:
                os.dup2(null, fd)
        finally:
            os.close(null)
    return True
