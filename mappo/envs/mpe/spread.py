"""MPE `simple_spread` (mpe2 `simple_spread_v3`), vectorized over E envs in torch.

N agents must cover N landmarks while avoiding each other. Every step each
agent gets

    reward_i = (1 - local_ratio) * global + local_ratio * local_i
    global   = -sum over landmarks of the distance to the nearest agent
    local_i  = -(number of other agents overlapping agent i)

and observes `[self_vel, self_pos, landmark_rel_pos (N), other_agent_rel_pos
(N-1), other_agent_comm (N-1)]`, where the comm slots are always zero because
spread agents are silent (mpe2 still includes them): 18 floats for N=3.
Episodes last exactly `max_cycles` steps and end by truncation only.

Built with `record_frames=True`, the env draws itself (`mappo.envs.mpe.drawing`): it
keeps copy 0's positions after every reset and step, and `rendered_episodes` draws them.
"""

from __future__ import annotations

import numpy as np
import torch

from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentStepResult
from mappo.envs.mpe.drawing import SpreadEpisode, spread_frames, spread_palette, spread_positions
from mappo.envs.mpe.mpe_core import (
    NUM_DISCRETE_MOVES,
    contact_pair_mask,
    discrete_action_force,
    discrete_move_table,
    world_step,
)
from mappo.envs.mpe.mpe_task import MpeTask, check_option, is_count, is_number

AGENT_SIZE = 0.15  # agent radius in mpe2's simple_spread
COMM_DIM = 2  # mpe2 world.dim_c; silent agents broadcast zeros of this size
SPAWN_LOW, SPAWN_HIGH = -1.0, 1.0  # agents and landmarks both spawn in this square

# Landmarks relative to each agent `[E, A, L, 2]` and other agents relative to
# each agent `[E, A, A-1, 2]`: observations and rewards both derive from these.
Geometry = tuple[torch.Tensor, torch.Tensor]


