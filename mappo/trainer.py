"""`MappoTrainer`: collect a batched rollout, then update actor and critic with PPO.

The only Python loops on the hot path are over rollout steps, epochs and
minibatches; every env and agent is a row of one tensor.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch

from mappo.buffer import AgentBuffer, RolloutMinibatch
from mappo.checkpoint import load_trained, misfit_line, saved_config
from mappo.config import ConfigError, MappoConfig
from mappo.distributed import Distributed
from mappo.envs.base import (
    EnvError,
    MultiAgentEnv,
    MultiAgentStepResult,
    checked_global_state,
    checked_reset,
    checked_start,
    checked_step,
)
from mappo.envs.registry import make_env
from mappo.episodes import DRAW, WIN, EpisodeTracker, return_definition, team_rewards
from mappo.errors import CheckpointError, DivergenceError, EnvMismatchError
from mappo.evaluation import MAX_EVAL_ENVS, evaluate
from mappo.losses import masked_mean, ppo_policy_loss, ppo_value_loss
from mappo.memory import keep_freed_memory
from mappo.policy import (
    Policy,
    RecurrentState,
    env_facts,
    episode_starts,
    require_usable_device,
)
from mappo.reward_norm import RewardNorm
from mappo.task_settings import resolve_auto

logger = logging.getLogger(__name__)
RANK_SEED_STRIDE = 1_000_003  # rank r seeds its envs and sampling with seed + r * stride
COMPILE_MIN_STEPS = 200_000  # below this, compiling (20 s to a minute cold) costs more than saved
# `compile = auto` leaves recurrent updates eager: their GRU unrolled over a chunk builds for
# minutes on a CPU (over 5 min for JaxMARL's SMAX config) to gain about a tenth in speed.
EVAL_SEED_OFFSET = 500_001  # evaluation envs: seed + this, between ranks 0 and 1's seeds
# What a learner does between its update (and evaluation) and the next rollout: the run
# logs the update and may draw the curve and save a checkpoint (seconds for a large one).
SAVING_PHASE = "saving the update (metrics, curve, checkpoint)"


# Diagnostics of minibatch steps by `MappoMetrics` field name: each a tensor `[]`, or `[K]`
# with K seeds in one step.
LossStats = dict[str, torch.Tensor]


def add_stats(totals: LossStats, stats: LossStats) -> LossStats:
    """`totals` + `stats`, name by name (`stats` itself when `totals` is empty)."""
    return {name: totals[name] + value for name, value in stats.items()} if totals else stats


@dataclass
class MappoMetrics:
    """Diagnostics of one update (losses averaged over its minibatches)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float = 0.0
    clip_fraction: float = 0.0
    explained_variance: float = 0.0
    grad_norm: float = 0.0
    # Of the episodes finished this rollout: mean per-agent return, or team return with
    # team_reward (episodes.return_label).
    episode_return: float = math.nan
    return_definition: str = "per_agent"  # "team" with team_reward
    episodes: int = 0
    # Fraction of those episodes won, for envs that report a win (SMAX); NaN otherwise.
    win_rate: float = math.nan
    # In a zero-sum game (every finished episode's own returns summed to 0, one at least
    # decided: tic-tac-toe), the fraction of those episodes the first seat won, the second
    # seat won, and all drew (episodes.seat_outcomes); NaN otherwise. With more seats the
    # rest of the episodes were won by the others.
    first_seat_win_rate: float = math.nan
    second_seat_win_rate: float = math.nan
    draw_rate: float = math.nan
    # Fraction of those episodes in which any agent was paid a nonzero reward (sparse tasks).
    rewarded_fraction: float = math.nan
    # Mean return of eval_episodes greedy episodes when an evaluation ran after this update.
    eval_return: float = math.nan
    env_steps: int = 0  # total so far; one env step = every agent of one env acting once
    steps_per_second: float = 0.0
    env_time: float = 0.0  # seconds in env.step this rollout
    inference_time: float = 0.0  # seconds in actor and critic forward passes this rollout
    update_time: float = 0.0  # seconds in the whole PPO update
    forward_time: float = 0.0  # of which in minibatch forward passes and losses
    backward_time: float = 0.0  # of which in backward passes and optimizer steps
    # (Both NaN with several seeds in one process: there a minibatch step is one program.)

    def as_dict(self) -> dict[str, float | str]:
        """Field name → value, in declaration order."""
        return dataclasses.asdict(self)


class LossCoefs(NamedTuple):
    """The settings of `MappoTrainer.minibatch_loss`: Python numbers from one config
    (`of`), or, in a sweep's batched loss, a tensor for each setting its slots differ in
    (one value per slot, `[K]` outside `vmap` and 0-dim inside), so that one program
    serves every slot's values."""

    ent_coef: float | torch.Tensor
    vf_coef: float | torch.Tensor
    clip_coef: float | torch.Tensor
    clip_value_loss: bool | torch.Tensor
    huber_delta: float | torch.Tensor
    norm_adv: bool | torch.Tensor

    @classmethod
    def of(cls, config: MappoConfig) -> LossCoefs:
        """The loss settings of `config`, as Python numbers."""
        return cls(*(getattr(config, name) for name in cls._fields))


