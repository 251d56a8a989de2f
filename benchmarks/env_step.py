"""Env steps/s of the built-in spread env beside VMAS and JaxMARL on the same task.

    python benchmarks/env_step.py [--quick] [--envs 1 64 1024 4096] [--seconds S] [--threads 1]

Env steps/s = steps x envs / seconds, random actions made on the device
beforehand, no policy. Three simulators of MPE `simple_spread` (3 agents,
3 landmarks, 25-step episodes), in one run:

* ours: `mappo.envs.mpe.spread.SpreadEnv` (torch; finished envs reset inside `step`);
* VMAS `simple_spread` (pip `vmas`, torch; it does not reset by itself, so all
  envs are reset every 25 steps and that time is counted; VMAS's discrete
  actions are its 9 (3 x 3) moves, its observations have no comm slots);
* JaxMARL `MPE_simple_spread_v3` (pip `jaxmarl` + `jax[cpu]`): `env.step`
  jitted and vmapped over envs (it resets finished envs itself), compile time
  excluded, `block_until_ready` at the end. It runs in `.venv-bench` (or the
  interpreter named by $JAXMARL_PYTHON) through `benchmarks/jaxmarl_env_step.py`,
  because jaxmarl's pins would change packages of the project venv. The
  `lax.scan` figure (the whole loop compiled into one call) is reported too.

All three get `--threads` CPU threads (default 1, like the trainer):
`torch.set_num_threads` for torch, XLA_FLAGS for JAX. Each figure is the
median of 3 repeats of about `--seconds`; the three simulators run back to
back for one env count before the next, so each ratio compares figures taken
under the same machine load (JaxMARL's helper starts once per env count).
A peer that cannot be installed or run is reported with the reason. Last
line: one JSON object; the table goes to `benchmarks/results/env_step.md`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_common import (
    REPO_ROOT,
    machine_info,
    machine_line,
    markdown_table,
    median,
    write_results,
)

from mappo.envs.mpe.spread import SpreadEnv

MAX_CYCLES = 25
NUM_AGENTS = 3
REPEATS = 3
JAXMARL_SCRIPT = Path(__file__).resolve().parent / "jaxmarl_env_step.py"


def steps_for(seconds: float, seconds_per_step: float) -> int:
    """A whole number of episodes' worth of steps lasting about `seconds`."""
    episodes = max(2, round(seconds / max(seconds_per_step, 1e-9) / MAX_CYCLES))
    return episodes * MAX_CYCLES


def time_stepper(
    make_run: Callable[[int], Callable[[], None]], seconds: float
) -> tuple[float, int]:
    """Median seconds of `REPEATS` runs of `make_run(steps)()`, steps calibrated to `seconds`."""
    calibrate = make_run(MAX_CYCLES)
    calibrate()  # warm-up
    start = time.perf_counter()
    calibrate()
    steps = steps_for(seconds, (time.perf_counter() - start) / MAX_CYCLES)
    run = make_run(steps)
    run()  # warm-up at this length
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return median(times), steps


def ours(num_envs: int, seconds: float) -> float:
    """Env steps/s of SpreadEnv."""
    env = SpreadEnv(num_envs, num_agents=NUM_AGENTS, max_cycles=MAX_CYCLES, seed=0)

    def make_run(steps: int) -> Callable[[], None]:
        actions = torch.randint(0, 5, (steps, num_envs, NUM_AGENTS))

        def run() -> None:
            for t in range(steps):
                env.step(actions[t])

        return run

    elapsed, steps = time_stepper(make_run, seconds)
    return steps * num_envs / elapsed


