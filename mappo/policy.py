"""`Policy`: the decentralized actors, the centralized critic and the value normalizer.

Everything that acts or values, and nothing that learns: the trainer owns a
`Policy` and an optimizer over its parameters; evaluation, rendering and export
load a `Policy` from a checkpoint with `load_policy`, no trainer and no
optimizer. A recurrent policy carries one `RecurrentState`, whose `reset` is the
one rule for where hidden states restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from torch import nn

from mappo.buffer import RolloutMinibatch
from mappo.checkpoint import CheckpointError, load_trained, misfit_line, saved_config
from mappo.config import ConfigError, MappoConfig
from mappo.distributions import ActionDistribution
from mappo.envs.base import EnvSpec, MultiAgentEnv, MultiAgentStepResult
from mappo.networks import (
    Actor,
    CentralizedCritic,
    CriticImageEncoder,
    ImageEncoder,
    LocalCritic,
    picture_order,
)
from mappo.value_norm import ValueNorm


def policy_groups(agent_names: tuple[str, ...], share_policy: bool, prefixes: str) -> list[int]:
    """Policy index of each agent slot: by name prefix when given, else shared or one each."""
    if not prefixes:
        return [0] * len(agent_names) if share_policy else list(range(len(agent_names)))
    groups = [p.strip() for p in prefixes.split(",") if p.strip()]
    index = []
    for name in agent_names:
        matches = [g for g, prefix in enumerate(groups) if name.startswith(prefix)]
        if not matches:
            raise ConfigError(
                f"config key 'policy_groups' = {prefixes!r}: agent '{name}' matches no prefix "
                f"(agents: {', '.join(agent_names)})"
            )
        index.append(matches[0])
    used = sorted(set(index))
    return [used.index(g) for g in index]  # drop prefixes no agent uses


def env_facts(spec: EnvSpec, use_global_state: bool, time_left: bool = False) -> dict[str, int]:
    """The config fields an env fixes: `num_agents`, `obs_dim`, `global_state_dim` (the
    critic's input: the env's state, or all observations concatenated, and with
    `time_left` one more number, the fraction of the time limit left), `action_dim`."""
    concat = spec.num_agents * spec.obs_dim
    return {
        "num_agents": spec.num_agents,
        "obs_dim": spec.obs_dim,
        "global_state_dim": (spec.state_dim if use_global_state else concat) + time_left,
        "action_dim": spec.action.logits_dim,
    }


def time_left(episode_steps: torch.Tensor, time_limit: int) -> torch.Tensor:
    """The fraction of the time limit left after `episode_steps` `[B]` steps, `[B, 1]`:
    1 at an episode's first observation, 0 at the one that reaches the limit."""
    return (1.0 - episode_steps / time_limit).clamp_min(0.0).unsqueeze(-1)


def uses_cnn(spec: EnvSpec, config: MappoConfig) -> bool:
    """Whether the actors encode observations with a CNN: `encoder` cnn, or auto on an
    image env; `encoder = cnn` on vector observations is a `ConfigError`."""
    if config.encoder == "cnn" and not spec.obs_shape:
        raise ConfigError(
            f"config key 'encoder' = 'cnn': env '{spec.name}' observes vectors of "
            f"{spec.obs_dim} numbers, not images (Boxes with 3 axes); use encoder = auto or mlp"
        )
    return bool(spec.obs_shape) and encodes_as_image(spec.obs_shape, spec.obs_dtype, spec, config)


def encodes_as_image(
    shape: tuple[int, ...], dtype: torch.dtype, spec: EnvSpec, config: MappoConfig
) -> bool:
    """Whether a 3-axis input of `shape` goes through a CNN: `encoder` cnn, or auto where it
    is pixels (uint8: its axis order is then read or asked for) or reads as a picture
    otherwise. Boards such as tic-tac-toe's int8 (3, 3, 2) planes go flat into the MLP."""
    if config.encoder != "auto":
        return config.encoder == "cnn"
    said = config.image_layout != "auto" or spec.image_layout is not None
    return said or dtype == torch.uint8 or picture_order((shape[0], shape[1], shape[2])) is not None


