"""`benchmarks/jaxmarl_smax.py`: what JaxMARL's script hands to `wandb.log` reaches its log,
and a log counts only once it holds every update of the budget."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("jaxmarl_smax")


def test_capture_logs_what_a_script_gives_wandb_after_its_init(bench, tmp_path) -> None:
    # wandb.init replaces the module's `log` with its run's: the capture must survive that.
    pytest.importorskip("wandb")
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\nimport numpy as np\nimport wandb\n"
        "wandb.init(mode='disabled')\n"
        "for k in range(2):\n"
        "    wandb.log({'win_rate': np.array([0.5, 1.0]) * k, 'seed': float(sys.argv[1])})\n"
    )
    log = tmp_path / "seed_0.jsonl"
    subprocess.run([sys.executable, "-c", bench.CAPTURE, str(log), str(script), "7"], check=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["win_rate"] for row in rows] == [0.0, 0.75]  # the mean over its array
    assert [row["seed"] for row in rows] == [7.0, 7.0]  # the script's own arguments
    assert 0.0 <= rows[0]["wall_s"] <= rows[1]["wall_s"]


def test_a_log_counts_once_it_holds_every_update(bench, tmp_path) -> None:
    updates, batch = bench.UPDATES, bench.BATCH
    rows = [
        {"env_step": k * batch, "win_rate": k / updates, "wall_s": 2.0 * k} for k in range(updates)
    ]
    log = tmp_path / "seed_0.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in rows[:-1]))
    with pytest.raises(FileNotFoundError, match=f"{updates - 1} of {updates} updates"):
        bench.jaxmarl_curve(log)
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    curve = bench.jaxmarl_curve(log)
    # Row k logs the rollout of update k, which ends at (k + 1) batches of env steps.
    assert curve.env_steps[0] == batch and curve.env_steps[-1] == updates * batch
    assert curve.returns[-1] == (updates - 1) / updates
