"""Episode returns as users mean them, and the team reward that credits every agent slot.

An env may also say which finished episodes were won: a `[E]` bool `info["win"]`
in its step result, read where `env_done` (SMAX does). The tracker counts them,
and training, `mappo eval` and the logs report the win rate.

Two definitions, by `team_reward`: the mean per-agent return of each finished
episode (each agent's own rewards while it is alive), or the team return (the
sum over the episode of each step's team reward, the mean reward of the agents
that acted at that step).

Two more signs of what a run learned where that mean says nothing:

* Competitive games (tic-tac-toe, connect four) are zero-sum: the mean return
  of the players is 0 whoever wins. Each finished episode's seats are scored
  from their own returns (`seat_outcomes`): a seat wins with the strict
  maximum, all seats draw when every return is equal, else it loses. The data
  says whether a game is zero-sum: once one finished episode has been decided
  with returns summing to 0, and none has summed to anything else, the tracker
  reports each seat's win, draw and loss counts.
* Sparse rewards (RWARE, Overcooked): most episodes earn nothing, and the mean
  return reads 0.00 long after the first deliveries. The tracker counts the
  finished episodes in which any agent received a nonzero reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

WIN, DRAW, LOSS = 0, 1, 2  # a seat's outcome code in `seat_outcomes`
OUTCOMES = ("wins", "draws", "losses")  # by code, as people read them
# Returns summing to within this fraction of their total size (plus this much) sum to 0:
# float32 sums of +-1 are exact, but a game may pay fractions.
ZERO_SUM_TOLERANCE = 1e-4


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


class EpisodeOutcomes(NamedTuple):
    """How episodes ended for each seat, from the seats' own returns (`seat_outcomes`)."""

    outcome: torch.Tensor  # [N, A] long: WIN, DRAW or LOSS of each seat
    zero_sum: torch.Tensor  # [N] bool: the seated returns sum to 0
    decisive: torch.Tensor  # [N] bool: zero-sum and not a draw (somebody gained)


def seat_outcomes(returns: torch.Tensor, seated: torch.Tensor) -> EpisodeOutcomes:
    """Win, draw or loss of every seat of N episodes from their own returns `[N, A]`.

    Only `seated` `[N, A]` seats take part (a padded or absent slot neither wins
    nor ties). A seat wins when its return is the strict maximum; every seat draws
    when all returns are equal (within `ZERO_SUM_TOLERANCE`); otherwise it loses
    (with three or more seats, two sharing the top both lose).
    """
    seated_returns = torch.where(seated, returns, torch.zeros_like(returns))
    tolerance = ZERO_SUM_TOLERANCE * (1.0 + seated_returns.abs().sum(-1))  # [N]
    zero_sum = seated_returns.sum(-1).abs() <= tolerance
    best = returns.masked_fill(~seated, -math.inf).amax(-1)  # [N]
    worst = returns.masked_fill(~seated, math.inf).amin(-1)
    draw = (best - worst).nan_to_num(0.0, 0.0, 0.0) <= tolerance  # none seated: a draw
    at_top = seated & (returns >= (best - tolerance).unsqueeze(-1))  # [N, A]
    wins = at_top & (at_top.sum(-1, keepdim=True) == 1)
    outcome = torch.where(
        draw.unsqueeze(-1),
        torch.full_like(returns, DRAW, dtype=torch.long),
        torch.where(wins, WIN, LOSS),
    )
    return EpisodeOutcomes(outcome, zero_sum, zero_sum & ~draw)


class SeatOutcomes(NamedTuple):
    """Each seat's finished episodes of a zero-sum game: `counts[seat]` = (wins, draws,
    losses)."""

    counts: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, counts: torch.Tensor) -> SeatOutcomes:
        """From a `[A, 3]` tensor of counts (columns WIN, DRAW, LOSS)."""
        return cls(tuple((int(w), int(d), int(lo)) for w, d, lo in counts.round().tolist()))

    def episodes(self, seat: int) -> int:
        """Episodes counted for `seat` (0-based)."""
        return sum(self.counts[seat])

    def rates(self, seat: int) -> tuple[float, float, float]:
        """(win, draw, loss) fractions of `seat`'s episodes; NaN when it has none."""
        n = self.episodes(seat)
        wins, draws, losses = self.counts[seat]
        return (wins / n, draws / n, losses / n) if n else (math.nan, math.nan, math.nan)

    def rate(self, seat: int, code: int) -> float:
        """One of `seat`'s `rates` (`code`: WIN, DRAW or LOSS); NaN for a seat the game lacks."""
        return self.rates(seat)[code] if seat < len(self.counts) else math.nan


