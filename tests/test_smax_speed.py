"""`benchmarks/smax_speed.py`: JaxMARL's env steps/s come from the wall times its script logs
after each update, in one process, its first update (the compile) left out."""

from __future__ import annotations

import math

import pytest
from benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("smax_speed")


def test_the_first_update_carries_the_compile_and_is_left_out(bench) -> None:
    # 30 s to the first update's end (start, compile), then 2 s and 3 s for the next two.
    assert bench.steady_steps_per_second([30.0, 32.0, 35.0]) == 2 * bench.BATCH / 5.0


def test_jaxmarl_runs_its_updates_plus_one_in_one_process(bench, tmp_path) -> None:
    pytest.importorskip("wandb")
    # A stand-in for mappo_rnn_smax.py: one wandb.log per update of its hydra budget.
    (tmp_path / "mappo_rnn_smax.py").write_text(
        "import sys\nimport wandb\n"
        "args = dict(a.split('=', 1) for a in sys.argv[1:])\n"
        f"updates = int(args['TOTAL_TIMESTEPS']) // {bench.BATCH}\n"
        "assert args['MAP_NAME'] == '2s3z', args\n"
        "wandb.init(mode='disabled')\n"
        f"for k in range(updates):\n    wandb.log({{'env_step': k * {bench.BATCH}}})\n"
    )
    rate, how = bench.jaxmarl_steps_per_second(tmp_path, "2s3z", 4)
    assert rate > 0 and math.isfinite(rate)
    assert how.startswith("4 updates timed after its first")


def test_a_failing_script_gives_nan_and_its_last_line(bench, tmp_path) -> None:
    pytest.importorskip("wandb")
    (tmp_path / "mappo_rnn_smax.py").write_text("raise SystemExit('no SMAX here')\n")
    rate, how = bench.jaxmarl_steps_per_second(tmp_path, "3m", 2)
    assert math.isnan(rate)
    assert how == "JaxMARL's script failed: no SMAX here"


def test_the_matmul_floor_counts_every_product_forward_and_backward(bench) -> None:
    """A linear layer, a batched product and GruScan's kind of baddbmm (a broadcast bias,
    written into `out=`), forward and backward: MatmulLog's FLOPs are FlopCounterMode's,
    and their replay takes time."""
    from torch.utils.flop_counter import FlopCounterMode

    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(16, 8)
    x, w = torch.randn(32, 16), torch.randn(4, 8, 5, requires_grad=True)
    bias, out = torch.randn(2, 1, 6), torch.empty(2, 3, 6)

    def step() -> None:
        hidden = layer(x).unflatten(0, (4, 8))  # [4, 8, 8]
        torch.bmm(hidden, w).sum().backward()
        torch.baddbmm(bias, torch.randn(2, 3, 7), torch.randn(2, 7, 6), out=out)

    with bench.MatmulLog() as log:
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    # The linear layer: its forward and its weight's gradient (x needs none); the bmm: its
    # forward and both operands' gradients; the baddbmm: its product.
    expected = 2 * (2 * 32 * 16 * 8 + 3 * 4 * 8 * 8 * 5 + 2 * 3 * 7 * 6)
    assert log.flops() == counter.get_total_flops() == expected
    assert 0 < log.replay_seconds(min_seconds=0.001) < 1.0
