"""The `mappo` command's entry point.

A Ctrl-C while torch and the library load (a second or more) ends it with one line, as a
Ctrl-C later does, not with the import's traceback. A command that a signal ended (a run
stopped and saved after Ctrl-C, `mappo stop`, SIGTERM, a closed terminal or pipe) ends
the process by that signal, as Python ends one that a Ctrl-C interrupted: the shell then
reads it as stopped, not done, so a script's loop or `&&` chain stops too (bash goes on
after a child that exits normally on Ctrl-C, taking the signal as handled).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

# Exit codes that say a signal ended the command: the shell's 128 + the signal's number.
ENDING_SIGNALS = {
    128 + sig: sig
    for sig in (getattr(signal, name, None) for name in ("SIGHUP", "SIGINT", "SIGPIPE", "SIGTERM"))
    if sig is not None
}
_ended_by: list[signal.Signals] = []  # the signal to end the process by, once it has closed


def main() -> int:
    """Load `mappo.cli` and run the command `sys.argv` names; its exit code."""
    # Registered before anything else, so run after every other exit handler (torch's,
    # logging's flush, multiprocessing's shutdown of workers), Python running them last first.
    atexit.register(_end_by_signal)
    _fill_closed_outputs()
    # Its module imports the standard library alone.
    from mappo.stop_signals import StoppedBySignal, stop_as_interrupt

    stop_as_interrupt()
    try:
        from mappo.cli import main as command
    except StoppedBySignal as stop:
        print(f"mappo: stopped by {stop}", file=sys.stderr)
        code = 128 + stop.signum
    except KeyboardInterrupt:
        print("mappo: interrupted", file=sys.stderr)
        code = 130
    else:
        code = command()
    if code in ENDING_SIGNALS and os.name == "posix":
        _ended_by.append(ENDING_SIGNALS[code])
    return code


def _fill_closed_outputs() -> None:
    """Point stdout or stderr that the process started without (`mappo train >&-`) at
    /dev/null, before anything opens a file. Python leaves such a `sys.stdout` None, which
    the first line printed met as a traceback; and the next file opened would take its
    number, so that a worker process's output would land in that file."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is None:  # its number was no open file when Python started
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:  # the lowest free number: fd, unless an earlier one was free too
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 - lives on


def _end_by_signal() -> None:
    """End this process by the signal its command stopped for (a signal it blocks leaves it
    to exit with the command's code, 128 + the signal's number)."""
    if not _ended_by:
        return
    for stream in (sys.stdout, sys.stderr):  # Python flushes them after this handler
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone, a stream closed: nothing to keep
            pass
    signal.signal(_ended_by[0], signal.SIG_DFL)
    os.kill(os.getpid(), _ended_by[0])
