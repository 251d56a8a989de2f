"""`mappo train`: every MappoConfig field is a flag; a TOML file can hold any of them."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import deque
from pathlib import Path

from mappo.checkpoint import CheckpointError
from mappo.config import FIELDS, ConfigError, MappoConfig, from_dict, parse_cli_value
from mappo.run_folder import RunFolder, RunFolderError

CHECKPOINT_EVERY_UPDATES = 50


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """The `mappo` command line: `train` with one flag per config field."""
    parser = argparse.ArgumentParser(prog="mappo", description="Multi-Agent PPO")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a MAPPO policy and write a run folder")
    train.add_argument("--config", type=Path, help="TOML file with any MappoConfig fields")
    train.add_argument("--run-dir", type=Path, help="run folder (default runs/<env>-<time>)")
    train.add_argument("--force", action="store_true", help="overwrite an existing run folder")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, f in FIELDS.items():
        kind = f.type
        metavar = {"bool": "true|false", "dict": "JSON"}.get(kind, kind.upper())
        default = "{}" if kind == "dict" else f.default
        train.add_argument(_flag(name), dest=f"cfg_{name}", metavar=metavar,
                           help=f"{f.metadata['help']} (default {default})")
    evaluate = commands.add_parser("eval", help="evaluate a run's trained policy")
    evaluate.add_argument("run_dir", type=Path, help="run folder holding checkpoint.pt")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes to run")
    evaluate.add_argument("--deterministic", action="store_true", help="greedy actions")
    evaluate.add_argument("--json", action="store_true", help="end with one JSON line")
    evaluate.add_argument("--device", default=None, help="torch device (default: the run's)")
    evaluate.add_argument("--seed", type=int, default=1000, help="seed of the eval envs")
    return parser


def config_from_args(args: argparse.Namespace) -> MappoConfig:
    """Defaults, then the TOML file, then command-line flags."""
    config = MappoConfig.load(args.config) if args.config else MappoConfig()
    overrides = {
        name: parse_cli_value(name, getattr(args, f"cfg_{name}"))
        for name in FIELDS
        if getattr(args, f"cfg_{name}") is not None
    }
    return from_dict({**config.to_dict(), **overrides}, source="command line")


def train(args: argparse.Namespace) -> int:
    """Train to the configured budget, writing the run folder as it goes."""
    from tqdm import tqdm

    from mappo.trainer import MappoTrainer

    config = config_from_args(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = args.run_dir or Path("runs") / f"{config.env.replace(':', '-')}-{stamp}"
    trainer = MappoTrainer(config)
    folder = RunFolder(run_dir, trainer.config, force=args.force)
    recent = deque(maxlen=10)
    bar = tqdm(total=trainer.config.total_steps, unit="step", unit_scale=True,
               disable=args.quiet, dynamic_ncols=True)
    bar.write(f"run folder: {folder.path}")

    def on_update(metrics) -> None:
        folder.log(metrics)
        if not math.isnan(metrics.episode_return):
            recent.append(metrics.episode_return)
        bar.update(metrics.env_steps - bar.n)
        bar.set_postfix(steps_s=f"{metrics.steps_per_second:,.0f}",
                        ret=f"{sum(recent) / len(recent):.2f}" if recent else "n/a")
        if trainer.updates % CHECKPOINT_EVERY_UPDATES == 0:
            folder.save(trainer.state_dict())

    try:
        trainer.train(on_update)
    finally:
        bar.close()
        folder.save(trainer.state_dict())
        folder.close()
        trainer.env.close()
    final = f"{sum(recent) / len(recent):.3f}" if recent else "n/a"
    print(f"done: {trainer.env_steps} env steps, recent episode return {final}, "
          f"run folder {folder.path}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Print mean and std of the per-agent episode return of a trained run."""
    from mappo.evaluation import evaluate_run

    if args.episodes < 1:
        raise ConfigError(f"--episodes = {args.episodes}: must be >= 1")
    returns = evaluate_run(args.run_dir, args.episodes, args.deterministic, args.device,
                           args.seed)
    mean = statistics.fmean(returns)
    std = statistics.pstdev(returns)
    mode = "deterministic" if args.deterministic else "stochastic"
    print(f"{args.run_dir}: per-agent episode return {mean:.3f} ± {std:.3f} "
          f"over {len(returns)} episodes ({mode})")
    if args.json:
        print(json.dumps({"mean_episode_return": mean, "std_episode_return": std,
                          "episodes": len(returns), "deterministic": args.deterministic,
                          "run_dir": str(args.run_dir)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mappo` command."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return train(args)
        if args.command == "eval":
            return evaluate(args)
    except (ConfigError, RunFolderError, CheckpointError) as err:
        print(f"mappo: error: {err}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
