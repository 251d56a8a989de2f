"""`AgentBuffer`: one rollout of every env and agent, preallocated and written in place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from mappo.losses import compute_gae
from mappo.memory import check_fits


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
    weights: torch.Tensor  # [B, A], 1.0 where the agent acted (a turn not deferred), else 0.0
    # Recurrent policies: rows are sequences, every field above gains an axis
    # [B, L, ...] after B, and these hold the state at each sequence's start.
    actor_hidden: torch.Tensor | None = None  # [B, A, H]
    critic_hidden: torch.Tensor | None = None  # [B, H], or [B, A, H] for a local critic
    episode_start: torch.Tensor | None = None  # [B, L, A] bool: reset the state here
    # Turn-based envs: [B, L, A] bool, the agent acted at this step (its hidden state advances
    # only then); `weights` may be 0 there, for a turn whose advantage waits (AgentBuffer).
    acting: torch.Tensor | None = None


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
    critic_hidden `[T, E, C]` (`[T, E, A, C]` with `local_critic`; C is
    `critic_hidden_dim`, H by default, 0 for a feed-forward critic) and
    episode_start `[T, E, A]`. A local critic reads the stored observations:
    pass `state_dim = 0`.

    Turn-based envs (`turn_based`): an agent waiting for its turn when the
    rollout ends has an open turn, whose advantage needs the rewards it
    receives until its next turn and the value there, both in a later rollout.
    Such a turn is deferred: left out of this update (`trained`), its GAE chain
    cut with its own value (as a rollout's last step is with the next value),
    and carried into the next rollout by `carry_open_turns`, as the carry rows
    `[:A]` that precede every field's T steps (one row per agent slot: its open
    turn's step, every other slot waiting), with the rewards it had received so
    far. So every reward reaches the agent's last action wherever the boundary
    falls, and every turn is completed with a value of an input the critic is
    trained on. The time axis is then A + T long; `add` writes after the carry.
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
        critic_hidden_dim: int | None = None,
        obs_dtype: torch.dtype = torch.float32,
        state_dtype: torch.dtype = torch.float32,
        turn_based: bool = False,
    ) -> None:
        self.carry_rows = num_agents if turn_based else 0
        T, E, A = self.carry_rows + rollout_steps, num_envs, num_agents
        logits_dim = logits_dim if logits_dim is not None else action_dim

        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            # Shapes only ("meta"): the memory is checked before any is allocated, below.
            return torch.zeros(shape, dtype=dtype, device="meta")

        self.rollout_steps = rollout_steps
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
        self.alive = zeros(T, E, A, dtype=torch.bool)  # the agent acts at this step
        self.deferred = zeros(T, E, A, dtype=torch.bool)  # an open turn, left for later
        self.advantages = zeros(T, E, A)
        self.returns = zeros(T, E, A)
        self.recurrent = bool(recurrent_hidden_dim)
        if recurrent_hidden_dim:
            H = recurrent_hidden_dim
            C = H if critic_hidden_dim is None else critic_hidden_dim
            self.actor_hidden = zeros(T, E, A, H)  # the state each step's forward started from
            self.critic_hidden = zeros(T, E, A, C) if local_critic else zeros(T, E, C)
            self.episode_start = zeros(T, E, A, dtype=torch.bool)
        # Open turns found by `compute_returns_and_advantage`: (step of each agent's last
        # turn [E, A], whether it is deferred [E, A], rewards received since it [E, A]).
        self._open_turns: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.step = self.carry_rows
        planned = {name: t for name, t in vars(self).items() if isinstance(t, torch.Tensor)}
        need = sum(t.nbytes for t in planned.values())
        what = f"the rollout storage ({rollout_steps} steps of {num_envs} env copies x {A} agents)"
        check_fits(need, need // num_envs, torch.device(device), what, "--num-envs",
                   "or --rollout-steps")  # fmt: skip
        for name, planned_tensor in planned.items():
            setattr(self, name, torch.zeros_like(planned_tensor, device=device))

    def __len__(self) -> int:
        return self.step - self.carry_rows

    @property
    def trained(self) -> torch.Tensor:
        """`[A + T, E, A]` bool: the samples this update learns from (acting, not deferred)."""
        return self.alive & ~self.deferred

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
        if len(self) >= self.rollout_steps:
            raise IndexError(f"AgentBuffer is full ({self.rollout_steps} steps); call clear()")
        # The step's own tensors, whole (leading axes of 1 may be left out): one repeated
        # over an axis (obs [E, O] with E = A) would fill the step with another env's data,
        # and a float action would be truncated.
        for name, given, slot in (("obs", obs, self.observations), ("state", state, self.states),
                                  ("log_prob", log_prob, self.log_probs),
                                  ("value", value, self.values)):  # fmt: skip
            if isinstance(given, torch.Tensor) and given.numel() != slot[0].numel():
                raise ValueError(
                    f"AgentBuffer.add: {name} has shape {list(given.shape)}, not "
                    f"{list(slot.shape[1:])}"
                )
        if action.is_floating_point() and not self.actions.is_floating_point():
            raise ValueError(
                f"AgentBuffer.add: action is {action.dtype}, stored as {self.actions.dtype}: "
                "give discrete actions as integers (or action_dtype=torch.float32)"
            )
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
            # A recurrent policy's step passes all three.
            assert critic_hidden is not None and episode_start is not None
            self.actor_hidden[t] = actor_hidden
            self.critic_hidden[t] = critic_hidden
            self.episode_start[t] = episode_start
        self.step += 1

    def clear(self) -> None:
        """Start a new rollout (after the carry rows, if any); storage is reused."""
        self.step = self.carry_rows

    def compute_returns_and_advantage(
        self,
        last_value: torch.Tensor,
        gamma: float,
        gae_lambda: float,
        next_acting: torch.Tensor | None = None,
    ) -> None:
        """GAE into `advantages` and `returns = advantages + values`; last_value is `[E, A]`.

        Turn-based (`turn_based` at construction): an agent's turns are the steps
        it was alive at; the rewards between them are credited to its last action
        (`compute_gae`'s `acting`). `next_acting` `[E, A]` marks the agents to act
        after the rollout, whose last turn `last_value` completes; the open turns
        of the others are deferred (see the class doc).
        """
        if len(self) < self.rollout_steps:  # GAE would run over rows of no step (or stale)
            raise ValueError(
                f"AgentBuffer holds {len(self)} of its {self.rollout_steps} steps: compute the "
                "advantages of a full rollout (or build it with rollout_steps the steps taken)"
            )
        deferred = None
        if self.carry_rows:
            assert next_acting is not None, "a turn-based rollout needs next_acting"
            self._defer_open_turns(next_acting)
            deferred = self.deferred
        self.advantages[:] = compute_gae(
            self.rewards,
            self.values,
            self.dones,
            last_value,
            gamma,
            gae_lambda,
            truncated=self.truncated,
            truncation_values=self.truncation_values,
            acting=self.alive if self.carry_rows else None,
            deferred=deferred,
        )
        torch.add(self.advantages, self.values, out=self.returns)

    def _defer_open_turns(self, next_acting: torch.Tensor) -> None:
        """Mark in `deferred` each agent's last turn that is still open at the rollout's end
        (the agent is in the game, has not finished since, and does not act next)."""
        steps = torch.arange(self.alive.shape[0], device=self.alive.device).view(-1, 1, 1)
        last_turn = torch.where(self.alive, steps, -1).amax(0)  # [E, A], -1: no turn
        since = steps >= last_turn  # [A + T, E, A]: the last turn's step and after
        finished = (self.dones & since).any(0)
        deferred = (last_turn >= 0) & ~finished & ~next_acting  # [E, A]
        self.deferred.zero_()
        self.deferred.scatter_(0, last_turn.clamp_min(0).unsqueeze(0), deferred.unsqueeze(0))
        self._open_turns = (last_turn, deferred, (self.rewards * since).sum(0))

    def carry_open_turns(self) -> None:
        """Copy the deferred turns into the carry rows, for the next rollout's update: carry
        row r holds agent r's open turn (its step's every field, the other slots not acting)
        with the rewards it received since, and no done flag. Call after the update."""
        if not self.carry_rows or self._open_turns is None:
            return
        last_turn, deferred, received = self._open_turns
        envs = torch.arange(last_turn.shape[0], device=last_turn.device)
        source = last_turn.clamp_min(0).T  # [A, E]: the step carry row r copies, per env
        for x in self._row_fields():
            x[: self.carry_rows] = x[source, envs]  # gathers (copies) before writing
        agents = self.carry_rows
        own = torch.eye(agents, dtype=torch.bool, device=envs.device).unsqueeze(1)  # [A, 1, A]
        carried = own & deferred.T.unsqueeze(-1)  # [A, E, A]: row r, slot r, if deferred
        carry = slice(0, agents)
        self.alive[carry] = carried
        self.rewards[carry] = torch.where(carried, received.T.unsqueeze(-1), 0.0)
        for x in (self.env_rewards, self.truncation_values, self.advantages, self.returns):
            x[carry] = 0.0  # computed anew by the next update
        for x in (self.dones, self.truncated, self.deferred):
            x[carry] = False
        self._open_turns = None

    def _row_fields(self) -> list[torch.Tensor]:
        """Every per-step field (time first)."""
        fields = [
            self.observations,
            self.states,
            self.action_masks,
            self.actions,
            self.log_probs,
            self.values,
            self.critic_values,
            self.rewards,
            self.env_rewards,
            self.dones,
            self.truncated,
            self.truncation_values,
            self.alive,
            self.deferred,
            self.advantages,
            self.returns,
        ]
        if self.recurrent:
            fields += [self.actor_hidden, self.critic_hidden, self.episode_start]
        return fields

    def carry_state(self) -> dict[str, torch.Tensor]:
        """The carry rows of every field, for a checkpoint (empty when there are none)."""
        if not self.carry_rows:
            return {}
        return {str(i): x[: self.carry_rows].clone() for i, x in enumerate(self._row_fields())}

    def load_carry_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `carry_state` saved."""
        for i, x in enumerate(self._row_fields()):
            if str(i) in state:
                x[: self.carry_rows] = state[str(i)]

    def num_rows(self, chunk_length: int = 0) -> int:
        """Rows `shuffled_rows` yields: (step, env) pairs, or sequences of `chunk_length`."""
        E, steps = self.alive.shape[1], self.rollout_steps
        if not chunk_length:
            return (self.carry_rows + steps) * E
        return (-(-steps // chunk_length) + self.carry_rows) * E

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
        order (one `torch.randperm` from the global stream); `minibatches` slices them.
        The carry rows of a turn-based env come first, each its own row (a sequence of
        one step, padded, for a recurrent policy)."""
        fields = [
            self.observations,
            self.states,
            self.action_masks,
            self.actions,
            self.log_probs,
            self.critic_values,
            self.advantages,
            to_critic_units(self.returns),
            self.trained.float(),
        ]
        if chunk_length:
            fields = self._chunks(fields, chunk_length)
        else:
            fields = [x.flatten(0, 1) for x in fields]
        # One gather per field per epoch; each minibatch is then a contiguous slice.
        order = torch.randperm(fields[0].shape[0], device=self.observations.device)
        return [x[order] for x in fields]

    def _chunks(self, fields: list[torch.Tensor], length: int) -> list[torch.Tensor]:
        """`[A + T, E, ...]` fields as `[R, L, ...]` sequences, then the states at their
        starts (and, turn-based, who acts at each step): the T steps in chunks of
        `length`, each carry row a sequence of its own."""
        T, carry = self.rollout_steps, self.carry_rows
        num_chunks = -(-T // length)
        pad = num_chunks * length - T

        def sequences(x: torch.Tensor) -> torch.Tensor:
            steps = x[carry:]
            if pad:  # zero padding; its weight is 0 too
                steps = torch.cat([steps, steps.new_zeros((pad, *steps.shape[1:]))])
            steps = steps.view(num_chunks, length, *x.shape[1:]).transpose(1, 2)  # [C, E, L, ...]
            if not carry:
                return steps.flatten(0, 1)
            alone = x[:carry].unsqueeze(2)  # [A, E, 1, ...]: one step each, then padding
            alone = torch.cat(
                [alone, alone.new_zeros((*alone.shape[:2], length - 1, *alone.shape[3:]))], 2
            )
            return torch.cat([alone, steps]).flatten(0, 1)

        def firsts(x: torch.Tensor) -> torch.Tensor:
            chunk_starts = x[carry:][::length]  # [C, E, ...]
            return torch.cat([x[:carry], chunk_starts]).flatten(0, 1)

        starts = [
            firsts(self.actor_hidden),
            firsts(self.critic_hidden),
            sequences(self.episode_start),
        ]
        acting = [sequences(self.alive)] if carry else []
        return [sequences(x) for x in fields] + starts + acting


def minibatch_bounds(rows: int, num_minibatches: int) -> list[tuple[int, int]]:
    """`(lo, hi)` of `num_minibatches` near-equal consecutive slices of `rows` rows."""
    bounds = torch.linspace(0, rows, num_minibatches + 1).round().long().tolist()
    return list(zip(bounds[:-1], bounds[1:], strict=True))
