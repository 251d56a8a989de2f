"""Jumanji env steps/s through mappo's bridge against Jumanji's own vmapped step, on CPU.

    python benchmarks/jumanji_bridge.py [--envs 1024] [--steps 200] [--repeats 3] [--quick]

For each task (LBF 10x10, 3 agents, 3 foods; RWARE tiny with 2 and 4 agents) and
E copies, two ways to step E copies with uniformly random actions, both
compiled before timing:

* Jumanji's own: `jax.jit(jax.vmap(AutoResetWrapper(env).step))` called in a
  Python loop on actions drawn in JAX beforehand (the loop a JAX user writes
  around an env; no observations leave JAX);
* mappo's: `JumanjiEnv.step(actions)` as the trainer calls it: torch actions in,
  the step, the in-step reset, the packing of observations, the critic's state
  and masks, and the hand-over of every output to torch by DLPack.

The ratio (mappo / Jumanji) is what the bridge costs. Needs the `jumanji` extra.
Writes benchmarks/results/jumanji_bridge.md; last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax  # noqa: E402
import jumanji  # noqa: E402
import torch  # noqa: E402
from bench_common import machine_info, markdown_table, write_results  # noqa: E402
from jumanji.wrappers import AutoResetWrapper  # noqa: E402

from mappo.envs.registry import make_env  # noqa: E402

TASKS = {
    "LBF 10x10-3p-3f": (
        "LevelBasedForaging-v0",
        {"grid_size": 10, "fov": 10, "num_agents": 3, "num_food": 3, "time_limit": 50},
    ),
    "RWARE tiny-2ag": ("RobotWarehouse-v0", {"num_agents": 2}),
    "RWARE tiny-4ag": ("RobotWarehouse-v0", {"num_agents": 4}),
}


def jumanji_own(env_id: str, kwargs: dict, num_envs: int, steps: int, repeats: int) -> float:
    """Env steps/s of Jumanji's own jitted, vmapped, auto-resetting step."""
    env = make_env(f"jumanji:{env_id}", 1, env_kwargs=kwargs).env  # the same configured env
    wrapped = AutoResetWrapper(env)
    reset = jax.jit(jax.vmap(wrapped.reset))
    step = jax.jit(jax.vmap(wrapped.step))
    state, _ = reset(jax.random.split(jax.random.PRNGKey(0), num_envs))
    nums = env.action_spec.num_values
    actions = jax.random.randint(
        jax.random.PRNGKey(1), (steps, num_envs, env.num_agents), 0, int(nums.min())
    )
    rows = [actions[t] for t in range(steps)]
    jax.block_until_ready(rows)
    state, timestep = step(state, rows[0])  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for row in rows:
            state, timestep = step(state, row)
        jax.block_until_ready((state, timestep))
        times.append(time.perf_counter() - start)
    return steps * num_envs / statistics.median(times)


def through_mappo(env_id: str, kwargs: dict, num_envs: int, steps: int, repeats: int) -> float:
    """Env steps/s of `JumanjiEnv.step` with torch actions, outputs read in torch."""
    env = make_env(f"jumanji:{env_id}", num_envs, seed=0, env_kwargs=kwargs)
    env.reset()
    width = min(env._num_actions)
    gen = torch.Generator().manual_seed(1)
    rows = [
        torch.randint(0, width, (num_envs, env.num_agents), generator=gen) for _ in range(steps)
    ]
    env.step(rows[0])  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for row in rows:
            result = env.step(row)
        float(result.reward.sum())  # the outputs are read, as the trainer reads them
        times.append(time.perf_counter() - start)
    return steps * num_envs / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=1024, help="env copies stepped together")
    parser.add_argument("--steps", type=int, default=200, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
    parser.add_argument("--quick", action="store_true", help="64 copies, 20 steps, 1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.envs, args.steps, args.repeats = 64, 20, 1
    torch.set_num_threads(1)
    info = machine_info()
    rows, results = [], {}
    for task, (env_id, kwargs) in TASKS.items():
        own = jumanji_own(env_id, kwargs, args.envs, args.steps, args.repeats)
        ours = through_mappo(env_id, kwargs, args.envs, args.steps, args.repeats)
        results[task] = {"jumanji": own, "mappo": ours, "ratio": ours / own}
        rows.append([task, args.envs, own, ours, ours / own])
        print(f"{task}: Jumanji {own:,.0f}, mappo {ours:,.0f} env steps/s ({ours / own:.2f}x)")
    table = markdown_table(
        ["task", "copies", "Jumanji's own step (env steps/s)", "through mappo", "mappo / Jumanji"],
        rows,
    )
    notes = (
        f"jumanji {jumanji.__version__}, jax {jax.__version__}, torch {torch.__version__}; "
        "one XLA thread and one torch thread; uniformly random actions; medians of "
        f"{args.repeats} repeats of {args.steps} steps, compiled before timing."
    )
    path = write_results(
        "jumanji_bridge",
        "Jumanji env steps/s through mappo's bridge against Jumanji's own vmapped step",
        info,
        [table, notes],
        args.quick,
    )
    print(f"wrote {path}")
    print(json.dumps({"envs": args.envs, "results": results}))


if __name__ == "__main__":
    main()
