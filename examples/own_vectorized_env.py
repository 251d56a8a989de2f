"""Your own vectorized env: every copy in one tensor, trained and evaluated by the command line.

    PYTHONPATH=examples mappo train --env own_vectorized_env:LineEnv --total-steps 100000
    PYTHONPATH=examples mappo eval runs/own_vectorized_env-LineEnv-<time> --deterministic

(or `python examples/own_vectorized_env.py [mappo train flags]`). `--env module:callable`
naming a `MultiAgentEnv` subclass (or any callable with a `num_envs` parameter) is called
once, as `LineEnv(num_envs=E, device=..., seed=..., **env_kwargs)`, and steps all E copies
itself: no per-copy Python objects, no worker processes.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from mappo.cli import main
from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult


class LineEnv(MultiAgentEnv):
    """Agents on the line [-1, 1] move left, stay or right (0.1 a step) towards their targets.

    Each agent observes its position and its own target; its reward is minus its
    distance to the target. Episodes last `episode_length` steps (a time limit).
    The global state is every agent's position and target.
    """

    def __init__(
        self,
        num_envs: int,
        num_agents: int = 2,
        episode_length: int = 20,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        A = num_agents
        self.num_envs, self.device = num_envs, torch.device(device)
        self.episode_length = episode_length
        self.spec = EnvSpec(
            name="line",
            agent_names=tuple(f"agent_{i}" for i in range(A)),
            obs_dim=2,
            state_dim=2 * A,
            action=ActionSpec("discrete", nvec=(3,)),
            max_episode_steps=episode_length,
            state_source="env",
            obs_sizes=(2,) * A,
        )
        self.generator = torch.Generator(self.device)
        self.pos = torch.zeros(num_envs, A, device=self.device)  # [E, A]
        self.target = torch.zeros(num_envs, A, device=self.device)  # [E, A]
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # [E] episode steps
        self.reset(seed)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start every copy afresh; observations `[E, A, 2]`."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self._start_episodes(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observations()

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Move every agent of every copy (`[E, A]`: 0 left, 1 stay, 2 right)."""
        self.pos = (self.pos + 0.1 * (actions - 1)).clamp(-1.0, 1.0)
        self.t += 1
        reward = -(self.pos - self.target).abs()  # [E, A]
        final_obs, final_state = self._observations(), self.get_global_state()
        done = self.t >= self.episode_length  # [E]
        self._start_episodes(done)  # finished copies start over in place
        cut = done[:, None].expand_as(reward)  # [E, A]: a time limit ends every agent
        return MultiAgentStepResult(
            obs=self._observations(),
            state=self.get_global_state(),
            reward=reward,
            terminated=torch.zeros_like(cut),
            truncated=cut,
            alive=self.get_alive(),
            action_mask=self.get_action_mask(),
            env_done=done,
            final_obs=final_obs,
            final_state=final_state,
            info={},
        )

    def get_global_state(self) -> torch.Tensor:
        """Every position and target, `[E, 2A]`."""
        return torch.cat([self.pos, self.target], dim=1)

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """One agent's position and target in every copy, `[E, 2]`."""
        return self._observations()[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Every move is always legal, `[E, A, 3]`."""
        return torch.ones(self.num_envs, self.num_agents, 3, dtype=torch.bool, device=self.device)

    def get_alive(self) -> torch.Tensor:
        """No agent ever leaves, `[E, A]`."""
        return torch.ones(self.num_envs, self.num_agents, dtype=torch.bool, device=self.device)

    def state_dict(self) -> dict[str, Any]:
        """Tensors only, so `--resume` continues the episodes in flight exactly."""
        return {
            "pos": self.pos,
            "target": self.target,
            "t": self.t,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` snapshot."""
        self.pos, self.target, self.t = (state[k].to(self.device) for k in ("pos", "target", "t"))
        self.generator.set_state(state["generator"])

    def _observations(self) -> torch.Tensor:
        """`[E, A, 2]`: each agent's position and target."""
        return torch.stack([self.pos, self.target], dim=-1)

    def _start_episodes(self, where: torch.Tensor) -> None:
        """New positions and targets, uniform in [-1, 1], in the copies where `where` `[E]`."""
        fresh = (
            2 * torch.rand(2, *self.pos.shape, generator=self.generator, device=self.device) - 1
        )  # [2, E, A]
        self.pos = torch.where(where[:, None], fresh[0], self.pos)
        self.target = torch.where(where[:, None], fresh[1], self.target)
        self.t = self.t.masked_fill(where, 0)


if __name__ == "__main__":
    # Run as a script, this folder is on sys.path: the run records the env as
    # own_vectorized_env:LineEnv, which `mappo eval` finds with PYTHONPATH=examples.
    sys.exit(main(["train", "--env", "own_vectorized_env:LineEnv", *sys.argv[1:]]))
