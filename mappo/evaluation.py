"""Load a run's trained policy and measure it: per-agent episode returns over N episodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from mappo.checkpoint import load_trainer
from mappo.envs.base import MultiAgentStepResult
from mappo.episodes import EpisodeTracker
from mappo.trainer import MappoTrainer

MAX_EVAL_ENVS = 128


@torch.no_grad()
def play(
    trainer: MappoTrainer, deterministic: bool = False, seed: int = 1000
) -> Iterator[tuple[torch.Tensor, MultiAgentStepResult | None, torch.Tensor | None]]:
    """Run the trained actors from a fresh reset, forever.

    Yields `(obs, None, None)` for the first observation, then after every
    step `(obs acted on, step result, per-agent episode return [E])`, the last
    being meaningful where `result.env_done`. A recurrent actor carries its
    hidden state, cleared where an agent's episode starts.
    """
    env = trainer.env
    obs = env.reset(seed=seed)
    mask, alive = env.get_action_mask(), env.get_alive()
    tracker = EpisodeTracker(alive)
    hidden = torch.zeros(*alive.shape, trainer.config.hidden_dim, device=alive.device)
    start = torch.ones_like(alive)
    yield obs, None, None
    while True:
        if trainer.config.recurrent:
            action, hidden = trainer.act_recurrent(obs, mask, hidden, start, deterministic)
        else:
            action = trainer.act(obs, mask, deterministic)
        result = env.step(action)
        per_agent = tracker.step(result.reward, alive, result.env_done, result.alive)
        yield obs, result, per_agent
        obs, mask, alive = result.obs, result.action_mask, result.alive
        start = result.terminated | result.truncated | result.env_done.unsqueeze(-1)


def evaluate(trainer: MappoTrainer, episodes: int, deterministic: bool = False,
             seed: int = 1000) -> list[float]:
    """Mean per-agent return of each of the first `episodes` episodes to finish."""
    returns: list[float] = []
    for _, result, per_agent in play(trainer, deterministic, seed):
        if result is not None:
            returns.extend(per_agent[result.env_done].tolist())
            if len(returns) >= episodes:
                return returns[:episodes]
    raise AssertionError("unreachable: play() never stops")


def evaluate_run(run_dir: str | Path, episodes: int = 100, deterministic: bool = False,
                 device: str | None = None, seed: int = 1000) -> list[float]:
    """Load `run_dir` and evaluate it on `min(episodes, 128)` env copies."""
    # No update runs here; one whole-batch minibatch keeps the size check valid for few envs.
    changes = {"num_envs": min(episodes, MAX_EVAL_ENVS), "minibatch_size": 0, "compile": "false"}
    if device is not None:
        changes["device"] = device
    trainer, _ = load_trainer(Path(run_dir) / "checkpoint.pt", resume_rollout=False, **changes)
    try:
        return evaluate(trainer, episodes, deterministic, seed)
    finally:
        trainer.env.close()
