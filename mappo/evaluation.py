"""Load a run's trained policy and measure it: episode returns (and wins, where the env
reports them) over N episodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from mappo.config import MappoConfig
from mappo.envs.base import MultiAgentEnv, MultiAgentStepResult
from mappo.envs.registry import make_env
from mappo.episodes import EpisodeTracker, return_definition, return_label
from mappo.policy import Policy, episode_starts, load_policy

MAX_EVAL_ENVS = 128


class Evaluation(NamedTuple):
    """Episode returns of a run's policy, and which return they are (`team_reward`)."""

    returns: list[float]
    label: str  # for people: "mean per-agent episode return" or "team episode return"
    definition: str  # for files: "per_agent" or "team"
    wins: tuple[bool, ...] = ()  # per episode, where the env reports a win (SMAX)

    @classmethod
    def of(cls, policy: Policy, returns: list[float], wins: list[bool] | None = None
           ) -> Evaluation:
        """`returns` (and `wins`) labelled by what `policy`'s run measures."""
        team = policy.config.team_reward
        return cls(returns, return_label(team), return_definition(team), tuple(wins or ()))

    @property
    def win_rate(self) -> float | None:
        """Fraction of the episodes won, or None when the env reports no wins."""
        return sum(self.wins) / len(self.wins) if self.wins else None


@torch.no_grad()
def play(
    policy: Policy, env: MultiAgentEnv, deterministic: bool = False, seed: int = 1000
) -> Iterator[tuple[torch.Tensor, MultiAgentStepResult | None, torch.Tensor | None]]:
    """Run the policy's actors in `env` from a fresh reset, forever.

    Yields `(obs, None, None)` for the first observation, then after every
    step `(obs acted on, step result, episode return [E])`, the last being
    meaningful where `result.env_done` (per-agent mean, or team return with
    the run's `team_reward`). A recurrent actor carries its state, reset where
    an agent's episode starts.
    """
    obs = env.reset(seed=seed)
    mask, alive = env.get_action_mask(), env.get_alive()
    tracker = EpisodeTracker(alive, policy.config.team_reward, env.spec.turn_based)
    state = policy.initial_state(env.num_envs)
    start = torch.ones_like(alive)
    yield obs, None, None
    while True:
        action, state = policy.act(obs, mask, state, start, deterministic, acting=alive)
        result = env.step(action)
        start = episode_starts(result, tracker.ever_alive)  # before the tracker folds it in
        per_episode = tracker.step(result.reward, alive, result.env_done, result.alive)
        yield obs, result, per_episode
        obs, mask, alive = result.obs, result.action_mask, result.alive


def evaluate(policy: Policy, env: MultiAgentEnv, episodes: int, deterministic: bool = False,
             seed: int = 1000) -> list[float]:
    """The return of each of the first `episodes` episodes to finish."""
    return evaluate_episodes(policy, env, episodes, deterministic, seed)[0]


def evaluate_episodes(policy: Policy, env: MultiAgentEnv, episodes: int,
                      deterministic: bool = False, seed: int = 1000
                      ) -> tuple[list[float], list[bool]]:
    """The return of each of the first `episodes` episodes to finish, and whether each was
    won (empty when the env reports no wins)."""
    returns: list[float] = []
    wins: list[bool] = []
    for _, result, per_episode in play(policy, env, deterministic, seed):
        if result is not None:
            returns.extend(per_episode[result.env_done].tolist())
            if "win" in result.info:
                wins.extend(result.info["win"][result.env_done].tolist())
            if len(returns) >= episodes:
                return returns[:episodes], wins[:episodes]
    raise AssertionError("unreachable: play() never stops")


def load_run(run_dir: str | Path, num_envs: int, device: str | None = None,
             seed: int = 1000) -> tuple[Policy, MultiAgentEnv]:
    """The run's trained policy and `num_envs` fresh copies of its env, stepped in process.

    Only the actors act, so the env's own global state is never asked for.
    """

    def build(config: MappoConfig) -> MultiAgentEnv:
        return make_env(config.env, num_envs, config.device, seed, config.env_kwargs,
                        use_state=False)

    return load_policy(Path(run_dir) / "checkpoint.pt", build, device)


def evaluate_run(run_dir: str | Path, episodes: int = 100, deterministic: bool = False,
                 device: str | None = None, seed: int = 1000) -> Evaluation:
    """Load `run_dir` and evaluate it on `min(episodes, 128)` env copies."""
    policy, env = load_run(run_dir, min(episodes, MAX_EVAL_ENVS), device, seed)
    try:
        return Evaluation.of(policy, *evaluate_episodes(policy, env, episodes, deterministic,
                                                        seed))
    finally:
        env.close()