class SpreadEnv(MpeTask[Geometry]):
    """`simple_spread` for `num_envs` worlds of `num_agents` agents and as many landmarks.

    Landmarks neither move nor collide, so the physics only simulates agents.
    `global_state` picks the critic's state: mpe2's concatenated observations
    ("concat_obs") or the world itself ("world"). Landmarks spawn in
    U(-landmark_range, landmark_range) per axis: mpe2's 1.0, or the official MAPPO
    code's 0.8 (its `simple_spread` scales the draw), agents in U(-1, 1) either way.
    `physics` is the integration order (`mappo.envs.mpe.mpe_task.PHYSICS`).
    `record_frames` keeps copy 0's positions for `rendered_episodes`.
    """

    # World state: agents' positions and velocities `[E, A, 2]`, landmarks `[E, A, 2]`.
    _snapshot_fields = ("_pos", "_vel", "_landmarks")

    def __init__(
        self,
        num_envs: int,
        num_agents: int = 3,
        max_cycles: int = 25,
        local_ratio: float = 0.5,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        global_state: str = "concat_obs",
        landmark_range: float = 1.0,
        physics: str = "mpe2",
        record_frames: bool = False,
    ) -> None:
        check_option(is_count(num_agents), "spread", "num_agents", num_agents, "an integer >= 1")
        check_option(
            is_number(landmark_range) and landmark_range > 0.0,
            "spread",
            "landmark_range",
            landmark_range,
            "a number > 0",
        )
        check_option(
            global_state in ("concat_obs", "world"),
            "spread",
            "global_state",
            global_state,
            "'concat_obs' or 'world'",
        )
        check_option(
            is_number(local_ratio) and 0.0 <= local_ratio <= 1.0,
            "spread",
            "local_ratio",
            local_ratio,
            "in [0, 1]",
        )
        self.local_ratio = local_ratio
        self.landmark_range = landmark_range
        E, A = num_envs, num_agents
        L = num_agents  # one landmark per agent
        self._num_landmarks = L
        obs_dim = 4 + 2 * L + (2 + COMM_DIM) * (A - 1)
        spec = EnvSpec(
            name="spread",
            agent_names=tuple(f"agent_{i}" for i in range(A)),
            obs_dim=obs_dim,
            state_dim=A * obs_dim if global_state == "concat_obs" else 4 * A + 2 * L,
            action=ActionSpec(kind="discrete", nvec=(NUM_DISCRETE_MOVES,)),
            max_episode_steps=max_cycles,
            state_source="concat_obs" if global_state == "concat_obs" else "env",
            obs_sizes=(obs_dim,) * A,
        )
        super().__init__(spec, num_envs, max_cycles, device, dtype, physics)

        dev = self.device
        self._move_table = discrete_move_table(self.params.sensitivity, dev, dtype)  # [5, 2]
        self._size = torch.full((A,), AGENT_SIZE, device=dev, dtype=dtype)  # [A]
        self._pair_mask = contact_pair_mask(torch.ones(A, dtype=torch.bool, device=dev))  # [A, A]
        # Python sum, like mpe2's `agent1.size + agent2.size`, so the collision
        # threshold is the same float in both.
        self._collide_dist = AGENT_SIZE + AGENT_SIZE
        # others[i] = the agents other than i, in agent order, as mpe2 lists them.
        self._others_flat = torch.tensor(
            [j for i in range(A) for j in range(A) if j != i], device=dev, dtype=torch.long
        )  # [A * (A-1)]
        self._comm = torch.zeros(E, A, COMM_DIM * (A - 1), device=dev, dtype=dtype)

        self._pos = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent positions
        self._vel = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent velocities
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self.record_frames = record_frames
        # Copy 0's episodes while recording: agent positions `[A, 2]` per state, landmarks.
        self._recorded: list[tuple[list[np.ndarray], np.ndarray]] = []
        self._begin(seed)

    # ------------------------------------------------------------ scenario

    def _sample_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh uniform positions for every env: agents `[E, A, 2]`, landmarks `[E, L, 2]`."""
        E, A, L = self.num_envs, self.num_agents, self._num_landmarks
        u = torch.rand(E, A + L, 2, generator=self._gen, device=self.device, dtype=self.dtype)
        pos = SPAWN_LOW + (SPAWN_HIGH - SPAWN_LOW) * u  # [E, A + L, 2]
        return pos[:, :A], self.landmark_range * pos[:, A:]

    def _reset_where(self, done: torch.Tensor) -> None:
        """Start new episodes in the envs where `done` `[E]` is True, keep the others."""
        new_pos, new_landmarks = self._sample_positions()
        m = done[:, None, None]  # [E, 1, 1]
        self._pos = torch.where(m, new_pos, self._pos)
        self._landmarks = torch.where(m, new_landmarks, self._landmarks)
        self._vel = self._vel.masked_fill(m, 0.0)

    def _advance(self, actions: torch.Tensor) -> None:
        """Push every agent with its move action `[E, A]` (long, 0..4); agents collide."""
        force = discrete_action_force(actions, self._move_table)  # [E, A, 2]
        self._pos, self._vel = world_step(
            self._pos, self._vel, force, self._size, self._pair_mask, self.params
        )

    def _geometry(self) -> Geometry:
        """Landmarks `[E, A, L, 2]` and other agents `[E, A, A-1, 2]` relative to each agent.

        The distances mpe2's reward needs are their norms (the sign of a
        difference does not change it).
        """
        E, A = self.num_envs, self.num_agents
        pos = self._pos
        landmark_rel = self._landmarks[:, None, :, :] - pos[:, :, None, :]  # [E, A, L, 2]
        # index_select is several times cheaper than advanced indexing on CPU.
        others = pos.index_select(1, self._others_flat).view(E, A, A - 1, 2)
        other_rel = others - pos[:, :, None, :]  # [E, A, A-1, 2]
        return landmark_rel, other_rel

    def _observe(self, geometry: Geometry) -> torch.Tensor:
        """Every agent's observation `[E, A, O]`: vel, pos, landmarks, others, comm."""
        landmark_rel, other_rel = geometry
        parts = [self._vel, self._pos, landmark_rel.flatten(2), other_rel.flatten(2), self._comm]
        return torch.cat(parts, dim=-1)

    def _reward(self, geometry: Geometry) -> torch.Tensor:
        """Per-agent reward `[E, A]`, mixed as in mpe2's SimpleEnv."""
        landmark_rel, other_rel = geometry
        landmark_dist = torch.linalg.vector_norm(landmark_rel, dim=-1)  # [E, A, L]
        global_reward = -landmark_dist.amin(dim=1).sum(-1)  # [E]
        other_dist = torch.linalg.vector_norm(other_rel, dim=-1)  # [E, A, A-1]
        collisions = (other_dist < self._collide_dist).sum(-1)  # [E, A]
        local_reward = -collisions.to(self.dtype)
        return global_reward[:, None] * (1.0 - self.local_ratio) + local_reward * self.local_ratio

    def _global_state(self, obs: torch.Tensor) -> torch.Tensor:
        """`[E, S]`: mpe2's concatenated observations, or the world itself (agent positions
        and velocities, landmark positions), which the critic ablation compares against."""
        if self.spec.state_source == "concat_obs":
            return obs.reshape(self.num_envs, -1)
        return torch.cat(
            [self._pos.flatten(1), self._vel.flatten(1), self._landmarks.flatten(1)], dim=1
        )

    def _record_start(self, obs: torch.Tensor) -> None:
        """Begin a recorded episode at copy 0's observation `[A, O]`, when recording."""
        if self.record_frames:
            agents, landmarks = spread_positions(obs, self.num_agents)
            self._recorded.append(([agents], landmarks))

    # ------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every env, reseeding first if `seed` is given; obs `[E, A, O]`."""
        obs = super().reset(seed)
        self._record_start(obs[0])
        return obs

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (long) to every env; envs at the time limit reset in place."""
        result = super().step(actions)
        if self.record_frames:
            # A finished episode was reset in place: its last state is in final_obs.
            agents, _ = spread_positions(result.final_obs[0], self.num_agents)
            self._recorded[-1][0].append(agents)
            if bool(result.env_done[0]):
                self._record_start(result.obs[0])
        return result

    def rendered_episodes(self) -> list[list[np.ndarray]]:
        """Copy 0's episodes drawn as RGB frames `[H, W, 3]` uint8, one list per episode
        begun since the env was built (none unless it was built with `record_frames`)."""
        palette = spread_palette(self.num_agents)
        return [
            [
                palette[frame]
                for frame in spread_frames(SpreadEpisode(np.stack(agents), marks, AGENT_SIZE))
            ]
            for agents, marks in self._recorded
        ]

    def set_state(
        self,
        agent_pos: torch.Tensor,
        landmark_pos: torch.Tensor,
        step_count: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Place every env at the given positions, at rest; return obs `[E, A, O]`.

        `agent_pos` `[E, A, 2]`, `landmark_pos` `[E, A, 2]`. Step counters are set
        to 0, or to `step_count` `[E]` if given (episodes then end at different steps).
        While recording, the placed state begins a new recorded episode.
        """
        E, A, L = self.num_envs, self.num_agents, self._num_landmarks
        obs = self._place(
            step_count,
            {
                "_pos": ("agent_pos", agent_pos, (E, A, 2)),
                "_landmarks": ("landmark_pos", landmark_pos, (E, L, 2)),
            },
        )
        self._record_start(obs[0])  # a jump, not a step: no path may lead to it
        return obs


