"""MPE `simple_reference` (mpe2 `simple_reference_v3`), vectorized over E envs in torch.

Two agents and three colored landmarks. Each agent i knows a goal landmark g_i,
but it is the *other* agent that must reach it, so each has to tell the other
where to go over a 10-word channel while listening for its own destination:

    local_i  = -|pos_{1-i} - landmark_{g_i}|
    global   = (local_0 + local_1) / 2
    reward_i = (1 - local_ratio) * global + local_ratio * local_i

Agent i observes `[self_vel (2), landmark_rel_pos (3 x 2), color of g_i (3),
other agent's message (10)]`, 21 floats; it does not see its own position or
the other agent. The two goals are drawn independently and may coincide.

One Discrete(50) action per agent both moves and speaks: move = a % 5 (no-op,
left, right, down, up), word = a // 5, and the word reaches the other agent as
a one-hot message in its next observation (all zeros before the first step).
Agents and landmarks do not collide. Episodes last exactly `max_cycles` steps
and end by truncation only.
"""

from __future__ import annotations

import torch

from mappo.envs.base import ActionSpec, EnvSpec
from mappo.envs.mpe.mpe_core import NUM_DISCRETE_MOVES, integrate, move_and_say_tables
from mappo.envs.mpe.mpe_task import MpeTask, check_option, is_number

NUM_AGENTS = 2
NUM_LANDMARKS = 3
COMM_DIM = 10  # mpe2 world.dim_c: words per message
# Landmark colors (red, green, blue) in mpe2's RGB; an agent observes the color of its goal.
LANDMARK_COLORS = ((0.75, 0.25, 0.25), (0.25, 0.75, 0.25), (0.25, 0.25, 0.75))
NUM_ACTIONS = NUM_DISCRETE_MOVES * COMM_DIM  # 50 = 10 words x 5 moves
OBS_DIM = 2 + 2 * NUM_LANDMARKS + len(LANDMARK_COLORS[0]) + COMM_DIM  # 21
SPAWN_LOW, SPAWN_HIGH = -1.0, 1.0  # agents and landmarks both spawn in this square


