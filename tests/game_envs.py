"""Small games whose outcomes the tests can predict: a zero-sum turn-based game and a
sparse-reward parallel env.

`FirstMoverGame` (a PettingZoo `AECEnv`): `player_0` moves first. Playing action 0 wins at
once (+1, the other -1); action 1 hands the move to `player_1`, whose action 0 wins for it
and whose action 1 draws (both 0). Action 2 is always illegal (masked), so a player that
ignored the mask would show it. Against a uniformly random legal player, a policy that
always plays 0 wins every game as the first player and half as the second (the random
first player wins the other half at once); two random players: the first wins 1/2, the
second 1/4, a draw 1/4.

`SparseRewardEnv` (a PettingZoo `ParallelEnv`): every episode lasts 4 steps, and only in
every fourth episode of each copy are the agents paid, `PAY` each at its last step; so
with episodes counted by the copy, exactly a quarter of them earn anything and their mean
return reads 0.00.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from aec_envs import start_game
from gymnasium import spaces
from pettingzoo import AECEnv
from pz_envs import CounterEnv

PAY = 0.001


class FirstMoverGame(AECEnv):
    """The first player wins by playing 0; see the module docstring."""

    metadata = {"name": "first_mover"}

    def __init__(self) -> None:
        super().__init__()
        self.possible_agents = ["player_0", "player_1"]
        self.agents: list[str] = []
        self.max_cycles = 1  # a round: each player at most one move

    def observation_space(self, agent: str) -> spaces.Space:
        """`observation`: the player's one-hot seat; `action_mask`: actions 0 and 1."""
        return spaces.Dict(
            {
                "observation": spaces.Box(0.0, 1.0, (2,), np.float32),
                "action_mask": spaces.Box(0, 1, (3,), np.int8),
            }
        )

    def action_space(self, agent: str) -> spaces.Space:
        """Three actions, the last always illegal."""
        return spaces.Discrete(3)

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        """What `agent` sees: which seat it is in."""
        seat = np.eye(2, dtype=np.float32)[self.possible_agents.index(agent)]
        return {"observation": seat, "action_mask": np.array([1, 1, 0], np.int8)}

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """A new game: player_0 to move."""
        start_game(self)

    def step(self, action: Any) -> None:
        """The selected player moves (a finished one is sent None and leaves)."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        assert int(action) != 2, "the illegal action was played"
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        other = self.agents[1 - self.agents.index(agent)]
        if int(action) == 0:  # the mover wins
            self.rewards[agent], self.rewards[other] = 1.0, -1.0
            self.terminations = dict.fromkeys(self.agents, True)
        elif agent == "player_1":  # a draw
            self.terminations = dict.fromkeys(self.agents, True)
        else:
            self.agent_selection = other
        self._accumulate_rewards()
        self._deads_step_first()


class SparseRewardEnv(CounterEnv):
    """4-step episodes, every fourth of a copy paying `PAY` to each agent at its end."""

    metadata = {"name": "sparse_reward"}

    def __init__(self) -> None:
        super().__init__(num_agents=2, episode_length=4)

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """CounterEnv's step with the rewards replaced: `PAY` at the end of every fourth
        episode, else nothing."""
        obs, rewards, terminations, truncations, infos = super().step(actions)
        paid = PAY if self.t == self.episode_length and self.episode % 4 == 0 else 0.0
        return obs, dict.fromkeys(rewards, paid), terminations, truncations, infos