def vmas_spread(num_envs: int, seconds: float) -> float:
    """Env steps/s of VMAS simple_spread (all envs reset every MAX_CYCLES steps)."""
    import vmas

    env = vmas.make_env(
        "simple_spread",
        num_envs=num_envs,
        device="cpu",
        continuous_actions=False,
        seed=0,
        max_steps=MAX_CYCLES,
        n_agents=NUM_AGENTS,
    )
    num_actions = int(env.action_space[0].n)
    env.reset()

    def make_run(steps: int) -> Callable[[], None]:
        actions = torch.randint(0, num_actions, (steps, NUM_AGENTS, num_envs))

        def run() -> None:
            for t in range(steps):
                env.step(list(actions[t].unbind(0)))
                if (t + 1) % MAX_CYCLES == 0:
                    env.reset()

        return run

    elapsed, steps = time_stepper(make_run, seconds)
    return steps * num_envs / elapsed


def jaxmarl_python() -> tuple[str | None, str]:
    """The interpreter that has jaxmarl, or None and why none was found."""
    explicit = os.environ.get("JAXMARL_PYTHON")
    if explicit:
        return explicit, f"$JAXMARL_PYTHON={explicit}"
    bench_venv = REPO_ROOT / ".venv-bench" / "bin" / "python"
    if bench_venv.exists():
        return str(bench_venv), ".venv-bench"
    try:
        importlib.metadata.version("jaxmarl")
        return sys.executable, "this interpreter"
    except importlib.metadata.PackageNotFoundError:
        return None, (
            "jaxmarl is not installed: no $JAXMARL_PYTHON, no .venv-bench, and not in "
            "this venv (make one: python3.11 -m venv .venv-bench && "
            ".venv-bench/bin/pip install jaxmarl 'jax[cpu]')"
        )


