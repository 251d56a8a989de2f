"""Where the value clip is centred, and how many samples it leaves without a value gradient.

    python benchmarks/value_clip_centre.py [--quick] [--updates 4]

Trains the default config and, at the start of each update (GAE done, the
value normalizer just updated, no optimizer step yet), counts the live samples
whose clipped value loss has no gradient: the clipped term is the larger one
and the critic's output sits at least `clip_coef` from the centre. Two
centres: the critic's own output at collection (`critic_values`, what the
trainer uses) and the previous one, the stored return-unit values mapped back
through the updated normalizer. Also the mean distance of each centre from the
critic's output. Writes benchmarks/results/value_clip_centre.md; last line:
one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
from bench_common import machine_info, markdown_table, write_results

from mappo import MappoConfig, MappoTrainer


def without_gradient(
    values: torch.Tensor,
    centre: torch.Tensor,
    target: torch.Tensor,
    clip: float,
    weights: torch.Tensor,
) -> float:
    """Share of live samples where max(unclipped, clipped) loss picks a clamped clipped term."""
    clipped = centre + (values - centre).clamp(-clip, clip)
    dead = ((clipped - target).square() > (values - target).square()) & (
        (values - centre).abs() >= clip
    )
    return float((dead.float() * weights).sum() / weights.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 updates")
    parser.add_argument("--updates", type=int, default=4)
    args = parser.parse_args()
    updates = 2 if args.quick else args.updates

    info = machine_info()
    trainer = MappoTrainer(MappoConfig(seed=0, compile="false"))
    cfg, rows, results = trainer.config, [], []
    for update in range(updates):
        trainer.collect_rollout()
        buf, policy = trainer.buffer, trainer.policy
        # The start of `update()`: GAE from the value after the last step, one normalizer step
        # (on a copy: the real update takes it again).
        critic_in = policy.critic_input(trainer._obs, trainer._state, trainer._episode_steps)
        buf.compute_returns_and_advantage(policy.value(critic_in), cfg.gamma, cfg.gae_lambda)
        norm = copy.deepcopy(policy.value_norm)
        norm.update(buf.returns, buf.alive)
        with torch.no_grad():
            values = policy.critic(buf.states.flatten(0, 1))  # [T*E, A]
        target = norm.normalize(buf.returns.flatten(0, 1))
        weights = buf.alive.flatten(0, 1).float()
        centres = {
            "critic output at collection": buf.critic_values.flatten(0, 1),
            "stored value through the updated normalizer": norm.normalize(buf.values.flatten(0, 1)),
        }
        for name, centre in centres.items():
            share = without_gradient(values, centre, target, cfg.clip_coef, weights)
            distance = float(((values - centre).abs() * weights).sum() / weights.sum())
            rows.append([update, name, f"{100 * share:.1f} %", distance])
            results.append(
                {
                    "update": update,
                    "centre": name,
                    "without_gradient": share,
                    "mean_distance": distance,
                }
            )
        trainer.update()
    table = markdown_table(
        [
            "update",
            "clip centre",
            "live samples without value gradient",
            "mean |output - centre| (normalized units)",
        ],
        rows,
    )
    print(table)
    write_results(
        "value_clip_centre",
        "Value clip centre and value gradients (default spread)",
        info,
        [table],
        args.quick,
    )
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
