"""The three formulas of PPO: GAE, the clipped policy loss, the clipped value loss.

Every function works on any trailing shape (`[T, E, A]` in training) and takes
an optional `weights` tensor that is 0 for samples of agents that do not exist,
so a dead agent adds nothing to a loss or its gradient.
"""

from __future__ import annotations

import torch


def check_shapes(function: str, shape: torch.Size, **tensors: torch.Tensor | None) -> None:
    """Refuse any of `tensors` (None: not given) whose shape is not `shape`, naming it: one
    that broadcasts instead (a critic's `[N, 1]` against returns `[N]`) gives a loss over
    every pair, a wrong number and no error."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.shape != shape:
            raise ValueError(
                f"{function}: {name} has shape {list(tensor.shape)}, not {list(shape)} as "
                f"the first argument: give them one shape (squeeze a trailing axis of 1)"
            )


def check_setting(function: str, name: str, value: float | torch.Tensor) -> None:
    """Refuse a negative (or NaN) number `value` for `name`; a sweep's tensor of per-slot
    values was checked in its config."""
    if not isinstance(value, torch.Tensor) and not value >= 0:
        raise ValueError(f"{function}: {name} = {value!r}: must be >= 0")


def masked_mean(x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of `x` over the samples whose weight is non-zero (plain mean without weights)."""
    if weights is None:
        return x.mean()
    return (x * weights).sum() / weights.sum().clamp_min(1.0)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    truncated: torch.Tensor | None = None,
    truncation_values: torch.Tensor | None = None,
    acting: torch.Tensor | None = None,
    deferred: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generalized advantage estimates, one backward scan over time.

    rewards, values, dones: `[T, ...]`; `dones[t]` says the episode ended with
    step t (terminated or truncated). last_value: `[...]`, the value of the
    observation after the final step. Where `truncated[t]` the episode was cut
    by a time limit, so it is bootstrapped from `truncation_values[t]` (the
    value of the final observation); where it terminated, nothing follows.

    Turn-based envs pass `acting` `[T, ...]` bool, the steps at which each agent
    acted; its other steps are skipped. The advantage at an acting step t then
    uses the rewards the agent received from step t up to its next acting step,
    summed, and its value there: δ_t = Σ r + γ·V(next turn) − V(t), A_t = δ_t +
    γλ·A(next turn). So γ and λ apply once per own turn, as when only acting
    steps are stored. An episode ending (for that agent) before its next turn
    cuts the sum there, bootstrapped as above. An agent that has not acted
    again by the end of the rollout is bootstrapped from `last_value`.
    Non-acting steps get advantage 0. Without `acting` every step is a turn.
    `deferred` `[T, ...]` marks acting steps whose turn is still open (its
    advantage is computed in a later rollout): they get advantage 0, and the
    turns before them are cut there with their value, as a rollout's last step
    is cut with the next value.
    Returns advantages `[T, ...]`.
    """
    if not rewards.is_floating_point():  # integer advantages would be truncated
        raise ValueError(f"compute_gae: rewards are {rewards.dtype}: give floats")
    shape = rewards.shape
    check_shapes("compute_gae", shape, values=values, dones=dones, truncated=truncated,
                 truncation_values=truncation_values, acting=acting, deferred=deferred)  # fmt: skip
    if last_value.shape != shape[1:]:
        raise ValueError(
            f"compute_gae: last_value has shape {list(last_value.shape)}, not "
            f"{list(shape[1:])}: the rewards' shape {list(shape)} without its time axis"
        )
    for name, mask in (("truncated", truncated), ("acting", acting), ("deferred", deferred)):
        if mask is not None and mask.dtype != torch.bool:
            raise ValueError(f"compute_gae: {name} is {mask.dtype}: give a bool tensor")
    steps = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    not_done = 1.0 - dones.to(rewards.dtype)
    bootstrap = torch.zeros_like(rewards)
    if truncated is not None:
        assert truncation_values is not None, "truncated steps need their truncation_values"
        bootstrap = torch.where(truncated, truncation_values, bootstrap)
    next_advantage = torch.zeros_like(last_value)  # at the agent's next turn
    next_value = last_value  # at the agent's next turn
    pending_reward = torch.zeros_like(last_value)  # received after step t, before that turn
    for t in reversed(range(steps)):
        # After a finished episode the next value is the bootstrap (0 if it terminated).
        next_v = not_done[t] * next_value + (1.0 - not_done[t]) * bootstrap[t]
        carried = not_done[t] * next_advantage
        reward = rewards[t] if acting is None else rewards[t] + not_done[t] * pending_reward
        delta = reward + gamma * next_v - values[t]
        advantage = delta + gamma * gae_lambda * carried
        if acting is None:
            advantages[t] = next_advantage = advantage
            next_value = values[t]
        else:  # a step where the agent waits passes on what follows, its reward added
            turn = acting[t]
            if deferred is not None:
                advantage = torch.where(deferred[t], 0.0, advantage)
            advantages[t] = torch.where(turn, advantage, 0.0)
            next_advantage = torch.where(turn, advantage, carried)
            next_value = torch.where(turn, values[t], next_v)
            pending_reward = torch.where(turn, 0.0, reward)
    return advantages


def switched(switch: bool | torch.Tensor, on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """`on` where `switch` is true, else `off`. A bool picks one (callers whose switch is
    False need not compute `on`); a tensor (a sweep's switch per slot, 0-dim inside its
    `vmap`) selects with `torch.where`, so that one program serves both values."""
    if isinstance(switch, torch.Tensor):
        return torch.where(switch, on, off)
    return on if switch else off


def clamp_around(x: torch.Tensor, centre: float, radius: float | torch.Tensor) -> torch.Tensor:
    """`x` clamped to `centre ± radius`, a number or a 0-dim tensor (a sweep's per-slot
    value); torch types the two bounds' kinds apart, so each has its call."""
    if isinstance(radius, torch.Tensor):
        return x.clamp(centre - radius, centre + radius)
    return x.clamp(centre - radius, centre + radius)


