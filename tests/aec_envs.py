"""Small turn-based PettingZoo `AECEnv`s whose every number the tests can predict.

`RelayEnv`: players take turns in order. Each player observes
`[offset, episode, t, player_index]` and an `action_mask` of 3 actions in
which action `t % 3` is illegal (`t` counts the turns played in the episode,
`offset` is drawn from the env's RNG at each reset). At turn t (1-based,
after the move) every other player still in the game receives reward `t`,
the mover nothing: a player's rewards arrive while it waits. The game ends
after `turns` turns: every player is terminated, the last mover gets
`+bonus` and every other player `-bonus` (added to `t`). With
`eliminated = (i, k)`, player i is terminated at turn k (whoever moved) and
the others play on. Every move is kept in `received` as (player, action,
legal); `broken_turn` makes the step of that turn raise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv


def start_game(env: AECEnv) -> None:
    """PettingZoo's bookkeeping at a reset: every player in, nothing received, none done, the
    first to move."""
    env.agents = list(env.possible_agents)
    env.rewards = dict.fromkeys(env.agents, 0.0)
    env._cumulative_rewards = dict.fromkeys(env.agents, 0.0)
    env.terminations = dict.fromkeys(env.agents, False)
    env.truncations = dict.fromkeys(env.agents, False)
    env.infos = {agent: {} for agent in env.agents}
    env.agent_selection = env.agents[0]


class RelayEnv(AECEnv):
    """Players moving in turn, rewarded while they wait; see the module docstring."""

    metadata = {"name": "relay", "render_modes": ["rgb_array"]}

    def __init__(
        self,
        num_players: int = 2,
        turns: int = 4,
        bonus: float = 10.0,
        eliminated: tuple[int, int] | None = None,
        broken_turn: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        self.possible_agents = [f"player_{i}" for i in range(num_players)]
        self.agents: list[str] = []
        self.turns, self.bonus = turns, bonus
        self.eliminated, self.broken_turn = eliminated, broken_turn
        self.render_mode = render_mode
        self.max_cycles = turns
        self.rng = np.random.default_rng()
        self.offset = 0
        self.episode = 0
        self.t = 0
        self.received: list[tuple[str, int, bool]] = []

    def observation_space(self, agent: str) -> spaces.Space:
        """`observation` `[offset, episode, t, player_index]` and an int8 `action_mask`."""
        return spaces.Dict(
            {
                "observation": spaces.Box(-np.inf, np.inf, (4,), np.float32),
                "action_mask": spaces.Box(0, 1, (3,), np.int8),
            }
        )

    def action_space(self, agent: str) -> spaces.Space:
        """Three moves, one of them illegal at each turn."""
        return spaces.Discrete(3)

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        """What `agent` sees now."""
        mask = np.ones(3, np.int8)
        mask[self.t % 3] = 0
        index = self.possible_agents.index(agent)
        return {
            "observation": np.array([self.offset, self.episode, self.t, index], np.float32),
            "action_mask": mask,
        }

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """Start a game; a seed restarts the RNG that draws `offset`."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.offset = int(self.rng.integers(1000))
        self.episode += 1
        self.t = 0
        start_game(self)

    def step(self, action: Any) -> None:
        """The selected player moves (a done one must be sent None and leaves)."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if self.broken_turn == self.t + 1:
            raise RuntimeError(f"turn {self.t + 1} broke\nthe env's second line")
        self.received.append((agent, int(action), bool(self.observe(agent)["action_mask"][action])))
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        self.t += 1
        playing = [a for a in self.agents if not self.terminations[a]]
        for other in playing:
            if other != agent:
                self.rewards[other] = float(self.t)
        if self.t >= self.turns:
            for other in playing:
                self.rewards[other] += self.bonus if other == agent else -self.bonus
                self.terminations[other] = True
        elif self.eliminated is not None and self.eliminated[1] == self.t:
            self.terminations[self.possible_agents[self.eliminated[0]]] = True
        # The next player in turn order still in the game; done players are stepped first.
        order = (
            self.agents[self.agents.index(agent) + 1 :] + self.agents[: self.agents.index(agent)]
        )
        live = [a for a in order if not self.terminations[a]]
        self.agent_selection = live[0] if live else agent
        self._accumulate_rewards()
        self._deads_step_first()

    def render(self) -> np.ndarray:
        """A 4x4 RGB frame whose red channel is the turn count."""
        return np.full((4, 4, 3), self.t, np.uint8)


class LateRewardEnv(AECEnv):
    """Two players alternate for `turns` turns. Each sees a one-hot target of 3 moves, drawn
    afresh after each of its turns, and is paid 1 for playing it, one move late: when the
    other player has moved (the last mover when the game ends). With 2-step rollouts the
    second player's pay always arrives in the next rollout, before its next turn."""

    metadata = {"name": "late_reward"}

    def __init__(self, turns: int = 6) -> None:
        super().__init__()
        self.possible_agents = ["player_0", "player_1"]
        self.agents: list[str] = []
        self.turns = turns
        self.rng = np.random.default_rng()

    def observation_space(self, agent: str) -> spaces.Space:
        """The one-hot target of `agent`."""
        return spaces.Box(0.0, 1.0, (3,), np.float32)

    def action_space(self, agent: str) -> spaces.Space:
        """Three moves."""
        return spaces.Discrete(3)

    def observe(self, agent: str) -> np.ndarray:
        """`agent`'s target, one-hot."""
        return np.eye(3, dtype=np.float32)[self.target[agent]]

    def reset(self, seed: int | None = None, options: dict | None = None) -> None:
        """Start a game with fresh targets."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        start_game(self)
        self.target = {agent: int(self.rng.integers(3)) for agent in self.agents}
        self.owed: tuple[str, float] | None = None

    def step(self, action: Any) -> None:
        """The selected player moves; the previous mover is paid."""
        agent = self.agent_selection
        if self.terminations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self._clear_rewards()
        if self.owed is not None:
            self.rewards[self.owed[0]] = self.owed[1]
        self.owed = (agent, float(int(action) == self.target[agent]))
        self.target[agent] = int(self.rng.integers(3))
        self.t += 1
        if self.t >= self.turns:  # the last mover is paid as the game ends
            self.rewards[agent] += self.owed[1]
            self.terminations = dict.fromkeys(self.agents, True)
        other = self.agents[1 - self.agents.index(agent)]
        self.agent_selection = other
        self._accumulate_rewards()
        self._deads_step_first()
