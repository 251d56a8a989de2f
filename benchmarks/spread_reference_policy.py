"""The hand-coded "assign-and-go" policy on Spread: the bar a learned policy is held to.

Each agent, from its own observation alone (landmarks and other agents relative
to itself), works out at the episode's first step the assignment of agents to
landmarks with the least total distance (all agents find the same one, since
they see the same geometry), then every step takes the move whose direction best
matches `gain * (landmark - position) - damping * velocity`, or no move when none
points that way. `--dampings` compares a few damping gains. Each setting plays
`--episodes` episodes of the built-in `spread` (mpe2's `simple_spread_v3`), once
with landmarks drawn in U(-1, 1) as mpe2 does, once in 0.8 * U(-1, 1) as the
official MAPPO code does, the latter also on that code's reward scale
(`official_team_return`). Writes `benchmarks/results/spread_reference_policy.md`.

    python benchmarks/spread_reference_policy.py
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, markdown_table, write_results  # noqa: E402

from mappo.envs.mpe_core import discrete_move_table  # noqa: E402
from mappo.envs.spread import SpreadEnv, official_team_return  # noqa: E402

NUM_AGENTS = 3
OFFICIAL_LANDMARK_SCALE = 0.8  # the official code spawns landmarks in 0.8 * U(-1, 1)


def assignment(obs: torch.Tensor) -> torch.Tensor:
    """The landmark `[E, A]` each agent picks from its own observation `[E, A, O]`: its
    slot in the least-total-distance assignment of agents to landmarks."""
    E, A = obs.shape[:2]
    landmark_rel = obs[..., 4:4 + 2 * A].reshape(E, A, A, 2)  # [E, A(viewer), L, 2]
    other_rel = obs[..., 4 + 2 * A:4 + 4 * A - 2].reshape(E, A, A - 1, 2)  # [E, A, A-1, 2]
    perms = torch.tensor(list(itertools.permutations(range(A))))  # [P, A]: agent -> landmark
    chosen = torch.empty(E, A, dtype=torch.long)
    for viewer in range(A):
        # Every agent's position relative to the viewer, in agent order: [E, A, 2].
        others = other_rel[:, viewer]
        agents = torch.cat([others[:, :viewer], torch.zeros(E, 1, 2), others[:, viewer:]], 1)
        dist = torch.linalg.vector_norm(
            landmark_rel[:, viewer, None, :, :] - agents[:, :, None, :], dim=-1)  # [E, A, L]
        cost = dist[:, torch.arange(A), perms].sum(-1)  # [E, P]
        chosen[:, viewer] = perms[cost.argmin(1), viewer]
    return chosen


def moves(obs: torch.Tensor, target: torch.Tensor, damping: float) -> torch.Tensor:
    """Each agent's discrete move `[E, A]` towards its landmark `target` `[E, A]`."""
    E, A = obs.shape[:2]
    landmark_rel = obs[..., 4:4 + 2 * A].reshape(E, A, A, 2)
    to_target = landmark_rel.gather(2, target[..., None, None].expand(E, A, 1, 2))[:, :, 0]
    wanted = to_target - damping * obs[..., 0:2]  # [E, A, 2]: gain 1 on the offset
    score = wanted @ discrete_move_table(1.0).T  # [E, A, 5]: unit moves
    score[..., 0] = 1e-6  # no move unless some direction helps
    return score.argmax(-1)


def episode_returns(episodes: int, damping: float, landmark_scale: float, seed: int
                    ) -> torch.Tensor:
    """Mean per-agent return `[episodes]` of one episode in each of `episodes` env copies."""
    env = SpreadEnv(episodes, NUM_AGENTS, seed=seed)
    obs = env.reset(seed=seed)
    if landmark_scale != 1.0:
        generator = torch.Generator().manual_seed(seed)
        agents = torch.rand(episodes, NUM_AGENTS, 2, generator=generator) * 2 - 1
        landmarks = landmark_scale * (torch.rand(episodes, NUM_AGENTS, 2,
                                                 generator=generator) * 2 - 1)
        obs = env.set_state(agents, landmarks)
    target = assignment(obs)
    total = torch.zeros(episodes)
    for _ in range(env.spec.max_episode_steps):
        result = env.step(moves(obs, target, damping))
        total += result.reward.mean(-1)
        obs = result.obs
    assert bool(result.env_done.all()), "every copy should end its episode together"
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per setting")
    parser.add_argument("--dampings", type=float, nargs="+", default=[0.0, 0.3, 0.5],
                        help="velocity gains of the move rule")
    parser.add_argument("--seed", type=int, default=123, help="env seed")
    args = parser.parse_args()
    info = machine_info()
    rows, means = [], []
    for damping in args.dampings:
        ours = episode_returns(args.episodes, damping, 1.0, args.seed)
        official = episode_returns(args.episodes, damping, OFFICIAL_LANDMARK_SCALE, args.seed)
        means.append(ours.mean().item())
        sem = ours.std().item() / args.episodes ** 0.5
        official_mean = official.mean().item()
        rows.append([damping, f"{means[-1]:.2f} ± {sem:.2f}", f"{official_mean:.2f}",
                     f"{official_team_return(official_mean):.1f}"])
        print(f"damping {damping}: {rows[-1][1]} (mpe2 landmarks), {rows[-1][2]} "
              f"(official landmarks, {rows[-1][3]} on the official scale)")
    table = markdown_table(
        ["damping", "mpe2 spread: mean per-agent return ± s.e.",
         "landmarks in 0.8·U(−1,1): per-agent return", "same, official scale"], rows)
    note = (f"{args.episodes} episodes per setting, each agent deciding from its own "
            f"observation. The best setting scores {max(means):.2f} on the library's spread: the "
            "hand-coded level a learned policy is compared with.")
    write_results("spread_reference_policy", "Spread: the hand-coded assign-and-go policy",
                  info, [table, note], quick=False)


if __name__ == "__main__":
    main()
