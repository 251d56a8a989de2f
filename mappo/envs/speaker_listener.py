"""MPE `simple_speaker_listener` (mpe2 `simple_speaker_listener_v4`), vectorized over E envs.

Two different agents and three colored landmarks. The speaker (slot 0) sees
which landmark is the goal but cannot move; the listener (slot 1) moves but
does not know the goal and can only hear the speaker. Both get the same reward

    reward = -|listener_pos - goal_landmark_pos|^2      (squared distance)

Observations, in mpe2's layout:

    speaker  `[goal color (3)]`                                        3 floats
    listener `[self_vel (2), landmark_rel_pos (3 x 2), message (3)]`  11 floats

The speaker's Discrete(3) action is a word, heard by the listener as a one-hot
message in its next observation (zeros before the first step). The listener's
Discrete(5) action is a move (no-op, left, right, down, up).

Batched layout: observations are zero-padded to 11 (`spec.obs_sizes` = (3, 11));
actions use one head of K = 5 logits, the speaker's last two masked off in
`action_mask`; the global state is the two *unpadded* observations
concatenated, 14 floats, exactly mpe2's `state()`. The speaker's position is
never observed and never moves, so it is not simulated. Nothing collides.
Episodes last exactly `max_cycles` steps and end by truncation only.
"""

from __future__ import annotations

from typing import Any

import torch

from mappo.envs.base import ActionSpec, EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.envs.mpe_core import (
    NUM_DISCRETE_MOVES,
    PhysicsParams,
    discrete_move_table,
    integrate,
    message_table,
)

SPEAKER, LISTENER = 0, 1  # agent slots
NUM_LANDMARKS = 3
COMM_DIM = 3  # mpe2 world.dim_c: the speaker's words
# Landmark colors (red, green, blue) in mpe2's RGB; the speaker observes the goal's color.
LANDMARK_COLORS = ((0.65, 0.15, 0.15), (0.15, 0.65, 0.15), (0.15, 0.15, 0.65))
SPEAKER_OBS_DIM = len(LANDMARK_COLORS[0])  # 3
LISTENER_OBS_DIM = 2 + 2 * NUM_LANDMARKS + COMM_DIM  # 11
OBS_DIM = max(SPEAKER_OBS_DIM, LISTENER_OBS_DIM)  # padded width
NUM_ACTIONS = max(COMM_DIM, NUM_DISCRETE_MOVES)  # one shared logits head, K = 5
SPAWN_LOW, SPAWN_HIGH = -1.0, 1.0  # the listener and landmarks spawn in this square


