"""A run folder's lock: one process at a time trains in a folder, and `mappo stop` finds it.

Two processes training in one folder would interleave their metrics rows and
overwrite each other's checkpoints (and a resumed run cuts metrics.csv back to
its checkpoint, deleting the other's rows). So a run holds an advisory `flock`
on the folder's `.lock` while it writes, which the kernel drops when its process
ends, however it ends: a killed run leaves no stale lock. The file stays,
naming the last holder ("pid N on HOST"). Without `fcntl` (Windows) nothing is
locked.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mappo.distributed import child_processes
from mappo.errors import RunFolderError
from mappo.stop_signals import TORCHRUN_RANK

LOCK_FILE = ".lock"
TAKE_TRIES = 10  # attempts 50 ms apart before a held lock is refused


class RunLock:
    """One process's exclusive hold on a run folder while it trains there; a second
    `mappo train` or `--resume` into the folder is refused, naming the holder."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle = handle  # the open lock file; closing it releases the lock

    @classmethod
    def take(cls, folder: str | Path) -> RunLock:
        """Lock `folder` (created if missing) for this process, or raise RunFolderError
        naming the process that holds it."""
        path = Path(folder) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for as long as the run writes
        # A probe (`holder`: `mappo report`, `mappo stop`) holds the lock for microseconds:
        # only a holder that keeps it is refused.
        for _ in range(TAKE_TRIES):
            if _try_lock(handle, exclusive=True):
                break
            time.sleep(0.05)
        else:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            _refuse(folder, holder)
        handle.truncate(0)
        handle.write(_holder_line())
        handle.flush()
        return cls(path, handle)

    @staticmethod
    def holder(folder: str | Path) -> str | None:
        """What `.lock` says of the process that trains in `folder` ("pid N on HOST"), or
        None when none does. A shared lock, taken and dropped: probes never refuse each
        other (the ranks of a resumed multi-rank run probe at once)."""
        path = Path(folder) / LOCK_FILE
        if not path.is_file():
            return None
        with open(path) as handle:
            if _try_lock(handle, exclusive=False):
                return None
            return handle.read().strip()

    @classmethod
    def refuse_if_held(cls, folder: str | Path) -> None:
        """Raise RunFolderError now, before any work, if another process holds `folder`."""
        holder = cls.holder(folder)
        if holder is not None:
            _refuse(folder, holder)

    @classmethod
    def refuse_if_held_outside_this_job(cls, folder: str | Path) -> None:
        """For a rank other than 0 of a torchrun job, which writes no folder: refuse at
        once, as rank 0 does, a `folder` that a process outside the job holds. Rank 0,
        a sibling under torchrun's agent, holds it from its start."""
        if (holder := cls.holder(folder)) is None:
            return
        pids = _file_holder(Path(folder))  # none: another host's, or unknown
        if not pids or not pids <= set(child_processes(os.getppid())):
            _refuse(folder, holder)

    def release(self) -> None:
        """Let another process train in the folder."""
        self._handle.close()


def _try_lock(handle: Any, exclusive: bool) -> bool:
    """Lock the open file `handle` without waiting; False if another holds it exclusively
    (or at all, for an `exclusive` lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks through this module
        return True
    try:
        fcntl.flock(
            handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        )
    except BlockingIOError:
        return False
    return True


def _refuse(folder: str | Path, holder: str) -> NoReturn:
    """Raise the one-line error for a run folder in use by `holder` (`RunLock.holder`)."""
    holder = holder or "unknown pid"
    if holder == _holder_line().strip():
        raise RunFolderError(
            f"run folder {folder} is in use by this process: a Run of it has neither finished "
            "train() nor been closed (run.close(); `with Run.start(...) as run:` closes it); "
            "close it, or choose another run folder"
        )
    raise RunFolderError(
        f"run folder {folder} is in use by another training process ({holder}); "
        f"stop it first (Ctrl-C there, or mappo stop {folder}: it saves), or choose another "
        "run folder"
    )


def _holder_line() -> str:
    """What `.lock` says of the process holding it."""
    return f"pid {os.getpid()} on {socket.gethostname()}\n"


def signal_holders(folders: Sequence[Path], signum: int) -> list[int]:
    """Send `signum` to the processes holding `folders`' locks, and to the other ranks of a
    torchrun job (only rank 0 holds the lock): the pids signalled. A lock held from
    outside this machine's processes (another machine on a shared filesystem, another
    pid namespace) or by this very process is refused in one line."""
    pids: set[int] = set()
    trains_in: dict[int, Path] = {}  # each holder's folder, for messages
    for folder in folders:
        holders = _kernel_holders(folder / LOCK_FILE)
        if holders is None:  # no kernel lock table to read: trust the file on this host
            holders = _file_holder(folder)
        if not holders:
            raise RunFolderError(
                f"run folder {folder} is trained by a process this machine cannot signal "
                f"({RunLock.holder(folder) or 'unknown pid'}): stop it where it runs"
            )
        if os.getpid() in holders:
            raise RunFolderError(f"run folder {folder} is trained by this very process")
        pids |= holders
        trains_in |= dict.fromkeys(holders, folder)
    for pid in sorted(pids):
        for target in _with_other_ranks(pid):
            try:
                os.kill(target, signum)
            except ProcessLookupError:  # it ended meanwhile
                continue
            except PermissionError:
                raise RunFolderError(
                    f"cannot signal pid {target}, which trains in {trains_in[pid]}: it belongs "
                    "to another user (stop it as that user, or as root)"
                ) from None
            pids.add(target)
    return sorted(pids)


def wait_released(folders: Sequence[Path], pids: Sequence[int], deadline: float) -> bool:
    """Wait until nobody holds `folders`' locks and `pids` have exited (a `time.monotonic`
    deadline); whether they did."""
    while any(RunLock.holder(f) is not None for f in folders) or any(map(_running, pids)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kernel_holders(lock: Path) -> set[int] | None:
    """The pids holding an exclusive flock on `lock`, from the kernel's table (in this
    process's pid namespace), or None where there is no such table (not Linux)."""
    try:
        table = Path("/proc/locks").read_text()
        inode = os.stat(lock).st_ino
    except OSError:
        return None
    holders = set()
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 fd:01:1234567 0 EOF"; "->" marks a waiter.
        if len(fields) >= 6 and fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"]:
            if fields[5].rsplit(":", 1)[-1] == str(inode) and int(fields[4]) > 0:
                holders.add(int(fields[4]))
    return holders


def _file_holder(folder: Path) -> set[int]:
    """The pid `.lock` names when it names this host, else none."""
    pid, _, host = (RunLock.holder(folder) or "").removeprefix("pid ").partition(" on ")
    return {int(pid)} if pid.isdigit() and host == socket.gethostname() else set()


def _with_other_ranks(pid: int) -> list[int]:
    """`pid`, and the other ranks of its torchrun job when it is one: its siblings under
    torchrun's agent (Linux)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if not any(item.startswith(f"{TORCHRUN_RANK}=".encode()) for item in environ):
            return [pid]
        agent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return [pid]
    return sorted({pid, *(p for p in child_processes(agent) if p > 0)})


def _running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
