"""SMAX with JaxMARL's MAPPO config: mappo's env steps/s against JaxMARL's own MAPPO script,
side by side in one run, with where mappo's time goes.

    python benchmarks/smax_speed.py --jaxmarl-checkout DIR [--map 3m] [--updates 3]
        [--jaxmarl-updates 10] [--cores 1|2] [--torch-threads 1|2]

DIR holds `mappo_rnn_smax.py` and its `config/`, copied from `baselines/MAPPO/` of a
JaxMARL checkout (outside this project; it needs distrax, hydra-core, omegaconf and
wandb). JaxMARL's script jits its whole training; it runs here in a subprocess for
`--jaxmarl-updates` + 1 updates, what it hands to `wandb.log` captured with the wall
time (`jaxmarl_smax.py`'s capture), and its env steps/s are those of the updates
after the first, which carries the compile. mappo trains the same
config (`--preset jaxmarl-smax`, eager) in this process: one update to warm up,
then `--updates` timed, each split into the env's steps (the JAX step and the
hand-over to torch), the rest of the rollout (inference, storage), and the
update, whose GRU scans (forward and backward) the torch profiler times in a
last update; and the floor of rollout and update, their matrix products rerun
alone (`MatmulLog`). With `--cores 1` (the default) both sides run one XLA thread and one
torch thread and are pinned to one core (XLA runs threads of its own beside its
flags); `--cores 2` leaves both free on two cores with two torch threads
(`--torch-threads 1`: one, XLA's env step free to take the other core). Writes
benchmarks/results/smax_speed.md (`smax_speed_2cores.md`, `smax_speed_2cores_1thread.md`);
last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_common import machine_info, markdown_table, write_results  # noqa: E402
from jaxmarl_smax import run_jaxmarl  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from mappo.presets import build_config  # noqa: E402
from mappo.trainer import MappoTrainer  # noqa: E402

aten = torch.ops.aten
BATCH = 128 * 128  # NUM_ENVS x NUM_STEPS of JaxMARL's SMAX config: env steps per update
# With --cores 1 both sides run pinned to this core: XLA starts threads of its own (its
# compiler's, its runtime's) whatever its flags say, so one thread each is only true there.
CORE = 0
ONE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def steady_steps_per_second(wall_s: list[float]) -> float:
    """Env steps/s from the wall times `wall_s` logged after each update, the first left
    out: it carries the script's start and its compile."""
    return (len(wall_s) - 1) * BATCH / (wall_s[-1] - wall_s[0])


def jaxmarl_steps_per_second(
    checkout: Path, map_name: str, updates: int, pin: bool = False
) -> tuple[float, str]:
    """JaxMARL's script's env steps/s on `map_name` over `updates` updates after its first,
    and how (NaN, and why, when the script fails); with `pin`, on core `CORE` only.

    The times are those its log records as each update ends, all in one process: two
    processes of different lengths differ in more than their updates (compile, load).
    """
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "jaxmarl.jsonl"
        done = run_jaxmarl(
            checkout,
            log,
            [f"TOTAL_TIMESTEPS={(updates + 1) * BATCH}", f"MAP_NAME={map_name}", "SEED=0"],
            capture_output=True,
            text=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {CORE})) if pin else None,
        )
        lines = log.read_text().splitlines() if log.is_file() else []
        wall_s = [json.loads(line)["wall_s"] for line in lines]
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return math.nan, f"JaxMARL's script failed: {' '.join(tail)}"
    if len(wall_s) != updates + 1:
        return math.nan, f"JaxMARL's script logged {len(wall_s)} updates, not {updates + 1}"
    how = (
        f"{updates} updates timed after its first (which ended {wall_s[0]:.1f} s after the "
        "start, compile included), from the wall time its log records at each update"
    )
    return steady_steps_per_second(wall_s), how


