"""Memory checked before it is spent: storage that cannot fit is one line naming its size and
the flag to change, before any run folder or checkpoint is written."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from mappo import memory
from mappo.buffer import AgentBuffer
from mappo.cli import main
from mappo.errors import ConfigError

GIB = 2**30


def test_storage_that_does_not_fit_is_refused_naming_size_and_flag(monkeypatch) -> None:
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * GIB)
    # 25 steps x 1000 copies x 20 agents of 84x84x4 uint8 frames: 13.14 GiB of observations,
    # and the per-agent floats beside them. 80 % of 10 GiB holds 607 copies' worth.
    with pytest.raises(ConfigError) as refused:
        AgentBuffer(25, 1000, 20, 84 * 84 * 4, 0, 1, 5, obs_dtype=torch.uint8)
    assert str(refused.value) == (
        "the rollout storage (25 steps of 1000 env copies x 20 agents) needs 13.2 GiB, but "
        "10.0 GiB of memory is free: lower --num-envs (about 607 would fit) or --rollout-steps"
    )


def test_storage_that_fits_is_allocated_zeroed(monkeypatch) -> None:
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * GIB)
    buffer = AgentBuffer(25, 16, 3, 18, 54, 1, 5)
    assert buffer.observations.shape == (25, 16, 3, 18) and not buffer.observations.is_meta
    assert buffer.observations.abs().sum() == 0 and buffer.returns.device.type == "cpu"


def test_the_cli_refuses_before_writing_a_run_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1 * 2**20)  # 1 MiB free
    run = tmp_path / "run"
    assert main(["train", "--run-dir", str(run), "--total-steps", "1000", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: the rollout storage (25 steps of 128 env copies x 3 agents) needs "
        "1.8 MiB, but 1.0 MiB of memory is free: lower --num-envs (about 57 would fit) or "
        "--rollout-steps\n"
    )
    assert not run.exists()


FAULTS_OF_A_LARGE_TENSOR = """
import resource, torch
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(2**24).fill_(1.0)  # 64 MiB, written, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
# The heap grows to hold it, then settles: sometimes a small allocation between two of
# them splits the freed block, and the heap grows once more to hold a second one.
[faults() for _ in range(4)]
print(sum(faults() for _ in range(8)))
"""


def faults_of_a_large_tensor(keep: bool) -> int:
    """Page faults of a 64 MiB tensor made, written and freed eight more times after four
    such rounds, in a fresh process that keeps freed memory or has glibc's defaults. The
    process loads the trainer first, as a training process has: with torch alone loaded
    (`import mappo` loads no more), the heap's few small chunks are split off the freed
    block, and a third to a half of the rounds fault again."""
    prelude = (
        "import mappo.trainer\n"
        "from mappo.memory import keep_freed_memory\nassert keep_freed_memory()\n"
    )
    code = (prelude if keep else "") + FAULTS_OF_A_LARGE_TENSOR
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc only",
)
def test_freed_memory_is_reused_without_page_faults() -> None:
    """After `keep_freed_memory`, a 64 MiB tensor freed and made again reuses its pages;
    glibc's defaults map it afresh, 16,384 faults of 4 KiB pages on each first write (fewer
    where transparent huge pages serve it, and then there is nothing to show)."""
    default = faults_of_a_large_tensor(keep=False)
    if default < 4_000:
        pytest.skip(f"glibc's defaults cost this machine only {default} faults here")
    # A split block costs one round its faults again (see above): allow two of the eight.
    assert faults_of_a_large_tensor(keep=True) < default / 4


def test_training_on_the_cpu_keeps_freed_memory(monkeypatch) -> None:
    """`MappoTrainer` on the CPU calls `keep_freed_memory`; the environment can opt out."""
    from mappo.config import MappoConfig
    from mappo.trainer import MappoTrainer

    kept = []
    monkeypatch.setattr("mappo.trainer.keep_freed_memory", lambda: kept.append(True))
    config = MappoConfig(num_envs=2, rollout_steps=4, minibatch_size=0, compile="false")
    MappoTrainer(config).close()
    assert kept == [True]
    monkeypatch.setenv("MAPPO_KEEP_FREED_MEMORY", "0")
    assert memory.keep_freed_memory() is False
