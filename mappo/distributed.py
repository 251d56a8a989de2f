"""Data-parallel training on `torch.distributed`: each rank collects its own rollout.

Ranks start from the same parameters, average gradients with one all-reduce
per minibatch, and pool the value normalizer's statistics, so every rank holds
identical parameters after every optimizer step. Launched by `torchrun`
(which sets RANK, WORLD_SIZE, MASTER_ADDR, ...); a single process needs none
of it and every method below is then a no-op.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from mappo.stop_signals import stop_signals, take_hangup, terminal_outputs

SHUTDOWN_WAIT_S = 300.0  # how long a rank that is done waits for the others to be done too
# Set by `launch_ranks` for its ranks: a folder where a rank that failed with a one-line error
# leaves its exit code (`report_rank_failure`), which the launcher returns.
RANK_STATUS_ENV = "MAPPO_RANK_STATUS"
RANKS_LEFT_S = 20.0  # after a rank's report, how long the others have to exit by themselves
REPORT_WAIT_S = 5.0  # how long a rank whose collective failed waits for another's report


def is_main_rank() -> bool:
    """Whether this process is rank 0 of the process group torchrun describes (or of none),
    known before it joins the group."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass(frozen=True)
class Distributed:
    """This process's place among the ranks, and the collectives the trainer needs."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where collective tensors live: nccl needs them on the GPU

    @classmethod
    def from_environment(cls, device: str) -> Distributed:
        """Join the process group torchrun describes (gloo on CPU, nccl on CUDA), if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        cuda = device.startswith("cuda")
        if cuda:  # one GPU per rank on each node; "cuda" then means this rank's GPU
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if cuda else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), "cuda" if cuda else "cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder and prints."""
        return self.rank == 0

    def broadcast_parameters(self, parameters: Sequence[torch.Tensor]) -> None:
        """Make every rank start from rank 0's parameters."""
        if self.world_size > 1:
            for tensor in parameters:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: Sequence[torch.Tensor]) -> None:
        """Replace each gradient by its mean over ranks, in one all-reduce."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of `tensor` over ranks (in place)."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank if `flag` is True on any (e.g. a stop request)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def shutdown(self, together: bool = True) -> None:
        """Leave the process group; `together` (no error on its way out), once every rank is
        here. A rank that left while another still saved aborted now and then as it exited
        (gloo's threads torn down by C++'s static destructors: "terminate called without
        an active exception", 3 of 6 stops under load, 0 of 10 waiting). A rank that has
        not come within `SHUTDOWN_WAIT_S` is left behind; after an error none is waited
        for, as the others may be stuck in a collective that rank never joins."""
        if self.world_size > 1 and dist.is_initialized():
            if together:
                with contextlib.suppress(RuntimeError):  # the wait timed out, or a rank died
                    if self.device == "cpu":
                        dist.monitored_barrier(timeout=timedelta(seconds=SHUTDOWN_WAIT_S))
                    else:  # nccl has no monitored barrier
                        dist.barrier()
            dist.destroy_process_group()


def launch_ranks(nproc: int, argv: list[str]) -> int:
    """`mappo train --nproc N ARGV`: rerun the command as N ranks under torchrun on this node
    (`--nproc` left out), and return its exit code.

    torchrun runs in a session of its own, so that Ctrl-C at the terminal (or its closing)
    reaches this process only, which passes the signal (`stop_signals()`) on to the ranks:
    they stop as a run does (finish the update, save), and torchrun's agent, which would
    die with a traceback of its own, sees its ranks end normally. A rank that fails with
    a one-line error (a bad reward, a full disk) leaves the line and its exit code in a
    folder for this launcher (`report_rank_failure`) and exits 0 to torchrun; the others,
    whose collectives then fail, exit quietly (`another_rank_failed`). The launcher says
    each distinct line once (every rank may meet the same bad config) and returns the
    code: no tracebacks of the other ranks, no failure report of torchrun's.
    """
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            rest.append(item)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    with tempfile.TemporaryDirectory(prefix="mappo-ranks-") as status:
        agent = subprocess.Popen(
            [*torchrun, f"--nproc-per-node={nproc}", "-m", "mappo", *rest],
            start_new_session=True,
            env={**os.environ, RANK_STATUS_ENV: status},
        )
        terminal = terminal_outputs()
        passed_on: list[int] = []  # the signals that asked the ranks to stop

        def to_ranks(signum: int, frame: object) -> None:
            take_hangup(signum, terminal)  # its own last lines, after a closed terminal
            passed_on.append(signum)
            for pid in child_processes(agent.pid):
                os.kill(pid, signum)

        previous = {sig: signal.signal(sig, to_ranks) for sig in stop_signals()}
        try:
            code = _wait_for_ranks(agent, Path(status))
            reports = rank_reports(Path(status))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    for line in dict.fromkeys(line for _, line in reports):  # each once, in rank order
        print(line, file=sys.stderr)
    if reports:
        return max(rank_code for rank_code, _ in reports)
    # Ranks stopped by a signal exit 0 to torchrun; the run exits as stopped (`mappo.cli`).
    return 128 + passed_on[0] if code == 0 and passed_on else code


def _wait_for_ranks(agent: subprocess.Popen[bytes], status: Path) -> int:
    """torchrun's exit code. A rank that reported a failure exited 0, so torchrun would
    wait for the others: those whose collective sees the peer gone exit at once (gloo),
    but nccl's wait for it, or a rank still joining the group, lasts its timeout (10 to
    30 min). `RANKS_LEFT_S` after the first report, the agent and its ranks are killed."""
    reported: float | None = None
    while True:
        try:
            return agent.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass
        if reported is None and any(status.glob("rank_*")):
            reported = time.monotonic()
        if reported is not None and time.monotonic() - reported > RANKS_LEFT_S:
            ranks = child_processes(agent.pid)
            agent.kill()  # first: a rank's death is then no failure it reports
            for pid in ranks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return agent.wait()


def rank_reports(status: Path) -> list[tuple[int, str]]:
    """The (exit code, line) each failed rank left in `status`, in rank order."""
    reports = []
    for path in sorted(status.glob("rank_*"), key=lambda p: int(p.name.removeprefix("rank_"))):
        code, line = path.read_text().split("\n", 1)
        reports.append((int(code), line))
    return reports


def report_rank_failure(code: int, line: str) -> bool:
    """Leave this rank's exit code and error line where `launch_ranks` reads them, and
    leave the process group (the others' collectives then fail at once); whether it did
    (False: not one of its ranks, so they go to whoever started the process)."""
    folder, rank = os.environ.get(RANK_STATUS_ENV), os.environ.get("RANK")
    if not folder or rank is None:
        return False
    written = Path(folder) / f".rank_{rank}.tmp"
    try:
        written.write_text(f"{code}\n{line}")
        written.replace(written.with_name(f"rank_{rank}"))  # whole, or not there
    except OSError:  # the folder gone (the launcher killed): say it the usual way
        return False
    if dist.is_initialized():  # failed before the run's own close (a refused folder)
        dist.destroy_process_group()
    return True


def another_rank_failed() -> bool:
    """Whether another rank of `launch_ranks` reported a failure: this rank's error then
    followed from it (a collective whose peer is gone), and that rank said what it was.
    That rank leaves the group before it reports, so its report may follow within seconds."""
    folder, rank = os.environ.get(RANK_STATUS_ENV), os.environ.get("RANK")
    if not folder:
        return False
    deadline = time.monotonic() + REPORT_WAIT_S
    while not any(p.name != f"rank_{rank}" for p in Path(folder).glob("rank_*")):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def child_processes(pid: int) -> list[int]:
    """The processes `pid` started (Linux's /proc), or the whole group it leads elsewhere."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return [-pid]  # os.kill of -pgid signals the group, agent included
