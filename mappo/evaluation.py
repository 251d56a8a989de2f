"""Load a run's trained policy and measure it: episode returns (and wins, where the env
reports them) over N episodes; in a zero-sum game each seat's wins, draws and losses, in
self-play or against an opponent (a uniformly random legal player, or another run's
policy) with ours taking each seat in turn. `Evaluation` also words the result, for
`mappo eval`'s lines and its JSON.
"""

from __future__ import annotations

import itertools
import logging
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch

from mappo.checkpoint import checkpoint_file
from mappo.config import ConfigError, MappoConfig
from mappo.envs.base import (
    EnvError,
    EnvSpec,
    MultiAgentEnv,
    MultiAgentStepResult,
    checked_reset,
    checked_start,
    checked_step,
)
from mappo.envs.registry import make_env
from mappo.episodes import (
    DRAW,
    LOSS,
    OUTCOMES,
    WIN,
    EpisodeTracker,
    SeatOutcomes,
    return_definition,
    return_label,
)
from mappo.policy import Policy, RecurrentState, episode_starts, load_policy

logger = logging.getLogger(__name__)
MAX_EVAL_ENVS = 128
# Raised whenever a change to how episodes are played changes what they score (2: each env
# copy plays a fixed share of the episodes, 2026-12-07), so that scores kept on disk
# (`benchmarks/reproduce.py`'s score.json) are played again rather than reused.
EVALUATION_VERSION = 2
# A copy still in one episode this many times the longest finished one (plus STUCK_STEPS)
# is taken to never end it (`play_episodes`).
STUCK_FACTOR, STUCK_STEPS = 10, 1000
RANDOM_OPPONENT = "random"  # `--opponent random`: uniform over the legal actions


class Player(Protocol):
    """Something that acts for every agent slot of a batch of envs, as `Policy.act` does."""

    def initial_state(self, num_envs: int) -> RecurrentState | None:
        """Its recurrent state at the start of every episode (None: it has none)."""
        ...

    def act(
        self,
        obs: torch.Tensor,
        mask: torch.Tensor,
        state: RecurrentState | None = None,
        episode_start: torch.Tensor | None = None,
        deterministic: bool = False,
        acting: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, RecurrentState | None]:
        """Env-format actions for obs `[E, A, O]` under `mask` `[E, A, K]`, and its state."""
        ...


