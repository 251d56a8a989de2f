"""Drive `MappoTrainer` from Python: a callback sees every update's metrics and may stop early.

    python examples/python_api.py          # MAPPO_EXAMPLE_STEPS=... for another budget
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mappo import MappoConfig, MappoMetrics, MappoTrainer
from mappo.checkpoint import save_checkpoint

BUDGET = int(os.environ.get("MAPPO_EXAMPLE_STEPS", 200_000))


def main(total_steps: int = BUDGET, target_return: float = -21.0,
         checkpoint: str | Path | None = None) -> tuple[MappoTrainer, list[MappoMetrics]]:
    """Train spread until `total_steps`, or until an update's return reaches `target_return`.

    Returns the trainer and the metrics the callback saw; with `checkpoint`,
    also saves the trained state there (`load_and_act.py` reads it back).
    """
    trainer = MappoTrainer(MappoConfig(total_steps=total_steps, num_envs=32, seed=0))
    seen: list[MappoMetrics] = []

    def on_update(metrics: MappoMetrics) -> bool:
        seen.append(metrics)
        print(f"{metrics.env_steps:>9,} steps  return {metrics.episode_return:7.2f}  "
              f"entropy {metrics.entropy:.3f}  {metrics.steps_per_second:,.0f} steps/s")
        # NaN (no episode finished in this update) compares False: training goes on.
        return metrics.episode_return >= target_return  # True stops training

    trainer.train(on_update)
    if not math.isnan(seen[-1].episode_return) and seen[-1].episode_return >= target_return:
        print(f"reached {target_return} after {trainer.env_steps:,} steps")
    if checkpoint is not None:
        save_checkpoint(checkpoint, trainer.state_dict())
    trainer.env.close()
    return trainer, seen


if __name__ == "__main__":
    main(checkpoint="python_api_checkpoint.pt")
