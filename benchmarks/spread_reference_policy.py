"""The hand-coded "assign-and-go" policy on Spread: the bar a learned policy is held to.

Each agent, from its own observation alone (landmarks and other agents relative
to itself), works out at the episode's first step the assignment of agents to
landmarks with the least total distance (all agents find the same one, since
they see the same geometry), then every step takes the move whose direction best
matches `gain * (landmark - position) - damping * velocity`, or no move when none
points that way. `--dampings` compares a few damping gains. Each setting plays
`--episodes` episodes of the built-in `spread` (mpe2's `simple_spread_v3`), once
as mpe2 has it, once as the official MAPPO code has it (`OFFICIAL_TASK`:
landmarks in 0.8 * U(-1, 1), its integration order), the latter also on that
code's reward scale
(`official_team_return`). With `--runs`, trained spread runs play the same
episodes greedily, and a second table says where each policy's agents end: on
distinct landmarks, on the least-distance assignment, by a fixed convention, and
whether they end elsewhere when the agents swap their slots in the policy.
Writes `benchmarks/results/spread_reference_policy.md` (or `<--results>.md`).

    python benchmarks/spread_reference_policy.py [--runs RUN_DIR ...] [--results NAME]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info, markdown_table, write_results  # noqa: E402

from mappo.envs.mpe.mpe_core import discrete_move_table  # noqa: E402
from mappo.envs.mpe.spread import OFFICIAL_TASK, SpreadEnv, official_team_return  # noqa: E402
from mappo.evaluation import load_run  # noqa: E402

MPE2_TASK = {"landmark_range": 1.0, "physics": "mpe2"}  # SpreadEnv's defaults: mpe2's spread

NUM_AGENTS = 3


def assignment(obs: torch.Tensor) -> torch.Tensor:
    """The landmark `[E, A]` each agent picks from its own observation `[E, A, O]`: its
    slot in the least-total-distance assignment of agents to landmarks."""
    E, A = obs.shape[:2]
    landmark_rel = obs[..., 4 : 4 + 2 * A].reshape(E, A, A, 2)  # [E, A(viewer), L, 2]
    other_rel = obs[..., 4 + 2 * A : 4 + 4 * A - 2].reshape(E, A, A - 1, 2)  # [E, A, A-1, 2]
    perms = torch.tensor(list(itertools.permutations(range(A))))  # [P, A]: agent -> landmark
    chosen = torch.empty(E, A, dtype=torch.long)
    for viewer in range(A):
        # Every agent's position relative to the viewer, in agent order: [E, A, 2].
        others = other_rel[:, viewer]
        agents = torch.cat([others[:, :viewer], torch.zeros(E, 1, 2), others[:, viewer:]], 1)
        dist = torch.linalg.vector_norm(
            landmark_rel[:, viewer, None, :, :] - agents[:, :, None, :], dim=-1
        )  # [E, A, L]
        cost = dist[:, torch.arange(A), perms].sum(-1)  # [E, P]
        chosen[:, viewer] = perms[cost.argmin(1), viewer]
    return chosen


def moves(obs: torch.Tensor, target: torch.Tensor, damping: float) -> torch.Tensor:
    """Each agent's discrete move `[E, A]` towards its landmark `target` `[E, A]`."""
    E, A = obs.shape[:2]
    landmark_rel = obs[..., 4 : 4 + 2 * A].reshape(E, A, A, 2)
    to_target = landmark_rel.gather(2, target[..., None, None].expand(E, A, 1, 2))[:, :, 0]
    wanted = to_target - damping * obs[..., 0:2]  # [E, A, 2]: gain 1 on the offset
    score = wanted @ discrete_move_table(1.0).T  # [E, A, 5]: unit moves
    score[..., 0] = 1e-6  # no move unless some direction helps
    return score.argmax(-1)


Act = Callable[[torch.Tensor], torch.Tensor]  # observations [E, A, O] -> moves [E, A]


def play_episode(env: SpreadEnv, obs: torch.Tensor, act: Act) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode in every copy of `env` from `obs`: the mean per-agent return `[E]` and
    the last observation `[E, A, O]` (before the copies reset)."""
    total = torch.zeros(env.num_envs)
    for _ in range(env.spec.max_episode_steps):
        result = env.step(act(obs))
        total += result.reward.mean(-1)
        obs = result.obs
    assert bool(result.env_done.all()) and result.final_obs is not None, (
        "every copy should end its episode together"
    )
    return total, result.final_obs


def hand_coded(
    episodes: int, damping: float, task: dict[str, Any], seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The assign-and-go policy for one episode in each of `episodes` copies of spread with
    the options `task`: returns `[E]`, first and last observations `[E, A, O]`."""
    env = SpreadEnv(episodes, NUM_AGENTS, seed=seed, **task)
    first = env.reset(seed=seed)
    target = assignment(first)
    returns, last = play_episode(env, first, lambda obs: moves(obs, target, damping))
    return returns, first, last


@torch.no_grad()
def learned(
    run_dir: Path, episodes: int, seed: int, rotation: int = 0, task: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A trained run's greedy policy for one episode in each of `episodes` copies (of its
    task, or with the spread options `task`): returns `[E]`, first and last observations
    `[E, A, O]`. With `rotation` r, agent p acts in the policy's agent slot (p + r) mod A:
    its one-hot (or its own network) is another's."""
    policy, env = load_run(run_dir, episodes, seed=seed, env_kwargs=task)
    first = env.reset(seed=seed)
    mask = env.get_action_mask()
    slot_agent = (torch.arange(NUM_AGENTS) - rotation) % NUM_AGENTS  # agent acting in slot
    agent_slot = torch.argsort(slot_agent)
    carried = {
        "state": policy.initial_state(episodes),
        "start": torch.ones(episodes, NUM_AGENTS, dtype=torch.bool),
    }

    def act(obs: torch.Tensor) -> torch.Tensor:
        action, carried["state"] = policy.act(
            obs[:, slot_agent], mask, carried["state"], carried["start"], True
        )
        carried["start"] = torch.zeros_like(carried["start"])
        return action[:, agent_slot]

    returns, last = play_episode(env, first, act)
    env.close()
    return returns, first, last


