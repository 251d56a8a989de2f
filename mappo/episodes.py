"""Episode returns as users mean them, and the team reward that credits every agent slot.

An env may also say which finished episodes were won: a `[E]` bool `info["win"]`
in its step result, read where `env_done` (SMAX does). The tracker counts them,
and training, `mappo eval` and the logs report the win rate.

Two definitions, by `team_reward`: the mean per-agent return of each finished
episode (each agent's own rewards while it is alive), or the team return (the
sum over the episode of each step's team reward, the mean reward of the agents
that acted at that step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def team_rewards(reward: torch.Tensor, acted: torch.Tensor) -> torch.Tensor:
    """Each env's team reward in every agent slot, `[E, A]`: the mean reward `[E, A]` of
    the agents that `acted` `[E, A]` at this step (0 where none did)."""
    acted_rewards = torch.where(acted, reward, torch.zeros_like(reward))
    count = acted.sum(-1, keepdim=True).clamp_min(1).to(reward.dtype)
    return (acted_rewards.sum(-1, keepdim=True) / count).expand_as(reward)


def return_definition(team_reward: bool) -> str:
    """Which episode return a run reports, as metrics.csv and JSON name it."""
    return "team" if team_reward else "per_agent"


def return_label(team_reward: bool) -> str:
    """What an episode return means under `team_reward`, for tables, plots and logs."""
    return "team episode return" if team_reward else "mean per-agent episode return"


class EpisodeTracker:
    """Running per-agent returns of E envs, folded into a tally when an env finishes.

    An agent counts in its episode's mean if it was alive at any step of it;
    rewards only accrue while it is alive, or, in a `turn_based` env, at every
    step (rewards arrive between an agent's turns). With `team_reward`, every
    slot accrues the team reward at every step, so each episode's value is the
    team return.
    """

    def __init__(self, alive: torch.Tensor, team_reward: bool = False,
                 turn_based: bool = False) -> None:
        self.team_reward = team_reward
        self.turn_based = turn_based
        self.running = torch.zeros(alive.shape, device=alive.device)  # [E, A]
        self.ever_alive = alive.clone()  # [E, A]
        self.return_sum = torch.zeros((), device=alive.device)
        self.count = torch.zeros((), device=alive.device)
        self.win_sum = torch.zeros((), device=alive.device)  # of episodes whose env says
        self.win_count = torch.zeros((), device=alive.device)

    def step(
        self, reward: torch.Tensor, acted: torch.Tensor, env_done: torch.Tensor,
        next_alive: torch.Tensor, win: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add one step's rewards `[E, A]` of the agents that `acted`; return `[E]` episode means.

        The returned value is meaningful where `env_done`; those envs start over
        with `next_alive`, the agents of their new episode. `win` `[E]` bool, when
        the env reports it, says which of the finished episodes were won.
        """
        if self.turn_based:  # every agent in the game earns, whoever acted
            acted = torch.ones_like(acted)
        if win is not None:
            self.win_sum += (win & env_done).sum()
            self.win_count += env_done.sum()
        if self.team_reward:
            self.running += team_rewards(reward, acted)
        else:
            self.running += torch.where(acted, reward, torch.zeros_like(reward))
        agents = self.ever_alive.sum(-1).clamp_min(1)
        per_agent = (self.running * self.ever_alive).sum(-1) / agents  # [E]
        self.return_sum += (per_agent * env_done).sum()
        self.count += env_done.sum()
        keep = ~env_done.unsqueeze(-1)
        self.running *= keep
        self.ever_alive = (self.ever_alive & keep) | next_alive
        return per_agent

    def pop_mean(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[float, int]:
        """(mean episode return, episodes) since the last call; NaN when none finished.

        `reduce` sums the tally over data-parallel ranks.
        """
        tally = torch.stack([self.return_sum, self.count])
        if reduce is not None:
            tally = reduce(tally)
        total, count = tally[0].item(), int(tally[1].item())
        mean = total / count if count else float("nan")
        self.return_sum.zero_()
        self.count.zero_()
        return mean, count

    def pop_win_rate(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[float, int]:
        """(fraction of won episodes, episodes) since the last call, of the episodes whose
        env reports a win flag; NaN when none did. `reduce` sums over ranks."""
        tally = torch.stack([self.win_sum, self.win_count])
        if reduce is not None:
            tally = reduce(tally)
        wins, count = tally[0].item(), int(tally[1].item())
        self.win_sum.zero_()
        self.win_count.zero_()
        return (wins / count if count else float("nan")), count