def anneal_learning_rate(
    optimizer: torch.optim.Optimizer, config: MappoConfig, env_steps: int
) -> None:
    """With `anneal_lr`, set the learning rate for the update after `env_steps` steps: `lr`
    decayed linearly to zero at `total_steps`. (A sweep calls it once per slot, on the
    slot's own optimizer, with the slot's own config.)"""
    if config.anneal_lr:
        fraction = 1.0 - env_steps / config.total_steps
        for group in optimizer.param_groups:
            group["lr"] = fraction * config.lr


class MappoTrainer:
    """MAPPO: decentralized actors (shared, per agent) and a centralized critic (IPPO with
    `critic = local`: a critic per agent on its own observation).

    Build it from a config (the env is made from `config.env`) or hand it an
    env. `train()` runs to `config.total_steps`; `collect_rollout()` and
    `update()` are the two halves of one iteration.
    """

    def __init__(
        self,
        config: MappoConfig,
        env: MultiAgentEnv | None = None,
        distributed: Distributed | None = None,
    ) -> None:
        require_usable_device(config.device)
        if env is not None and not isinstance(env, MultiAgentEnv):  # before any work
            raise ConfigError(
                f"env: {type(env).__name__} is not a mappo MultiAgentEnv; give one (a "
                "PettingZoo env: mappo.PettingZooWrapper(make_env, num_envs)), or none to build "
                "config.env"
            )
        self.dist = distributed or Distributed()
        torch.manual_seed(config.seed)
        if config.torch_threads:
            torch.set_num_threads(config.torch_threads)
        self.device = torch.device(config.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # large temporaries reuse the heap, not fresh pages
        # Each rank has its own envs and seed stream; rank 0 matches a single process.
        rank_seed = config.seed + RANK_SEED_STRIDE * self.dist.rank
        self.env = env or make_env(
            config.env,
            config.num_envs,
            self.device,
            rank_seed,
            config.env_kwargs,
            num_workers=config.num_workers,
            use_state=config.critic_uses_state,
        )
        try:
            self._set_up(config, rank_seed, handed_env=env is not None)
        except BaseException:
            if env is None:  # ours to close: no worker processes left behind a refusal
                self.env.close()
            raise

    def _set_up(self, config: MappoConfig, rank_seed: int, handed_env: bool) -> None:
        """Everything built after the env, which it decides: the config matched to it, the
        policy, optimizer and buffer, the first observations and the evaluation envs."""
        spec = self.env.spec
        # The `auto` settings decided for this env, and the line that says so.
        config, self.auto_settings = resolve_auto(config, spec)
        self.config = config.matched_to_env(
            spec.name,
            **env_facts(spec, config.critic_uses_state, config.decided("critic_time_left")),
            num_envs=self.env.num_envs,
        )
        cfg = self.config
        self._warn_about_flags_without_effect()
        self.policy = Policy(spec, cfg).to(self.device)
        self.reward_norm = RewardNorm(spec.num_agents, enabled=cfg.reward_norm).to(self.device)
        self.parameters = [p for p in self.policy.parameters() if p.requires_grad]
        self.dist.broadcast_parameters(self.parameters)
        if self.dist.world_size > 1:
            torch.manual_seed(rank_seed)  # own sampling and minibatch streams per rank
        # The fused kernel updates every parameter in one call; the default loops per tensor.
        self.optimizer = torch.optim.Adam(self.parameters, lr=cfg.lr, eps=cfg.adam_eps, fused=True)
        discrete = spec.action.kind == "discrete"
        self.buffer = AgentBuffer(
            cfg.rollout_steps,
            self.env.num_envs,
            spec.num_agents,
            spec.obs_dim,
            self.policy.state_dim,
            spec.action.action_dim,
            spec.action.logits_dim,
            torch.long if discrete else torch.float32,
            self.device,
            recurrent_hidden_dim=cfg.hidden_dim if cfg.recurrent else 0,
            local_critic=self.policy.local_critic,
            critic_hidden_dim=self.policy.critic_hidden_dim,
            obs_dtype=spec.obs_dtype,
            state_dtype=self.policy.critic_input_dtype,
            turn_based=spec.turn_based,
        )
        self.env_steps = 0
        self.updates = 0
        self.phase = "starting"  # what the trainer is doing, for messages during long waits
        self.rollout_seed = 0  # its one seed's (`Learner`)
        self.compiled = cfg.compile == "true" or (  # the minibatch loss runs compiled
            cfg.compile == "auto" and cfg.total_steps >= COMPILE_MIN_STEPS and not cfg.recurrent
        )
        self._loss_fn = self.compile_loss(self.minibatch_loss)
        self._obs = checked_reset(self.env, rank_seed)  # [E, A, O]
        self._state = checked_global_state(self.env)  # [E, S]
        self._mask, self._alive = checked_start(self.env)  # [E, A, K], [E, A]
        self._episode_steps = torch.zeros(
            self.env.num_envs, dtype=torch.long, device=self.device
        )  # [E], steps into the episode
        self.episodes = EpisodeTracker(self._alive, cfg.decided("team_reward"), spec.turn_based)
        # Recurrent state after the last step (None if feed-forward), and which agents start
        # an episode now.
        self._recurrent_state = self.policy.initial_state(self.env.num_envs)
        self._episode_start = torch.ones_like(self._alive)  # [E, A]
        self._times = {"env": 0.0, "inference": 0.0}
        # Evaluation during training, on rank 0 only (every rank holds the same weights), in
        # copies of `config.env` (also when this trainer was handed its env: checked alike).
        self.eval_seed = cfg.seed + EVAL_SEED_OFFSET
        self.best_eval_return = -math.inf  # the run's caller decides what is kept as best
        self.eval_env: MultiAgentEnv | None = None
        if cfg.eval_interval and self.dist.is_main:
            with self._rng_of_its_own():
                self.eval_env = make_env(
                    cfg.env,
                    min(cfg.eval_episodes, MAX_EVAL_ENVS),
                    self.device,
                    self.eval_seed,
                    cfg.env_kwargs,
                    use_state=False,  # only the actors act
                )
            if handed_env:
                self._check_eval_env_matches(self.eval_env)

    def _check_eval_env_matches(self, eval_env: MultiAgentEnv) -> None:
        """Refuse evaluation envs (copies of `config.env`) that differ from the env this
        trainer was handed: an evaluation would fail on another shape, or score another
        task (another episode limit) without a word."""
        ours, theirs = self.env.spec, eval_env.spec
        differ = [
            f"{f.name} {getattr(theirs, f.name)!r} against {getattr(ours, f.name)!r}"
            for f in dataclasses.fields(ours)
            if f.name != "name" and getattr(ours, f.name) != getattr(theirs, f.name)
        ]
        if differ:
            eval_env.close()
            cfg = self.config
            raise ConfigError(
                f"config key 'eval_interval' = {cfg.eval_interval}: evaluation plays copies of "
                f"config.env {cfg.env!r} (env_kwargs {cfg.env_kwargs}), which differ from the "
                f"env given to MappoTrainer ({'; '.join(differ[:3])}): set env and env_kwargs "
                "to build that env, or eval_interval = 0"
            )

    def _rng_of_its_own(self) -> Any:
        """A context in which torch's random streams (CPU and this run's GPU) are saved and
        restored, so that evaluation leaves training's draws exactly as they would be."""
        return torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else [])

    def evaluate_policy(self) -> float:
        """Mean return of `eval_episodes` greedy episodes of the current policy on the
        evaluation envs (`mappo eval`'s code path).

        Every evaluation replays the same episodes from a reset with `eval_seed`,
        so evaluations compare with each other and a resumed run repeats them;
        the training envs and the torch RNG stream of training are not touched.
        """
        if self.eval_env is None:
            raise ConfigError("evaluation during training needs eval_interval > 0 (on rank 0)")
        with self._rng_of_its_own():
            returns = evaluate(
                self.policy,
                self.eval_env,
                self.config.eval_episodes,
                deterministic=True,
                seed=self.eval_seed,
            )
        return statistics.fmean(returns)

    def evaluate_if_due(self, steps_before: int) -> float:
        """`evaluate_policy` when the last update crossed a multiple of `eval_interval`
        (it started at `steps_before` env steps), else NaN."""
        interval = self.config.eval_interval
        if self.eval_env is not None and self.env_steps // interval > steps_before // interval:
            return self.evaluate_policy()
        return math.nan

    def close(self) -> None:
        """Close the training envs and the evaluation envs."""
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

    def _warn_about_flags_without_effect(self) -> None:
        """One warning line for each field the user set that this env or config ignores."""
        cfg, spec = self.config, self.env.spec
        ignored = {
            "use_global_state": (
                "use_global_state has no effect with critic = local: each agent's critic "
                "sees its own observation"
                if cfg.critic == "local"
                else cfg.use_global_state
                and spec.state_source == "concat_obs"
                and f"env '{spec.name}' has no global state of its own: use_global_state = "
                "true has no effect, the critic sees all observations concatenated"
            ),
            "num_workers": cfg.num_workers != getattr(self.env, "num_workers", 0)
            and f"num_workers = {cfg.num_workers} has no effect: env '{spec.name}' steps "
            "all its copies in this process",
            "data_chunk_length": not cfg.recurrent
            and "data_chunk_length has no effect without recurrent = true",
            "critic_recurrent": not cfg.recurrent
            and "critic_recurrent has no effect without recurrent = true",
            "image_layout": not spec.obs_shape
            and not spec.state_shape
            and f"image_layout has no effect: env '{spec.name}' has no image observations",
        }
        for name, message in ignored.items():
            if name in cfg.given and message:
                logger.warning(message)

    @torch.no_grad()
    def collect_rollout(self) -> None:
        """Fill the buffer with `rollout_steps` steps of every env."""
        buf, env, policy = self.buffer, self.env, self.policy
        buf.clear()
        first_step = self.updates * self.config.rollout_steps + 1  # env.step calls, 0 = reset
        for t in range(self.config.rollout_steps):
            t0 = time.perf_counter()
            critic_in = policy.critic_input(self._obs, self._state, self._episode_steps)
            step = policy.step(
                self._obs, critic_in, self._recurrent_state, self._episode_start, self._alive
            )
            dist = policy.distribution(step.params, self._mask)
            critic_value = step.values  # [E, A], the critic's own units: the value clip's centre
            value = policy.value_norm.denormalize(critic_value)  # [E, A], in return units
            action = dist.sample()  # [E, A, D]
            log_prob = dist.log_prob(action)  # [E, A]
            t1 = time.perf_counter()
            result = checked_step(env, policy.env_action(action), first_step + t)
            t2 = time.perf_counter()
            reward, done, truncated = self.credit(result)
            truncation_value: torch.Tensor | float = 0.0
            if not self.config.bootstrap_time_limits:
                truncated = torch.zeros_like(truncated)  # a time limit ends it like a terminal
            elif bool(truncated.any()):
                # Bootstrap time-limit ends (of an env, or of one agent while its env goes on)
                # from the value of the final observation.
                truncation_value = policy.value(
                    policy.critic_input(
                        result.final_obs, result.final_state, self._episode_steps + 1
                    ),
                    step.state,
                )
            recurrent = (
                {}
                if step.used_state is None  # feed-forward
                else {
                    "actor_hidden": step.used_state.actor,
                    "critic_hidden": step.used_state.critic,
                    "episode_start": self._episode_start,
                }
            )
            buf.add(
                self._obs,
                action,
                log_prob,
                reward,
                done,
                value,
                state=None if policy.local_critic else critic_in,
                action_mask=self._mask,
                alive=self._alive,
                truncated=truncated,
                truncation_value=truncation_value,
                critic_value=critic_value,
                env_reward=result.reward,
                **recurrent,
            )
            self._recurrent_state = step.state
            self._episode_start = episode_starts(result, self.episodes.ever_alive)
            self._times["env"] += t2 - t1
            self._times["inference"] += (t1 - t0) + (time.perf_counter() - t2)
            self.episodes.step(
                result.reward, self._alive, result.env_done, result.alive, result.info.get("win")
            )
            self._obs, self._state = result.obs, result.state
            self._mask, self._alive = result.action_mask, result.alive
            self._episode_steps = torch.where(result.env_done, 0, self._episode_steps + 1)
        self._check_finite()
        self._check_legal_actions()
        self.env_steps += self.steps_per_update

    def credit(
        self, result: MultiAgentStepResult
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What one step means for learning, each `[E, A]`: reward, done and truncated as GAE
        credits them.

        Own rewards: an agent is credited with its reward until its episode ends.
        In a turn-based env (`spec.turn_based`) the rewards and flags of agents waiting
        for their turn are kept here; GAE credits them to each agent's last action (the
        team reward is then the mean over every slot, whoever acted).
        `team_reward`: every slot, alive or dead, is credited with its env's team
        reward until the env's episode ends, so an action that kills an agent is
        still credited with what the team earns after; a team episode ends cut by
        a time limit when some agent was truncated without terminating (one that dies on
        that step ends its own episode, not the team's).
        """
        if not self.config.team_reward:
            return result.reward, result.agent_done, result.truncated & ~result.terminated
        env_done = result.env_done.unsqueeze(-1)  # [E, 1]
        cut = env_done & (result.truncated & ~result.terminated).any(-1, keepdim=True)
        every_slot = result.reward.shape
        # In a turn-based env every agent in the game earns at every turn (as EpisodeTracker).
        earned = torch.ones_like(self._alive) if self.env.spec.turn_based else self._alive
        return (
            team_rewards(result.reward, earned),
            env_done.expand(every_slot),
            cut.expand(every_slot),
        )

    def _check_finite(self) -> None:
        """Refuse a rollout holding NaN or inf from the env, naming where it first appeared.

        One pass over the buffer per rollout instead of a device sync per step;
        the update, and so every write to disk, happens only after it.
        """
        buf, spec = self.buffer, self.env.spec
        rollout = slice(buf.carry_rows, None)  # the carry rows were checked when collected
        # A truncated agent is bootstrapped from the value of its final observation and
        # state, which are read nowhere else: NaN there shows as NaN in that value only.
        bootstraps = torch.where(buf.truncated, buf.truncation_values, 0.0)[rollout]
        fields = (
            ("reward", buf.env_rewards[rollout]),
            ("observation", buf.observations[rollout]),
            ("global state", buf.states[rollout]),
            ("final_obs or final_state (their value bootstraps a truncation)", bootstraps),
        )
        for field, values in fields:
            if not values.is_floating_point():  # uint8 images: every value is finite
                continue
            finite = torch.isfinite(values)
            if bool(finite.all()):
                continue
            first = (~finite).nonzero()[0].tolist()  # [t, e, a, ...] or [t, e, s]
            t, copy = first[0], first[1]
            agent = f"agent '{spec.agent_names[first[2]]}'" if field != "global state" else "state"
            value = values[tuple(first)].item()
            # Rewards at t come from step t+1; observations at t were returned by step t
            # (step 0 being the reset).
            step = self.updates * buf.rollout_steps + t + (field in ("reward", fields[3][0]))
            raise EnvError(
                f"env '{spec.name}' returned {value} in the {field} of {agent}, env copy "
                f"{copy}, at step {step} (counting env.step calls, 0 = reset)"
            )

    def _check_legal_actions(self) -> None:
        """Refuse a rollout in which an agent that acts was left no legal action (one of its
        sub-actions masked whole), naming where it first happened: its logits all masked
        alike, it drew among illegal actions, which the env took without a word."""
        buf, spec = self.buffer, self.env.spec
        if spec.action.kind != "discrete":
            return
        rollout = slice(buf.carry_rows, None)
        masks = buf.action_masks[rollout].split(spec.action.nvec, dim=-1)  # each [T, E, A, n]
        legal = torch.stack([sub.any(-1) for sub in masks], -1).all(-1)  # [T, E, A]
        stuck = buf.alive[rollout] & ~legal
        if not bool(stuck.any()):
            return
        t, copy, agent = stuck.nonzero()[0].tolist()
        step = self.updates * buf.rollout_steps + t  # masks at t came with step t's obs
        raise EnvError(
            f"env '{spec.name}' returned an action mask with no legal action for agent "
            f"'{spec.agent_names[agent]}', env copy {copy}, at step {step} (counting env.step "
            "calls, 0 = reset): an agent that acts needs a legal action (of each sub-action); "
            "mark one that cannot act as not alive"
        )

    # --- learning --------------------------------------------------------------

    def update(self) -> MappoMetrics:
        """PPO on the buffer: `update_epochs` passes of minibatches, one optimizer step each."""
        cfg, buf = self.config, self.buffer
        start = time.perf_counter()
        num_minibatches, chunk = self.prepare_update()
        totals: LossStats = {}
        forward_time = backward_time = 0.0
        for _ in range(cfg.update_epochs):
            for mb in buf.minibatches(num_minibatches, self.policy.value_norm.normalize, chunk):
                t0 = time.perf_counter()
                loss, mb_stats = self._minibatch_loss_fast(mb)
                t1 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.dist.average_gradients(self.parameters)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
                self.optimizer.step()
                totals = add_stats(totals, {**mb_stats, "grad_norm": grad_norm})
                forward_time += t1 - t0
                backward_time += time.perf_counter() - t1
        return self.finish_update(
            {name: total / (cfg.update_epochs * num_minibatches) for name, total in totals.items()},
            time.perf_counter() - start,
            forward_time,
            backward_time,
        )

    def prepare_update(self) -> tuple[int, int]:
        """The part of `update` before its minibatches: the rewards' scaling
        (`reward_norm`), GAE over the rollout and the value normalizer's update. Returns
        (minibatches per epoch, sequence length or 0)."""
        cfg, buf, policy = self.config, self.buffer, self.policy
        if cfg.reward_norm:
            # In place, the rollout's rows only: a turn-based env's carry rows hold rewards
            # scaled by the update that collected them.
            rollout = buf.rewards[buf.carry_rows : buf.step]  # [T, E, A]
            self.reward_norm.update(rollout, self.dist.sum)
            rollout.copy_(self.reward_norm.scale(rollout))
        critic_in = policy.critic_input(self._obs, self._state, self._episode_steps)
        hidden = self._recurrent_state
        # [E, A]. Turn-based: it completes the last turn of the agents to act now; the others'
        # open turns wait for their next turn (AgentBuffer's deferred turns).
        last_value = policy.value(
            critic_in, None if hidden is None else hidden.reset(self._episode_start)
        )
        buf.compute_returns_and_advantage(
            last_value, cfg.gamma, cfg.gae_lambda, next_acting=self._alive
        )
        policy.value_norm.update(buf.returns, buf.trained, self.dist.sum)
        samples = buf.rollout_steps * self.env.num_envs * self.env.num_agents
        chunk = cfg.data_chunk_length if cfg.recurrent else 0
        wanted = round(samples / cfg.minibatch_size) if cfg.minibatch_size else 1
        return min(buf.num_rows(chunk), max(1, wanted)), chunk

    def finish_update(
        self,
        mean_stats: LossStats,
        update_time: float,
        forward_time: float = 0.0,
        backward_time: float = 0.0,
    ) -> MappoMetrics:
        """The part of `update` after its minibatches: count it and gather its metrics, the
        minibatch steps' `mean_stats` (`minibatch_loss`'s and `grad_norm`) among them."""
        cfg = self.config
        # One device sync for all of them.
        stats = dict(zip(mean_stats, torch.stack(list(mean_stats.values())).tolist(), strict=True))
        # One minibatch's NaN or inf makes the mean so. A NaN norm makes clipping's factor NaN
        # and the optimizer has written it into the weights; an inf one means gradients past
        # float range, a run already lost: stop before any of it is logged or saved.
        if not math.isfinite(stats.get("grad_norm", 0.0)):
            seed = f" of seed {cfg.seed}" if self.dist.world_size == 1 else ""
            raise DivergenceError(
                f"training{seed} diverged at update {self.updates + 1} (env step "
                f"{self.env_steps:,}): its gradient norm is {stats['grad_norm']}, so the weights "
                f"are not numbers now; lower lr ({cfg.lr:g}) or max_grad_norm "
                f"({cfg.max_grad_norm:g}) and start it again with --force, as a resume keeps "
                "them"
            )
        self.updates += 1
        episode_return, episodes = self.episodes.pop_mean(self.dist.sum)
        win_rate, _ = self.episodes.pop_win_rate(self.dist.sum)
        rewarded_fraction, _ = self.episodes.pop_rewarded_fraction(self.dist.sum)
        outcomes = self.episodes.pop_outcomes(self.dist.sum)
        seat_rates = (
            {
                "first_seat_win_rate": outcomes.rate(0, WIN),
                "second_seat_win_rate": outcomes.rate(1, WIN),
                "draw_rate": outcomes.rate(0, DRAW),
            }
            if outcomes is not None
            else {}
        )
        metrics = MappoMetrics(
            **stats,
            explained_variance=self._explained_variance(),
            episode_return=episode_return,
            return_definition=return_definition(cfg.decided("team_reward")),
            episodes=episodes,
            win_rate=win_rate,
            **seat_rates,
            rewarded_fraction=rewarded_fraction,
            env_steps=self.env_steps,
            env_time=self._times["env"],
            inference_time=self._times["inference"],
            update_time=update_time,
            forward_time=forward_time,
            backward_time=backward_time,
        )
        self._times = {"env": 0.0, "inference": 0.0}
        self.buffer.carry_open_turns()  # a turn-based env's open turns, for the next update
        return metrics

    def compile_loss(self, loss: Callable[..., Any]) -> Callable[..., Any]:
        """`loss` compiled when this trainer compiles (`self.compiled`), else itself.

        Fused kernels make an update ~1.6x faster on CPU (benchmarks/throughput.py);
        one graph per minibatch size, of which a config has at most two. On CPU a C++
        wrapper calls the kernels instead of Python: 11 % more frames/s on JaxMARL's
        recurrent config (benchmarks/compare.py), 4 % on the default, for ~12 s more
        compiling.
        """
        if not self.compiled:
            return loss
        options: dict[str, str | int | bool | Callable[..., Any]] = {
            "cpp_wrapper": self.device.type == "cpu"
        }
        return torch.compile(loss, dynamic=False, options=options)

    def run_loss(self, compiled: Callable[..., Any], eager: Callable[..., Any], *args: Any) -> Any:
        """`compiled(*args)`; when compiling fails and `compile` is auto, a warning, and
        `eager(*args)` from then on (`self.compiled` turns False)."""
        if not self.compiled:
            return eager(*args)
        try:
            return compiled(*args)
        except Exception as err:  # torch.compile raises many types (no compiler, backend bug)
            if self.config.compile == "true":
                raise
            logger.warning(
                "torch.compile failed (%s); training continues without it",
                str(err).splitlines()[0] if str(err) else type(err).__name__,
            )
            self.compiled = False
            return eager(*args)

    def _minibatch_loss_fast(self, mb: RolloutMinibatch) -> tuple[torch.Tensor, LossStats]:
        """`minibatch_loss`, compiled when configured; `auto` falls back to eager on failure."""
        return self.run_loss(self._loss_fn, self.minibatch_loss, mb)

    def minibatch_loss(
        self, mb: RolloutMinibatch, coefs: LossCoefs | None = None
    ) -> tuple[torch.Tensor, LossStats]:
        """PPO loss of one minibatch, and its detached diagnostics by name (policy_loss,
        value_loss, entropy, approx_kl, clip_fraction: `MappoMetrics` fields).

        Every term is a mean over live agents only (`mb.weights`). `coefs` are the
        loss's settings, the config's when None; a sweep's batched loss gives each
        slot's as 0-dim tensors (`LossCoefs`).
        """
        c = LossCoefs.of(self.config) if coefs is None else coefs
        dist, new_values = self.policy.evaluate(mb)
        new_log_prob = dist.log_prob(mb.actions)  # [B, A] (recurrent: [B, L, A])
        entropy = masked_mean(dist.entropy(), mb.weights)
        advantages = mb.advantages
        if c.norm_adv is not False:  # True, or a sweep's switch per slot
            mean = masked_mean(advantages, mb.weights)
            scale = masked_mean((advantages - mean).square(), mb.weights).sqrt() + 1e-8
            if isinstance(c.norm_adv, torch.Tensor):  # (A - 0) / 1 is A, bit for bit
                mean = torch.where(c.norm_adv, mean, 0.0)
                scale = torch.where(c.norm_adv, scale, 1.0)
            advantages = (advantages - mean) / scale
        policy_loss = ppo_policy_loss(
            advantages, new_log_prob, mb.log_probs, c.clip_coef, mb.weights
        )
        value_loss = ppo_value_loss(
            new_values,
            mb.values,
            mb.returns,
            c.clip_coef,
            mb.weights,
            c.huber_delta,
            c.clip_value_loss,
        )
        loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        with torch.no_grad():
            log_ratio = new_log_prob - mb.log_probs
            ratio = log_ratio.exp()
            approx_kl = masked_mean((ratio - 1) - log_ratio, mb.weights)
            clip_fraction = masked_mean(((ratio - 1).abs() > c.clip_coef).float(), mb.weights)
        stats = {
            "policy_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy": entropy.detach(),
            "approx_kl": approx_kl,
            "clip_fraction": clip_fraction,
        }
        return loss, stats

    def _explained_variance(self) -> float:
        """1 - Var(returns - values) / Var(returns) over the samples of live agents."""
        w = self.buffer.trained.float()
        returns, values = self.buffer.returns, self.buffer.values
        mean = masked_mean(returns, w)
        var_returns = masked_mean((returns - mean).square(), w)
        residual = returns - values
        var_residual = masked_mean((residual - masked_mean(residual, w)).square(), w)
        return float(1.0 - var_residual / var_returns) if var_returns > 0 else math.nan

    def iteration(self) -> list[MappoMetrics]:
        """One rollout and one update (and an evaluation when one is due): `[metrics]`,
        the one seed of this trainer (`MultiSeedTrainer.iteration` returns K)."""
        anneal_learning_rate(self.optimizer, self.config, self.env_steps)
        start = time.perf_counter()
        steps_before = self.env_steps
        self.phase = "collecting a rollout"
        self.collect_rollout()
        self.phase = "updating"
        metrics = self.update()
        self.phase = "evaluating"
        metrics.steps_per_second = (self.env_steps - steps_before) / (time.perf_counter() - start)
        metrics.eval_return = self.evaluate_if_due(steps_before)
        self.phase = SAVING_PHASE
        return [metrics]

    @property
    def trainers(self) -> list[MappoTrainer]:
        """The seeds this trainer trains: itself (a `MultiSeedTrainer` has K)."""
        return [self]

    @property
    def steps_per_update(self) -> int:
        """Env steps one rollout adds: every env copy's `rollout_steps`, on every rank."""
        return self.config.rollout_steps * self.env.num_envs * self.dist.world_size

    def seed_state_dict(self, k: int = 0) -> dict[str, Any]:
        """`state_dict()`, seed `k` = 0 of `trainers` (as `MultiSeedTrainer.seed_state_dict`)."""
        if k != 0:
            raise IndexError(f"seed {k} of a trainer of one seed")
        return self.state_dict()

    def train(self, callback: Callable[[MappoMetrics], Any] | None = None) -> list[MappoMetrics]:
        """Alternate rollouts and updates until `config.total_steps` env steps are done.

        `callback(metrics)` runs after every update; returning True stops early.
        With `eval_interval`, an update that crosses a multiple of it is followed
        by `evaluate_policy`, its result in `metrics.eval_return`.
        """

        def each(metrics: list[MappoMetrics]) -> Any:
            return callback is not None and callback(metrics[0])

        return [metrics for (metrics,) in train_until_budget(self, each)]

    # --- persistence -----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training exactly where it stands, as tensors.

        Weights, optimizer, value normalizer and counters, plus per rank: the
        torch RNG and the rollout in flight (the env's `state_dict` where it has
        one, the current observations, the episodes' running returns). An env
        whose state lives in Python objects is kept by `pickled_env_state`
        instead, outside the checkpoint. With several ranks this is a collective
        call; rank 0 gets every rank's part.
        """
        own = {
            "torch_rng": torch.get_rng_state(),
            # Sampling on a GPU draws from its own generator.
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
            "env": self.env.state_dict(),
            "rollout": {
                "obs": self._obs,
                "state": self._state,
                "mask": self._mask,
                "alive": self._alive,
                **self.episodes.state_dict(),
                "episode_steps": self._episode_steps,
                "carry": self.buffer.carry_state(),
                "episode_start": self._episode_start,
                **(
                    {}
                    if self._recurrent_state is None
                    else {
                        "actor_hidden": self._recurrent_state.actor,
                        "critic_hidden": self._recurrent_state.critic,
                    }
                ),
            },
        }
        return {
            "config": self.config.to_dict(),
            "config_given": sorted(self.config.given),
            "config_auto_decided": sorted(self.config.auto_decided),
            **self.policy.state_dicts(),
            "reward_norm": self.reward_norm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "best_eval_return": self.best_eval_return,
            "ranks": self.dist.gather(own),
        }

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        resume_rollout: bool = True,
        distributed: Distributed | None = None,
        env: MultiAgentEnv | None = None,
        pickled_env: bytes | str | None = None,
        **config_changes: Any,
    ) -> tuple[MappoTrainer, dict[str, Any]]:
        """A trainer rebuilt from a checkpoint file: its config (with `config_changes`) and
        state.

        `resume_rollout` also restores the env and the episodes in flight (for
        `--resume`), from the checkpoint's env snapshot or from `pickled_env`
        (`load_state_dict`); without it, fresh episodes start. Returns the trainer
        and the raw payload. A checkpoint whose shapes do not fit the env its config
        builds is refused with a `CheckpointError`.
        """
        path = Path(path)
        payload = load_trained(path)
        config = saved_config(payload, path, **config_changes)
        try:
            trainer = cls(config, env=env, distributed=distributed)
        except EnvMismatchError as err:  # the saved env facts contradict the env it builds
            raise CheckpointError(
                f"checkpoint {path} does not fit env '{config.env}': {err}"
            ) from None
        try:
            trainer.load_state_dict(payload, resume_rollout, pickled_env)
        except (RuntimeError, KeyError, ValueError) as err:
            trainer.close()
            raise CheckpointError(
                f"checkpoint {path} does not fit env '{config.env}': {misfit_line(err)}"
            ) from None
        return trainer, payload

    def pickled_env_state(self) -> bytes | str | None:
        """Every rank's env copies pickled (`MultiAgentEnv.pickled_state`), for exact
        resumption: one blob on rank 0, or why some copy cannot be pickled; None on the
        other ranks and for envs without Python state. A collective call."""
        own: bytes | str | None
        try:
            own = self.env.pickled_state()
        except pickle.PicklingError as err:
            own = str(err)
        parts = self.dist.gather(own)
        if parts is None or all(part is None for part in parts):
            return None
        why = next((part for part in parts if isinstance(part, str)), None)
        return why if why is not None else pickle.dumps(parts)

    def load_state_dict(
        self,
        state: dict[str, Any],
        resume_rollout: bool = True,
        pickled_env: bytes | str | None = None,
    ) -> None:
        """Restore what `state_dict` saved (the config is the caller's to check).

        With `resume_rollout`, the env and the episodes in flight continue where
        they stood when the checkpoint has this rank's part and the env's
        snapshot: its `state_dict` in the checkpoint, or `pickled_env`, the blob
        `pickled_env_state` returned at the same moment (unpickled here: only
        for the user's own run). Otherwise fresh episodes start, with a warning
        saying why (`pickled_env` may be that reason).
        """
        self.policy.load_state_dicts(state)
        if "reward_norm" in state:  # checkpoints before it trained without
            self.reward_norm.load_state_dict(state["reward_norm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self.best_eval_return = float(state.get("best_eval_return", -math.inf))
        ranks = state["ranks"]
        if len(ranks) != self.dist.world_size:
            logger.warning(
                "checkpoint has %d rank(s), this run %d: episodes start afresh",
                len(ranks),
                self.dist.world_size,
            )
            return
        own = ranks[self.dist.rank]
        torch.set_rng_state(own["torch_rng"])
        if own.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda_rng"])
        if not resume_rollout:
            return
        why = self._restore_env(own["env"], pickled_env)
        if why is not None:
            logger.warning("episodes restart from a reset instead of continuing: %s", why)
            return
        rollout = {k: v.to(self.device) for k, v in own["rollout"].items() if k != "carry"}
        self._obs, self._state = rollout["obs"], rollout["state"]
        self._mask, self._alive = rollout["mask"], rollout["alive"]
        self.episodes.load_state_dict(rollout)
        self._episode_start = rollout["episode_start"]
        if "episode_steps" in rollout:  # checkpoints before it: counted from now on
            self._episode_steps = rollout["episode_steps"]
        self.buffer.load_carry_state(
            {k: v.to(self.device) for k, v in own["rollout"].get("carry", {}).items()}
        )
        if self._recurrent_state is not None:
            self._recurrent_state = RecurrentState(
                rollout["actor_hidden"], rollout["critic_hidden"]
            )

    def _restore_env(
        self, env_state: dict[str, Any] | None, pickled_env: bytes | str | None
    ) -> str | None:
        """Put the env back as it was saved; why it cannot be, or None when done."""
        if env_state is not None and self.env.state_dict() is not None:
            self.env.load_state_dict(env_state)
            return None
        if isinstance(pickled_env, bytes):
            self.env.load_pickled_state(pickle.loads(pickled_env)[self.dist.rank])
            return None
        return pickled_env or f"the checkpoint holds no snapshot of env '{self.env.spec.name}'"


class Learner(Protocol):
    """What a training loop drives: a `MappoTrainer` (one seed, any ranks) or a
    `MultiSeedTrainer` (K seeds in one process)."""

    config: MappoConfig
    dist: Distributed
    phase: str  # "collecting a rollout", "updating", "evaluating" or SAVING_PHASE
    rollout_seed: int  # which of `trainers` collects its rollout (they take turns)

    @property
    def trainers(self) -> list[MappoTrainer]:
        """One trainer per seed."""

    @property
    def env_steps(self) -> int:
        """Env steps done by each seed."""

    @property
    def updates(self) -> int:
        """Updates done by each seed."""

    def iteration(self) -> list[MappoMetrics]:
        """One rollout and update of every seed: one metrics per seed."""

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        """Seed k's checkpoint (a collective call on several ranks)."""

    def close(self) -> None:
        """Close every seed's envs."""


def budget_end(learner: Learner) -> int:
    """The env step each seed's training ends at: `total_steps` rounded up to whole updates
    (a rollout of every env copy, on every rank) from where it stands."""
    per_update = learner.trainers[0].steps_per_update
    left = max(0, learner.config.total_steps - learner.env_steps)
    return learner.env_steps + -(-left // per_update) * per_update


def train_until_budget(
    learner: Learner, callback: Callable[[list[MappoMetrics]], Any] | None = None
) -> list[list[MappoMetrics]]:
    """The training loop: `learner.iteration()` until `config.total_steps` env steps per seed,
    or until `callback(metrics)` (one `MappoMetrics` per seed) returns True."""
    history = []
    while learner.env_steps < learner.config.total_steps:
        metrics = learner.iteration()
        history.append(metrics)
        # Ranks stop together, or the next all-reduce would wait forever.
        if learner.dist.any(callback is not None and bool(callback(metrics))):
            break
    return history
