"""Load a trained policy from a checkpoint and act with it, one env step at a time.

    python examples/load_and_act.py runs/spread-20250101-120000/checkpoint.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mappo.checkpoint import load_trainer


def main(checkpoint: str | Path, episodes: int = 3, seed: int = 0) -> list[float]:
    """Mean per-agent return of `episodes` greedy episodes of the checkpoint's policy."""
    # One env copy, fresh episodes; nothing trains, so no minibatches and no compiling.
    trainer, _ = load_trainer(checkpoint, resume_rollout=False, num_envs=1, minibatch_size=1,
                              compile="false")
    env = trainer.env
    obs, mask = env.reset(seed=seed), env.get_action_mask()  # [1, A, O], [1, A, K]
    running = torch.zeros(env.num_agents)
    returns: list[float] = []
    while len(returns) < episodes:
        action = trainer.act(obs, mask, deterministic=True)  # the env's own action format
        result = env.step(action)
        running += result.reward[0]
        if bool(result.env_done[0]):  # the env already started the next episode
            returns.append(float(running.mean()))
            print(f"episode {len(returns)}: mean per-agent return {returns[-1]:.2f}")
            running.zero_()
        obs, mask = result.obs, result.action_mask
    env.close()
    return returns


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/load_and_act.py RUN_DIR/checkpoint.pt")
    main(sys.argv[1])