def critic_images(spec: EnvSpec, config: MappoConfig) -> tuple[int, ...]:
    """What a centralized critic reads as images, `(n, *image shape)`, or () for a vector:
    every agent's image observation concatenated (n = A), or the env's own image state
    (n = 1). The encoder field rules both, as it does the actors'."""
    if config.encoder == "mlp" or config.critic == "local":
        return ()
    if config.use_global_state and spec.state_source == "env":
        shape, n, dtype = spec.state_shape, 1, spec.state_dtype
    else:
        shape, n, dtype = spec.obs_shape, spec.num_agents, spec.obs_dtype
    return (n, *shape) if shape and encodes_as_image(shape, dtype, spec, config) else ()


def critic_starts(episode_start: torch.Tensor) -> torch.Tensor:
    """Where the critic's state restarts, `[..., A]` → `[...]`: where every agent of the
    env starts an episode, i.e. the env was reset (the critic sees the whole env)."""
    return episode_start.all(-1)


def episode_starts(result: MultiAgentStepResult, ever_alive: torch.Tensor) -> torch.Tensor:
    """Where agents start an episode with their next action, `[E, A]`, which is where their
    recurrent state restarts: the agent's episode ended with this step (`agent_done`),
    or it is alive now for the first time in its env's episode (it joined late).
    `ever_alive` `[E, A]` marks the agents alive at some step of the episode so far."""
    return result.agent_done | (result.alive & ~ever_alive)


class RecurrentState(NamedTuple):
    """Hidden states of a recurrent policy: actor `[B, A, H]`, critic `[B, C]` (centralized)
    or `[B, A, C]` (local: one per agent, like the actor's). C is the critic's GRU width:
    H, or 0 for a feed-forward critic beside a recurrent actor, whose empty state passes
    through it unchanged."""

    actor: torch.Tensor
    critic: torch.Tensor

    @classmethod
    def zeros(
        cls,
        batch: int,
        agents: int,
        hidden: int,
        device: torch.device,
        local_critic: bool = False,
        critic_hidden: int | None = None,
    ) -> RecurrentState:
        """The state at the start of every episode (`critic_hidden` wide for the critic,
        `hidden` by default)."""
        width = hidden if critic_hidden is None else critic_hidden
        critic = (batch, agents, width) if local_critic else (batch, width)
        return cls(
            torch.zeros(batch, agents, hidden, device=device), torch.zeros(critic, device=device)
        )

    def reset(self, episode_start: torch.Tensor) -> RecurrentState:
        """Cleared where episodes start: each agent's by `episode_start` `[B, A]`, the
        critic's by `critic_starts` (a local critic's per agent, as the actor's)."""
        per_agent = self.critic.dim() == self.actor.dim()
        critic_start = episode_start if per_agent else critic_starts(episode_start)
        return RecurrentState(
            self.actor * ~episode_start.unsqueeze(-1), self.critic * ~critic_start.unsqueeze(-1)
        )


class PolicyStep(NamedTuple):
    """One step of actor and critic on a batch of envs."""

    params: torch.Tensor  # [B, A, K]: logits or Gaussian means
    values: torch.Tensor  # [B, A], the critic's own (normalized) units
    state: RecurrentState | None  # after the step
    used_state: RecurrentState | None  # the step started from (reset applied)


