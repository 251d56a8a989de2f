"""`mappo train | eval | plot | report | export`: every MappoConfig field is a train flag; a TOML
file can hold any of them."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mappo.config import ENV_DIM_FIELDS, FIELDS, parse_cli_value
from mappo.errors import CheckpointError, ConfigError, EnvError, RunFolderError
from mappo.presets import PRESETS, build_config
from mappo.run import Run, is_seeds_folder
from mappo.run_folder import require_wandb

EVAL_EPISODES = 100
RENDER_EPISODES = 3
# The env-derived fields are read off the env, so they are no flags (a config file may hold them).
CLI_FIELDS = {name: f for name, f in FIELDS.items() if name not in ENV_DIM_FIELDS}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The `mappo` command line: `train` with one flag per config field."""
    parser = argparse.ArgumentParser(prog="mappo", description="Multi-Agent PPO")
    parser.add_argument("--debug", action="store_true", help="full tracebacks for env errors")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a MAPPO policy and write a run folder")
    train.add_argument("--config", type=Path, help="TOML file with any MappoConfig fields")
    train.add_argument("--run-dir", type=Path, help="run folder (default runs/<env>-<time>)")
    train.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    train.add_argument("--preset", choices=sorted(PRESETS),
                       help="start from a named set of settings (config file and flags win)")
    train.add_argument("--wandb", action="store_true",
                       help="also log to Weights & Biases (WANDB_MODE=offline works)")
    train.add_argument("--wandb-project", default="mappo", help="W&B project name")
    train.add_argument("--nproc", type=int, default=1,
                       help="data-parallel ranks on this node (runs torchrun for you)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its checkpoint")
    train.add_argument("--seeds", metavar="S,S,...",
                       help="train these seeds in one process as one batched network; seed s "
                            "writes the run folder RUN_DIR/seed_<s> (--resume RUN_DIR goes on)")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bar (on a terminal) or progress lines (in a log)")
    for name, f in CLI_FIELDS.items():
        kind = f.type
        metavar = {"bool": "true|false", "AutoBool": "auto|true|false",
                   "dict": "JSON"}.get(kind, kind.upper())
        default = "{}" if kind == "dict" else f.default
        train.add_argument(_flag(name), dest=f"cfg_{name}", metavar=metavar,
                           help=f"{f.metadata['help']} (default {default})")
    evaluate = commands.add_parser("eval", help="evaluate a run's trained policy")
    evaluate.add_argument("run_dir", type=Path, help="run folder holding checkpoint.pt")
    evaluate.add_argument("--episodes", type=int, default=None,
                          help=f"episodes to run (default {EVAL_EPISODES}; "
                               f"{RENDER_EPISODES} with --render)")
    evaluate.add_argument("--deterministic", action="store_true", help="greedy actions")
    evaluate.add_argument("--json", action="store_true", help="end with one JSON line")
    evaluate.add_argument("--device", default=None, help="torch device (default: the run's)")
    evaluate.add_argument("--seed", type=int, default=1000, help="seed of the eval envs")
    evaluate.add_argument("--render", type=Path, metavar="FILE",
                          help="draw the episodes (env copy 0, on cpu unless --device) "
                               "into FILE.gif or FILE.mp4")
    evaluate.add_argument("--fps", type=float, default=10.0, help="frames per second of --render")
    plot = commands.add_parser("plot", help="learning curves of runs; seeds become a mean ± std")
    plot.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    plot.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf)")
    plot.add_argument("--x", choices=("env_steps", "wall_time"), default="env_steps",
                      help="x axis (default env_steps)")
    plot.add_argument("--y", choices=("episode_return", "eval_return"), default="episode_return",
                      help="training episodes' return, or the evaluations' (--eval-interval)")
    report = commands.add_parser(
        "report", help="final returns of runs, seeds pooled: mean, IQM, bootstrap CIs, P(X > Y)")
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    report.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    report.add_argument("--json", type=Path, help="write the runs in marl-eval's JSON layout")
    report.add_argument("--episodes", type=int,
                        help="score every run by this many greedy episodes of its checkpoint.pt "
                             "(default: the last eval_return logged in training, else "
                             f"{EVAL_EPISODES} episodes)")
    report.add_argument("--plot", type=Path, help="IQM training curves with CI bands (.png)")
    export = commands.add_parser("export", help="write the actors as TorchScript (and ONNX)")
    export.add_argument("run_dir", type=Path, help="run folder holding checkpoint.pt")
    export.add_argument("--out", type=Path, required=True, help="folder for the files")
    export.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    return parser