def mappo_timing(map_name: str, updates: int) -> dict[str, float]:
    """mappo's env steps/s on the same config, and the seconds per update of each part."""
    fields = {
        "env": "jaxmarl:HeuristicEnemySMAX",
        "env_kwargs": {"scenario": map_name},
        "compile": "false",
        "total_steps": 10_000_000,
    }
    trainer = MappoTrainer(build_config("jaxmarl-smax", None, fields))
    env, stepping = trainer.env, [0.0]
    env_step = env.step

    def timed_step(actions: torch.Tensor):  # the JAX step and the hand-over, as the rollout sees
        start = time.perf_counter()
        result = env_step(actions)
        stepping[0] += time.perf_counter() - start
        return result

    env.step = timed_step
    trainer.collect_rollout()  # warm-up: compiles the env's step
    trainer.update()
    rollout = update = 0.0
    stepping[0] = 0.0
    for _ in range(updates):
        start = time.perf_counter()
        trainer.collect_rollout()
        middle = time.perf_counter()
        trainer.update()
        rollout, update = rollout + middle - start, update + time.perf_counter() - middle
    env_seconds = stepping[0]
    trainer.collect_rollout()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.update()
    scan = sum(
        e.cpu_time_total for e in prof.key_averages() if e.key in ("GruScan", "GruScanBackward")
    )
    with MatmulLog() as rollout_matmuls:
        trainer.collect_rollout()
    with MatmulLog() as update_matmuls:
        trainer.update()
    frames = trainer.env.num_envs * trainer.config.rollout_steps * updates
    return {
        "steps_per_second": frames / (rollout + update),
        "env_s": env_seconds / updates,
        "rollout_rest_s": (rollout - env_seconds) / updates,
        "update_s": update / updates,
        "gru_scan_share_of_update": scan / prof.key_averages().total_average().self_cpu_time_total,
        "rollout_gflop": rollout_matmuls.flops() / 1e9,
        "rollout_floor_s": rollout_matmuls.replay_seconds(),
        "update_gflop": update_matmuls.flops() / 1e9,
        "update_floor_s": update_matmuls.replay_seconds(),
    }


