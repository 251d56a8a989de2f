"""`AgentBuffer`: one rollout of every env and agent, preallocated and written in place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from mappo.losses import compute_gae


class RolloutMinibatch(NamedTuple):
    """A minibatch of B (step, env) rows, each holding all A agent slots."""

    obs: torch.Tensor  # [B, A, O]
    state: torch.Tensor  # [B, S]
    action_mask: torch.Tensor  # [B, A, K]
    actions: torch.Tensor  # [B, A, D]
    log_probs: torch.Tensor  # [B, A]
    values: torch.Tensor  # [B, A], the critic's raw output at collection (the value clip's centre)
    advantages: torch.Tensor  # [B, A]
    returns: torch.Tensor  # [B, A], in the critic's units
    weights: torch.Tensor  # [B, A], 1.0 where the agent acted, else 0.0
    # Recurrent policies: rows are sequences, every field above gains an axis
    # [B, L, ...] after B, and these hold the state at each sequence's start.
    actor_hidden: torch.Tensor | None = None  # [B, A, H]
    critic_hidden: torch.Tensor | None = None  # [B, H], or [B, A, H] for a local critic
    episode_start: torch.Tensor | None = None  # [B, L, A] bool: reset the state here


class AgentBuffer:
    """Rollout storage for T steps of E envs with A agents, allocated once on the device.

    Shapes: obs `[T, E, A, O]` (in `obs_dtype`: uint8 images stay uint8, one byte a
    pixel; the networks make floats of each minibatch), state `[T, E, S]`
    (`state_dtype`), action_mask `[T, E, A, K]`,
    actions `[T, E, A, D]`, and `[T, E, A]` for log_probs, values, critic_values,
    rewards, env_rewards, dones, truncated, truncation_values, alive, advantages
    and returns. `values` are in return units (for GAE); `critic_values` are
    what the critic output at collection time, in its own (normalized) units.
    `rewards` are as GAE credits them, `env_rewards` as the env gave them (they
    differ with a team reward).
    `add` writes step `len(self)`; `clear` starts over without freeing memory.
    With `recurrent_hidden_dim`, it also keeps actor_hidden `[T, E, A, H]`,
    critic_hidden `[T, E, H]` (`[T, E, A, H]` with `local_critic`) and
    episode_start `[T, E, A]`. A local critic reads the stored observations:
    pass `state_dim = 0`.
    """

    def __init__(
        self,
        rollout_steps: int,
        num_envs: int,
        num_agents: int,
        obs_dim: int,
        state_dim: int,
        action_dim: int,
        logits_dim: int | None = None,
        action_dtype: torch.dtype = torch.long,
        device: str | torch.device = "cpu",
        recurrent_hidden_dim: int = 0,
        local_critic: bool = False,
        obs_dtype: torch.dtype = torch.float32,
        state_dtype: torch.dtype = torch.float32,
    ) -> None:
        T, E, A = rollout_steps, num_envs, num_agents
        logits_dim = logits_dim if logits_dim is not None else action_dim

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        self.rollout_steps = T
        self.observations = zeros(T, E, A, obs_dim, dtype=obs_dtype)
        self.states = zeros(T, E, state_dim, dtype=state_dtype)
        self.action_masks = zeros(T, E, A, logits_dim, dtype=torch.bool)
        self.actions = zeros(T, E, A, action_dim, dtype=action_dtype)
        self.log_probs = zeros(T, E, A)
        self.values = zeros(T, E, A)
        self.critic_values = zeros(T, E, A)
        self.rewards = zeros(T, E, A)
        self.env_rewards = zeros(T, E, A)
        self.dones = zeros(T, E, A, dtype=torch.bool)
        self.truncated = zeros(T, E, A, dtype=torch.bool)
        self.truncation_values = zeros(T, E, A)
        self.alive = zeros(T, E, A, dtype=torch.bool)
        self.advantages = zeros(T, E, A)
        self.returns = zeros(T, E, A)
        if recurrent_hidden_dim:
            H = recurrent_hidden_dim
            self.actor_hidden = zeros(T, E, A, H)  # the state each step's forward started from
            self.critic_hidden = zeros(T, E, A, H) if local_critic else zeros(T, E, H)
            self.episode_start = zeros(T, E, A, dtype=torch.bool)
        self.step = 0

    def __len__(self) -> int:
        return self.step

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        log_prob: torch.Tensor,
        reward: torch.Tensor | float,
        done: torch.Tensor | bool,
        value: torch.Tensor,
        *,
        state: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        alive: torch.Tensor | bool = True,
        truncated: torch.Tensor | bool = False,
        truncation_value: torch.Tensor | float = 0.0,
        critic_value: torch.Tensor | None = None,
        env_reward: torch.Tensor | float | None = None,
        actor_hidden: torch.Tensor | None = None,
        critic_hidden: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
    ) -> None:
        """Store one step of every env and agent (each argument broadcast to its slot).

        `value` is in return units; `critic_value` is the critic's raw output
        (the same as `value` when the critic is not normalized, the default).
        `env_reward` is the env's own reward when `reward` is a credited one.
        """
        if self.step >= self.rollout_steps:
            raise IndexError(f"AgentBuffer is full ({self.rollout_steps} steps); call clear()")
        t = self.step
        self.observations[t] = obs
        self.actions[t] = action
        self.log_probs[t] = log_prob
        self.rewards[t] = reward
        self.env_rewards[t] = reward if env_reward is None else env_reward
        self.dones[t] = done
        self.values[t] = value
        self.critic_values[t] = value if critic_value is None else critic_value
        self.alive[t] = alive
        self.truncated[t] = truncated
        self.truncation_values[t] = truncation_value
        if state is not None:
            self.states[t] = state
        self.action_masks[t] = True if action_mask is None else action_mask
        if actor_hidden is not None:
            self.actor_hidden[t] = actor_hidden
            self.critic_hidden[t] = critic_hidden
            self.episode_start[t] = episode_start
        self.step += 1

    def clear(self) -> None:
        """Start a new rollout; storage is reused."""
        self.step = 0

    def compute_returns_and_advantage(
        self, last_value: torch.Tensor, gamma: float, gae_lambda: float,
        turn_based: bool = False,
    ) -> None:
        """GAE into `advantages` and `returns = advantages + values`; last_value is `[E, A]`.

        `turn_based`: an agent's turns are the steps it was alive at; the rewards
        between them are credited to its last action (`compute_gae`'s `acting`).
        """
        self.advantages[:] = compute_gae(
            self.rewards, self.values, self.dones, last_value, gamma, gae_lambda,
            truncated=self.truncated, truncation_values=self.truncation_values,
            acting=self.alive if turn_based else None,
        )
        torch.add(self.advantages, self.values, out=self.returns)

    def minibatches(
        self,
        num_minibatches: int,
        to_critic_units: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        chunk_length: int = 0,
    ) -> Iterator[RolloutMinibatch]:
        """Shuffle the rows and yield them in `num_minibatches` near-equal parts.

        Feed-forward (`chunk_length = 0`): a row is one (step, env) with all its
        agents, so the agent-batched actor and the critic's per-agent head each
        run once per minibatch. Recurrent: a row is `chunk_length` consecutive
        steps of one env, with the hidden states stored at its first step; the
        last chunk of a rollout is padded with zero-weight steps. Returns are
        mapped to the critic's units (with the normalizer as it is now) once, not
        per minibatch; the value clip is centred on the critic's own stored
        output, which a normalizer update must not move.
        """
        shuffled = self.shuffled_rows(to_critic_units, chunk_length)
        for lo, hi in minibatch_bounds(shuffled[0].shape[0], num_minibatches):
            yield RolloutMinibatch(*(x[lo:hi] for x in shuffled))

    def shuffled_rows(
        self,
        to_critic_units: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
        chunk_length: int = 0,
    ) -> list[torch.Tensor]:
        """The fields of `RolloutMinibatch`, in its order, with their rows in one random
        order (one `torch.randperm` from the global stream); `minibatches` slices them."""
        fields = [self.observations, self.states, self.action_masks, self.actions,
                  self.log_probs, self.critic_values, self.advantages,
                  to_critic_units(self.returns), self.alive.float()]
        if chunk_length:
            fields, starts = self._chunks(fields, chunk_length)
        else:
            fields, starts = [x.flatten(0, 1) for x in fields], []
        # One gather per field per epoch; each minibatch is then a contiguous slice.
        order = torch.randperm(fields[0].shape[0], device=self.observations.device)
        return [x[order] for x in fields + starts]

    def _chunks(
        self, fields: list[torch.Tensor], length: int
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`[T, E, ...]` fields as `[C·E, L, ...]` sequences, and the states at their starts."""
        T = self.rollout_steps
        num_chunks = -(-T // length)
        pad = num_chunks * length - T

        def sequences(x: torch.Tensor) -> torch.Tensor:
            if pad:  # zero padding; its weight (the last field) is 0 too
                x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
            x = x.view(num_chunks, length, *x.shape[1:]).transpose(1, 2)  # [C, E, L, ...]
            return x.flatten(0, 1)

        first = slice(0, T, length)  # the first step of each chunk
        starts = [self.actor_hidden[first].flatten(0, 1), self.critic_hidden[first].flatten(0, 1),
                  sequences(self.episode_start)]
        return [sequences(x) for x in fields], starts


def minibatch_bounds(rows: int, num_minibatches: int) -> list[tuple[int, int]]:
    """`(lo, hi)` of `num_minibatches` near-equal consecutive slices of `rows` rows."""
    bounds = torch.linspace(0, rows, num_minibatches + 1).round().long().tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))