def jaxmarl_spread(envs: list[int], seconds: float, threads: int) -> tuple[dict, str]:
    """JaxMARL figures per num_envs from the helper script, or ({}, reason)."""
    python, where = jaxmarl_python()
    if python is None:
        return {}, where
    env = dict(os.environ)
    if threads == 1:
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
            "intra_op_parallelism_threads=1"
        ).strip()
    command = [
        python,
        str(JAXMARL_SCRIPT),
        "--envs",
        *map(str, envs),
        "--seconds",
        str(seconds),
        "--repeats",
        str(REPEATS),
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=900, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return {}, f"running {where} failed: {err}"
    for line in done.stdout.splitlines():
        if line.startswith("jax "):
            print(f"  {line}")
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {}, f"jaxmarl helper ({where}) exited {done.returncode}: {tail}"
    data = json.loads(done.stdout.strip().splitlines()[-1])
    status = f"jaxmarl {data['jaxmarl']}, jax {data['jax']} (cpu) in {where}"
    return {r["num_envs"]: r for r in data["results"]}, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short repeats (under two minutes)")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--seconds", type=float, default=None, help="target seconds per repeat")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for every simulator")
    args = parser.parse_args()
    seconds = args.seconds or (0.3 if args.quick else 1.5)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print(machine_line(info))
    print(
        f"simple_spread, {NUM_AGENTS} agents, {MAX_CYCLES}-step episodes, random actions, "
        f"{args.threads} thread(s), median of {REPEATS} repeats of ~{seconds} s"
    )

    results: dict[str, dict[int, float | None]] = {
        "ours": {},
        "vmas": {},
        "jaxmarl": {},
        "jaxmarl_scan": {},
    }
    try:
        vmas_status = f"vmas {importlib.metadata.version('vmas')}"
    except importlib.metadata.PackageNotFoundError:
        vmas_status = "unavailable: vmas is not installed (pip install vmas, torch pinned)"
    jax_status = ""
    # One size at a time, all three simulators back to back, so that each ratio
    # compares figures taken under the same machine load.
    for num_envs in args.envs:
        results["ours"][num_envs] = ours(num_envs, seconds)
        print(
            f"ours (SpreadEnv)   E={num_envs:5d}: {results['ours'][num_envs]:>12,.0f} env steps/s"
        )
        if not vmas_status.startswith("unavailable"):
            try:
                results["vmas"][num_envs] = vmas_spread(num_envs, seconds)
                print(
                    f"VMAS simple_spread E={num_envs:5d}: "
                    f"{results['vmas'][num_envs]:>12,.0f} env steps/s"
                )
            except Exception as err:  # a peer's failure must not lose our figures
                vmas_status = f"unavailable: VMAS failed: {type(err).__name__}: {err}"
                print(f"VMAS: {vmas_status}")
        if not jax_status.startswith("unavailable"):
            jax_results, jax_status = jaxmarl_spread([num_envs], seconds, args.threads)
            if jax_results:
                r = jax_results[num_envs]
                results["jaxmarl"][num_envs] = r["env_steps_per_second"]
                results["jaxmarl_scan"][num_envs] = r["scan_env_steps_per_second"]
                print(
                    f"JaxMARL spread_v3  E={num_envs:5d}: "
                    f"{r['env_steps_per_second']:>12,.0f} env steps/s "
                    f"(lax.scan: {r['scan_env_steps_per_second']:,.0f})"
                )
            else:
                jax_status = f"unavailable: {jax_status}"
                print(f"JaxMARL: {jax_status}")
        print(f"  (load average now {os.getloadavg()[0]:.2f})")

    def ratio(peer: str, num_envs: int) -> float | None:
        ours_value, peer_value = results["ours"].get(num_envs), results[peer].get(num_envs)
        return ours_value / peer_value if ours_value and peer_value else None

    rows = []
    for num_envs in args.envs:
        rows.append(
            [
                num_envs,
                results["ours"][num_envs],
                results["vmas"].get(num_envs),
                results["jaxmarl"].get(num_envs),
                results["jaxmarl_scan"].get(num_envs),
                ratio("vmas", num_envs),
                ratio("jaxmarl", num_envs),
                ratio("jaxmarl_scan", num_envs),
            ]
        )
        line = ", ".join(
            f"{name} {value:.2f}x"
            for name, value in (
                ("vs VMAS", rows[-1][5]),
                ("vs JaxMARL", rows[-1][6]),
                ("vs JaxMARL scan", rows[-1][7]),
            )
            if value is not None
        )
        print(f"E={num_envs:5d}: ours {line}")
    table = markdown_table(
        [
            "envs",
            "ours (SpreadEnv)",
            "VMAS",
            "JaxMARL (jitted step)",
            "JaxMARL (lax.scan)",
            "ours / VMAS",
            "ours / JaxMARL",
            "ours / JaxMARL scan",
        ],
        rows,
    )
    notes = "\n".join(
        [
            "Env steps/s (steps x envs / s) of MPE simple_spread (3 agents, 25-step episodes), "
            f"random actions made beforehand, {args.threads} CPU thread(s) for every simulator, "
            f"median of {REPEATS} repeats of ~{seconds} s each after warm-up (JAX compile "
            "excluded).",
            "",
            f"- ours: `mappo.envs.mpe.spread.SpreadEnv` (torch {torch.__version__})",
            f"- VMAS: {vmas_status} (all envs reset every 25 steps, time counted; "
            "9 discrete moves)",
            f"- JaxMARL: {jax_status} (`jit(vmap(env.step))`, auto-reset inside step; "
            "lax.scan = the whole loop as one compiled call)",
        ]
    )
    write_results(
        "env_step", "Env steps/s: SpreadEnv vs VMAS vs JaxMARL", info, [notes, table], args.quick
    )

    out = {
        "ours": {str(k): v for k, v in results["ours"].items()},
        "vmas": {str(k): v for k, v in results["vmas"].items()} or None,
        "jaxmarl": {str(k): v for k, v in results["jaxmarl"].items()} or None,
        "jaxmarl_scan": {str(k): v for k, v in results["jaxmarl_scan"].items()} or None,
        "vs_jaxmarl_4096": ratio("jaxmarl", 4096),
        "vs_jaxmarl_1024": ratio("jaxmarl", 1024),
        "vs_vmas_4096": ratio("vmas", 4096),
        "vmas_status": vmas_status,
        "jaxmarl_status": jax_status,
        "threads": args.threads,
        "load_average_start": info["load_average"][0],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
