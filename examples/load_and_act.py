"""Load a trained policy from a checkpoint and act with it, one env step at a time.

python examples/load_and_act.py runs/spread-20250101-120000/checkpoint.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mappo.config import MappoConfig
from mappo.envs.base import MultiAgentEnv
from mappo.envs.registry import make_env
from mappo.policy import load_policy


def main(checkpoint: str | Path, episodes: int = 3, seed: int = 0) -> list[float]:
    """Mean per-agent return of `episodes` greedy episodes of the checkpoint's policy."""

    def one_copy(config: MappoConfig) -> MultiAgentEnv:  # the run's env, one copy
        return make_env(config.env, 1, config.device, seed, config.env_kwargs)

    policy, env = load_policy(checkpoint, one_copy)  # no trainer, no optimizer
    obs, mask = env.reset(seed=seed), env.get_action_mask()  # [1, A, O], [1, A, K]
    state, start = None, None  # a recurrent actor's state, and where episodes begin
    running = torch.zeros(env.num_agents)
    returns: list[float] = []
    while len(returns) < episodes:
        action, state = policy.act(obs, mask, state, start, deterministic=True)  # env format
        result = env.step(action)
        start = result.agent_done  # those agents' next observation opens a new episode
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
