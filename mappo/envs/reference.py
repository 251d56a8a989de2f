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

from typing import Any

import torch

from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.envs.mpe_core import (
    NUM_DISCRETE_MOVES,
    PhysicsParams,
    integrate,
    move_and_say_tables,
)

NUM_AGENTS = 2
NUM_LANDMARKS = 3
COMM_DIM = 10  # mpe2 world.dim_c: words per message
# Landmark colors (red, green, blue) in mpe2's RGB; an agent observes the color of its goal.
LANDMARK_COLORS = ((0.75, 0.25, 0.25), (0.25, 0.75, 0.25), (0.25, 0.25, 0.75))
NUM_ACTIONS = NUM_DISCRETE_MOVES * COMM_DIM  # 50 = 10 words x 5 moves
OBS_DIM = 2 + 2 * NUM_LANDMARKS + len(LANDMARK_COLORS[0]) + COMM_DIM  # 21
SPAWN_LOW, SPAWN_HIGH = -1.0, 1.0  # agents and landmarks both spawn in this square


class ReferenceEnv(MultiAgentEnv):
    """`simple_reference` for `num_envs` worlds of 2 agents and 3 landmarks.

    Nothing collides, so the physics is the bare MPE integrator on the two
    agents. Results of `step` are fresh tensors, except the constant masks
    (alive, action_mask, terminated, and the all-False done flags of steps where
    no episode ends), which are shared between steps: treat results as read-only.
    """

    def __init__(
        self,
        num_envs: int,
        max_cycles: int = 25,
        local_ratio: float = 0.5,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= local_ratio <= 1.0:
            raise ValueError(f"local_ratio must be in [0, 1], got {local_ratio}")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_cycles = max_cycles
        self.local_ratio = local_ratio
        self.params = PhysicsParams()

        E, A, L = num_envs, NUM_AGENTS, NUM_LANDMARKS
        self.spec = EnvSpec(
            name="reference",
            agent_names=tuple(f"agent_{i}" for i in range(A)),
            obs_dim=OBS_DIM,
            state_dim=A * OBS_DIM,
            action=ActionSpec(kind="discrete", nvec=(NUM_ACTIONS,)),
            max_episode_steps=max_cycles,
            state_source="concat_obs",
            obs_sizes=(OBS_DIM,) * A,
        )

        dev = self.device
        # Row a of each table: the force of move a % 5 and the one-hot of word a // 5.
        self._force_table, self._message_table = move_and_say_tables(
            self.params.sensitivity, COMM_DIM, dev, dtype
        )  # [50, 2], [50, 10]
        self._colors = torch.tensor(LANDMARK_COLORS, device=dev, dtype=dtype)  # [L, 3]
        self._alive = torch.ones(E, A, dtype=torch.bool, device=dev)
        self._action_mask = torch.ones(E, A, NUM_ACTIONS, dtype=torch.bool, device=dev)
        self._false_ea = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self._false_e = torch.zeros(E, dtype=torch.bool, device=dev)

        self._gen = torch.Generator(device=dev)
        # World state, replaced (not aliased) every step.
        self._pos = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent positions
        self._vel = torch.zeros(E, A, 2, device=dev, dtype=dtype)  # agent velocities
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self._goal = torch.zeros(E, A, dtype=torch.long, device=dev)  # g_i, for the other agent
        # Each agent's last word, as the one-hot the other agent hears.
        self._message = torch.zeros(E, A, COMM_DIM, device=dev, dtype=dtype)
        self._steps = torch.zeros(E, dtype=torch.long, device=dev)  # steps taken per env
        # The step count shared by all envs while they run in lockstep (after
        # `reset` or a uniform `set_state`), else None: `step` then knows without
        # a host-device sync that no episode can end this step.
        self._lockstep_steps: int | None = 0
        self._obs = torch.zeros(E, A, OBS_DIM, device=dev, dtype=dtype)

        if seed is None:
            self._gen.seed()
        self.reset(seed)

    # ------------------------------------------------------------------ state

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
        self._steps = self._steps.masked_fill(done, 0)

    def _landmark_rel(self) -> torch.Tensor:
        """Landmarks relative to each agent, `[E, A, L, 2]`; observations and rewards use it."""
        return self._landmarks[:, None, :, :] - self._pos[:, :, None, :]

    def _observe(self, landmark_rel: torch.Tensor) -> torch.Tensor:
        """Every agent's observation `[E, A, 21]`: vel, landmarks, goal color, other's message."""
        E, A = self.num_envs, NUM_AGENTS
        goal_color = self._colors.index_select(0, self._goal.flatten()).view(E, A, -1)  # [E, A, 3]
        heard = self._message.flip(1)  # [E, A, C]: agent i hears agent 1 - i
        parts = [self._vel, landmark_rel.flatten(2), goal_color, heard]
        return torch.cat(parts, dim=-1)

    def _reward(self, landmark_rel: torch.Tensor) -> torch.Tensor:
        """Per-agent reward `[E, A]`, mixed as in mpe2's SimpleEnv."""
        landmark_dist = torch.linalg.vector_norm(landmark_rel, dim=-1)  # [E, A, L]
        # Agent i is scored on how close the other agent (row 1 - i) is to g_i.
        other_dist = landmark_dist.flip(1)  # [E, A, L]
        local_reward = -other_dist.gather(2, self._goal[..., None]).squeeze(2)  # [E, A]
        global_reward = local_reward.mean(1, keepdim=True)  # [E, 1]
        return global_reward * (1.0 - self.local_ratio) + local_reward * self.local_ratio

    # ------------------------------------------------------------------- API

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start a new episode in every env, reseeding first if `seed` is given; obs `[E, A, O]`."""
        if seed is not None:
            self._gen.manual_seed(seed)
        self._pos, self._landmarks, self._goal = self._sample_episodes()
        self._vel = torch.zeros_like(self._pos)
        self._message = torch.zeros_like(self._message)
        self._steps = torch.zeros_like(self._steps)
        self._lockstep_steps = 0
        self._obs = self._observe(self._landmark_rel())
        return self._obs

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
        shapes = (tuple(agent_pos.shape), tuple(landmark_pos.shape), tuple(goal.shape))
        if shapes != ((E, A, 2), (E, L, 2), (E, A)):
            raise ValueError(
                f"expected agent_pos {(E, A, 2)}, landmark_pos {(E, L, 2)} and goal {(E, A)}, "
                f"got {shapes[0]}, {shapes[1]} and {shapes[2]}"
            )
        self._pos = agent_pos.to(self.device, self.dtype).clone()
        self._landmarks = landmark_pos.to(self.device, self.dtype).clone()
        self._goal = goal.to(self.device, torch.long).clone()
        self._vel = torch.zeros_like(self._pos)
        self._message = torch.zeros_like(self._message)
        if step_count is None:
            self._steps = torch.zeros_like(self._steps)
            self._lockstep_steps = 0
        else:
            self._steps = step_count.to(self.device, torch.long).reshape(E).clone()
            lo, hi = int(self._steps.min()), int(self._steps.max())  # not the hot path
            self._lockstep_steps = lo if lo == hi else None
        self._obs = self._observe(self._landmark_rel())
        return self._obs

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, A]` (long, word * 5 + move in 0..49); finished envs reset in place."""
        E, A = self.num_envs, NUM_AGENTS
        if actions.shape != (E, A):
            raise ValueError(
                f"actions must have shape [E, A] = {[E, A]}, got {list(actions.shape)}"
            )
        force = self._force_table[actions]  # [E, A, 2]
        self._pos, self._vel = integrate(self._pos, self._vel, force, self.params)
        # mpe2 updates the messages after the move; observations below already hear them.
        self._message = self._message_table[actions]  # [E, A, C]
        self._steps = self._steps + 1
        landmark_rel = self._landmark_rel()
        reward = self._reward(landmark_rel)  # [E, A], at the positions the episode reached
        obs = self._observe(landmark_rel)
        state = obs.reshape(E, -1)  # [E, A * O]: the concatenated observations

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
            obs = self._observe(self._landmark_rel())
            state = obs.reshape(E, -1)
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
        """World, goals, messages, step counters and the generator: enough to resume exactly."""
        return {
            "pos": self._pos.clone(), "vel": self._vel.clone(),
            "landmarks": self._landmarks.clone(), "goal": self._goal.clone(),
            "message": self._message.clone(), "steps": self._steps.clone(),
            "lockstep_steps": -1 if self._lockstep_steps is None else self._lockstep_steps,
            "generator": self._gen.get_state(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` taken from a reference env of the same size."""
        if tuple(state["pos"].shape) != tuple(self._pos.shape):
            raise ValueError(
                f"snapshot holds agents {tuple(state['pos'].shape)}, this env "
                f"{tuple(self._pos.shape)}"
            )
        dev, dtype = self.device, self.dtype
        self._pos = state["pos"].to(dev, dtype)
        self._vel = state["vel"].to(dev, dtype)
        self._landmarks = state["landmarks"].to(dev, dtype)
        self._goal = state["goal"].to(dev, torch.long)
        self._message = state["message"].to(dev, dtype)
        self._steps = state["steps"].to(dev)
        lockstep = int(state["lockstep_steps"])
        self._lockstep_steps = None if lockstep < 0 else lockstep
        self._gen.set_state(state["generator"])
        self._obs = self._observe(self._landmark_rel())

    def get_global_state(self) -> torch.Tensor:
        """Concatenated observations of both agents, `[E, 2 * 21]` (mpe2's `state()` too)."""
        return self._obs.reshape(self.num_envs, -1)

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every env, `[E, O]`."""
        return self._obs[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """All 50 move-and-word actions are always legal, `[E, A, 50]`."""
        return self._action_mask

    def get_alive(self) -> torch.Tensor:
        """Every agent acts at every step, `[E, A]`."""
        return self._alive
