"""Memory checked before it is spent: a run whose storage cannot fit says so in one line at
start, naming the size and the flag to change, instead of swapping or being killed later.
And freed memory kept for reuse, so that large temporary tensors cost no page faults."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from mappo.errors import ConfigError

GIB = 2**30
USABLE_FRACTION = 0.8  # of the memory free now: the rest stays for activations, envs, the OS
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on `device`: the GPU's free memory, or the machine's
    available memory (Linux `MemAvailable`); None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def size_text(size: int) -> str:
    """A byte count for people: GiB from 1 GiB up, else MiB."""
    return f"{size / GIB:.1f} GiB" if size >= GIB else f"{size / 2**20:.1f} MiB"


def check_fits(
    need: int, unit: int, device: torch.device, what: str, flag: str, also: str = ""
) -> None:
    """A ConfigError when `need` bytes of `what` exceed the usable part of the free memory,
    naming `flag`, which sets how many units of `unit` bytes there are, and how many fit
    (then `also`, another way out)."""
    free = free_bytes(device)
    if free is not None and need > USABLE_FRACTION * free:
        fits = int(USABLE_FRACTION * free // unit)
        raise ConfigError(
            f"{what} needs {size_text(need)}, but {size_text(free)} of "
            f"{'GPU memory' if device.type == 'cuda' else 'memory'} is free: lower {flag} "
            f"(about {fits} would fit){' ' + also if also else ''}"
        )


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks for reuse rather than hand them back to the OS;
    whether glibc took the settings (Linux with glibc; elsewhere nothing changes, and under
    a preloaded jemalloc or tcmalloc, which glibc's settings do not reach, nothing either).

    By default glibc maps each block over 32 MiB (its largest mmap threshold) afresh and
    unmaps it when freed, so each large temporary tensor pays a page fault per 4 KiB page
    when first written. Three SMAX seeds batched in one process (`--seeds 0,1,2`, gate
    tensors of 57 MB) spent a quarter of their update that way: 14.7-15.0 s of CPU per
    update, 10.6-11.1 s with this (2-core AMD EPYC, one torch thread). The settings hold
    for the main thread's heap, where the trainer runs; glibc still maps the largest
    blocks of other threads afresh. The cost: the process keeps its peak heap until it
    exits. Like `torch.set_num_threads`, it is process-wide; `MappoTrainer` calls it for
    CPU training unless the environment sets `MAPPO_KEEP_FREED_MEMORY=0` (a program that
    embeds mappo and wants glibc's defaults).
    """
    if os.environ.get("MAPPO_KEEP_FREED_MEMORY") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
