"""Test-wide settings (one torch thread per test process: the suite runs two processes) and
the fixtures several test files share."""

from pathlib import Path

import pytest
import torch

from mappo.cli import main

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny `mappo train` run on spread (seed 3, 16 envs, 4 updates of 400 steps), for
    the tests that only read its run folder (each test process trains it once)."""
    path = tmp_path_factory.mktemp("runs") / "tiny"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(path),
                "--seed",
                "3",
                "--total-steps",
                "1600",
                "--num-envs",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    return path
