"""Env steps/s of slow Python multi-agent envs in worker processes: mappo's pool vs PufferLib's.

    python benchmarks/vectorizers.py [--quick] [--num-envs 16] [--workers 2] [--steps N]
                                     [--repeats 3] [--envs lbf pistonball] [--no-global-state]

Steps E copies of each env with uniformly random actions (no policy, no
training) through five vectorizers, side by side in one run, and reports env
steps/s (copies x steps / seconds: one step of E copies counts E env steps,
whatever the number of agents). mappo: `make_env(..., num_workers=0)` (every
copy in this process) and `num_workers=W` (gymnasium AsyncVectorEnv, shared
memory), random legal actions drawn from its action masks. PufferLib
(pufferlib-core): `pufferlib.vector.make` with the `Serial` backend (in
process) and the `Multiprocessing` backend with W workers, both synchronous
(`batch_size=E`, every copy each step, as mappo steps) and as PufferLib's
trainer configures it by default (`batch_size=E/2`, `zero_copy=True`: each
`recv` returns the half of the copies that is ready while the other half
steps). PufferLib's copies are the same env behind `PettingZooPufferEnv` (a
PettingZoo parallel env) or `GymnasiumPufferEnv` (a Gymnasium env with Tuple
spaces), with random actions from its action space. Each side is built, warmed
up and timed for `--steps` steps, then closed; the sides take turns within each
of `--repeats` rounds (the order rotating), so all see the same machine load,
and each figure is the median. Build and warm-up are not timed. Writes
benchmarks/results/vectorizers.md; last line: one JSON object with the figures
and the ratios mappo-workers / PufferLib-Multiprocessing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium
import psutil
import torch
from bench_common import machine_info, machine_line, markdown_table, median, write_results

from mappo.envs.registry import make_env

LBF_ID = "Foraging-10x10-3p-3f-v3"
# The second env: the first of these that imports (pistonball needs pygame and pymunk,
# multiwalker Box2D). Discrete actions everywhere, so both sides draw them the same way.
PARALLEL_CANDIDATES = (
    ("pistonball", "pettingzoo.butterfly.pistonball_v6:parallel_env", {"continuous": False}),
    ("multiwalker", "pettingzoo.sisl.multiwalker_v9:parallel_env", {}),
    ("simple_spread", "mpe2.simple_spread_v3:parallel_env", {"N": 3}),
)
SIDES = (
    "mappo in-process",
    "mappo workers",
    "PufferLib Serial",
    "PufferLib Multiprocessing",
    "PufferLib Multiprocessing async",
)
PACKAGES = ("pufferlib-core", "gymnasium", "pettingzoo", "lbforaging", "torch", "numpy")


@dataclass
class EnvCase:
    """One env as both sides build it: mappo's name and PufferLib's creator of one copy."""

    key: str
    mappo_name: str
    env_kwargs: dict[str, Any]
    puffer_creator: Callable[..., Any]  # (buf=..., seed=...) -> a PufferLib-emulated copy
    steps: int  # timed steps of E copies, about 5 s a side on a 2-core machine
    quick_steps: int
    packages: tuple[str, ...] = field(default_factory=tuple)


def puffer_gymnasium(env_id: str, buf: dict | None = None, seed: int = 0) -> Any:
    """One `gymnasium.make(env_id)` copy behind PufferLib's `GymnasiumPufferEnv` (a Tuple
    action space becomes a MultiDiscrete row, a Tuple observation one flat Box)."""
    import lbforaging  # noqa: F401  (registers the Foraging ids)
    from pufferlib.emulation import GymnasiumPufferEnv

    return GymnasiumPufferEnv(env=gymnasium.make(env_id), buf=buf, seed=seed)


def puffer_pettingzoo(
    name: str, env_kwargs: dict[str, Any], buf: dict | None = None, seed: int = 0
) -> Any:
    """One copy of the PettingZoo parallel env `module:callable` behind PufferLib's
    `PettingZooPufferEnv` (one row per agent)."""
    from pufferlib.emulation import PettingZooPufferEnv

    module, attr = name.split(":")
    factory = getattr(importlib.import_module(module), attr)
    return PettingZooPufferEnv(env=factory(**env_kwargs), buf=buf, seed=seed)


def env_cases() -> tuple[dict[str, EnvCase], list[str]]:
    """LBF, and the first PettingZoo env of `PARALLEL_CANDIDATES` that imports; and a line
    for each candidate skipped before it."""
    skipped: list[str] = []
    cases = {
        "lbf": EnvCase(
            key="lbf",
            mappo_name=f"gymnasium:lbforaging:{LBF_ID}",
            env_kwargs={},
            puffer_creator=partial(puffer_gymnasium, LBF_ID),
            steps=1500,
            quick_steps=150,
            packages=("lbforaging",),
        )
    }
    for key, name, kwargs in PARALLEL_CANDIDATES:
        try:
            importlib.import_module(name.split(":")[0])
        except ImportError as err:
            skipped.append(f"{key} skipped: {type(err).__name__}: {err}")
            print(skipped[-1])
            continue
        slow = key == "pistonball"  # ~12 ms a copy step (20 pistons, image observations)
        cases[key] = EnvCase(
            key=key,
            mappo_name=name,
            env_kwargs=kwargs,
            puffer_creator=partial(puffer_pettingzoo, name, kwargs),
            steps=24 if slow else 600,
            quick_steps=4 if slow else 60,
            packages=("pygame-ce", "pymunk") if slow else (),
        )
        break
    return cases, skipped


def time_mappo(
    case: EnvCase, num_envs: int, num_workers: int, steps: int, warmup: int, use_state: bool
) -> float:
    """Env steps/s of mappo's `make_env(..., num_workers=W)` over `steps` timed steps."""
    env = make_env(
        case.mappo_name,
        num_envs,
        seed=0,
        env_kwargs=case.env_kwargs,
        num_workers=num_workers,
        use_state=use_state,
    )
    try:
        gen = torch.Generator().manual_seed(0)
        env.reset()

        def step() -> None:
            mask = env.get_action_mask()  # [E, A, K] bool
            actions = torch.rand(mask.shape, generator=gen).masked_fill(~mask, -1).argmax(-1)
            env.step(actions)  # [E, A]

        for _ in range(warmup):  # first resets, page faults in shared memory
            step()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return num_envs * steps / (time.perf_counter() - start)
    finally:
        env.close()


