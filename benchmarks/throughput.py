"""Training throughput of the default config, and where the time goes.

    python benchmarks/throughput.py [--quick] [--updates N] [--num-envs E] [--device cpu]

Prints env steps/s over whole iterations (rollout plus update, after one
warm-up iteration) and the share of that time spent in env.step, in the
rollout's forward passes, and in the update's forward and backward passes
(the backward share includes the optimizer step). Writes
benchmarks/results/throughput.md; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from bench_common import machine_info, machine_line, markdown_table, write_results

from mappo import MappoConfig, MappoTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few updates only")
    parser.add_argument("--updates", type=int, default=20, help="timed updates")
    parser.add_argument("--num-envs", type=int, default=None, help="override num_envs")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    updates = 5 if args.quick else args.updates

    info = machine_info()
    overrides = {"device": args.device}
    if args.num_envs:
        overrides["num_envs"] = args.num_envs
    config = MappoConfig(**overrides)
    trainer = MappoTrainer(config)
    trainer.collect_rollout()  # warm-up: allocator, first kernels
    trainer.update()

    totals = {"env": 0.0, "rollout_forward": 0.0, "update_forward": 0.0, "update_backward": 0.0}
    steps_before = trainer.env_steps
    start = time.perf_counter()
    for _ in range(updates):
        trainer.collect_rollout()
        m = trainer.update()
        totals["env"] += m.env_time
        totals["rollout_forward"] += m.inference_time
        totals["update_forward"] += m.forward_time
        totals["update_backward"] += m.backward_time
    elapsed = time.perf_counter() - start
    steps = trainer.env_steps - steps_before
    shares = {k: v / elapsed for k, v in totals.items()}
    shares["other"] = 1.0 - sum(shares.values())

    cfg = trainer.config
    lines = [
        f"{machine_line(info)}; device {cfg.device}, {torch.get_num_threads()} torch thread(s)",
        f"config: {cfg.env}, {cfg.num_envs} envs x {cfg.rollout_steps} steps, "
        f"{cfg.update_epochs} epochs, minibatch {cfg.minibatch_size} agent-steps, "
        f"loss compiled: {trainer.compiled}",
        f"training throughput: {steps / elapsed:,.0f} env steps/s ({steps} steps in "
        f"{elapsed:.2f} s, {updates} updates after one warm-up update)",
    ]
    table = markdown_table(
        ["part", "share of time"],
        [[name, f"{100 * share:.1f} %"] for name, share in shares.items()],
    )
    print("\n".join(lines))
    print(table)
    write_results(
        "throughput",
        "Training throughput of the default config",
        info,
        ["\n\n".join(lines), table],
        args.quick,
    )
    print(
        json.dumps(
            {
                "env_steps_per_second": steps / elapsed,
                **{f"share_{k}": v for k, v in shares.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
