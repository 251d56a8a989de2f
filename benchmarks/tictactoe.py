"""Tic-tac-toe by self-play through the turn-based (AEC) path, then against a random player.

Trains `pettingzoo.classic.tictactoe_v3:env` (an AECEnv: one turn per env step)
with `mappo train` on the CLI: one policy shared by both players (it sees
which player it is through the agent one-hot), each player rewarded +1 for a
win and -1 for a loss, the loser's -1 arriving at the winner's move and
credited to the loser's last move. Then the trained policy plays greedily
against a uniformly random legal-move opponent, `--games` games as the first
player (X) and as many as the second (O), and the win, draw and loss rates
are written to `benchmarks/results/tictactoe.md`, beside those of a random
player in the same seat (the baseline) and the command, budget, wall time and
machine.

    python benchmarks/tictactoe.py                      # train + evaluate
    python benchmarks/tictactoe.py --run-dir RUN --skip-train   # evaluate a run
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    RESULTS_DIR,
    command_line,
    machine_info,
    machine_line,
    markdown_table,
)

from mappo.evaluation import load_run  # noqa: E402

ENV = "pettingzoo.classic.tictactoe_v3:env"


def train_argv(args: argparse.Namespace) -> list[str]:
    """The `mappo train` command line of this benchmark."""
    return [
        "mappo",
        "train",
        "--env",
        ENV,
        "--total-steps",
        str(args.total_steps),
        "--num-envs",
        str(args.num_envs),
        "--rollout-steps",
        str(args.rollout_steps),
        "--seed",
        str(args.seed),
        "--run-dir",
        str(args.run_dir),
        "--force",
        "--quiet",
    ]


@torch.no_grad()
def play_games(run_dir: Path, games: int, seat: int, trained: bool, seed: int) -> dict[str, float]:
    """Win, draw and loss rates of the run's greedy policy (or, with `trained` False, of a
    random player) in `seat` (0 = first player) against a uniformly random legal-move
    opponent: each of `games` env copies plays its first game."""
    torch.manual_seed(seed)
    policy, env = load_run(run_dir, games, seed=seed)
    try:
        obs, mask, alive = env.reset(seed=seed), env.get_action_mask(), env.get_alive()
        outcome = torch.zeros(games)  # [E]: the seat's return in its first game
        finished = torch.zeros(games, dtype=torch.bool)  # [E]
        while not finished.all():
            greedy, _ = policy.act(obs, mask, deterministic=True)  # [E, A]
            random = torch.multinomial(mask.flatten(0, 1).float(), 1).view(alive.shape)  # [E, A]
            action = random.clone()
            if trained:
                action[:, seat] = greedy[:, seat]
            result = env.step(action)
            outcome += torch.where(finished, 0.0, result.reward[:, seat])
            finished |= result.env_done
            obs, mask, alive = result.obs, result.action_mask, result.alive
    finally:
        env.close()
    return {
        "win": float((outcome > 0).float().mean()),
        "draw": float((outcome == 0).float().mean()),
        "loss": float((outcome < 0).float().mean()),
    }


def main() -> None:
    """Train (unless told not to), evaluate both seats, write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=300_000)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--rollout-steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--games", type=int, default=1000)
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/mappo_tictactoe"))
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "tictactoe.md")
    args = parser.parse_args()
    info = machine_info()
    argv = train_argv(args)
    wall = None
    if not args.skip_train:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", *argv], check=True)
        wall = time.perf_counter() - start
    rows = []
    for seat, name in ((0, "first (X)"), (1, "second (O)")):
        for trained in (True, False):
            rates = play_games(args.run_dir, args.games, seat, trained, args.seed + 10_000 + seat)
            who = "trained policy, greedy" if trained else "uniformly random (baseline)"
            rows.append(
                [
                    name,
                    who,
                    args.games,
                    rates["win"],
                    rates["draw"],
                    rates["loss"],
                    rates["win"] + rates["draw"],
                ]
            )
            print(name, who, rates, flush=True)
    end = machine_info()
    wall_text = f"{wall / 60:.1f} min" if wall is not None else "not timed (--skip-train)"
    lines = [
        "# Tic-tac-toe by self-play through the turn-based (AEC) path",
        "",
        "| | |",
        "|---|---|",
        f"| command | `{command_line()}` |",
        f"| training command | `{' '.join(argv)}` |",
        f"| budget | {args.total_steps:,} env steps (one step = one player's turn), "
        f"{args.num_envs} env copies x {args.rollout_steps} steps per update, other settings "
        "mappo's defaults (shared policy with agent one-hot, centralized critic) |",
        f"| training wall time | {wall_text} |",
        f"| machine | {machine_line(info).removeprefix('machine: ')} |",
        f"| load average at end | {', '.join(map(str, end['load_average']))} |",
        "",
        f"Each row: {args.games} games, one per env copy, the seat's player against a "
        "uniformly random legal-move opponent; the trained policy plays its most likely legal "
        "move. Baseline: a uniformly random player in the same seat.",
        "",
        markdown_table(["seat", "player", "games", "win", "draw", "loss", "win or draw"], rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
