"""Train from Python with a run folder, as `mappo train` does: a callback sees every update's
metrics and may stop the run early; checkpoints, metrics.csv and curve.png are written as it goes.

    python examples/python_api.py          # MAPPO_EXAMPLE_STEPS=... for another budget
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mappo import MappoConfig, MappoMetrics, Run, RunSummary

BUDGET = int(os.environ.get("MAPPO_EXAMPLE_STEPS", 200_000))


def main(
    run_dir: str | Path, total_steps: int = BUDGET, target_return: float = -21.0
) -> tuple[RunSummary, list[MappoMetrics]]:
    """Train spread in `run_dir` until `total_steps`, or until an update's return reaches
    `target_return`. Returns how the run ended and the metrics the callback saw."""
    run = Run.start(MappoConfig(total_steps=total_steps, num_envs=32, seed=0), run_dir, force=True)
    seen: list[MappoMetrics] = []

    def on_update(metrics: list[MappoMetrics]) -> bool:  # one MappoMetrics per seed
        seen.append(metrics[0])
        # NaN (no episode finished in this update) compares False: training goes on.
        return metrics[0].episode_return >= target_return  # True stops (and saves)

    summary = run.train(callback=on_update)
    if not math.isnan(seen[-1].episode_return) and seen[-1].episode_return >= target_return:
        print(
            f"reached {target_return} after {summary.env_steps:,} steps; "
            f"continue with Run.resume({str(run_dir)!r}).train()"
        )
    return summary, seen


if __name__ == "__main__":
    main("runs/python_api")