# The official MAPPO code's simple_spread as this env's options: its landmark spawn, its
# integration order.
OFFICIAL_TASK = {"landmark_range": 0.8, "physics": "official"}


def official_team_return(
    per_agent_return: float, num_agents: int = 3, max_cycles: int = 25, local_ratio: float = 0.5
) -> float:
    """A spread episode return on the official MAPPO code's scale, from ours (mpe2's).

    mpe2 gives agent i `(1-ρ)·G + ρ·L_i` per step (G: minus the landmarks'
    distances to their nearest agent; L_i: minus i's collisions with others).
    The official on-policy env gives every agent the team sum of `G + L_i - 1`
    (each agent "collides" with itself), i.e. `N·G + Σ L_i - N` per step. With
    ρ = 0.5, `N·G + Σ L_i = 2·Σ_i r_i`, so per episode
    official = 2·(sum over agents of our return) - N·T = 2·N·R - N·T for a
    mean per-agent return R. Other mixes have no exact conversion. The official
    env also spawns landmarks in 0.8·U(-1, 1) and integrates in the original MPE's
    order: built with `landmark_range=0.8, physics="official"` this env is its task.
    """
    if local_ratio != 0.5:
        raise ValueError(f"no exact conversion for local_ratio {local_ratio}; it needs 0.5")
    return 2.0 * num_agents * per_agent_return - num_agents * max_cycles