class MatmulLog(TorchDispatchMode):
    """The matrix products (mm, addmm, bmm, baddbmm, forward and backward) dispatched inside
    it, counted by their operands' shapes and dtype: their FLOPs, and the time the same
    products take alone on fresh contiguous operands (`replay_seconds`), the floor of what
    recorded them (the elementwise gate arithmetic, the losses and the copies between
    layouts left out). Other products (mv, convolutions) are not counted: mappo's MLPs and
    GRUs make none."""

    PRODUCTS = (aten.mm, aten.addmm, aten.bmm, aten.baddbmm)

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[tuple[Any, torch.dtype, tuple[tuple[int, ...], ...]]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in self.PRODUCTS:  # an `out=` tensor is in kwargs: not counted
            operands = [a for a in args if isinstance(a, torch.Tensor)]
            shapes = tuple(tuple(a.shape) for a in operands)
            self.calls[func.overloadpacket, operands[-1].dtype, shapes] += 1
        return func(*args, **(kwargs or {}))

    def flops(self) -> float:
        """2 m k n per product (times the batch for bmm and baddbmm), summed over the calls."""
        total = 0.0
        for (_, _, shapes), count in self.calls.items():
            *_, left, right = shapes  # addmm and baddbmm: the added term comes first
            total += count * 2 * math.prod(left) * right[-1]
        return total

    def replay_seconds(self, min_seconds: float = 0.05) -> float:
        """Each recorded product rerun alone on random operands of its shapes, timed over
        at least `min_seconds`, times its count; summed."""
        total = 0.0
        with torch.no_grad():
            for (packet, dtype, shapes), count in self.calls.items():
                operands = [torch.randn(shape, dtype=dtype) for shape in shapes]
                packet(*operands)  # warm-up
                calls, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < min_seconds:
                    packet(*operands)
                    calls += 1
                total += count * elapsed / calls
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jaxmarl-checkout", type=Path, required=True)
    parser.add_argument("--map", default="3m", help="SMAX map")
    parser.add_argument("--updates", type=int, default=3, help="mappo updates timed")
    parser.add_argument(
        "--jaxmarl-updates", type=int, default=10, help="JaxMARL updates timed after its first"
    )
    parser.add_argument(
        "--cores",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: both sides pinned to one core, one thread each; 2: both free, two threads",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="mappo's torch threads with --cores 2 (default 2; 1 leaves XLA the other core)",
    )
    args = parser.parse_args()
    threads = 1 if args.cores == 1 else args.torch_threads or args.cores
    if args.cores == 1:  # before JAX is first imported, here and in JaxMARL's process
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {ONE_THREAD_XLA}".strip()
        os.sched_setaffinity(0, {CORE})
    torch.set_num_threads(threads)
    info = machine_info()
    theirs, how = jaxmarl_steps_per_second(
        args.jaxmarl_checkout, args.map, args.jaxmarl_updates, args.cores == 1
    )
    if math.isnan(theirs):
        raise SystemExit(how)
    ours = mappo_timing(args.map, args.updates)
    ratio = ours["steps_per_second"] / theirs
    per_update = ours["env_s"] + ours["rollout_rest_s"] + ours["update_s"]
    table = markdown_table(
        ["", "env steps/s", "mappo / JaxMARL"],
        [
            ["JaxMARL's MAPPO (`mappo_rnn_smax.py`)", theirs, 1.0],
            ["mappo (`--preset jaxmarl-smax`, eager)", ours["steps_per_second"], ratio],
        ],
    )
    parts = markdown_table(
        ["part of a mappo update (16,384 env steps)", "seconds", "share"],
        [
            [
                "env steps (JAX step, in-step resets, hand-over to torch)",
                ours["env_s"],
                ours["env_s"] / per_update,
            ],
            [
                "rest of the rollout (inference, storage)",
                ours["rollout_rest_s"],
                ours["rollout_rest_s"] / per_update,
            ],
            [
                "update (4 epochs x 4 minibatches of 96 sequences x 128 steps)",
                ours["update_s"],
                ours["update_s"] / per_update,
            ],
        ],
    )
    floor = markdown_table(
        ["matrix products alone (the floor)", "GFLOP", "seconds alone", "mappo's seconds"]
        + ["mappo / floor"],
        [
            [
                "rollout: the networks' inference",
                ours["rollout_gflop"],
                ours["rollout_floor_s"],
                ours["rollout_rest_s"],
                ours["rollout_rest_s"] / ours["rollout_floor_s"],
            ],
            [
                "update: forward and backward passes",
                ours["update_gflop"],
                ours["update_floor_s"],
                ours["update_s"],
                ours["update_s"] / ours["update_floor_s"],
            ],
        ],
    )
    at_floor = BATCH / (ours["env_s"] + ours["rollout_floor_s"] + ours["update_floor_s"])
    notes = (
        f"Map `{args.map}`, HeuristicEnemySMAX, "
        + (
            f"both sides pinned to core {CORE}, one XLA thread, one torch thread"
            if args.cores == 1
            else f"both sides free on 2 cores, XLA's default threads, {threads} torch thread(s)"
        )
        + f". JaxMARL: {how}. mappo: {args.updates} updates "
        "timed after one warm-up update. The GRU scans (actor and critic, forward and "
        f"backward) take {ours['gru_scan_share_of_update']:.0%} of an update's CPU time "
        "(torch profiler, one more update). The floor: every matrix product of one more "
        "rollout and update (mm, addmm, bmm, baddbmm, as dispatched, backward included) "
        "rerun alone on fresh operands of the same shapes, on the same threads; the rest "
        "(gate arithmetic, losses, layout copies, the optimizer) is what mappo adds to it. "
        f"With the env's own steps as measured and the products at their floor, an update "
        f"cycle would run {at_floor:,.0f} env steps/s, {at_floor / theirs:.2f}x JaxMARL's."
    )
    path = write_results(
        "smax_speed"
        + ("" if args.cores == 1 else f"_{args.cores}cores")
        + ("" if threads == args.cores else f"_{threads}thread"),
        "SMAX: mappo against JaxMARL's own MAPPO, env steps/s",
        info,
        [table, parts, floor, notes],
        quick=False,
    )
    print(path.read_text())
    print(json.dumps({"jaxmarl": theirs, "mappo": ours, "ratio": ratio, "at_floor": at_floor}))


if __name__ == "__main__":
    main()