class RandomPlayer:
    """A player choosing uniformly among the actions the env's mask allows, for discrete
    actions (each sub-action of a MultiDiscrete on its own); its own seeded generator, so
    that its games replay whatever else draws random numbers."""

    def __init__(self, spec: EnvSpec, device: torch.device | str, seed: int = 1000) -> None:
        if spec.action.kind != "discrete":
            raise ConfigError(
                f"--opponent random: env '{spec.name}' has {spec.action.kind} actions; a "
                "uniformly random legal player needs discrete ones (give --opponent RUN_DIR)"
            )
        self.nvec = list(spec.action.nvec)
        self.generator = torch.Generator(device).manual_seed(seed)

    def initial_state(self, num_envs: int) -> None:
        """None: it remembers nothing."""
        return None

    def act(
        self,
        obs: torch.Tensor,
        mask: torch.Tensor,
        state: RecurrentState | None = None,
        episode_start: torch.Tensor | None = None,
        deterministic: bool = False,
        acting: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:
        """A legal action `[E, A]` (`[E, A, D]` with D sub-actions) drawn uniformly for every
        slot; a slot with no legal action (one not acting) draws from all."""
        batch = mask.shape[:2]
        parts = []
        for legal in mask.split(self.nvec, -1):  # over sub-actions, not agents
            weights = legal.flatten(0, 1).float()
            weights += weights.sum(-1, keepdim=True) == 0
            parts.append(torch.multinomial(weights, 1, generator=self.generator).view(batch))
        return (parts[0] if len(parts) == 1 else torch.stack(parts, -1)), None


class Evaluation(NamedTuple):
    """Episode returns of a run's policy, and which return they are (`team_reward`); with
    `mappo eval`'s record of each episode, how it ended for each seat."""

    returns: list[float]
    label: str  # for people: "mean per-agent episode return" or "team episode return"
    definition: str  # for files: "per_agent" or "team"
    wins: tuple[bool, ...] = ()  # per episode, where the env reports a win (SMAX)
    seat_names: tuple[str, ...] = ()  # the env's agents, seat 1 first
    # Per episode: each seat's own return; its WIN, DRAW or LOSS (-1: not in the game);
    # whether the returns summed to 0, and whether somebody won; whether any agent was paid.
    seat_returns: tuple[tuple[float, ...], ...] = ()
    outcomes: tuple[tuple[int, ...], ...] = ()
    zero_sum: tuple[bool, ...] = ()
    decisive: tuple[bool, ...] = ()
    rewarded: tuple[bool, ...] = ()
    ours: tuple[int, ...] = ()  # per episode, with an opponent: the seat our policy took
    opponent: str | None = None  # "random" or the opponent's run folder

    @classmethod
    def of(
        cls, policy: Policy, returns: list[float], wins: list[bool] | None = None, **more: Any
    ) -> Evaluation:
        """`returns` (and `wins`, and any of the per-episode records) labelled by what
        `policy`'s run measures."""
        team = policy.config.decided("team_reward")
        return cls(
            returns,
            return_label(team),
            return_definition(team),
            tuple(wins or ()),
            tuple(policy.spec.agent_names),
            **more,
        )

    @property
    def win_rate(self) -> float | None:
        """Fraction of the episodes won, or None when the env reports no wins."""
        return sum(self.wins) / len(self.wins) if self.wins else None

    @property
    def rewarded_fraction(self) -> float | None:
        """Fraction of the episodes in which any agent was paid a nonzero reward, or None
        where that was not recorded (rendered episodes)."""
        return sum(self.rewarded) / len(self.rewarded) if self.rewarded else None

    @property
    def is_zero_sum(self) -> bool:
        """Whether the episodes show a zero-sum game: every one's returns summed to 0 and
        one at least was won (all-draw episodes cannot tell a game from no reward at all)."""
        return bool(self.zero_sum) and all(self.zero_sum) and any(self.decisive)

    def seat_outcomes(self) -> SeatOutcomes | None:
        """Wins, draws and losses by seat, in a zero-sum game (else None): with an opponent,
        our policy's in each seat it took; in self-play, each seat's."""
        if not self.is_zero_sum:
            return None
        counts = [[0, 0, 0] for _ in self.seat_names]
        for k, outcome in enumerate(self.outcomes):
            for seat in (self.ours[k],) if self.ours else range(len(outcome)):
                if outcome[seat] >= 0:
                    counts[seat][outcome[seat]] += 1
        return SeatOutcomes(tuple((w, d, lo) for w, d, lo in counts))

    def seat_return(self, seat: int) -> list[float]:
        """The own returns of `seat` (ours, with an opponent) over its episodes."""
        return [
            returns[seat]
            for k, returns in enumerate(self.seat_returns)
            if not self.ours or self.ours[k] == seat
        ]

    def summary(self, run_dir: str | Path, deterministic: bool) -> list[str]:
        """`mappo eval`'s lines: the mean return (and win rate, and rewarded episodes where
        some earned nothing); each seat's wins, draws and losses in a zero-sum game, with
        an opponent ours in each seat it took (else our own return there)."""
        mode = "deterministic" if deterministic else "stochastic"
        if self.opponent is not None:
            seats = len(self.seat_names)
            per_seat = len(self.returns) // max(seats, 1)
            lines = [
                f"{run_dir} against {self._opponent_text()}, {per_seat} episodes in each of "
                f"{seats} seats ({mode}):"
            ]
        else:
            mean, std = statistics.fmean(self.returns), statistics.pstdev(self.returns)
            won = "" if self.win_rate is None else f", win rate {self.win_rate:.3f}"
            rewarded = self.rewarded_fraction
            sparse = rewarded is not None and rewarded < 1 and not self.is_zero_sum
            paid = f", rewarded episodes {rewarded:.3f}" if sparse else ""
            lines = [
                f"{run_dir}: {self.label} {mean:.3f} ± {std:.3f}{won}{paid} "
                f"over {len(self.returns)} episodes ({mode})"
            ]
        outcomes = self.seat_outcomes()
        if outcomes is None and self.opponent is None:
            return lines
        who = "as seat" if self.opponent is not None else "self-play, seat"
        for seat, name in enumerate(self.seat_names):
            if outcomes is not None:
                rates = ", ".join(
                    f"{word} {rate:.3f}"
                    for word, rate in zip(OUTCOMES, outcomes.rates(seat), strict=True)
                )
                n = outcomes.episodes(seat)
            else:
                returns = self.seat_return(seat)
                n = len(returns)
                rates = (
                    f"own return {statistics.fmean(returns):.3f} ± {statistics.pstdev(returns):.3f}"
                    if returns
                    else "no episode"
                )
            lines.append(f"{who} {seat + 1} ({name}): {rates} over {n} episodes")
        return lines

    def render_line(self, out: str | Path, seconds: float) -> str:
        """`mappo eval --render`'s line: the file, the episodes drawn and their mean return."""
        episodes = len(self.returns)
        return (
            f"{out}: {episodes} episode{'s' * (episodes != 1)} rendered in {seconds:.1f} s, "
            f"{self.label} {statistics.fmean(self.returns):.3f}"
        )

    def as_json(
        self, run_dir: str | Path, deterministic: bool, render: str | Path | None = None
    ) -> dict[str, Any]:
        """`mappo eval --json`'s object: the mean return and what it is; the std (or, with
        `render`, every return and the file); the win rate, rewarded fraction, opponent
        and each seat's outcomes where there are any."""
        extra: dict[str, Any] = (
            {"episode_returns": self.returns, "render": str(render)}
            if render is not None
            else {"std_episode_return": statistics.pstdev(self.returns)}
        )
        if self.win_rate is not None:
            extra["win_rate"] = self.win_rate
        if self.rewarded_fraction is not None:
            extra["rewarded_fraction"] = self.rewarded_fraction
        seats = self._seats_json()
        return {
            "mean_episode_return": statistics.fmean(self.returns),
            **extra,
            "return_definition": self.definition,
            "episodes": len(self.returns),
            "deterministic": deterministic,
            "run_dir": str(run_dir),
            **({"opponent": self.opponent} if self.opponent is not None else {}),
            **({"zero_sum": self.is_zero_sum, "seats": seats} if seats else {}),
        }

    def _seats_json(self) -> list[dict[str, Any]]:
        """Per seat (ours, with an opponent): its agent, episodes, own mean return and, in a
        zero-sum game, its win, draw and loss rates; empty unless zero-sum or against an
        opponent."""
        outcomes = self.seat_outcomes()
        if outcomes is None and self.opponent is None:
            return []
        seats = []
        for seat, name in enumerate(self.seat_names):
            returns = self.seat_return(seat)
            entry: dict[str, Any] = {
                "seat": seat + 1,
                "agent": name,
                "episodes": len(returns),
                "mean_own_return": statistics.fmean(returns) if returns else None,
            }
            if outcomes is not None:
                for word, code in (("win", WIN), ("draw", DRAW), ("loss", LOSS)):
                    entry[f"{word}_rate"] = outcomes.rate(seat, code)
            seats.append(entry)
        return seats

    def _opponent_text(self) -> str:
        """The opponent for people."""
        if self.opponent == RANDOM_OPPONENT:
            return "a uniformly random legal player"
        return f"the policy of {self.opponent}"


@torch.no_grad()
def _play(
    policy: Policy,
    env: MultiAgentEnv,
    deterministic: bool = False,
    seed: int = 1000,
    opponent: Player | None = None,
    ours: torch.Tensor | None = None,
) -> Iterator[
    tuple[torch.Tensor, MultiAgentStepResult | None, torch.Tensor | None, EpisodeTracker]
]:
    """`play`, also yielding the episode tracker (whose `finished` describes the episodes
    that just ended)."""
    obs = checked_reset(env, seed)
    torch.manual_seed(seed)  # and the sampled actions: the same seed plays the same episodes
    mask, alive = checked_start(env)
    team = policy.config.decided("team_reward")
    tracker = EpisodeTracker(alive, team, env.spec.turn_based)
    state = policy.initial_state(env.num_envs)
    their_state = opponent.initial_state(env.num_envs) if opponent is not None else None
    start = torch.ones_like(alive)
    yield obs, None, None, tracker
    for step in itertools.count(1):
        action, state = policy.act(obs, mask, state, start, deterministic, acting=alive)
        if opponent is not None and ours is not None:
            theirs, their_state = opponent.act(
                obs, mask, their_state, start, deterministic, acting=alive
            )
            # Each slot's action from its own player: [E, A], or [E, A, D] sub-actions.
            seat = ours.view(*ours.shape, *(1,) * (action.dim() - ours.dim()))
            action = torch.where(seat, action, theirs)
        result = checked_step(env, action, step)
        start = episode_starts(result, tracker.ever_alive)  # before the tracker folds it in
        per_episode = tracker.step(
            result.reward, alive, result.env_done, result.alive, result.info.get("win")
        )
        yield obs, result, per_episode, tracker
        obs, mask, alive = result.obs, result.action_mask, result.alive


def play(
    policy: Policy,
    env: MultiAgentEnv,
    deterministic: bool = False,
    seed: int = 1000,
    opponent: Player | None = None,
    ours: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, MultiAgentStepResult | None, torch.Tensor | None]]:
    """Run the policy's actors in `env` from a fresh reset, forever.

    The env copies are reset with `seed` and the torch RNG that samples the
    actions is seeded with it, so that a seed plays the same episodes again.
    Yields `(obs, None, None)` for the first observation, then after every
    step `(obs acted on, step result, episode return [E])`, the last being
    meaningful where `result.env_done` (per-agent mean, or team return with
    the run's `team_reward`). A recurrent actor carries its state, reset where
    an agent's episode starts. With an `opponent`, our policy acts only in the
    slots `ours` `[E, A]` marks and the opponent in the others.
    """
    for obs, result, per_episode, _ in _play(policy, env, deterministic, seed, opponent, ours):
        yield obs, result, per_episode


