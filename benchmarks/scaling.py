"""Training frames/s and peak memory of mappo as envs grow and as agents grow.

    python benchmarks/scaling.py [--quick] [--envs 64 256 1024 4096 8192]
                                 [--agents 3 6 12 24] [--updates 3] [--compile auto]

Two sweeps on the built-in spread env: num_envs in `--envs` (3 agents), and
`num_agents` in `--agents` (`MappoConfig(env_kwargs={"num_agents": N})`,
128 envs). Every point keeps the update's shape fixed: 25 steps per rollout,
4 epochs of 4 minibatches (minibatch_size = batch / 4 agent-steps), so the
big-E points do not take forever. Each point runs in a fresh subprocess: one
warm-up iteration (compiles, if on), then `--updates` timed iterations of
`collect_rollout()` + `update()`.

* frames/s = env steps (envs x 25 per iteration) / seconds of collect + update
  (median over the timed iterations);
* peak memory = peak RSS of the subprocess (`resource.getrusage` ru_maxrss)
  minus its RSS just before the trainer was built (after imports), i.e. the
  RSS growth due to the trainer, its env, buffer and a few iterations.
  (tracemalloc would not see torch's tensor memory, so RSS it is.)

`--compile`: the trainer's `compile` field; quick mode uses false (compiling
each of the points costs tens of seconds), the full run the trainer's auto
(on, since total_steps is 1.5M). Writes `benchmarks/results/scaling.md` and a
log-log plot `benchmarks/results/scaling.png`. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import (
    RESULTS_DIR,
    machine_info,
    machine_line,
    markdown_table,
    median,
    write_results,
)

ROLLOUT_STEPS = 25
UPDATE_EPOCHS = 4
MINIBATCHES = 4
AGENT_SWEEP_ENVS = 128


def current_rss_bytes() -> int:
    """Resident set size of this process now, from /proc/self/statm."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def run_point(num_envs: int, num_agents: int, updates: int, compile_mode: str) -> dict:
    """One point, in this process: frames/s and RSS growth. Called in a fresh subprocess."""
    from mappo import MappoConfig, MappoTrainer

    baseline = current_rss_bytes()
    batch = num_envs * ROLLOUT_STEPS * num_agents
    config = MappoConfig(
        num_envs=num_envs,
        rollout_steps=ROLLOUT_STEPS,
        update_epochs=UPDATE_EPOCHS,
        minibatch_size=batch // MINIBATCHES,
        num_agents=num_agents,
        env_kwargs={"num_agents": num_agents},
        compile=compile_mode,
    )
    trainer = MappoTrainer(config)
    start = time.perf_counter()
    trainer.collect_rollout()  # warm-up (and compile)
    trainer.update()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(updates):
        start = time.perf_counter()
        trainer.collect_rollout()
        trainer.update()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    frames = num_envs * ROLLOUT_STEPS
    return {
        "num_envs": num_envs,
        "num_agents": num_agents,
        "batch_agent_steps": batch,
        "minibatch_size": batch // MINIBATCHES,
        "compiled": trainer.compiled,
        "frames_per_second": frames / median(times),
        "agent_steps_per_second": frames * num_agents / median(times),
        "seconds_per_iteration": median(times),
        "warmup_s": warmup_s,
        "peak_rss_growth_mib": (peak - baseline) / 2**20,
        "obs_dim": trainer.config.obs_dim,
        "state_dim": trainer.config.global_state_dim,
    }