def make_puffer(case: EnvCase, backend: str, num_envs: int, num_workers: int, async_: bool) -> Any:
    """PufferLib's vectorized env of `num_envs` copies of `case` on `backend`.

    Multiprocessing: synchronous (`batch_size=E`), or, with `async_`, PufferLib's
    trainer default (`batch_size="auto"`, that is E/2, and `zero_copy=True`): with
    W=2 each `recv` hands back one worker's contiguous slice of the shared buffer
    without a copy while the other worker steps. `overwork` only where W exceeds
    the physical cores, which PufferLib refuses by default.
    """
    import pufferlib.vector as pv

    if backend == "Serial":
        return pv.make(case.puffer_creator, backend=pv.Serial, num_envs=num_envs, seed=0)
    return pv.make(
        case.puffer_creator,
        backend=pv.Multiprocessing,
        num_envs=num_envs,
        num_workers=num_workers,
        batch_size="auto" if async_ else num_envs,
        zero_copy=True,
        overwork=num_workers > (psutil.cpu_count(logical=False) or 1),
        seed=0,
    )


def time_puffer(
    case: EnvCase,
    backend: str,
    num_envs: int,
    num_workers: int,
    steps: int,
    warmup: int,
    async_: bool = False,
) -> float:
    """Env steps/s of PufferLib's vectorizer over `steps` x E env steps, timed as
    `send(actions)` then `recv()` pairs (its `step` is exactly that pair)."""
    vecenv = make_puffer(case, backend, num_envs, num_workers, async_)
    try:
        space = vecenv.action_space  # the joint space of one batch's rows
        space.seed(0)
        # Its sample is int64, but an emulated (Tuple) action is read as int32 fields:
        # Multiprocessing casts into its int32 shared buffer, Serial does not (LBF's
        # MultiDiscrete row then fails in `nativize`), so actions go as its buffer's dtype.
        dtype = vecenv.actions.dtype

        def actions() -> Any:
            return space.sample().astype(dtype, copy=False)

        rows_per_copy = vecenv.driver_env.num_agents  # PettingZoo: one row per agent
        copies_per_recv = vecenv.agents_per_batch // rows_per_copy
        pairs = steps * num_envs // copies_per_recv  # the same E x steps env steps
        vecenv.async_reset(0)
        vecenv.recv()
        for _ in range(warmup * num_envs // copies_per_recv):
            vecenv.send(actions())
            vecenv.recv()
        start = time.perf_counter()
        for _ in range(pairs):
            vecenv.send(actions())
            vecenv.recv()
        return pairs * copies_per_recv / (time.perf_counter() - start)
    finally:
        vecenv.close()


def side_runner(
    side: str, case: EnvCase, num_envs: int, workers: int, steps: int, warmup: int, use_state: bool
) -> Callable[[], float]:
    """A call that builds, warms up, times and closes one side; returns its env steps/s."""
    runners: dict[str, Callable[[], float]] = {
        "mappo in-process": partial(time_mappo, case, num_envs, 0, steps, warmup, use_state),
        "mappo workers": partial(time_mappo, case, num_envs, workers, steps, warmup, use_state),
        "PufferLib Serial": partial(time_puffer, case, "Serial", num_envs, 1, steps, warmup),
        "PufferLib Multiprocessing": partial(
            time_puffer, case, "Multiprocessing", num_envs, workers, steps, warmup
        ),
        "PufferLib Multiprocessing async": partial(
            time_puffer, case, "Multiprocessing", num_envs, workers, steps, warmup, True
        ),
    }
    return runners[side]


def versions(cases: list[EnvCase]) -> dict[str, str]:
    """Installed versions of the packages either side runs on."""
    names = list(PACKAGES) + [p for case in cases for p in case.packages]
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def side_labels(num_envs: int, workers: int) -> dict[str, str]:
    """What each side runs, for the table."""
    return {
        "mappo in-process": "`make_env(num_workers=0)`: every copy in this process",
        "mappo workers": f"`make_env(num_workers={workers})`: AsyncVectorEnv, shared memory",
        "PufferLib Serial": f"`vector.make(backend=Serial, num_envs={num_envs})`",
        "PufferLib Multiprocessing": (
            f"`backend=Multiprocessing, num_workers={workers}, batch_size={num_envs}` (sync)"
        ),
        "PufferLib Multiprocessing async": (
            f"`backend=Multiprocessing, num_workers={workers}, batch_size={num_envs // 2}`, "
            "zero_copy (its trainer's default)"
        ),
    }


def main() -> None:
    """Time every side on every env, print and write the tables, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run: 1 repeat")
    parser.add_argument("--num-envs", type=int, default=16, help="copies E of each env")
    parser.add_argument("--workers", type=int, default=2, help="worker processes W")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default per env)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (5; quick 2)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds, median (3; quick 1)")
    parser.add_argument("--envs", nargs="+", default=None, help="keys: lbf, pistonball, ...")
    parser.add_argument(
        "--no-global-state",
        action="store_true",
        help="mappo never calls env.state() (make_env(use_state=False))",
    )
    args = parser.parse_args()
    E, W = args.num_envs, args.workers
    if E % W or E % 2:
        parser.error(f"--num-envs ({E}) must be even and a multiple of --workers ({W})")
    if (E // 2) % (E // W):
        parser.error(f"the async batch ({E // 2} copies) must be whole workers of {E // W}")
    repeats = args.repeats or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    use_state = not args.no_global_state
    torch.set_num_threads(1)  # the envs, not torch, are measured
    # Gymnasium's passive checker warns once per copy that LBF's reward is a list (one per
    # agent), on both sides alike; forked workers inherit this filter.
    warnings.filterwarnings("ignore", message=".*reward returned by `step\\(\\)` must be")

    cases, skipped = env_cases()
    if args.envs:
        unknown = [key for key in args.envs if key not in cases]
        if unknown:
            parser.error(f"unknown or unimportable env(s) {unknown}; available: {list(cases)}")
        cases = {key: cases[key] for key in args.envs}
    info = machine_info()
    print(machine_line(info))
    print(
        f"E={E} copies, W={W} workers, random actions, {repeats} round(s), "
        f"warm-up {warmup} steps, mappo use_state={use_state}"
    )

    results: dict[str, dict[str, list[float]]] = {}
    steps_of: dict[str, int] = {}
    for case in cases.values():
        steps = args.steps or (case.quick_steps if args.quick else case.steps)
        steps_of[case.key] = steps
        runs: dict[str, list[float]] = {side: [] for side in SIDES}
        print(f"\n{case.key}: {case.mappo_name} {case.env_kwargs}, {steps} timed steps a side")
        for r in range(repeats):
            order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]  # rotate who goes first
            for side in order:
                value = side_runner(side, case, E, W, steps, warmup, use_state)()
                runs[side].append(value)
                print(
                    f"  round {r + 1}: {side:32s} {value:10,.1f} env steps/s "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
        results[case.key] = runs

    labels = side_labels(E, W)
    summary_rows = []
    sections = []
    out_envs: dict[str, Any] = {}
    for key, runs in results.items():
        case = cases[key]
        med = {side: median(values) for side, values in runs.items()}
        ratio = med["mappo workers"] / med["PufferLib Multiprocessing"]
        ratio_async = med["mappo workers"] / med["PufferLib Multiprocessing async"]
        rows = [
            [
                side,
                labels[side],
                med[side],
                ", ".join(f"{v:,.1f}" for v in runs[side]),
                med[side] / med["mappo workers"],
            ]
            for side in SIDES
        ]
        table = markdown_table(
            ["side", "what runs", "env steps/s (median)", "rounds", "/ mappo workers"], rows
        )
        sections.append(
            f"## {key}: `{case.mappo_name}` {json.dumps(case.env_kwargs)}\n\n"
            f"E={E} copies, W={W} workers, {steps_of[key]} timed steps a side, "
            f"{repeats} round(s).\n\n{table}"
        )
        summary_rows.append(
            [
                key,
                med["mappo in-process"],
                med["mappo workers"],
                med["PufferLib Serial"],
                med["PufferLib Multiprocessing"],
                med["PufferLib Multiprocessing async"],
                ratio,
                ratio_async,
            ]
        )
        print(
            f"{key}: mappo workers / PufferLib Multiprocessing = {ratio:.2f}x "
            f"(vs async {ratio_async:.2f}x)"
        )
        out_envs[key] = {
            "mappo_name": case.mappo_name,
            "env_kwargs": case.env_kwargs,
            "steps": steps_of[key],
            "env_steps_per_s": {side: round(v, 1) for side, v in med.items()},
            "rounds": {side: [round(v, 1) for v in values] for side, values in runs.items()},
            "ratio_mappo_workers_vs_puffer_mp": round(ratio, 3),
            "ratio_mappo_workers_vs_puffer_mp_async": round(ratio_async, 3),
        }

    summary = markdown_table(
        [
            "env",
            "mappo in-process",
            f"mappo {W} workers",
            "PufferLib Serial",
            f"PufferLib MP {W} workers (sync)",
            "PufferLib MP async",
            "mappo workers / PufferLib MP",
            "mappo workers / PufferLib MP async",
        ],
        summary_rows,
    )
    print("\n" + summary)
    vers = versions(list(cases.values()))
    notes = "\n".join(
        [
            f"Env steps/s (E copies x steps / s) of E={E} copies with W={W} worker processes, "
            "uniformly random actions, no policy, no training; median of the rounds, the five "
            "sides taking turns within each round (order rotating), so they share the "
            "machine's load. Each side is built, warmed up, timed and closed in turn; "
            "building and warm-up are not timed. A step of E copies counts E env steps, "
            "whatever the number of agents.",
            "",
            "- **mappo**: `mappo.envs.registry.make_env(name, E, seed=0, num_workers=W, "
            f"use_state={use_state})`, one `env.step(actions)` per step with `actions` "
            "`[E, A]` drawn legal from `env.get_action_mask()`. Each step returns fresh "
            "torch tensors `[E, A, ...]`: observations, global state "
            + (
                "(`env.state()`, read every step), "
                if use_state
                else "(the agents' observations concatenated), "
            )
            + "rewards, flags, alive, action masks, final observations and final state; "
            "finished copies are reset inside the same step. With W workers the copies run "
            "in gymnasium's AsyncVectorEnv (`shared_memory=True`), E/W per worker, blocking "
            "on pipes.",
            "- **PufferLib** (pufferlib-core): `pufferlib.vector.make(creator, backend=..., "
            "num_envs=E, ...)`; each step is `send(actions)` + `recv()` (what its `step` "
            "does), with `actions` sampled from its joint action space. The LBF copy is "
            f"`GymnasiumPufferEnv(gymnasium.make('{LBF_ID}'))`: one row per copy (the Tuple "
            "action space becomes MultiDiscrete([6, 6, 6]), the Tuple observation one flat "
            "Box; rewards summed, done if any agent is); it draws no action masks, so LBF "
            "turns its illegal moves into no-ops. A PettingZoo copy is "
            "`PettingZooPufferEnv(parallel_env(...))`: one row per agent. `recv` returns "
            "views of flat numpy arrays in shared memory (observations, rewards, "
            "terminals, truncations, masks): no torch tensors, no global state, no final "
            "observations; a finished copy is reset on the next `send` instead of being "
            "stepped (one step in each episode is a reset). Multiprocessing's workers and "
            "its `recv` busy-wait on flags in shared memory (a worker sleeps 10 ms between "
            "polls only after 0.5 s idle). *sync*: `batch_size=E`, every copy each step, as "
            "mappo steps. *async*: PufferLib's trainer default (`batch_size='auto'` = E/2, "
            "`zero_copy=True`): each `recv` returns the E/2 copies of the worker that is "
            "ready while the other steps; counted as E/2 env steps per `recv`. Actions are "
            "cast to int32 (its action buffer's dtype) before `send`: Serial hands its "
            "int64 samples unconverted to the emulated Tuple action, which fails for LBF.",
            "",
            "The PettingZoo env is the first that imports of pistonball (pygame, pymunk), "
            "multiwalker (Box2D), mpe2 simple_spread: here "
            + ", ".join(k for k in cases if k != "lbf")
            + (f" ({'; '.join(skipped)})" if skipped else "")
            + ". Where the load average exceeds the cores, busy-waiting processes compete "
            "with the rest of the load for them, which processes blocked on pipes do not.",
            "",
            "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        ]
    )
    write_results(
        "vectorizers",
        "Env steps/s in worker processes: mappo (AsyncVectorEnv) vs PufferLib",
        info,
        [notes, summary, *sections],
        args.quick,
    )
    print(
        json.dumps(
            {
                "num_envs": E,
                "workers": W,
                "repeats": repeats,
                "warmup": warmup,
                "use_state": use_state,
                "quick": args.quick,
                "envs": out_envs,
                "versions": vers,
                "load_average_start": info["load_average"],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