def ppo_policy_loss(
    advantages: torch.Tensor,
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    clip_coef: float | torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Clipped surrogate: mean of -min(r·A, clip(r, 1±ε)·A), r = π_new/π_old. `clip_coef`
    may be a 0-dim tensor (a sweep's per-slot value)."""
    check_shapes("ppo_policy_loss", advantages.shape, new_log_probs=new_log_probs,
                 old_log_probs=old_log_probs, weights=weights)  # fmt: skip
    check_setting("ppo_policy_loss", "clip_coef", clip_coef)
    ratio = (new_log_probs - old_log_probs).exp()
    unclipped = ratio * advantages
    clipped = clamp_around(ratio, 1.0, clip_coef) * advantages
    return masked_mean(-torch.minimum(unclipped, clipped), weights)


def ppo_value_loss(
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    clip_coef: float | torch.Tensor,
    weights: torch.Tensor | None = None,
    huber_delta: float | torch.Tensor = 0.0,
    clip: bool | torch.Tensor = True,
) -> torch.Tensor:
    """Value loss, pessimistic over the raw and the clipped prediction.

    Per sample: max(ℓ(v - R), ℓ(v_old + clip(v - v_old, ±ε) - R)), with
    ℓ(e) = e²/2, or the Huber loss when `huber_delta > 0`. Each setting may be a
    0-dim tensor (a sweep's per-slot value, inside its `vmap`): then both forms
    are computed and `torch.where` picks, as a program cannot branch on a value.
    """

    check_shapes("ppo_value_loss", new_values.shape, old_values=old_values, returns=returns,
                 weights=weights)  # fmt: skip
    check_setting("ppo_value_loss", "clip_coef", clip_coef)
    check_setting("ppo_value_loss", "huber_delta", huber_delta)

    def error_loss(error: torch.Tensor) -> torch.Tensor:
        if isinstance(huber_delta, torch.Tensor):
            # q·(|e| - q/2), q = min(|e|, δ): e²/2 inside δ, δ·(|e| - δ/2) outside (torch's
            # Huber, whose delta must be a number), and e²/2 everywhere at δ = 0 (δ taken as
            # inf). One elementwise pass whatever each slot's δ.
            size = error.abs()
            delta = torch.where(huber_delta > 0, huber_delta, torch.inf)
            quadratic = torch.minimum(size, delta)
            return quadratic * (size - 0.5 * quadratic)
        if huber_delta > 0:
            return torch.nn.functional.huber_loss(
                error, torch.zeros_like(error), reduction="none", delta=huber_delta
            )
        return 0.5 * error.square()

    loss = error_loss(new_values - returns)
    if clip is not False:  # True, or a sweep's switch per slot
        clipped = old_values + clamp_around(new_values - old_values, 0.0, clip_coef)
        loss = switched(clip, torch.maximum(loss, error_loss(clipped - returns)), loss)
    return masked_mean(loss, weights)