class SpeakerListenerEnv(MultiAgentEnv):
    """`simple_speaker_listener` for `num_envs` worlds of a speaker, a listener and 3 landmarks.

    mpe2's env takes no `local_ratio`: both agents are scored on the listener
    alone. Results of `step` are fresh tensors, except the constant masks
    (alive, action_mask, terminated, and the all-False done flags of steps where
    no episode ends), which are shared between steps: treat results as read-only.
    """

    def __init__(
        self,
        num_envs: int,
        max_cycles: int = 25,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
    ) -> None:
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_cycles = max_cycles
        self.params = PhysicsParams()

        E, A, L = num_envs, 2, NUM_LANDMARKS
        self.spec = EnvSpec(
            name="speaker_listener",
            agent_names=("speaker_0", "listener_0"),
            obs_dim=OBS_DIM,
            state_dim=SPEAKER_OBS_DIM + LISTENER_OBS_DIM,
            action=ActionSpec(kind="discrete", nvec=(NUM_ACTIONS,)),
            max_episode_steps=max_cycles,
            # Not the padded observations concatenated, so the env provides it.
            state_source="env",
            obs_sizes=(SPEAKER_OBS_DIM, LISTENER_OBS_DIM),
        )

        dev = self.device
        self._move_table = discrete_move_table(self.params.sensitivity, dev, dtype)  # [5, 2]
        self._message_table = message_table(COMM_DIM, dev, dtype)  # [3, 3]
        self._colors = torch.tensor(LANDMARK_COLORS, device=dev, dtype=dtype)  # [L, 3]
        self._speaker_pad = torch.zeros(E, OBS_DIM - SPEAKER_OBS_DIM, device=dev, dtype=dtype)
        self._alive = torch.ones(E, A, dtype=torch.bool, device=dev)
        self._action_mask = torch.ones(E, A, NUM_ACTIONS, dtype=torch.bool, device=dev)
        self._action_mask[:, SPEAKER, COMM_DIM:] = False  # the speaker has only 3 words
        self._false_ea = torch.zeros(E, A, dtype=torch.bool, device=dev)
        self._false_e = torch.zeros(E, dtype=torch.bool, device=dev)

        self._gen = torch.Generator(device=dev)
        # World state, replaced (not aliased) every step. The listener keeps an
        # entity axis of size 1 so the shared integrator applies unchanged.
        self._pos = torch.zeros(E, 1, 2, device=dev, dtype=dtype)  # listener position
        self._vel = torch.zeros(E, 1, 2, device=dev, dtype=dtype)  # listener velocity
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self._goal = torch.zeros(E, dtype=torch.long, device=dev)  # the listener's target
        self._message = torch.zeros(E, COMM_DIM, device=dev, dtype=dtype)  # speaker's last word
        self._steps = torch.zeros(E, dtype=torch.long, device=dev)  # steps taken per env
        # The step count shared by all envs while they run in lockstep (after
        # `reset` or a uniform `set_state`), else None: `step` then knows without
        # a host-device sync that no episode can end this step.
        self._lockstep_steps: int | None = 0
        self._obs = torch.zeros(E, A, OBS_DIM, device=dev, dtype=dtype)
        self._state = torch.zeros(E, self.spec.state_dim, device=dev, dtype=dtype)

        if seed is None:
            self._gen.seed()
        self.reset(seed)

    # ------------------------------------------------------------------ state

    def _sample_episodes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fresh starts for every env: listener `[E, 1, 2]`, landmarks `[E, L, 2]`, goal `[E]`."""
        E, L = self.num_envs, NUM_LANDMARKS
        dev, gen = self.device, self._gen
        u = torch.rand(E, 1 + L, 2, generator=gen, device=dev, dtype=self.dtype)
        pos = SPAWN_LOW + (SPAWN_HIGH - SPAWN_LOW) * u  # [E, 1 + L, 2]
        goal = torch.randint(0, L, (E,), generator=gen, device=dev)  # [E]
        return pos[:, :1], pos[:, 1:], goal

    def _reset_where(self, done: torch.Tensor) -> None:
        """Start new episodes in the envs where `done` `[E]` is True, keep the others."""
        new_pos, new_landmarks, new_goal = self._sample_episodes()
        m = done[:, None, None]  # [E, 1, 1]
        self._pos = torch.where(m, new_pos, self._pos)
        self._landmarks = torch.where(m, new_landmarks, self._landmarks)
        self._goal = torch.where(done, new_goal, self._goal)
        self._vel = self._vel.masked_fill(m, 0.0)
        self._message = self._message.masked_fill(done[:, None], 0.0)  # nothing said yet
        self._steps = self._steps.masked_fill(done, 0)

    def _landmark_rel(self) -> torch.Tensor:
        """Landmarks relative to the listener, `[E, L, 2]`; its observation and reward use it."""
        return self._landmarks - self._pos

    def _observe(self, landmark_rel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded observations `[E, 2, 11]` and the global state `[E, 14]`."""
        speaker = self._colors.index_select(0, self._goal)  # [E, 3]
        listener = torch.cat([self._vel[:, 0], landmark_rel.flatten(1), self._message], -1)
        obs = torch.stack([torch.cat([speaker, self._speaker_pad], -1), listener], 1)
        state = torch.cat([speaker, listener], -1)  # [E, 3 + 11], no padding
        return obs, state

    def _reward(self, landmark_rel: torch.Tensor) -> torch.Tensor:
        """The shared reward `[E, 2]`: minus the listener's squared distance to the goal."""
        goal_rel = landmark_rel.gather(1, self._goal[:, None, None].expand(-1, 1, 2))  # [E, 1, 2]
        reward = -goal_rel.square().sum(-1)  # [E, 1]
        return reward.repeat(1, 2)  # [E, 2]

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
        self._obs, self._state = self._observe(self._landmark_rel())
        return self._obs

    def set_state(
        self,
        listener_pos: torch.Tensor,
        landmark_pos: torch.Tensor,
        goal: torch.Tensor,
        step_count: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Place every env at the given start, at rest and silent; return obs `[E, A, O]`.

        `listener_pos` `[E, 2]`, `landmark_pos` `[E, 3, 2]`, `goal` `[E]` (long, the
        landmark the listener must reach). Step counters are set to 0, or to
        `step_count` `[E]` if given (episodes then end at different steps).
        """
        E, L = self.num_envs, NUM_LANDMARKS
        shapes = (tuple(listener_pos.shape), tuple(landmark_pos.shape), tuple(goal.shape))
        if shapes != ((E, 2), (E, L, 2), (E,)):
            raise ValueError(
                f"expected listener_pos {(E, 2)}, landmark_pos {(E, L, 2)} and goal {(E,)}, "
                f"got {shapes[0]}, {shapes[1]} and {shapes[2]}"
            )
        self._pos = listener_pos.to(self.device, self.dtype).reshape(E, 1, 2).clone()
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
        self._obs, self._state = self._observe(self._landmark_rel())
        return self._obs

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        """Apply actions `[E, 2]` (long: speaker word 0..2, listener move 0..4); auto-reset.

        A speaker action of 3 or 4 (masked off) raises on CPU and trips a device
        assert on GPU, as mpe2 rejects it too.
        """
        E, A = self.num_envs, 2
        if actions.shape != (E, A):
            raise ValueError(
                f"actions must have shape [E, A] = {[E, A]}, got {list(actions.shape)}"
            )
        force = self._move_table[actions[:, LISTENER]][:, None]  # [E, 1, 2]
        self._pos, self._vel = integrate(self._pos, self._vel, force, self.params)
        # mpe2 updates the message after the move; the observation below already hears it.
        self._message = self._message_table[actions[:, SPEAKER]]  # [E, C]
        self._steps = self._steps + 1
        landmark_rel = self._landmark_rel()
        reward = self._reward(landmark_rel)  # [E, A], at the positions the episode reached
        obs, state = self._observe(landmark_rel)

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
            obs, state = self._observe(self._landmark_rel())
            truncated = env_done[:, None].expand(E, A).clone()  # [E, A]
        else:
            env_done, truncated = self._false_e, self._false_ea
            final_obs, final_state = obs, state

        self._obs, self._state = obs, state
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
        """World state, goal, message, step counters and the generator: enough to resume exactly."""
        return {
            "pos": self._pos.clone(), "vel": self._vel.clone(),
            "landmarks": self._landmarks.clone(), "goal": self._goal.clone(),
            "message": self._message.clone(), "steps": self._steps.clone(),
            "lockstep_steps": -1 if self._lockstep_steps is None else self._lockstep_steps,
            "generator": self._gen.get_state(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot of `state_dict` taken from a speaker-listener env of the same size."""
        if tuple(state["pos"].shape) != tuple(self._pos.shape):
            raise ValueError(
                f"snapshot holds listeners {tuple(state['pos'].shape)}, this env "
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
        self._obs, self._state = self._observe(self._landmark_rel())

    def get_global_state(self) -> torch.Tensor:
        """Both unpadded observations concatenated, `[E, 3 + 11]` (mpe2's `state()`)."""
        return self._state

    def get_observation(self, agent_id: int) -> torch.Tensor:
        """Observation of agent slot `agent_id` in every env, zero-padded, `[E, 11]`."""
        return self._obs[:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        """Legal logits `[E, 2, 5]`: the speaker's words 0..2, the listener's five moves."""
        return self._action_mask

    def get_alive(self) -> torch.Tensor:
        """Both agents act at every step, `[E, 2]`."""
        return self._alive