def _cli_overrides(args: argparse.Namespace) -> dict:
    """The config fields given as flags, parsed to their types."""
    return {
        name: parse_cli_value(name, getattr(args, f"cfg_{name}"))
        for name in CLI_FIELDS
        if getattr(args, f"cfg_{name}") is not None
    }


def _launch_ranks(args: argparse.Namespace, argv: list[str]) -> int:
    """`mappo train --nproc N`: rerun this command as N ranks under torchrun on this node."""
    rest, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            rest.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={args.nproc}", "-m", "mappo", *rest]
    return subprocess.call(command)


def _parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` → [0, 1, 2]; anything else is refused naming the flag."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds = {text!r}: give integers separated by commas, "
                          "e.g. --seeds 0,1,2") from None


def train(args: argparse.Namespace) -> int:
    """`mappo train`: a new run (one seed, or `--seeds`), or `--resume` of one, to its budget."""
    overrides = _cli_overrides(args)
    seeds = None if args.seeds is None else _parse_seeds(args.seeds)
    seeds_run = seeds is not None or (args.resume is not None and is_seeds_folder(args.resume))
    if seeds_run and (args.nproc > 1 or args.wandb):
        raise ConfigError(f"--seeds trains every seed in one process; it does not combine "
                          f"with {'--nproc' if args.nproc > 1 else '--wandb'}")
    if args.wandb:
        require_wandb()  # before any work
    if args.resume is not None:
        given = [f for f in ("config", "run_dir", "preset", "seeds") if getattr(args, f)]
        if given:
            raise ConfigError(f"--resume continues the run in {args.resume} with its own "
                              f"config; {', '.join(_flag(f) for f in given)} cannot be given")
        run = Run.resume(args.resume, **overrides)
    else:
        if seeds is not None and "seed" in overrides:
            raise ConfigError("--seed and --seeds: give the seeds of the runs with --seeds only")
        config = build_config(args.preset, args.config, overrides)
        run = Run.start(config, args.run_dir, seeds, args.force)
    run.train(quiet=args.quiet, wandb_project=args.wandb_project if args.wandb else None)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Print mean and std of the episode return of a trained run (per-agent mean, or the
    team return with `team_reward`)."""
    from mappo.evaluation import evaluate_run

    if args.episodes is None:
        args.episodes = EVAL_EPISODES if args.render is None else RENDER_EPISODES
    if args.episodes < 1:
        raise ConfigError(f"--episodes = {args.episodes}: must be >= 1")
    if args.render is not None:
        return render(args)
    result = evaluate_run(args.run_dir, args.episodes, args.deterministic, args.device,
                          args.seed)
    mean = statistics.fmean(result.returns)
    std = statistics.pstdev(result.returns)
    mode = "deterministic" if args.deterministic else "stochastic"
    wins = "" if result.win_rate is None else f", win rate {result.win_rate:.3f}"
    print(f"{args.run_dir}: {result.label} {mean:.3f} ± {std:.3f}{wins} "
          f"over {len(result.returns)} episodes ({mode})")
    if args.json:
        print(json.dumps({"mean_episode_return": mean, "std_episode_return": std,
                          **({} if result.win_rate is None else {"win_rate": result.win_rate}),
                          "return_definition": result.definition,
                          "episodes": len(result.returns), "deterministic": args.deterministic,
                          "run_dir": str(args.run_dir)}))
    return 0


def render(args: argparse.Namespace) -> int:
    """`eval --render`: draw episodes of the run's policy into a GIF or MP4."""
    from mappo.render import render_run

    start = time.perf_counter()
    result = render_run(args.run_dir, args.render, args.episodes, args.deterministic,
                        args.seed, args.fps, args.device or "cpu")
    mean = statistics.fmean(result.returns)
    print(f"{args.render}: {len(result.returns)} episodes rendered in "
          f"{time.perf_counter() - start:.1f} s, {result.label} {mean:.3f}")
    if args.json:
        print(json.dumps({"mean_episode_return": mean, "episode_returns": result.returns,
                          "return_definition": result.definition,
                          "episodes": len(result.returns), "deterministic": args.deterministic,
                          "run_dir": str(args.run_dir), "render": str(args.render)}))
    return 0


def plot(args: argparse.Namespace) -> int:
    """Draw the learning curves of several runs on one figure."""
    from mappo.plotting import plot_runs

    groups = plot_runs(args.run_dirs, args.out, args.x, args.y)
    for group in groups:
        print(f"{group.label}: {len(group.runs)} run(s)")
    print(f"wrote {args.out}")
    return 0


def report(args: argparse.Namespace) -> int:
    """Print the runs' pooled final returns; write the markdown, JSON and plot asked for."""
    from mappo.report import write_report

    print(write_report(args.run_dirs, args.episodes, args.out, args.json, args.plot), end="")
    for written in (args.out, args.json, args.plot):
        if written is not None:
            print(f"wrote {written}")
    return 0


def export(args: argparse.Namespace) -> int:
    """Write a run's actors, one file per policy, and layout.json."""
    from mappo.export import export_run

    layout = export_run(args.run_dir, args.out, onnx=False if args.no_onnx else None)
    for policy in layout["policies"]:
        files = " + ".join(f for f in (policy["file"], policy.get("onnx")) if f)
        print(f"{files}: agents {', '.join(policy['agent_names'])}")
    print(f"wrote {args.out / 'layout.json'}")
    return 0


def _unknown_flag_error(unknown: list[str], command: argparse.ArgumentParser,
                        name_of_command: str) -> ConfigError:
    """A ConfigError for the first unrecognized argument, with the nearest flag of the
    command it was given to suggested (a train option given to another command says so)."""
    flag = next((u for u in unknown if u.startswith("--")), unknown[0])
    name = flag.lstrip("-").split("=")[0].replace("-", "_")
    if name_of_command == "train" and name in ENV_DIM_FIELDS:
        return ConfigError(f"unknown option '{flag}'; {name} is read off the env, not set "
                           "(the env's own options go in --env-kwargs)")
    options = [o for action in command._actions for o in action.option_strings
               if o.startswith("--")]
    if name_of_command != "train" and name in CLI_FIELDS:
        return ConfigError(f"'mappo {name_of_command}' has no option '{flag}': it reads the "
                           f"run's own config.toml (options: {', '.join(options)})")
    near = difflib.get_close_matches(name, [o[2:].replace("-", "_") for o in options], n=1)
    hint = f"; did you mean {_flag(near[0])}?" if near else ""
    return ConfigError(f"unknown option '{flag}' for 'mappo {name_of_command}'{hint}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mappo` command: one line and exit code 2 for bad input."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            commands = next(a for a in parser._actions
                            if isinstance(a, argparse._SubParsersAction))
            raise _unknown_flag_error(unknown, commands.choices[args.command], args.command)
        if (args.command == "train" and args.nproc > 1 and "WORLD_SIZE" not in os.environ
                and args.seeds is None):  # train refuses --nproc with --seeds
            return _launch_ranks(args, sys.argv[1:] if argv is None else argv)
        if args.command == "train":
            return train(args)
        if args.command == "eval":
            return evaluate(args)
        if args.command == "plot":
            return plot(args)
        if args.command == "report":
            return report(args)
        if args.command == "export":
            return export(args)
    except (ConfigError, RunFolderError, CheckpointError) as err:
        print(f"mappo: error: {err}", file=sys.stderr)
        return 2
    except EnvError as err:
        if args.debug:
            raise
        print(f"mappo: env error: {err}", file=sys.stderr)
        return 3
    return 1


if __name__ == "__main__":
    sys.exit(main())