class FinishedEpisodes(NamedTuple):
    """What episodes had reached when they ended (`EpisodeTracker.finished`)."""

    own_returns: torch.Tensor  # [N, A] each agent's own return
    seated: torch.Tensor  # [N, A] the agents in the game (it acted, or was paid)
    outcomes: EpisodeOutcomes  # of every seat, from `own_returns`
    rewarded: torch.Tensor  # [N] bool: some agent was paid a nonzero reward


class EpisodeTracker:
    """Running per-agent returns of E envs, folded into a tally when an env finishes.

    An agent counts in its episode's mean if it was alive at any step of it, or was
    paid (a turn-based game's seat that won before its first turn);
    rewards only accrue while it is alive, or, in a `turn_based` env, at every
    step (rewards arrive between an agent's turns). With `team_reward`, every
    slot accrues the team reward at every step, so each episode's value is the
    team return; each agent's own return is then kept beside it, as seats are
    scored by their own.

    Seats and rewarded episodes are scored in batches: each step writes what
    the episodes reached into a ring of `RING_STEPS` steps (four in-place
    copies), whose finished episodes are scored in one go when it is full or a
    tally is popped, so a step costs a few tensor ops more, not the fifty of
    scoring it.
    """

    RING_STEPS = 32

    def __init__(
        self, alive: torch.Tensor, team_reward: bool = False, turn_based: bool = False
    ) -> None:
        self.team_reward = team_reward
        self.turn_based = turn_based
        device, (num_envs, num_agents) = alive.device, alive.shape
        self.running = torch.zeros(alive.shape, device=device)  # [E, A]
        self._own = torch.zeros(alive.shape, device=device)  # [E, A], with team_reward
        self.paid = torch.zeros(alive.shape, device=device)  # [E, A] sum of |own reward|
        self.ever_alive = alive.clone()  # [E, A]
        self.return_sum = torch.zeros((), device=device)
        self.count = torch.zeros((), device=device)
        self.win_sum = torch.zeros((), device=device)  # of episodes whose env says
        self.win_count = torch.zeros((), device=device)
        self.rewarded_sum = torch.zeros((), device=device)
        self.rewarded_count = torch.zeros((), device=device)
        # Per seat: finished episodes won, drawn, lost (where the episode was zero-sum).
        self.seat_tally = torch.zeros(num_agents, 3, device=device)  # [A, 3]
        # Over the tracker's life (never popped): the evidence that the game is zero-sum.
        self.decisive_total = torch.zeros((), device=device)
        self.non_zero_sum_total = torch.zeros((), device=device)
        # The last steps' own returns, paid rewards, agents in the episode and env_done.
        steps = self.RING_STEPS
        self._ring_own = torch.zeros(steps, num_envs, num_agents, device=device)
        self._ring_paid = torch.zeros(steps, num_envs, num_agents, device=device)
        self._ring_alive = torch.zeros(steps, num_envs, num_agents, dtype=torch.bool, device=device)
        self._ring_done = torch.zeros(steps, num_envs, dtype=torch.bool, device=device)
        self._ring_len = 0

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The episodes in flight and the zero-sum evidence, for an exact resume (taken
        between updates, when the tallies have been popped and the ring is empty)."""
        self._fold()
        return {
            "running_return": self.running,
            "ever_alive": self.ever_alive,
            "own_return": self._own,
            "paid": self.paid,
            "decisive_total": self.decisive_total,
            "non_zero_sum_total": self.non_zero_sum_total,
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Continue from `state_dict()`'s tensors (a checkpoint from before the seat and
        rewarded tallies has only the first two: the others start from zero)."""
        self.running, self.ever_alive = state["running_return"], state["ever_alive"]
        for key, name in (("own_return", "_own"), ("paid", "paid"),
                          ("decisive_total", "decisive_total"),
                          ("non_zero_sum_total", "non_zero_sum_total")):  # fmt: skip
            if key in state:
                setattr(self, name, state[key])

    @property
    def own_returns(self) -> torch.Tensor:
        """Each agent's own running return `[E, A]` (the team's with `team_reward` is in
        `running`)."""
        return self._own if self.team_reward else self.running

    def step(
        self,
        reward: torch.Tensor,
        acted: torch.Tensor,
        env_done: torch.Tensor,
        next_alive: torch.Tensor,
        win: torch.Tensor | None = None,
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
        own = torch.where(acted, reward, torch.zeros_like(reward))
        if self.team_reward:
            self.running += team_rewards(reward, acted)
            self._own += own
        else:
            self.running += own
        self.paid += own.abs()
        # The agents in the episode, as `_scored` seats them: in a card game a seat can win
        # without a turn (the other folds), and a zero-sum episode's mean is then still 0.
        seated = self.ever_alive | (self.own_returns != 0)  # [E, A]
        per_agent = (self.running * seated).sum(-1) / seated.sum(-1).clamp_min(1)  # [E]
        self.return_sum += (per_agent * env_done).sum()
        self.count += env_done.sum()
        if self._ring_len == self.RING_STEPS:
            self._fold()
        i = self._ring_len
        self._ring_own[i].copy_(self.own_returns)
        self._ring_paid[i].copy_(self.paid)
        self._ring_alive[i].copy_(self.ever_alive)
        self._ring_done[i].copy_(env_done)
        self._ring_len += 1
        keep = ~env_done.unsqueeze(-1)
        self.running *= keep
        if self.team_reward:
            self._own *= keep
        self.paid.masked_fill_(~keep, 0.0)
        self.ever_alive = (self.ever_alive & keep) | next_alive
        return per_agent

    @property
    def finished(self) -> FinishedEpisodes:
        """What each env's episode had reached at the last `step`, meaningful where that
        step's `env_done` (views of the ring: read before the next step)."""
        i = self._ring_len - 1
        if i < 0:
            raise RuntimeError("no step since the ring was scored")
        return self._scored(self._ring_own[i], self._ring_paid[i], self._ring_alive[i])

    @staticmethod
    def _scored(own: torch.Tensor, paid: torch.Tensor, alive: torch.Tensor) -> FinishedEpisodes:
        """The episodes' own returns `[..., A]` scored: who was in them (alive at a step,
        or, turn-based, paid without acting), each seat's outcome, whether any was paid."""
        seated = alive | (own != 0)
        return FinishedEpisodes(own, seated, seat_outcomes(own, seated), (paid != 0).any(-1))

    def _fold(self) -> None:
        """Score the ring's finished episodes into the seat and rewarded tallies; empty it."""
        n = self._ring_len
        if n == 0:
            return
        # The finished episodes alone (one device sync per ring, not per step): a few in a
        # hundred rows where episodes are long.
        rows = self._ring_done[:n].flatten().nonzero().squeeze(-1)
        rings = (self._ring_own, self._ring_paid, self._ring_alive)
        scored = self._scored(*(ring[:n].flatten(0, 1).index_select(0, rows) for ring in rings))
        outcome, zero_sum = scored.outcomes.outcome, scored.outcomes.zero_sum
        counted = scored.seated & zero_sum.unsqueeze(-1)  # [N, A]
        for code in (WIN, DRAW, LOSS):
            self.seat_tally[:, code] += ((outcome == code) & counted).sum(0)
        self.decisive_total += scored.outcomes.decisive.sum()
        self.non_zero_sum_total += (~zero_sum).sum()
        self.rewarded_sum += scored.rewarded.sum()
        self.rewarded_count += len(scored.rewarded)
        self._ring_len = 0

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

    def pop_rewarded_fraction(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[float, int]:
        """(fraction of the episodes finished since the last call in which any agent was
        paid a nonzero reward, episodes); NaN when none finished. `reduce` sums over ranks."""
        self._fold()
        tally = torch.stack([self.rewarded_sum, self.rewarded_count])
        if reduce is not None:
            tally = reduce(tally)
        rewarded, count = tally[0].item(), int(tally[1].item())
        self.rewarded_sum.zero_()
        self.rewarded_count.zero_()
        return (rewarded / count if count else float("nan")), count

    def pop_outcomes(
        self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> SeatOutcomes | None:
        """Each seat's wins, draws and losses since the last call, or None when the game is
        not known to be zero-sum: no episode has yet been decided with returns summing to
        0, or one summed to anything else. `reduce` sums over ranks, so all ranks judge
        alike."""
        self._fold()
        tally = torch.cat(
            [self.seat_tally.flatten(), torch.stack([self.decisive_total, self.non_zero_sum_total])]
        )
        if reduce is not None:
            tally = reduce(tally)
        counts, (decisive, non_zero_sum) = tally[:-2].view(-1, 3), tally[-2:].tolist()
        self.seat_tally.zero_()
        return SeatOutcomes.of(counts) if decisive > 0 and non_zero_sum == 0 else None
