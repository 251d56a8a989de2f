"""Memory checked before it is spent: a run whose storage cannot fit says so in one line at
start, naming the size and the flag to change, instead of swapping or being killed later."""

from __future__ import annotations

import os

import torch

from mappo.errors import ConfigError

GIB = 2**30
USABLE_FRACTION = 0.8  # of the memory free now: the rest stays for activations, envs, the OS


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