class ReferenceEnv(MpeTask[torch.Tensor]):
    """`simple_reference` for `num_envs` worlds of 2 agents and 3 landmarks.

    Nothing collides, so the physics is the bare MPE integrator on the two
    agents. The global state is the two observations concatenated, `[E, 2 * 21]`
    (mpe2's `state()` too).
    """

    # World state: agents' positions and velocities `[E, 2, 2]`, landmarks
    # `[E, 3, 2]`, goals g_i `[E, 2]` (long) and each agent's last word `[E, 2, C]`.
    _snapshot_fields = ("_pos", "_vel", "_landmarks", "_goal", "_message")

    def __init__(
        self,
        num_envs: int,
        max_cycles: int = 25,
        local_ratio: float = 0.5,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        physics: str = "mpe2",
    ) -> None:
        check_option(
            is_number(local_ratio) and 0.0 <= local_ratio <= 1.0,
            "reference",
            "local_ratio",
            local_ratio,
            "in [0, 1]",
        )
        self.local_ratio = local_ratio
        spec = EnvSpec(
            name="reference",
            agent_names=tuple(f"agent_{i}" for i in range(NUM_AGENTS)),
            obs_dim=OBS_DIM,
            state_dim=NUM_AGENTS * OBS_DIM,
            action=ActionSpec(kind="discrete", nvec=(NUM_ACTIONS,)),
            max_episode_steps=max_cycles,
            state_source="concat_obs",
            obs_sizes=(OBS_DIM,) * NUM_AGENTS,
        )
        super().__init__(spec, num_envs, max_cycles, device, dtype, physics)

        E, A, L, dev = num_envs, NUM_AGENTS, NUM_LANDMARKS, self.device
        # Row a of each table: the force of move a % 5 and the one-hot of word a // 5.
        self._force_table, self._message_table = move_and_say_tables(
            self.params.sensitivity, COMM_DIM, dev, dtype
        )  # [50, 2], [50, 10]
        self._colors = torch.tensor(LANDMARK_COLORS, device=dev, dtype=dtype)  # [L, 3]

        self._pos = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent positions
        self._vel = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent velocities
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self._goal = torch.zeros(E, A, dtype=torch.long, device=dev)  # g_i, for the other agent
        # Each agent's last word, as the one-hot the other agent hears.
        self._message = torch.zeros(E, A, COMM_DIM, device=dev, dtype=dtype)
        self._begin(seed)

    # ------------------------------------------------------------ scenario

    def _sample_episodes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fresh starts for every env: agents `[E, A, 2]`, landmarks `[E, L, 2]`, goals `[E, A]`."""
        E, A, L = self.num_envs, NUM_AGENTS, NUM_LANDMARKS
        dev, gen = self.device, self._gen
        u = torch.rand(E, A + L, 2, generator=gen, device=dev, dtype=self.dtype)
        pos = SPAWN_LOW + (SPAWN_HIGH - SPAWN_LOW) * u  # [E, A + L, 2]
        goal = torch.randint(0, L, (E, A), generator=gen, device=dev)  # [E, A]
        return pos[:, :A], pos[:, A:], goal

    def _reset_where(self, done: torch.Tensor) -> None:
        """Start new episodes in the envs where `done` `[E]` is True, keep the others."""
        new_pos, new_landmarks, new_goal = self._sample_episodes()
        m = done[:, None, None]  # [E, 1, 1]
        self._pos = torch.where(m, new_pos, self._pos)
        self._landmarks = torch.where(m, new_landmarks, self._landmarks)
        self._goal = torch.where(done[:, None], new_goal, self._goal)
        self._vel = self._vel.masked_fill(m, 0.0)
        self._message = self._message.masked_fill(m, 0.0)  # nobody has spoken yet

    def _advance(self, actions: torch.Tensor) -> None:
        """Move and speak with actions `[E, A]` (long, word * 5 + move in 0..49)."""
        force = self._force_table[actions]  # [E, A, 2]
        self._pos, self._vel = integrate(self._pos, self._vel, force, self.params)
        # mpe2 updates the messages after the move; observations already hear them.
        self._message = self._message_table[actions]  # [E, A, C]

    def _geometry(self) -> torch.Tensor:
        """Landmarks relative to each agent, `[E, A, L, 2]`; observations and rewards use it."""
        return self._landmarks[:, None, :, :] - self._pos[:, :, None, :]

    def _observe(self, geometry: torch.Tensor) -> torch.Tensor:
        """Every agent's observation `[E, A, 21]`: vel, landmarks, goal color, other's message."""
        E, A = self.num_envs, NUM_AGENTS
        goal_color = self._colors.index_select(0, self._goal.flatten()).view(E, A, -1)  # [E, A, 3]
        heard = self._message.flip(1)  # [E, A, C]: agent i hears agent 1 - i
        parts = [self._vel, geometry.flatten(2), goal_color, heard]
        return torch.cat(parts, dim=-1)

    def _reward(self, geometry: torch.Tensor) -> torch.Tensor:
        """Per-agent reward `[E, A]`, mixed as in mpe2's SimpleEnv."""
        landmark_dist = torch.linalg.vector_norm(geometry, dim=-1)  # [E, A, L]
        # Agent i is scored on how close the other agent (row 1 - i) is to g_i.
        other_dist = landmark_dist.flip(1)  # [E, A, L]
        local_reward = -other_dist.gather(2, self._goal[..., None]).squeeze(2)  # [E, A]
        global_reward = local_reward.mean(1, keepdim=True)  # [E, 1]
        return global_reward * (1.0 - self.local_ratio) + local_reward * self.local_ratio

    # ------------------------------------------------------------------- API

    def set_state(
        self,
        agent_pos: torch.Tensor,
        landmark_pos: torch.Tensor,
        goal: torch.Tensor,
        step_count: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Place every env at the given start, at rest and silent; return obs `[E, A, O]`.

        `agent_pos` `[E, 2, 2]`, `landmark_pos` `[E, 3, 2]`, `goal` `[E, 2]` (long,
        g_i = the landmark agent i wants the other agent at). Step counters are set
        to 0, or to `step_count` `[E]` if given (episodes then end at different steps).
        """
        E, A, L = self.num_envs, NUM_AGENTS, NUM_LANDMARKS
        return self._place(
            step_count,
            {
                "_pos": ("agent_pos", agent_pos, (E, A, 2)),
                "_landmarks": ("landmark_pos", landmark_pos, (E, L, 2)),
                "_goal": ("goal", goal, (E, A)),
            },
        )