def point_in_subprocess(num_envs: int, num_agents: int, updates: int, compile_mode: str) -> dict:
    """`run_point` in a fresh interpreter, so each point's peak RSS is its own."""
    command = [
        sys.executable,
        __file__,
        "--point",
        f"{num_envs},{num_agents}",
        "--updates",
        str(updates),
        "--compile",
        compile_mode,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"point E={num_envs} A={num_agents} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(env_points: list[dict], agent_points: list[dict], path: Path) -> None:
    """Log-log plot: frames/s and peak RSS growth against envs and against agents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    sweeps = (
        (env_points, "num_envs", "envs (3 agents)"),
        (agent_points, "num_agents", f"agents ({AGENT_SWEEP_ENVS} envs)"),
    )
    for col, (points, key, label) in enumerate(sweeps):
        if not points:
            continue
        xs = [p[key] for p in points]
        for row, (field, ylabel) in enumerate(
            (
                ("frames_per_second", "training frames/s"),
                ("peak_rss_growth_mib", "peak RSS growth (MiB)"),
            )
        ):
            ax = axes[row][col]
            ys = [max(p[field], 1e-3) for p in points]
            ax.plot(xs, ys, marker="o")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(min(ys) / 2, max(ys) * 2)  # at least a factor 4, so the slope reads
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(label)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"mappo scaling on spread ({ROLLOUT_STEPS} steps/rollout, "
        f"{UPDATE_EPOCHS} epochs x {MINIBATCHES} minibatches)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a subset of points, eager")
    parser.add_argument("--envs", type=int, nargs="+", default=None)
    parser.add_argument("--agents", type=int, nargs="+", default=None)
    parser.add_argument("--updates", type=int, default=None, help="timed iterations per point")
    parser.add_argument("--compile", choices=("auto", "true", "false"), default=None)
    parser.add_argument("--point", default=None, help=argparse.SUPPRESS)  # internal: "E,A"
    args = parser.parse_args()
    updates = args.updates or (2 if args.quick else 3)
    compile_mode = args.compile or ("false" if args.quick else "auto")
    if args.point:
        num_envs, num_agents = map(int, args.point.split(","))
        print(json.dumps(run_point(num_envs, num_agents, updates, compile_mode)))
        return

    envs = args.envs or ([64, 1024, 4096] if args.quick else [64, 256, 1024, 4096, 8192])
    agents = args.agents or ([3, 12] if args.quick else [3, 6, 12, 24])
    info = machine_info()
    print(machine_line(info))
    print(
        f"spread, {ROLLOUT_STEPS} steps/rollout, {UPDATE_EPOCHS} epochs x {MINIBATCHES} "
        f"minibatches (minibatch = batch/{MINIBATCHES}), compile={compile_mode}, "
        f"1 warm-up + {updates} timed iterations per point, each point in its own process"
    )

    def show(p: dict) -> None:
        print(
            f"E={p['num_envs']:5d} A={p['num_agents']:3d}: {p['frames_per_second']:>10,.0f} "
            f"frames/s ({p['agent_steps_per_second']:,.0f} agent-steps/s), "
            f"{p['seconds_per_iteration']:.2f} s/iter, peak RSS growth "
            f"{p['peak_rss_growth_mib']:,.0f} MiB, warm-up {p['warmup_s']:.1f} s"
        )

    env_points, agent_points = [], []
    for num_envs in envs:
        env_points.append(point_in_subprocess(num_envs, 3, updates, compile_mode))
        show(env_points[-1])
    for num_agents in agents:
        agent_points.append(
            point_in_subprocess(AGENT_SWEEP_ENVS, num_agents, updates, compile_mode)
        )
        show(agent_points[-1])

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot_path = RESULTS_DIR / "scaling.png"
    plot(env_points, agent_points, plot_path)
    print(f"plot: {plot_path}")

    headers = [
        "sweep",
        "envs",
        "agents",
        "obs / state dim",
        "batch (agent-steps)",
        "minibatch",
        "compiled",
        "frames/s",
        "agent-steps/s",
        "s / iteration",
        "peak RSS growth (MiB)",
    ]
    rows = [
        [
            sweep,
            p["num_envs"],
            p["num_agents"],
            f"{p['obs_dim']} / {p['state_dim']}",
            p["batch_agent_steps"],
            p["minibatch_size"],
            p["compiled"],
            p["frames_per_second"],
            p["agent_steps_per_second"],
            p["seconds_per_iteration"],
            p["peak_rss_growth_mib"],
        ]
        for sweep, points in (("envs", env_points), ("agents", agent_points))
        for p in points
    ]
    notes = (
        f"Settings: spread, rollout_steps {ROLLOUT_STEPS}, update_epochs {UPDATE_EPOCHS}, "
        f"minibatch_size = batch / {MINIBATCHES} agent-steps ({MINIBATCHES} minibatches per "
        f"epoch at every point), hidden 64, torch_threads 1, compile={compile_mode}; the agent "
        f"sweep uses {AGENT_SWEEP_ENVS} envs. One warm-up iteration then the median of "
        f"{updates} timed iterations (collect_rollout + update, perf_counter). Frames = env "
        "steps. Memory: peak RSS (ru_maxrss) of the point's own process minus its RSS after "
        "imports, i.e. RSS growth, not tracemalloc (which does not see torch tensors).\n\n"
        "![scaling](scaling.png)"
    )
    write_results(
        "scaling",
        "mappo scaling: envs and agents",
        info,
        [notes, markdown_table(headers, rows)],
        args.quick,
    )
    print(
        json.dumps(
            {
                "envs": {
                    str(p["num_envs"]): {
                        "frames_per_second": p["frames_per_second"],
                        "peak_rss_growth_mib": p["peak_rss_growth_mib"],
                    }
                    for p in env_points
                },
                "agents": {
                    str(p["num_agents"]): {
                        "frames_per_second": p["frames_per_second"],
                        "peak_rss_growth_mib": p["peak_rss_growth_mib"],
                    }
                    for p in agent_points
                },
                "memory_measure": "peak RSS growth (ru_maxrss - RSS after imports), MiB",
                "compile": compile_mode,
                "load_average_start": info["load_average"][0],
            }
        )
    )


if __name__ == "__main__":
    main()