def nearest_landmark(obs: torch.Tensor) -> torch.Tensor:
    """Each agent's nearest landmark slot `[E, A]` from observations `[E, A, O]`."""
    E, A = obs.shape[:2]
    return torch.linalg.vector_norm(obs[..., 4 : 4 + 2 * A].reshape(E, A, A, 2), dim=-1).argmin(-1)


def endings(first: torch.Tensor, last: torch.Tensor) -> tuple[float, float, float]:
    """Where agents end, from each episode's first and last observations `[E, A, O]`: the
    share of episodes whose agents end nearest to distinct landmarks, the share ending on
    the least-total-distance assignment of the start, and the share of the most common
    agent -> landmark-slot map (1/6 if every map is as common)."""
    E, A = last.shape[:2]
    nearest = nearest_landmark(last)  # [E, A]
    distinct = (nearest.sort(-1).values == torch.arange(A)).all(-1)
    optimal = (nearest == assignment(first)).all(-1)
    codes = (nearest * A ** torch.arange(A)).sum(-1)  # one integer per map
    top_map = codes.unique(return_counts=True)[1].max().item() / E
    return distinct.float().mean().item(), optimal.float().mean().item(), top_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per setting")
    parser.add_argument(
        "--dampings",
        type=float,
        nargs="+",
        default=[0.0, 0.3, 0.5],
        help="velocity gains of the move rule",
    )
    parser.add_argument(
        "--runs",
        type=Path,
        nargs="*",
        default=[],
        help="trained spread runs to set beside it (greedy, same episodes)",
    )
    parser.add_argument("--seed", type=int, default=123, help="env seed")
    parser.add_argument(
        "--results",
        default="spread_reference_policy",
        help="name of the results file, benchmarks/results/<name>.md",
    )
    args = parser.parse_args()
    info = machine_info()
    rows, means, ending_rows = [], [], []
    for damping in args.dampings:
        ours, first, last = hand_coded(args.episodes, damping, {}, args.seed)
        official = hand_coded(args.episodes, damping, OFFICIAL_TASK, args.seed)[0]
        means.append(ours.mean().item())
        sem = ours.std().item() / args.episodes**0.5
        official_mean = official.mean().item()
        rows.append(
            [
                damping,
                f"{means[-1]:.2f} ± {sem:.2f}",
                f"{official_mean:.2f}",
                f"{official_team_return(official_mean):.1f}",
            ]
        )
        ending_rows.append(
            [
                f"hand-coded, damping {damping}",
                rows[-1][1],
                rows[-1][2],
                rows[-1][3],
                *endings(first, last),
                0.0,
            ]
        )  # no slot is read
        print(
            f"damping {damping}: {rows[-1][1]} (mpe2's task), {rows[-1][2]} "
            f"(official task, {rows[-1][3]} on the official scale)"
        )
    for run in args.runs:
        # mpe2's task whatever the run trained on: every row plays the same episodes.
        returns, first, last = learned(run, args.episodes, args.seed, task=MPE2_TASK)
        rotated = learned(run, args.episodes, args.seed, rotation=1, task=MPE2_TASK)[2]
        changed = (nearest_landmark(rotated) != nearest_landmark(last)).any(-1)
        sem = returns.std().item() / args.episodes**0.5
        official = learned(run, args.episodes, args.seed, task=OFFICIAL_TASK)[0].mean().item()
        ending_rows.append(
            [
                str(run),
                f"{returns.mean().item():.2f} ± {sem:.2f}",
                f"{official:.2f}",
                f"{official_team_return(official):.1f}",
                *endings(first, last),
                changed.float().mean().item(),
            ]
        )
        print(f"{run}: {ending_rows[-1][1]}")
    table = markdown_table(
        [
            "damping",
            "mpe2 spread: mean per-agent return ± s.e.",
            "official code's task: per-agent return",
            "same, official scale",
        ],
        rows,
    )
    note = (
        f"{args.episodes} episodes per setting, each agent deciding from its own "
        f"observation. The best setting scores {max(means):.2f} on the library's spread: "
        "the hand-coded level a learned policy is compared with."
    )
    ending_table = markdown_table(
        [
            "policy",
            "return ± s.e.",
            "official code's task: per-agent return",
            "same, official scale",
            "ends on distinct landmarks",
            "ends on the least-distance assignment",
            "most common agent→landmark map",
            "agents' slots rotated: episodes ending elsewhere",
        ],
        ending_rows,
    )
    ending_note = (
        "Where the agents end, on mpe2's landmarks (the same episodes for every "
        "policy): a policy covering the landmarks by a fixed convention (say, "
        "agent 0 to the first landmark listed) ends on the least-distance "
        "assignment about as often as chance, 1/6. Last column: the same "
        "episodes with every agent acting in the next agent's slot of the policy "
        "(its agent one-hot, or its network), and the share of episodes where some "
        "agent then ends at another landmark; a policy that shares out landmarks "
        "by agent identity scores high, one that reads only the geometry 0."
    )
    write_results(
        args.results,
        "Spread: the hand-coded assign-and-go policy",
        info,
        [table, note, ending_table, ending_note],
        quick=False,
    )


if __name__ == "__main__":
    main()
