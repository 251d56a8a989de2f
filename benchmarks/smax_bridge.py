"""SMAX env steps/s through mappo's JaxMARL bridge against JaxMARL's own jitted step.

    python benchmarks/smax_bridge.py [--envs 1024 4096] [--seconds 2] [--map 3m]

Needs the `jax` extra (jaxmarl, jax[cpu]). For each number of copies E, three
ways of stepping HeuristicEnemySMAX in the same process, with the same random
actions (all 8 discrete actions uniformly, made beforehand; SMAX ignores an
attack on a unit out of range, so every action is valid input):

* JaxMARL: `jit(vmap(env.step))`, its own auto-reset inside the step, actions
  as a dict of `[E]` arrays, a Python loop of jitted calls ending in
  `block_until_ready` (how JaxMARL's benchmarks drive an env step by step);
* JaxMARL + mask: the same step and `get_avail_actions` of the new state in one
  jitted call: what a MAPPO learner needs every step (JaxMARL's MAPPO calls
  both);
* bridge: `JaxMarlEnv.step` with torch actions `[E, A]`: one jitted call that
  steps, resets finished copies, packs observations, world state, masks,
  rewards, dones and the win flag into `[E, A, ...]` arrays, then hands them
  to torch through DLPack (no copy); the torch tensors are read every step.

Each figure is the median of `--repeats` timed loops of ~`--seconds` after a
warm-up (compilation excluded). JAX uses one CPU thread, like the trainer
(XLA_FLAGS set before jax is imported). Writes benchmarks/results/smax_bridge.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
    "intra_op_parallelism_threads=1"
).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, markdown_table, write_results  # noqa: E402

from mappo.envs.registry import make_env  # noqa: E402

ENV = "jaxmarl:HeuristicEnemySMAX"


def time_loop(run, steps: int, repeats: int) -> float:
    """Median seconds of `run(steps)` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(steps)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(num_envs: int, map_name: str, seconds: float, repeats: int) -> dict:
    torch.set_num_threads(1)
    bridge = make_env(ENV, num_envs, seed=0, env_kwargs={"scenario": map_name})
    env = bridge.env  # the same JaxMARL env object the bridge steps
    agents = list(env.agents)
    num_actions = bridge.spec.action.nvec[0]
    bridge.reset(seed=0)

    step = jax.jit(jax.vmap(env.step))

    @jax.jit
    def step_and_mask(keys, state, actions):
        obs, state, reward, dones, info = jax.vmap(env.step)(keys, state, actions)
        return obs, state, reward, dones, jax.vmap(env.get_avail_actions)(state)

    _, own_state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(0), num_envs))
    key = jax.random.PRNGKey(1)

    def make_actions(steps: int, seed: int) -> tuple[list, list, list]:
        gen = torch.Generator().manual_seed(seed)
        acts = torch.randint(
            0, num_actions, (steps, num_envs, len(agents)), generator=gen, dtype=torch.int32
        )
        as_jax = jnp.asarray(acts.numpy())
        dicts = [{a: as_jax[t, :, i] for i, a in enumerate(agents)} for t in range(steps)]
        keys = list(jax.random.split(key, steps * num_envs).reshape(steps, num_envs, -1))
        jax.block_until_ready((dicts, keys))
        return list(acts), dicts, keys

    state = {"own": own_state, "masked": own_state}

    def run_own(steps: int) -> None:
        s = state["own"]
        for t in range(steps):
            _, s, reward, _, _ = step(keys[t], s, dicts[t])
        jax.block_until_ready((s, reward))
        state["own"] = s

    def run_masked(steps: int) -> None:
        s = state["masked"]
        for t in range(steps):
            _, s, reward, _, avail = step_and_mask(keys[t], s, dicts[t])
        jax.block_until_ready((s, reward, avail))
        state["masked"] = s

    def run_bridge(steps: int) -> None:
        for t in range(steps):
            result = bridge.step(torch_acts[t])
        float(result.reward[0, 0])  # the last step's tensors, read in torch

    # Warm up (compile) on a few steps, then size the timed loops from the bridge's speed.
    torch_acts, dicts, keys = make_actions(8, 0)
    for run in (run_own, run_masked, run_bridge):
        run(8)
    per_step = time_loop(run_bridge, 8, 1) / 8
    steps = max(16, round(seconds / per_step))
    torch_acts, dicts, keys = make_actions(steps, 1)
    frames = steps * num_envs
    result = {"num_envs": num_envs, "steps": steps}
    for name, run in (("jaxmarl", run_own), ("jaxmarl_mask", run_masked), ("bridge", run_bridge)):
        result[name] = frames / time_loop(run, steps, repeats)
        print(f"E={num_envs}: {name} {result[name]:,.0f} env steps/s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--map", default="3m", help="SMAX map name")
    parser.add_argument("--seconds", type=float, default=2.0, help="target time per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    info = machine_info()
    results = [measure(e, args.map, args.seconds, args.repeats) for e in args.envs]
    rows = [
        [
            r["num_envs"],
            r["steps"],
            f"{r['jaxmarl']:,.0f}",
            f"{r['jaxmarl_mask']:,.0f}",
            f"{r['bridge']:,.0f}",
            r["jaxmarl"] / r["bridge"],
            r["jaxmarl_mask"] / r["bridge"],
        ]
        for r in results
    ]
    versions = (
        f"jaxmarl {importlib.metadata.version('jaxmarl')}, jax {jax.__version__} "
        f"({jax.devices()[0].platform}), torch {torch.__version__}"
    )
    table = markdown_table(
        [
            "envs",
            "steps timed",
            "JaxMARL step",
            "JaxMARL step + mask",
            "bridge",
            "JaxMARL / bridge (overhead)",
            "JaxMARL+mask / bridge",
        ],
        rows,
    )
    text = (
        f"Env steps/s (steps x envs / s) of SMAX `{args.map}` (HeuristicEnemySMAX), same random "
        f"actions for all three, 1 CPU thread, median of {args.repeats} loops of "
        f"~{args.seconds} s after warm-up (compile excluded). {versions}. The overhead ratio "
        "is how many times faster JaxMARL's own jitted step runs than the same step through "
        "the bridge (1.0 = no overhead); the bridge also computes the action mask, the win "
        "flag and the final observations of finished episodes, and converts to torch."
    )
    path = write_results(
        "smax_bridge",
        "SMAX stepping: mappo's JaxMARL bridge vs JaxMARL's jitted step",
        info,
        [text, table],
        quick=False,
    )
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