class Policy(nn.Module):
    """Actor, critic and value normalizer of one env's layout and one config.

    `spec` fixes the agents, observation and action layout; `config` the
    networks (`hidden_dim`, `recurrent`, layer norms, policy sharing, ...).
    """

    def __init__(
        self, spec: EnvSpec, config: MappoConfig, critic_view: tuple[int, ...] | None = None
    ) -> None:
        super().__init__()
        config.decided("critic_time_left")  # read by critic_input; refused while auto
        agent_id = config.decided("agent_id")
        self.spec, self.config = spec, config
        self.action_spec = spec.action
        self.local_critic = config.critic == "local"
        # The global input a centralized critic reads, matched to the env; a local critic
        # reads the observations, which the rollout stores anyway, so it needs none.
        self.state_dim = 0 if self.local_critic else config.global_state_dim
        group_of_agent = policy_groups(spec.agent_names, config.share_policy, config.policy_groups)
        cnn = uses_cnn(spec, config)

        def encoder() -> ImageEncoder | None:  # the actor's and a local critic's, each its own
            return (
                ImageEncoder(
                    group_of_agent,
                    spec.obs_shape,
                    config.image_layout,
                    said=spec.image_layout,
                    env=spec.name,
                )
                if cnn
                else None
            )

        # What the centralized critic reads as images, `(n, *shape)` or (); a checkpoint's
        # own when loading one (its env's image state is unknown to an env built to act).
        self.critic_view = (
            critic_images(spec, config) if critic_view is None else tuple(critic_view)
        )
        self.actor = Actor(
            spec.obs_dim,
            group_of_agent,
            config.hidden_dim,
            spec.action,
            config.activation,
            config.policy_head_gain,
            config.recurrent,
            config.input_layer_norm,
            config.hidden_layer_norm,
            agent_id,
            encoder(),
        )
        # IPPO's critics follow the actor's sharing and agent-id rules: the flag changes
        # what a critic sees and nothing else, so the comparison isolates that.
        self.critic = (
            LocalCritic(
                spec.obs_dim,
                group_of_agent,
                config.hidden_dim,
                config.activation,
                self.critic_hidden_dim > 0,
                config.input_layer_norm,
                config.hidden_layer_norm,
                agent_id,
                encoder(),
            )
            if self.local_critic
            else CentralizedCritic(
                self.state_dim,
                config.hidden_dim,
                spec.num_agents,
                config.activation,
                self.critic_hidden_dim > 0,
                config.input_layer_norm,
                config.hidden_layer_norm,
                CriticImageEncoder(
                    self.critic_view[0],
                    self.critic_view[1:],
                    config.image_layout,
                    said=spec.image_layout,
                    env=spec.name,
                )
                if self.critic_view
                else None,
            )
        )
        self.value_norm = ValueNorm(config.value_norm_beta, enabled=config.value_norm)

    @property
    def recurrent(self) -> bool:
        """Whether actor and critic carry a `RecurrentState`."""
        return self.config.recurrent

    @property
    def critic_hidden_dim(self) -> int:
        """The critic's GRU width: `hidden_dim`, or 0 for a feed-forward critic."""
        return self.config.hidden_dim if self.recurrent and self.config.critic_recurrent else 0

    def initial_state(self, num_envs: int) -> RecurrentState | None:
        """Zero hidden states for `num_envs` envs, or None for a feed-forward policy."""
        if not self.recurrent:
            return None
        device = self.critic.head.weight.device
        return RecurrentState.zeros(
            num_envs,
            self.spec.num_agents,
            self.config.hidden_dim,
            device,
            self.local_critic,
            self.critic_hidden_dim,
        )

    # --- acting ----------------------------------------------------------------

    @property
    def critic_input_dtype(self) -> torch.dtype:
        """The dtype of `critic_input`'s global view: the env's state's, or the observations'
        (uint8 for images, which the critic's encoder turns into floats)."""
        return self.spec.state_dtype if self.config.use_global_state else self.spec.obs_dtype

    def critic_input(
        self,
        obs: torch.Tensor,
        state: torch.Tensor | None,
        episode_steps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The critic's view: `[B, S]`, the env's global state or all observations
        concatenated, then with `critic_time_left` the fraction of the time limit left
        after `episode_steps` `[B]`; a local critic's is the observations themselves,
        `[B, A, O]`."""
        if self.local_critic:
            return obs
        view = state if self.config.use_global_state else obs.flatten(1)
        assert view is not None, "a critic on the global state needs the env's state"
        if not self.config.critic_time_left:
            return view
        # resolve_auto leaves critic_time_left on only for envs with a time limit.
        assert episode_steps is not None and self.spec.max_episode_steps is not None
        left = time_left(episode_steps, self.spec.max_episode_steps)
        return torch.cat([view.to(left.dtype), left], dim=-1)

    def distribution(self, params: torch.Tensor, mask: torch.Tensor) -> ActionDistribution:
        """The action distribution of actor outputs `params` `[..., A, K]` under `mask`."""
        log_std = self.actor.agent_log_std() if self.action_spec.kind == "continuous" else None
        return ActionDistribution(self.action_spec, params, mask, log_std)

    def step(
        self,
        obs: torch.Tensor,
        critic_in: torch.Tensor,
        state: RecurrentState | None,
        episode_start: torch.Tensor,
        acting: torch.Tensor | None = None,
    ) -> PolicyStep:
        """Actor and critic on obs `[B, A, O]` and `critic_input`; a recurrent policy
        continues from `state` reset where `episode_start` `[B, A]`. In a turn-based env
        an agent's hidden states advance only where it is `acting` `[B, A]`."""
        if state is None:
            return PolicyStep(self.actor(obs), self.critic(critic_in), None, None)
        used = state.reset(episode_start)
        params, actor_hidden = self.actor.forward_recurrent(obs, used.actor)
        values, critic_hidden = self.critic.forward_recurrent(critic_in, used.critic)
        after = self._advanced(used, RecurrentState(actor_hidden, critic_hidden), acting)
        return PolicyStep(params, values, after, used)

    def _advanced(
        self, before: RecurrentState, after: RecurrentState, acting: torch.Tensor | None
    ) -> RecurrentState:
        """`after`, kept at `before` for agents that did not act in a turn-based env (the
        per-agent states: the actor's, a local critic's; a centralized critic sees the
        whole env and advances at every step)."""
        if acting is None or not self.spec.turn_based:
            return after
        acted = acting.unsqueeze(-1)  # [B, A, 1]

        def per_agent(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            return torch.where(acted, new, old) if new.dim() == acted.dim() else new

        return RecurrentState(
            per_agent(before.actor, after.actor), per_agent(before.critic, after.critic)
        )

    @torch.no_grad()
    def value(self, critic_in: torch.Tensor, state: RecurrentState | None = None) -> torch.Tensor:
        """Per-agent value in return units, `[B, A]`; a recurrent critic continues from
        `state`, the state after the step that reached `critic_in`."""
        if state is None:
            values = self.critic(critic_in)
        else:
            values, _ = self.critic.forward_recurrent(critic_in, state.critic)
        return self.value_norm.denormalize(values)

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """Policy actions `[B, A, D]` in the env's format (`[B, A]` for a single Discrete)."""
        single = self.action_spec.kind == "discrete" and self.action_spec.action_dim == 1
        return action.squeeze(-1) if single else action

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        mask: torch.Tensor,
        state: RecurrentState | None = None,
        episode_start: torch.Tensor | None = None,
        deterministic: bool = False,
        acting: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, RecurrentState | None]:
        """Env-format actions of the decentralized actors for obs `[B, A, O]`, and the
        recurrent state after the step (None for a feed-forward policy).

        A recurrent actor continues from `state` (zeros when None) reset where
        `episode_start` `[B, A]`, advancing (in a turn-based env) only where `acting`
        `[B, A]`; the critic takes no part. Inputs of another kind or shape are refused
        naming theirs (a numpy array, another env's observations).
        """
        A, spec = self.spec.num_agents, self.spec
        for name, given, last in (("obs", obs, (A, spec.obs_dim)),
                                  ("mask", mask, (A, spec.action.logits_dim))):  # fmt: skip
            if not isinstance(given, torch.Tensor) or given.dim() != 3 or given.shape[1:] != last:
                what = (
                    list(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__
                )
                raise ValueError(
                    f"Policy.act: {name} is {what}, not a tensor [B, {last[0]}, {last[1]}] "
                    f"(B env copies of env '{spec.name}')"
                )
        if self.recurrent:
            if state is None:
                state = self.initial_state(obs.shape[0])
                assert state is not None  # a recurrent policy's initial state: zeros
            if episode_start is not None:
                state = state.reset(episode_start)
            params, actor_hidden = self.actor.forward_recurrent(obs, state.actor)
            state = self._advanced(state, state._replace(actor=actor_hidden), acting)
        else:
            params = self.actor(obs)
        dist = self.distribution(params, mask)
        return self.env_action(dist.mode() if deterministic else dist.sample()), state

    # --- learning --------------------------------------------------------------

    def evaluate(self, mb: RolloutMinibatch) -> tuple[ActionDistribution, torch.Tensor]:
        """Action distribution and critic values (own units) of a minibatch, with gradients.

        Feed-forward rows are `[B, ...]`. Recurrent rows are sequences
        `[B, L, ...]` run from their stored start states, reset as
        `RecurrentState.reset` does; only the GRU recurrence loops over L.
        """
        critic_in = mb.obs if self.local_critic else mb.state
        if mb.actor_hidden is None:
            return self.distribution(self.actor(mb.obs), mb.action_mask), self.critic(critic_in)
        # Recurrent minibatches carry every start state and their episode starts.
        assert mb.critic_hidden is not None and mb.episode_start is not None
        params = self.actor.unroll(mb.obs, mb.actor_hidden, mb.episode_start, mb.acting)
        if self.local_critic:
            critic = cast(LocalCritic, self.critic)
            values = critic.unroll(critic_in, mb.critic_hidden, mb.episode_start, mb.acting)
        else:
            values = self.critic.unroll(
                critic_in, mb.critic_hidden, critic_starts(mb.episode_start)
            )
        return self.distribution(params, mb.action_mask), values

    # --- persistence -----------------------------------------------------------

    def state_dicts(self) -> dict[str, Any]:
        """The checkpoint's `actor`, `critic` and `value_norm` entries."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "critic_view": list(self.critic_view),
        }

    def load_state_dicts(self, payload: dict[str, Any]) -> None:
        """Restore what `state_dicts` saved (raises on a shape mismatch)."""
        self.actor.load_state_dict(payload["actor"])
        self.critic.load_state_dict(payload["critic"])
        self.value_norm.load_state_dict(payload["value_norm"])


def load_policy(
    path: str | Path,
    make_env: Callable[[MappoConfig], MultiAgentEnv],
    device: str | None = None,
) -> tuple[Policy, MultiAgentEnv]:
    """The trained `Policy` of a checkpoint file and the env it acts in.

    `make_env(config)` builds the env from the run's config (with `device` in
    place of the run's when given); no trainer and no optimizer are built. A
    checkpoint whose config or weights do not fit that env is refused with a
    `CheckpointError` naming the file.
    """
    path = Path(path)
    payload = load_trained(path)
    if (
        device is None
        and payload["config"].get("device") == "cuda"
        and not torch.cuda.is_available()
    ):
        device = "cpu"  # a run trained on a GPU, acted with where there is none
    config = saved_config(payload, path, **({} if device is None else {"device": device}))
    require_usable_device(config.device)
    env = make_env(config)
    try:
        spec = env.spec
        facts = env_facts(spec, config.use_global_state)
        # Acting never reads the critic, which keeps the checkpoint's input size: the env
        # need not produce a global state (eval and render build it without one).
        del facts["global_state_dim"]
        matched = config.matched_to_env(spec.name, **facts)
        policy = Policy(spec, matched, payload.get("critic_view"))
        policy.load_state_dicts(payload)
    except (ConfigError, RuntimeError, KeyError, ValueError) as err:
        env.close()
        raise CheckpointError(
            f"checkpoint {path} does not fit env '{config.env}': {misfit_line(err)}"
        ) from None
    return policy.to(config.device).eval(), env


def require_usable_device(device: str, flag: str | None = None) -> None:
    """Refuse, in one line naming `flag` (default: the config key), a CUDA `device` where
    this torch has none (a CPU build, no GPU): torch's own error is an assertion deep in the
    first tensor moved there."""
    if device == "cuda" and not torch.cuda.is_available():
        given = f"{flag} cuda" if flag else "config key 'device' = 'cuda'"
        raise ConfigError(f"{given}: this torch has no usable CUDA device; use 'cpu'")
