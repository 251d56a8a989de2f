"""Env throughput of a PettingZoo env stepped in-process versus over worker processes.

    python benchmarks/pettingzoo_workers.py [--quick] [--steps N] [--num-envs 16 64]
                                            [--workers 2] [--env mpe2.simple_spread_v3:parallel_env]

Steps `PettingZooWrapper` with uniformly random actions (no policy, no
training) and reports env steps/s (copies x steps / seconds) for each number
of copies E, with `num_workers=0` (every copy in this process) and with
`num_workers=W` (gymnasium AsyncVectorEnv, shared memory). Last line: one JSON
object with the figures and the ratio workers / in-process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from mappo.envs.registry import make_env


def env_steps_per_second(
    name: str, env_kwargs: dict, num_envs: int, num_workers: int, steps: int
) -> float:
    """Copies x steps per second over `steps` steps, after a short warm-up."""
    env = make_env(name, num_envs, seed=0, env_kwargs=env_kwargs, num_workers=num_workers)
    try:
        gen = torch.Generator().manual_seed(0)
        E, A = env.num_envs, env.num_agents
        n = env.spec.action.nvec[0]

        def random_actions() -> torch.Tensor:
            return torch.randint(0, n, (E, A), generator=gen)  # [E, A]

        for _ in range(20):  # warm-up: first resets, page faults in shared memory
            env.step(random_actions())
        start = time.perf_counter()
        for _ in range(steps):
            env.step(random_actions())
        return num_envs * steps / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 steps per setting")
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per setting")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--env", default="mpe2.simple_spread_v3:parallel_env")
    parser.add_argument("--env-kwargs", type=json.loads, default={"N": 3})
    args = parser.parse_args()
    steps = 200 if args.quick else args.steps
    torch.set_num_threads(1)  # the env, not torch, is measured

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"env: {args.env} {args.env_kwargs}, random actions, {steps} steps per setting")
    results = []
    for num_envs in args.num_envs:
        local = env_steps_per_second(args.env, args.env_kwargs, num_envs, 0, steps)
        pooled = env_steps_per_second(args.env, args.env_kwargs, num_envs, args.workers, steps)
        ratio = pooled / local
        print(
            f"E={num_envs:3d}: in-process {local:8,.0f} env steps/s, "
            f"{args.workers} workers {pooled:8,.0f} env steps/s, ratio {ratio:.2f}x"
        )
        results.append(
            {
                "num_envs": num_envs,
                "steps": steps,
                "in_process": round(local),
                "workers": args.workers,
                "with_workers": round(pooled),
                "ratio": round(ratio, 3),
            }
        )
    print(
        json.dumps(
            {
                "env": args.env,
                "env_kwargs": args.env_kwargs,
                "results": results,
                "load_average": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
