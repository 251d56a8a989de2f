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
"""

from __future__ import annotations

from typing import Any

import torch

from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.envs.mpe_core import (
    NUM_DISCRETE_MOVES,
    PhysicsParams,
    contact_pair_mask,
    discrete_action_force,
    discrete_move_table,
    world_step,
)

AGENT_SIZE = 0.15  # agent radius in mpe2's simple_spread
COMM_DIM = 2  # mpe2 world.dim_c; silent agents broadcast zeros of this size
SPAWN_LOW, SPAWN_HIGH = -1.0, 1.0  # agents and landmarks both spawn in this square


class SpreadEnv(MultiAgentEnv):
    """`simple_spread` for `num_envs` worlds of `num_agents` agents and as many landmarks.

    Landmarks neither move nor collide, so the physics only simulates agents.
    Results of `step` are fresh tensors, except the constant masks (alive,
    action_mask, terminated, and the all-False done flags of steps where no
    episode ends), which are shared between steps: treat results as read-only.
    """

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
    ) -> None:
        if global_state not in ("concat_obs", "world"):
            raise ValueError(f"global_state must be 'concat_obs' or 'world', got {global_state!r}")
        if not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be in [0, 1], got {local_ratio}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_cycles = max_cycles
        self.local_ratio = local_ratio
        self.params = PhysicsParams()

        E, A = num_envs, num_agents
        L = num_agents  # one landmark per agent
        self._num_landmarks = L
        obs_dim = 4 + 2 * L + (2 + COMM_DIM) * (A - 1)
        self.spec = EnvSpec(
            name="spread",
            agent_names=tuple(f"agent_{i}" for i in range(A)),
            obs_dim=obs_dim,
            state_dim=A * obs_dim if global_state == "concat_obs" else 4 * A + 2 * L,
            action=ActionSpec(kind="discrete", nvec=(NUM_DISCRETE_MOVES,)),
            max_episode_steps=max_cycles,
            state_source="concat_obs" if global_state == "concat_obs" else "env",
            obs_sizes=(obs_dim,) * A,
        )

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
        self._alive = torch.ones(E, A, dtype=torch.bool, device=dev)
        self._action_mask = torch.ones(E, A, NUM_DISCRETE_MOVES, dtype=torch.bool, device=dev)
        self._false_ea = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self._false_e = torch.zeros(E, dtype=torch.bool, device=dev)

        self._gen = torch.Generator(device=dev)
        # World state, replaced (not aliased) every step.
        self._pos = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent positions
        self._vel = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent velocities
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self._steps = torch.zeros(E, dtype=torch.long, device=dev)  # steps taken per env
        # The step count shared by all envs while they run in lockstep (after
        # `reset` or a uniform `set_state`), else None. It lets `step` skip the
        # reset path on steps where no episode can end, without reading the
        # device counters (a host-device sync).
        self._lockstep_steps: int | None = 0
        self._obs = torch.zeros(E, A, obs_dim, device=dev, dtype=dtype)

        if seed is None:
            self._gen.seed()
        self.reset(seed)

    # ------------------------------------------------------------------ state

    def _sample_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh uniform positions for every env: agents `[E, A, 2]`, landmarks `[E, L, 2]`."""
        E, A, L = self.num_envs, self.num_agents, self._num_landmarks
        u = torch.rand(E, A + L, 2, generator=self._gen, device=self.device, dtype=self.dtype)
        pos = SPAWN_LOW + (SPAWN_HIGH - SPAWN_LOW) * u  # [E, A + L, 2]
        return pos[:, :A], pos[:, A:]

    def _reset_where(self, done: torch.Tensor) -> None:
        """Start new episodes in the envs where `done` `[E]` is True, keep the others."""
        new_pos, new_landmarks = self._sample_positions()
        m = done[:, None, None]  # [E, 1, 1]
        self._pos = torch.where(m, new_pos, self._pos)
        self._landmarks = torch.where(m, new_landmarks, self._landmarks)
        self._vel = self._vel.masked_fill(m, 0.0)
        self._steps = self._steps.masked_fill(done, 0)

    def _relative_positions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmarks `[E, A, L, 2]` and other agents `[E, A, A-1, 2]` relative to each agent.

        Observations and rewards both derive from these; the distances mpe2's
        reward needs are their norms (the sign of a difference does not change it).
        """
        E, A = self.num_envs, self.num_agents
        pos = self._pos
        landmark_rel = self._landmarks[:, None, :, :] - pos[:, :, None, :]  # [E, A, L, 2]
        # index_select is several times cheaper than advanced indexing on CPU.
        others = pos.index_select(1, self._others_flat).view(E, A, A - 1, 2)
        other_rel = others - pos[:, :, None, :]  # [E, A, A-1, 2]
        return landmark_rel, other_rel

    def _observe(self, landmark_rel: torch.Tensor, other_rel: torch.Tensor) -> torch.Tensor:
        """Every agent's observation `[E, A, O]`: vel, pos, landmarks, others, comm."""
        parts = [self._vel, self._pos, landmark_rel.flatten(2), other_rel.flatten(2), self._comm]
        return torch.cat(parts, dim=-1)

    def _reward(self, landmark_rel: torch.Tensor, other_rel: torch.Tensor) -> torch.Tensor:
        """Per-agent reward `[E, A]`, mixed as in mpe2's SimpleEnv."""
        landmark_dist = torch.linalg.vector_norm(landmark_rel, dim=-1)  # [E, A, L]
        global_reward = -landmark_dist.amin(dim=1).sum(-1)  # [E]
        other_dist = torch.linalg.vector_norm(other_rel, dim=-1)  # [E, A, A-1]
        collisions = (other_dist < self._collide_dist).sum(-1)  # [E, A]
        local_reward = -collisions.to(self.dtype)
        return global_reward[:, None] * (1.0 - self.local_ratio) + local_reward * self.local_ratio

    # ------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every env, reseeding first if `seed` is given; obs `[E, A, O]`."""
        if seed is not None:
            self._gen.manual_seed(seed)
        self._pos, self._landmarks = self._sample_positions()
        self._vel = torch.zeros_like(self._pos)
        self._steps = torch.zeros_like(self._steps)
        self._lockstep_steps = 0
        self._obs = self._observe(*self._relative_positions())
        return self._obs

    def set_state(
        self,
        agent_pos: torch.Tensor,
        landmark_pos: torch.Tensor,
        step_count: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Place every env at the given positions, at rest; return obs `[E, A, O]`.

        `agent_pos` `[E, A, 2]`, `landmark_pos` `[E, A, 2]`. Step counters are set
        to 0, or to `step_count` `[E]` if given (episodes then end at different steps).
        """
        E, A, L = self.num_envs, self.num_agents, self._num_landmarks
        if tuple(agent_pos.shape) != (E, A, 2) or tuple(landmark_pos.shape) != (E, L, 2):
            raise ValueError(
                f"expected agent_pos {(E, A, 2)} and landmark_pos {(E, L, 2)}, got "
                f"{tuple(agent_pos.shape)} and {tuple(landmark_pos.shape)}"
            )
        self._pos = agent_pos.to(self.device, self.dtype).clone()
        self._landmarks = landmark_pos.to(self.device, self.dtype).clone()
        self._vel = torch.zeros_like(self._pos)
        if step_count is None:
            self._steps = torch.zeros_like(self._steps)
            self._lockstep_steps = 0
        else:
            self._steps = step_count.to(self.device, torch.long).reshape(E).clone()
            lo, hi = int(self._steps.min()), int(self._steps.max())  # not the hot path
            self._lockstep_steps = lo if lo == hi else None
        self._obs = self._observe(*self._relative_positions())
        return self._obs

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply move actions `[E, A]` (long, 0..4) to every env; finished envs reset in place."""
        E, A = self.num_envs, self.num_agents
        if actions.shape != (E, A):
            raise ValueError(
                f"actions must have shape [E, A] = {[E, A]}, got {list(actions.shape)}"
            )
        force = discrete_action_force(actions, self._move_table)  # [E, A, 2]
        self._pos, self._vel = world_step(
            self._pos, self._vel, force, self._size, self._pair_mask, self.params
        )
        self._steps = self._steps + 1
        rel = self._relative_positions()
        reward = self._reward(*rel)  # [E, A], at the positions the episode reached
        obs = self._observe(*rel)
        state = self._global_state(obs)

        if self._lockstep_steps is not None:
            self._lockstep_steps += 1
            may_end = self._lockstep_steps >= self.max_cycles
        else:
            may_end = True
        if may_end:
            # mpe2 counts a step after it is taken and truncates once count >= max_cycles.
            env_done = self._steps >= self.max_cycles  # [E]
            final_obs, final_state = obs, state
            self._reset_where(env_done)
            if self._lockstep_steps is not None:
                self._lockstep_steps = 0  # every env was at the limit and restarted
            obs = self._observe(*self._relative_positions())
            state = self._global_state(obs)
            truncated = env_done[:, None].expand(E, A).clone()  # [E, A]
        else:
            env_done, truncated = self._false_e, self._false_ea
            final_obs, final_state = obs, state

        self._obs = obs
        return MultiAgentStepResult(
            obs=obs,
            state=state,
            reward=reward,
            terminated=self._false_ea,
            truncated=truncated,
            alive=self._alive,
            action_mask=self._action_mask,
            env_done=env_done,
            final_obs=final_obs,
            final_state=final_state,
            info={},
        )

    def state_dict(self) -> dict[str, Any]:
        """Positions, velocities, step counters and the generator: enough to resume exactly."""
        return {
            "pos": self._pos.clone(), "vel": self._vel.clone(),
            "landmarks": self._landmarks.clone(), "steps": self._steps.clone(),
            "lockstep_steps": -1 if self._lockstep_steps is None else self._lockstep_steps,
            "generator": self._gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` taken from a spread env of the same size."""
        if tuple(state["pos"].shape) != tuple(self._pos.shape):
            raise ValueError(
                f"snapshot holds agents {tuple(state['pos'].shape)}, this env "
                f"{tuple(self._pos.shape)}"
            )
        dev, dtype = self.device, self.dtype
        self._pos = state["pos"].to(dev, dtype)
        self._vel = state["vel"].to(dev, dtype)
        self._landmarks = state["landmarks"].to(dev, dtype)
        self._steps = state["steps"].to(dev)
        lockstep = int(state["lockstep_steps"])
        self._lockstep_steps = None if lockstep < 0 else lockstep
        self._gen.set_state(state["generator"])
        self._obs = self._observe(*self._relative_positions())

    def _global_state(self, obs: torch.Tensor) -> torch.Tensor:
        """`[E, S]`: mpe2's concatenated observations, or the world itself (agent positions
        and velocities, landmark positions), which the critic ablation compares against."""
        if self.spec.state_source == "concat_obs":
            return obs.reshape(self.num_envs, -1)
        return torch.cat([self._pos.flatten(1), self._vel.flatten(1),
                          self._landmarks.flatten(1)], dim=1)

    def get_global_state(self) -> torch.Tensor:
        """The global state of the current step, `[E, S]` (see `global_state`)."""
        return self._global_state(self._obs)

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every env, `[E, O]`."""
        return self._obs[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """All five moves are always legal, `[E, A, 5]`."""
        return self._action_mask

    def get_alive(self) -> torch.Tensor:
        """Every agent acts at every step, `[E, A]`."""
        return self._alive


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
    env also spawns landmarks in 0.8·U(-1, 1) instead of U(-1, 1), which this
    conversion cannot undo: the numbers are comparable, not identical tasks.
    """
    if local_ratio != 0.5:
        raise ValueError(f"no exact conversion for local_ratio {local_ratio}; it needs 0.5")
    return 2.0 * num_agents * per_agent_return - num_agents * max_cycles