def evaluate(
    policy: Policy, env: MultiAgentEnv, episodes: int, deterministic: bool = False, seed: int = 1000
) -> list[float]:
    """The return of each of `episodes` episodes, each env copy's first ones
    (`play_episodes`)."""
    return evaluate_episodes(policy, env, episodes, deterministic, seed)[0]


def evaluate_episodes(
    policy: Policy, env: MultiAgentEnv, episodes: int, deterministic: bool = False, seed: int = 1000
) -> tuple[list[float], list[bool]]:
    """The return of each of `episodes` episodes, each env copy's first ones
    (`play_episodes`), and whether each was won (empty when the env reports no wins)."""
    result = play_episodes(policy, env, episodes, deterministic, seed)
    return result.returns, list(result.wins)


def seats_of(num_envs: int, num_agents: int) -> torch.Tensor:
    """Our policy's seat in each of `num_envs` env copies playing an opponent: copy e takes
    seat `e % num_agents`, so every seat gets as many copies (`num_envs` a multiple)."""
    return torch.arange(num_envs) % num_agents


def play_episodes(
    policy: Policy,
    env: MultiAgentEnv,
    episodes: int,
    deterministic: bool = False,
    seed: int = 1000,
    opponent: Player | None = None,
    opponent_name: str | None = None,
) -> Evaluation:
    """`episodes` episodes of the policy, each recorded (return, win, each seat's own return
    and outcome, reward earned).

    Each env copy plays a fixed number of them, the first ones it finishes, so
    that short episodes are not favoured over long ones (the first `episodes` to
    finish, whichever copy they come from, would be mostly short ones where
    lengths vary: a won SMAX battle, an LBF map cleared early). Alone, the copies
    play `episodes` in all. Against an `opponent`, ours sits in seat `seats_of`
    of each env copy, and the copies of each seat play `episodes` in all.
    """
    num_envs, num_agents = env.num_envs, env.num_agents
    ours_seat = seats_of(num_envs, num_agents).to(env.device)
    ours = torch.nn.functional.one_hot(ours_seat, num_agents).bool() if opponent else None
    seats = num_agents if opponent else 1  # a seat's copies sit `seats` apart
    copies = max(num_envs // seats, 1)  # of each seat
    # Copy e plays its first quota[e] episodes: a seat's `episodes` spread over its copies.
    order = torch.arange(num_envs, device=env.device) // seats
    quota = episodes // copies + (order < episodes % copies).long()
    played = torch.zeros(num_envs, dtype=torch.long, device=env.device)
    running = torch.zeros(num_envs, dtype=torch.long, device=env.device)  # steps into each one
    longest = torch.zeros((), dtype=torch.long, device=env.device)  # of the episodes finished
    record: dict[str, list[Any]] = {
        name: []
        for name in (
            "returns",
            "wins",
            "seat_returns",
            "outcomes",
            "zero_sum",
            "decisive",
            "rewarded",
            "ours",
        )
    }
    for _, result, per_episode, tracker in _play(policy, env, deterministic, seed, opponent, ours):
        if result is None:
            continue
        assert per_episode is not None  # _play() yields it with every step result
        counted = result.env_done & (played < quota)
        played += result.env_done.long()
        if counted.any():
            finished = tracker.finished
            outcome = torch.where(finished.seated, finished.outcomes.outcome, -1)
            fields = {
                "returns": per_episode,
                "seat_returns": finished.own_returns,
                "outcomes": outcome,
                "zero_sum": finished.outcomes.zero_sum,
                "decisive": finished.outcomes.decisive,
                "rewarded": finished.rewarded,
                "ours": ours_seat,
            }
            if "win" in result.info:
                fields["wins"] = result.info["win"]
            for name, values in fields.items():
                record[name].extend(values[counted].tolist())
        steps = running + 1
        longest = torch.maximum(longest, torch.where(result.env_done, steps, 0).max())
        running = torch.where(result.env_done, 0, steps)
        short = played < quota
        # A copy whose episode never ends (no time limit, a policy going round in circles)
        # would hold the others forever: the episodes that ended are scored, and said so.
        past = ~short | (running > STUCK_FACTOR * longest + STUCK_STEPS)
        all_played, stuck = torch.stack([~short.any(), (longest > 0) & past.all()]).tolist()
        if all_played:
            break
        if stuck:
            _say_stuck(env, short, running, int(longest), len(record["returns"]), int(quota.sum()))
            break
    return Evaluation.of(
        policy,
        record["returns"],
        record["wins"],
        seat_returns=tuple(map(tuple, record["seat_returns"])),
        outcomes=tuple(map(tuple, record["outcomes"])),
        zero_sum=tuple(record["zero_sum"]),
        decisive=tuple(record["decisive"]),
        rewarded=tuple(record["rewarded"]),
        ours=tuple(record["ours"]) if opponent else (),
        opponent=opponent_name,
    )


def _say_stuck(
    env: MultiAgentEnv, short: torch.Tensor, running: torch.Tensor, longest: int, ended: int,
    asked: int,
) -> None:  # fmt: skip
    """`play_episodes` stops for the copies `short` of their episodes, each in one for
    `running` steps, past `STUCK_FACTOR` times the `longest` that ended: a warning naming
    them when `ended` of the `asked` episodes did, else an EnvError naming the env."""
    stuck = short.nonzero().flatten().tolist()
    copies = ", ".join(map(str, stuck[:5])) + (" ..." if len(stuck) > 5 else "")
    steps = int(running[short].min())
    if not ended:
        raise EnvError(
            f"env '{env.spec.name}': the evaluation's env copies that score ({copies}) ended no "
            f"episode in {steps} steps, over {STUCK_FACTOR} times the longest that ended "
            f"elsewhere ({longest} steps); give the env a time limit"
        )
    logger.warning(
        "evaluation: env %s %s played one episode for %d steps, over %d times the longest "
        "that ended (%d steps); scored the %d episodes that ended, of %d",
        "copies" if len(stuck) > 1 else "copy",
        copies,
        steps,
        STUCK_FACTOR,
        longest,
        ended,
        asked,
    )


def load_run(
    run_dir: str | Path,
    num_envs: int,
    device: str | None = None,
    seed: int = 1000,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[Policy, MultiAgentEnv]:
    """The run's trained policy and `num_envs` fresh copies of its env, stepped in process;
    `env_kwargs` override the run's env options (to play a variant of its task).

    Only the actors act, so the env's own global state is never asked for.
    """

    def build(config: MappoConfig) -> MultiAgentEnv:
        options = {**config.env_kwargs, **(env_kwargs or {})}
        return make_env(config.env, num_envs, config.device, seed, options, use_state=False)

    return load_policy(checkpoint_file(run_dir), build, device)


def load_opponent(opponent: str | Path, policy: Policy, env: MultiAgentEnv, seed: int) -> Player:
    """`--opponent`: "random" (a `RandomPlayer`), or the policy of the run folder
    `opponent`, which must have been trained on the same env as `policy` (with the same
    env options), on `policy`'s device."""
    if str(opponent) == RANDOM_OPPONENT:
        return RandomPlayer(env.spec, env.device, seed)
    ours = policy.config

    def same_env(config: MappoConfig) -> MultiAgentEnv:
        if (config.env, config.env_kwargs) != (ours.env, ours.env_kwargs):
            raise ConfigError(
                f"--opponent {opponent}: that run played {_env_text(config)}, this one "
                f"{_env_text(ours)}"
            )
        return env

    player, _ = load_policy(checkpoint_file(opponent), same_env, ours.device)
    return player


def _env_text(config: MappoConfig) -> str:
    """The env of a run and its options, for people."""
    return f"env '{config.env}'" + (f" with {config.env_kwargs}" if config.env_kwargs else "")


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 100,
    deterministic: bool = False,
    device: str | None = None,
    seed: int = 1000,
    opponent: str | Path | None = None,
) -> Evaluation:
    """Load `run_dir` and evaluate it on `min(episodes, 128)` env copies; against an
    `opponent` ("random", or a run folder), `episodes` in each seat, on up to 128 copies
    (`play_episodes`)."""
    # With an opponent, as many copies in each seat: sized for two seats, the most usual
    # count, and built again for another once the env says how many it has.
    seats = 1 if opponent is None else 2
    policy, env = load_run(run_dir, _copies(episodes, seats), device, seed)
    try:
        if opponent is None:
            return play_episodes(policy, env, episodes, deterministic, seed)
        if env.num_agents != seats:
            env.close()
            policy, env = load_run(run_dir, _copies(episodes, env.num_agents), device, seed)
        player = load_opponent(opponent, policy, env, seed)
        return play_episodes(policy, env, episodes, deterministic, seed, player, str(opponent))
    finally:
        env.close()


def _copies(episodes: int, seats: int) -> int:
    """Env copies for `episodes` in each of `seats` seats: as many in each seat, at most
    `MAX_EVAL_ENVS` in all (but one in each seat)."""
    return seats * max(min(episodes, MAX_EVAL_ENVS // seats), 1)
