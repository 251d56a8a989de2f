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

import torch

from mappo.envs.base import ActionSpec, EnvSpec
from mappo.envs.mpe.mpe_core import (
    NUM_DISCRETE_MOVES,
    discrete_move_table,
    integrate,
    message_table,
)
from mappo.envs.mpe.mpe_task import MpeTask

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


class SpeakerListenerEnv(MpeTask[torch.Tensor]):
    """`simple_speaker_listener` for `num_envs` worlds of a speaker, a listener and 3 landmarks.

    mpe2's env takes no `local_ratio`: both agents are scored on the listener
    alone. The action mask `[E, 2, 5]` leaves the speaker its words 0..2 and the
    listener its five moves.
    """

    # World state: the listener's position and velocity `[E, 1, 2]`, landmarks
    # `[E, 3, 2]`, the goal `[E]` (long) and the speaker's last word `[E, C]`.
    _snapshot_fields = ("_pos", "_vel", "_landmarks", "_goal", "_message")

    def __init__(
        self,
        num_envs: int,
        max_cycles: int = 25,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = None,
        physics: str = "mpe2",
    ) -> None:
        spec = EnvSpec(
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
        super().__init__(spec, num_envs, max_cycles, device, dtype, physics)

        E, L, dev = num_envs, NUM_LANDMARKS, self.device
        self._move_table = discrete_move_table(self.params.sensitivity, dev, dtype)  # [5, 2]
        self._message_table = message_table(COMM_DIM, dev, dtype)  # [3, 3]
        self._colors = torch.tensor(LANDMARK_COLORS, device=dev, dtype=dtype)  # [L, 3]
        self._speaker_pad = torch.zeros(E, OBS_DIM - SPEAKER_OBS_DIM, device=dev, dtype=dtype)
        self._action_mask[:, SPEAKER, COMM_DIM:] = False  # the speaker has only 3 words
        # Where the unpadded entries sit in the flattened observations `[E, 2 * 11]`.
        self._state_index = torch.cat(
            [
                SPEAKER * OBS_DIM + torch.arange(SPEAKER_OBS_DIM, device=dev),
                LISTENER * OBS_DIM + torch.arange(LISTENER_OBS_DIM, device=dev),
            ]
        )  # [3 + 11]

        # The listener keeps an entity axis of size 1 so the shared integrator
        # applies unchanged.
        self._pos = torch.zeros(E, 1, 2, device=dev, dtype=dtype)  # listener position
        self._vel = torch.zeros(E, 1, 2, device=dev, dtype=dtype)  # listener velocity
        self._landmarks = torch.zeros(E, L, 2, device=dev, dtype=dtype)
        self._goal = torch.zeros(E, dtype=torch.long, device=dev)  # the listener's target
        self._message = torch.zeros(E, COMM_DIM, device=dev, dtype=dtype)  # speaker's last word
        self._begin(seed)

    # ------------------------------------------------------------ scenario

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

    def _advance(self, actions: torch.Tensor) -> None:
        """The listener moves, the speaker speaks: actions `[E, 2]` (long: word 0..2, move 0..4).

        A speaker action of 3 or 4 (masked off) raises on CPU and trips a device
        assert on GPU, as mpe2 rejects it too.
        """
        force = self._move_table[actions[:, LISTENER]][:, None]  # [E, 1, 2]
        self._pos, self._vel = integrate(self._pos, self._vel, force, self.params)
        # mpe2 updates the message after the move; the observation already hears it.
        self._message = self._message_table[actions[:, SPEAKER]]  # [E, C]

    def _geometry(self) -> torch.Tensor:
        """Landmarks relative to the listener, `[E, L, 2]`; its observation and reward use it."""
        return self._landmarks - self._pos

    def _observe(self, geometry: torch.Tensor) -> torch.Tensor:
        """Observations zero-padded to `[E, 2, 11]`: goal color; vel, landmarks, message."""
        speaker = self._colors.index_select(0, self._goal)  # [E, 3]
        listener = torch.cat([self._vel[:, 0], geometry.flatten(1), self._message], -1)
        return torch.stack([torch.cat([speaker, self._speaker_pad], -1), listener], 1)

    def _global_state(self, obs: torch.Tensor) -> torch.Tensor:
        """Both unpadded observations concatenated, `[E, 3 + 11]` (mpe2's `state()`)."""
        # One gather of the unpadded entries: cheaper than slicing and concatenating.
        return obs.reshape(self.num_envs, -1).index_select(1, self._state_index)

    def _reward(self, geometry: torch.Tensor) -> torch.Tensor:
        """The shared reward `[E, 2]`: minus the listener's squared distance to the goal."""
        goal_rel = geometry.gather(1, self._goal[:, None, None].expand(-1, 1, 2))  # [E, 1, 2]
        reward = -goal_rel.square().sum(-1)  # [E, 1]
        return reward.repeat(1, 2)  # [E, 2]

    # ------------------------------------------------------------------- API

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
        return self._place(
            step_count,
            {
                "_pos": ("listener_pos", listener_pos, (E, 2)),
                "_landmarks": ("landmark_pos", landmark_pos, (E, L, 2)),
                "_goal": ("goal", goal, (E,)),
            },
        )


def official_team_return(per_agent_return: float) -> float:
    """A speaker_listener episode return on the official MAPPO code's scale, from ours (mpe2's).

    Both agents get `-d²` per step here (d: the listener's distance to the goal),
    as in the official on-policy env, which hands every agent the team sum
    (`shared_reward`), `2·(-d²)`: official = 2·R for a per-agent return R. Spawn
    ranges agree (U(-1, 1)); built with `physics="official"` this env moves as
    that code's does (mpe2's order moves with the velocity before the action).
    """
    return 2.0 * per_agent_return
