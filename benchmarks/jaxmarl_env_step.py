"""JaxMARL `MPE_simple_spread_v3` env steps/s on CPU: the JAX half of `env_step.py`.

    .venv-bench/bin/python benchmarks/jaxmarl_env_step.py --envs 1 64 1024 4096 [--seconds 1]

Runs in the interpreter that has `jaxmarl` and `jax[cpu]` (the separate
`.venv-bench`, so the project venv keeps its own pins); `env_step.py` calls it
as a subprocess. For each number of envs E it jits `env.step` vmapped over E
envs (JaxMARL's step resets finished envs itself), makes every step's actions
and keys beforehand, compiles with one call (not timed), then times a Python
loop of jitted steps ending in `block_until_ready`. It also times the same
steps fused into one `jax.lax.scan` (the fastest way to drive a JAX env,
compile excluded as well). Set XLA_FLAGS before starting it to choose the
thread count (env_step.py does). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import jaxmarl

MAX_CYCLES = 25
NUM_ACTIONS = 5


def steps_for(seconds: float, seconds_per_step: float) -> int:
    """A whole number of episodes' worth of steps lasting about `seconds`."""
    episodes = max(2, round(seconds / max(seconds_per_step, 1e-9) / MAX_CYCLES))
    return episodes * MAX_CYCLES


def measure(num_envs: int, seconds: float, repeats: int) -> dict:
    env = jaxmarl.make("MPE_simple_spread_v3")
    agents = env.agents
    step = jax.jit(jax.vmap(env.step))
    reset = jax.jit(jax.vmap(env.reset))
    key = jax.random.PRNGKey(0)
    key, reset_key = jax.random.split(key)
    _, state = reset(jax.random.split(reset_key, num_envs))

    def make_inputs(num_steps: int, key: jax.Array) -> tuple[list, list, dict, jax.Array]:
        key_actions, key_steps = jax.random.split(key)
        actions = jax.random.randint(
            key_actions, (num_steps, len(agents), num_envs), 0, NUM_ACTIONS, dtype=jnp.int32
        )
        keys = jax.random.split(key_steps, num_steps * num_envs).reshape(num_steps, num_envs, -1)
        per_step_actions = [
            {a: actions[t, i] for i, a in enumerate(agents)} for t in range(num_steps)
        ]
        per_step_keys = [keys[t] for t in range(num_steps)]
        jax.block_until_ready((per_step_actions, per_step_keys))
        scan_actions = {a: actions[:, i] for i, a in enumerate(agents)}
        return per_step_actions, per_step_keys, scan_actions, keys

    def run_loop(state, per_step_actions, per_step_keys):
        for step_keys, step_actions in zip(per_step_keys, per_step_actions, strict=True):
            _, state, reward, _, _ = step(step_keys, state, step_actions)
        jax.block_until_ready((state, reward))
        return state

    @jax.jit
    def run_scan(state, scan_actions, keys):
        def body(state, inputs):
            step_keys, step_actions = inputs
            _, state, reward, _, _ = jax.vmap(env.step)(step_keys, state, step_actions)
            return state, reward[agents[0]].sum()

        state, rewards = jax.lax.scan(body, state, (keys, scan_actions))
        return state, rewards.sum()

    # Compile (untimed), then calibrate the number of steps on one episode.
    key, sub = jax.random.split(key)
    acts, ks, scan_acts, scan_keys = make_inputs(MAX_CYCLES, sub)
    state = run_loop(state, acts, ks)
    start = time.perf_counter()
    state = run_loop(state, acts, ks)
    per_step = (time.perf_counter() - start) / MAX_CYCLES
    num_steps = steps_for(seconds, per_step)
    key, sub = jax.random.split(key)
    acts, ks, scan_acts, scan_keys = make_inputs(num_steps, sub)

    loop_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state = run_loop(state, acts, ks)
        loop_times.append(time.perf_counter() - start)

    compile_start = time.perf_counter()
    jax.block_until_ready(run_scan(state, scan_acts, scan_keys))  # compile for this length
    scan_compile_s = time.perf_counter() - compile_start
    scan_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, total = run_scan(state, scan_acts, scan_keys)
        jax.block_until_ready((state, total))
        scan_times.append(time.perf_counter() - start)
    frames = num_steps * num_envs
    return {
        "num_envs": num_envs,
        "steps": num_steps,
        "env_steps_per_second": frames / statistics.median(loop_times),
        "scan_env_steps_per_second": frames / statistics.median(scan_times),
        "scan_compile_s": scan_compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=1.0, help="target time per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, jaxmarl {importlib.metadata.version('jaxmarl')}, "
        f"devices {jax.devices()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    results = []
    for num_envs in args.envs:
        r = measure(num_envs, args.seconds, args.repeats)
        results.append(r)
        print(
            f"jaxmarl MPE_simple_spread_v3 E={num_envs:5d}: "
            f"{r['env_steps_per_second']:,.0f} env steps/s (jitted step loop), "
            f"{r['scan_env_steps_per_second']:,.0f} (lax.scan)"
        )
    print(
        json.dumps(
            {
                "jax": jax.__version__,
                "jaxmarl": importlib.metadata.version("jaxmarl"),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
