"""`MultiSeedTrainer`: K independent runs (slots), differing in their seed and in any of the
settings of `SWEEPABLE_FIELDS` (the core of `mappo train --sweep`), trained in one process as
one batched network.

Each seed is a `MappoTrainer` of its own: its envs, rollout buffer, value
normalizer, episode tracker, evaluation envs and torch random stream (swapped
in around everything it draws: action sampling, minibatch shuffles). What is
batched is the learning: the trainable parameters of all seeds live in one
flat tensor `[K, P]`, each seed's policy reading its part through views, and
one minibatch step is one function (compiled into one program when the
trainer compiles): the PPO loss of all K seeds at once (`torch.func.vmap`
over `torch.func.functional_call`), its gradient, a gradient-norm clip per
seed and Adam on the flat tensors. Adam is elementwise, so one Adam over the
flat parameters is K Adams. With the default config an update is most of
training's time and each minibatch step is small, so K seeds share its
per-op overhead; nothing crosses the seed axis, so each seed learns what it
would alone (tests/test_seeds.py).

The slots may differ in settings that change no tensor shape and no rollout
(`SWEEPABLE_FIELDS`): the loss's settings ride the seed axis as `[K]` tensors
into the `vmap` (`LossCoefs`; only those the slots differ in, so a plain seeds
run computes what it did), the learning rate, Adam's epsilon and the
gradient-norm clip as per-slot tensors of the step, and the rest (GAE, value
normalizer, credit assignment, initial weights) live in each slot's own
trainer anyway (tests/test_sweep_slots.py). Any other difference is refused
with a `ConfigError` naming the field.

One seed (K = 1) takes the solo path: the trainer's own update, bitwise a solo run.
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from mappo.buffer import RolloutMinibatch, minibatch_bounds
from mappo.config import AUTO, FIELDS, MAX_SEED, SEED_RANGE, ConfigError, MappoConfig
from mappo.envs.base import MultiAgentEnv
from mappo.trainer import (
    SAVING_PHASE,
    LossCoefs,
    LossStats,
    MappoMetrics,
    MappoTrainer,
    add_stats,
    anneal_learning_rate,
    train_until_budget,
)

# The settings whose values may differ between the slots of one process, and why each can:
# none changes a tensor's shape or the rollout, so one batched program serves every value.
SWEEPABLE_FIELDS: dict[str, str] = {
    "seed": "each slot's trainer seeds its own weights, envs and random streams",
    "lr": "a [K, 1] tensor of the batched Adam step, set before each update",
    "anneal_lr": "each slot's learning rate comes from its own config before each update",
    "adam_eps": "a [K, 1] tensor of the batched Adam step",
    "ent_coef": "a per-slot tensor of the vmapped loss (LossCoefs)",
    "vf_coef": "a per-slot tensor of the vmapped loss (LossCoefs)",
    "clip_coef": "a per-slot tensor of the vmapped loss (LossCoefs)",
    "clip_value_loss": "a per-slot switch (torch.where) of the vmapped loss (LossCoefs)",
    "huber_delta": "a per-slot tensor of the vmapped loss, squared error at 0 (LossCoefs)",
    "max_grad_norm": "a [K] tensor of the per-slot gradient-norm clip",
    "gamma": "each slot's GAE runs in its own trainer (prepare_update)",
    "gae_lambda": "each slot's GAE runs in its own trainer (prepare_update)",
    "norm_adv": "a per-slot switch (torch.where) of the vmapped loss (LossCoefs)",
    "value_norm": "each slot's value normalizer is its own trainer's; it maps the slot's "
    "targets to critic units before the slots' minibatches are stacked",
    "value_norm_beta": "each slot's value normalizer is its own trainer's",
    "reward_norm": "each slot's trainer scales its own rewards before its GAE (prepare_update)",
    "team_reward": "each slot's trainer credits its own rewards (credit) and counts its own "
    "episodes; no tensor's shape depends on it",
    "policy_head_gain": "it only sets the initial weights, which each slot's trainer draws",
}

_SHAPES = "it changes the networks' shapes"
_ROLLOUT = "it changes the rollout"
_EQUAL = "the slots train together in one process, which has one {name}"
# Why each other field cannot differ between slots (a field missing here is refused too).
FIXED_FIELDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "num_agents",
            "obs_dim",
            "global_state_dim",
            "action_dim",
            "share_policy",
            "agent_id",
            "use_global_state",
            "policy_groups",
            "hidden_dim",
            "input_layer_norm",
            "hidden_layer_norm",
            "encoder",
            "image_layout",
            "critic",
            "recurrent",
            "critic_recurrent",
            "critic_time_left",
        ),
        _SHAPES,
    ),
    "activation": "it changes the networks' layers, which all slots run as one program",
    **dict.fromkeys(("env", "env_kwargs", "num_workers"), _ROLLOUT),
    **dict.fromkeys(("num_envs", "rollout_steps"), "it changes the rollout and its shapes"),
    **dict.fromkeys(
        ("minibatch_size", "update_epochs", "data_chunk_length"),
        "it changes the minibatches' shapes or count, and all slots take their minibatch "
        "steps together",
    ),
    "bootstrap_time_limits": "it changes which steps of the rollout end an episode (and, "
    "with critic_time_left = auto, the critic's input shape)",
    **{
        name: _EQUAL.format(name=name)
        for name in (
            "total_steps",
            "device",
            "compile",
            "torch_threads",
            "checkpoint_interval",
            "eval_interval",
            "eval_episodes",
        )
    },
}


class SeedStreams:
    """torch's global random streams (CPU, and the run's GPU) of each seed, swapped in
    around that seed's work so that each seed draws exactly what it would alone."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.states: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def capture(self) -> None:
        """Add the stream as it stands now, as the next seed's."""
        self.states.append(self._now())

    @contextlib.contextmanager
    def use(self, k: int) -> Iterator[None]:
        """Seed `k`'s streams are the global ones inside; after, where they stand is kept
        as seed k's and the global streams are as they were before."""
        outside = self._now()
        self._set(self.states[k])
        try:
            yield
        finally:
            self.states[k] = self._now()
            self._set(outside)

    def _now(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None

    @staticmethod
    def _set(state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])


class _SeedLoss(nn.Module):
    """`MappoTrainer.minibatch_loss` of one trainer as a module's forward, so that
    `torch.func.functional_call` can run it on any slot's parameters and settings."""

    def __init__(self, trainer: MappoTrainer) -> None:
        super().__init__()
        self.policy = trainer.policy
        self._loss = trainer.minibatch_loss

    def forward(self, mb: RolloutMinibatch, coefs: LossCoefs) -> tuple[torch.Tensor, LossStats]:
        return self._loss(mb, coefs)


class MultiSeedTrainer:
    """K runs trained together in this process: of `config`, one per seed in `seeds`, or
    of K configs (`of_configs`: a sweep's slots, differing in `SWEEPABLE_FIELDS`).

    `envs`, when given, holds one env per slot (else each slot makes its own
    from `config.env`, seeded with its seed, as a solo run does). `train()` runs
    every slot to `config.total_steps`; `trainers[k]` is slot k's `MappoTrainer`,
    whose `policy` holds the slot's current weights and whose `config` is the
    slot's; `seed_state_dict(k)` is a checkpoint exactly like a solo run's.
    `config` is the first slot's: its fields outside `SWEEPABLE_FIELDS` are every
    slot's.
    """

    def __init__(
        self, config: MappoConfig, seeds: Sequence[int], envs: Sequence[MultiAgentEnv] | None = None
    ) -> None:
        seeds = list(seeds)
        check_seeds(seeds)
        self._build([config.replace(seed=seed) for seed in seeds], envs)

    @classmethod
    def of_configs(
        cls, configs: Sequence[MappoConfig], envs: Sequence[MultiAgentEnv] | None = None
    ) -> MultiSeedTrainer:
        """K slots, slot k training `configs[k]`: the configs may differ in the fields of
        `SWEEPABLE_FIELDS` only (a `ConfigError` names any other before any env is
        built), and no two may be the same run (seed and settings)."""
        self = cls.__new__(cls)
        self._build(list(configs), envs)
        return self

    @classmethod
    def from_trainers(
        cls, trainers: Sequence[MappoTrainer], streams: SeedStreams
    ) -> MultiSeedTrainer:
        """Train existing trainers (e.g. each loaded from its slot's checkpoint) together;
        their configs may differ in `SWEEPABLE_FIELDS`; `streams` holds each one's random
        streams, in order."""
        self = cls.__new__(cls)
        self._join(list(trainers), streams)
        return self

    def _build(self, configs: list[MappoConfig], envs: Sequence[MultiAgentEnv] | None) -> None:
        """A trainer per config, each starting where a solo run of it does, then joined."""
        check_slot_configs(configs)  # before any env is built; `_join` checks them decided
        if envs is not None and len(envs) != len(configs):
            raise ConfigError(f"{len(envs)} envs for {len(configs)} slots: give one env per slot")
        streams = SeedStreams(torch.device(configs[0].device))
        trainers: list[MappoTrainer] = []
        try:
            for k, config in enumerate(configs):
                # MappoTrainer seeds torch itself: seed s starts where a solo run with seed s
                # does.
                trainers.append(MappoTrainer(config, env=None if envs is None else envs[k]))
                streams.capture()
            self._join(trainers, streams)
        except BaseException:
            if envs is None:  # the envs it made; given ones stay their owner's
                for trainer in trainers:
                    trainer.close()
            raise

    def _join(self, trainers: list[MappoTrainer], streams: SeedStreams) -> None:
        """Stack the trainers' parameters and optimizer states along a seed axis."""
        self.trainers, self.streams = trainers, streams
        self.seeds = [t.config.seed for t in trainers]
        # The configs as their envs decided them (`auto` settings, the env's sizes).
        check_slot_configs([t.config for t in trainers])
        first = trainers[0]
        self.config = first.config
        self.device = first.device
        self.dist = first.dist  # one process, one rank (checked below)
        self.phase = "starting"  # what the seeds are doing, for messages during long waits
        self.rollout_seed = 0  # which seed collects its rollout (`collect_rollouts`)
        if any(t.dist.world_size > 1 for t in trainers):
            raise ConfigError("the slots of one process train on one rank; they have several")
        if len(trainers) == 1:  # the solo path: bitwise a solo run
            self.parameters, self.optimizer = first.parameters, first.optimizer
            return
        names = [name for name, p in first.policy.named_parameters() if p.requires_grad]
        layout = FlatLayout([p.shape for p in first.parameters])
        # [K, P]: every trainable tensor of every seed, in the order of MappoTrainer.parameters
        # (the order of a solo checkpoint's optimizer state). One flat tensor, so that the
        # step's clip and Adam are one kernel each; the tensors below are views of it.
        self._weights = torch.stack(
            [torch.cat([p.detach().flatten() for p in t.parameters]) for t in trainers]
        )
        self.parameters = [nn.Parameter(view) for view in layout.split(self._weights)]
        saved = [t.optimizer.state_dict() for t in trainers]
        for k, t in enumerate(trainers):
            views = []
            for name, stacked in zip(names, self.parameters, strict=True):
                owner, _, leaf = name.rpartition(".")
                view = nn.Parameter(stacked.data[k])  # shares the stacked storage
                setattr(t.policy.get_submodule(owner), leaf, view)
                views.append(view)
            t.parameters = views
            # The slot's own optimizer stands in for the checkpoint's layout and holds the
            # slot's learning rate (anneal_learning_rate sets it); the stacked one holds the
            # state, and seed_state_dict slices it.
            t.optimizer = torch.optim.Adam(
                views, lr=saved[k]["param_groups"][0]["lr"], eps=t.config.adam_eps
            )
        # Holds the moments (views of flat ones, written by adam_step) in the layout of a
        # solo run's (fused) Adam; its own learning rate is unused (the slots' are theirs).
        self.optimizer = torch.optim.Adam(
            self.parameters, lr=self.config.lr, eps=self.config.adam_eps, fused=True
        )
        if saved[0]["state"]:  # resumed seeds: their Adam moments, stacked
            self.optimizer.load_state_dict(stack_optimizer_states(saved))
        self._adam_state = flat_adam_state(self.optimizer, layout, self._weights)
        # Each slot's step settings: [K, 1] beside the [K, P] weights, [K] for the norms.
        configs = [t.config for t in trainers]
        self._adam_eps = torch.tensor([[c.adam_eps] for c in configs], device=self.device)
        self._max_grad_norm = torch.tensor([c.max_grad_norm for c in configs], device=self.device)
        self._coefs = slot_loss_coefs(configs, self.device)
        param_names = ["policy." + name for name in names]
        loss_module = _SeedLoss(first)

        def seed_loss(
            weights: torch.Tensor,
            fields: tuple[torch.Tensor | None, ...],
            coefs: tuple[float | torch.Tensor, ...],
        ) -> tuple[torch.Tensor, LossStats]:
            params = dict(zip(param_names, layout.split(weights), strict=True))
            # The None fields are those a feed-forward minibatch does not have.
            minibatch = RolloutMinibatch(*cast(tuple[torch.Tensor, ...], fields))
            return torch.func.functional_call(
                loss_module, params, (minibatch, LossCoefs._make(coefs))
            )

        # (weights [K, P], minibatch fields [K, B, ...], coefs) → (losses [K], stats by name
        # [K]); a feed-forward minibatch has no recurrent fields (None, not mapped).
        recurrent = (0 if self.config.recurrent else None,) * 3
        # A turn-based env's recurrent minibatch also says who acted at each step.
        acting = (0 if self.config.recurrent and first.env.spec.turn_based else None,)
        # The settings the slots differ in are [K] tensors, mapped; the others are numbers.
        coef_dims = tuple(0 if isinstance(c, torch.Tensor) else None for c in self._coefs)
        batched_loss = torch.func.vmap(
            seed_loss,
            in_dims=(
                0,
                (0,) * (len(RolloutMinibatch._fields) - 4) + recurrent + acting,
                coef_dims,
            ),
        )

        def summed_loss(
            weights: torch.Tensor, fields: tuple[torch.Tensor | None, ...], coefs: LossCoefs
        ) -> tuple[torch.Tensor, LossStats]:
            losses, stats = batched_loss(weights, fields, tuple(coefs))
            return losses.sum(), stats  # seeds share no parameter: each gets its own gradient

        self._summed_loss = summed_loss
        self._traced_gradient = torch.func.grad(summed_loss, has_aux=True)
        # Compiled when a solo run of this config would be (the first trainer decides, and
        # falls back to eager for all seeds when compiling fails).
        self._compiled_step = first.compile_loss(self._train_step)

    def _gradient(
        self, weights: torch.Tensor, fields: tuple[torch.Tensor | None, ...], coefs: LossCoefs
    ) -> tuple[torch.Tensor, LossStats]:
        """The gradient `[K, P]` of every seed's loss at `weights` `[K, P]`, and the loss
        stats by name, each `[K]`. Compiled, `torch.func.grad` puts the backward pass in the step's
        program; eager, autograd's backward costs less per call than its wrappers."""
        if torch.compiler.is_compiling():
            return self._traced_gradient(weights, fields, coefs)
        weights = weights.detach().requires_grad_()
        with torch.enable_grad():
            loss, stats = self._summed_loss(weights, fields, coefs)
        (gradient,) = torch.autograd.grad(loss, weights)
        return gradient, stats

    def _train_step(
        self,
        weights: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        step: torch.Tensor,
        lr: torch.Tensor,
        eps: torch.Tensor,
        max_grad_norm: torch.Tensor,
        coefs: LossCoefs,
        fields: tuple[torch.Tensor | None, ...],
    ) -> LossStats:
        """One minibatch step of every slot, as one function so that it compiles into one
        program: the gradients of the K losses (each with its slot's `coefs`), a
        gradient-norm clip per slot (`max_grad_norm` `[K]`), and Adam (`lr` and `eps`
        `[K, 1]`), written in place into `weights` `[K, P]` and the flat Adam state.
        Returns the step's stats by name, each `[K]` (the loss's, and the gradient norm
        before clipping). The per-slot settings are tensors (in `coefs`, those the slots
        differ in), so that new values, such as an annealed `lr`, do not recompile.

        At the default minibatch of 256 agent-steps the autograd engine, `.grad`
        tensors and per-tensor optimizer calls of a `.backward()` step cost more than
        the network's arithmetic; here they are not there.
        """
        gradient, stats = self._gradient(weights, fields, coefs)
        norms = torch.linalg.vector_norm(gradient, dim=1)  # [K]: clip_grad_norm_'s, per seed
        scale = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        adam_step(weights, gradient * scale.unsqueeze(1), exp_avg, exp_avg_sq, step, lr, eps)
        return {**stats, "grad_norm": norms}

    @property
    def compiled(self) -> bool:
        """Whether the batched minibatch loss runs compiled (`config.compile`)."""
        return self.trainers[0].compiled

    @property
    def env_steps(self) -> int:
        """Env steps done by each seed (all seeds step together)."""
        return self.trainers[0].env_steps

    @property
    def updates(self) -> int:
        """Updates done by each seed."""
        return self.trainers[0].updates

    def collect_rollouts(self) -> None:
        """Every seed's rollout, each drawing from its own random stream.

        A Python loop over the K seeds: each seed keeps its own env object, whose
        copies follow exactly the trajectory of a solo run with that seed (and
        PettingZoo or Gymnasium envs are separate objects anyway). K is small and
        each iteration is a whole rollout of E env copies, so the loop adds K
        calls per rollout, not per env or per step.
        """
        for k, trainer in enumerate(self.trainers):
            self.rollout_seed = k
            with self.streams.use(k):
                trainer.collect_rollout()

    def update(self) -> list[MappoMetrics]:
        """PPO on every seed's rollout, all seeds in each minibatch step; one metrics each."""
        if len(self.trainers) == 1:
            with self.streams.use(0):
                return [self.trainers[0].update()]
        cfg, trainers = self.config, self.trainers
        start = time.perf_counter()
        plans = [t.prepare_update() for t in trainers]  # GAE and value normalizer, per seed
        num_minibatches, chunk = plans[0]
        totals: LossStats = {}
        # Each slot's, set on its own optimizer by anneal_learning_rate between updates; a
        # tensor [K, 1], so that a new value does not recompile the step.
        lr = torch.tensor(
            [[t.optimizer.param_groups[0]["lr"]] for t in trainers], device=self.device
        )
        settings = (lr, self._adam_eps, self._max_grad_norm, self._coefs)
        first = trainers[0]
        for _ in range(cfg.update_epochs):
            per_seed = []
            for k, t in enumerate(trainers):  # each seed's own shuffle, from its own stream
                with self.streams.use(k):
                    per_seed.append(t.buffer.shuffled_rows(t.policy.value_norm.normalize, chunk))
            # One stack per field per epoch; each minibatch is then a slice. [K, rows, ...]
            fields = [torch.stack(parts) for parts in zip(*per_seed, strict=True)]
            for lo, hi in minibatch_bounds(fields[0].shape[1], num_minibatches):
                mb = tuple(RolloutMinibatch(*(x[:, lo:hi] for x in fields)))
                step_stats = first.run_loss(
                    self._compiled_step,
                    self._train_step,
                    self._weights,
                    *self._adam_state,
                    *settings,
                    mb,
                )
                totals = add_stats(totals, step_stats)
        steps = cfg.update_epochs * num_minibatches
        update_time = time.perf_counter() - start
        # Forward and backward are one program here, not timed apart (NaN in the metrics).
        return [
            t.finish_update(
                {name: total[k] / steps for name, total in totals.items()},
                update_time,
                math.nan,
                math.nan,
            )
            for k, t in enumerate(trainers)
        ]

    def iteration(self) -> list[MappoMetrics]:
        """One rollout and update of every seed (and the evaluations due): K metrics, in the
        order of `seeds`, as `MappoTrainer.iteration` gives one."""
        for trainer in self.trainers:  # each slot's learning rate, from its own config
            anneal_learning_rate(trainer.optimizer, trainer.config, self.env_steps)
        start = time.perf_counter()
        steps_before = self.env_steps
        self.phase = "collecting a rollout"
        self.collect_rollouts()
        self.phase = "updating"
        metrics = self.update()
        self.phase = "evaluating"
        steps_per_second = (self.env_steps - steps_before) / (time.perf_counter() - start)
        for trainer, seed_metrics in zip(self.trainers, metrics, strict=True):
            seed_metrics.steps_per_second = steps_per_second  # of this seed
            seed_metrics.eval_return = trainer.evaluate_if_due(steps_before)
        self.phase = SAVING_PHASE
        return metrics

    def train(
        self, callback: Callable[[list[MappoMetrics]], Any] | None = None
    ) -> list[list[MappoMetrics]]:
        """Every seed to `config.total_steps` env steps; `callback(metrics)` gets the K
        metrics of each update and stops training by returning True."""
        return train_until_budget(self, callback)

    def seed_state_dict(self, k: int) -> dict[str, Any]:
        """Seed k's checkpoint, exactly a solo run's: its own weights, its slice of the
        optimizer state and its own random stream, in tensors of their own."""
        trainer = self.trainers[k]
        with self.streams.use(k):
            state = trainer.state_dict()
        if len(self.trainers) > 1:
            for name in ("actor", "critic"):  # views of the stacked storage: saved alone
                state[name] = {key: value.clone() for key, value in state[name].items()}
            state["optimizer"] = slice_optimizer_state(self.optimizer.state_dict(), k)
            for group, own in zip(
                state["optimizer"]["param_groups"], trainer.optimizer.param_groups, strict=True
            ):
                group["lr"], group["eps"] = own["lr"], own["eps"]  # the slot's, as solo
        return state

    def close(self) -> None:
        """Close every seed's envs."""
        for trainer in self.trainers:
            trainer.close()


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` → [0, 1, 2], checked; anything else is refused naming the flag."""
    parts = text.split(",")
    if text.strip() and not all(part.strip() for part in parts):  # "0,,1", a trailing comma
        raise ConfigError(f"--seeds = {text!r}: a seed is missing between commas")
    try:
        seeds = [int(part) for part in parts if part.strip()]
    except ValueError:
        raise ConfigError(
            f"--seeds = {text!r}: give integers separated by commas, e.g. --seeds 0,1,2"
        ) from None
    check_seeds(seeds)
    return seeds


def check_seeds(seeds: Sequence[int], settings: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Refuse an empty list of seeds, a seed outside `SEED_RANGE` (as a config's `seed`), or
    a seed repeated with the same settings:
    `settings[k]` is slot k's swept values (None: every slot has the same), so a sweep's
    slots may share a seed when their settings differ."""
    if not seeds:
        raise ConfigError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    if (bad := next((seed for seed in seeds if not 0 <= seed < MAX_SEED), None)) is not None:
        raise ConfigError(f"--seeds: seed {bad} is not {SEED_RANGE}")
    slots = [
        (seed, setting_text({} if settings is None else settings[k]))
        for k, seed in enumerate(seeds)
    ]
    repeated = next((slot for k, slot in enumerate(slots) if slot in slots[:k]), None)
    if repeated is None:
        return
    seed, setting = repeated
    if not setting:
        raise ConfigError(f"--seeds: seed {seed} appears twice; each run needs its own")
    raise ConfigError(
        f"seed {seed} appears twice with the same settings ({setting}): each slot of a "
        "sweep needs its own seed or settings"
    )


def check_slot_configs(configs: Sequence[MappoConfig]) -> None:
    """Refuse slots that cannot train in one process: no slot, a field outside
    `SWEEPABLE_FIELDS` that differs between slots (one line naming it, why, and how to
    sweep it instead), or two slots of the same seed and settings. Settings still `auto`
    are compared once their env decided them (`MultiSeedTrainer._join` checks again)."""
    if not configs:
        raise ConfigError("a sweep needs at least one slot (a seed, or a config)")
    first = configs[0].to_dict()
    for config in configs[1:]:
        other = config.to_dict()
        for name in FIELDS:
            a, b = first[name], other[name]
            if name in SWEEPABLE_FIELDS or a == b:
                continue
            if FIELDS[name].type == "AutoBool" and AUTO in (a, b):
                continue  # decided by the env: compared once decided
            raise ConfigError(fixed_field_message(name, b))
    # The swept values of each slot: the settings in which some slots differ.
    varied = [
        name
        for name in SWEEPABLE_FIELDS
        if name != "seed" and len({repr(getattr(c, name)) for c in configs}) > 1
    ]
    check_seeds(
        [c.seed for c in configs], [{name: getattr(c, name) for name in varied} for c in configs]
    )


def fixed_field_message(name: str, value: Any) -> str:
    """The one line refusing slots that differ in `name` (one of them holding `value`)."""
    why = FIXED_FIELDS.get(name, "a sweep varies only the settings of SWEEPABLE_FIELDS")
    head = f"{name} cannot differ between the slots of one sweep: {why}"
    if why == _EQUAL.format(name=name):
        return f"{head}; give it one value for all slots"
    return f"{head}; sweep it with one process per value (mappo train {flag_text(name, value)} ...)"


def flag_text(name: str, value: Any) -> str:
    """`--name value` as a shell takes it: `--hidden-dim 128`, `--env-kwargs '{"n": 4}'`."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, dict):
        text = shlex.quote(json.dumps(value))
    else:
        text = shlex.quote(str(value))
    return f"--{name.replace('_', '-')} {text}"


def setting_text(setting: Mapping[str, Any]) -> str:
    """`lr=0.001, ent_coef=0.01`: a slot's swept values, for messages."""
    return ", ".join(f"{name}={value}" for name, value in setting.items())


def slot_loss_coefs(configs: Sequence[MappoConfig], device: torch.device) -> LossCoefs:
    """The slots' loss settings for the batched loss: a `[K]` tensor of each setting the
    slots differ in, the shared number of each other. A plain seeds run so keeps the
    solo loss's constants (no `torch.where` over both forms of a switch it does not use)."""
    values = [LossCoefs.of(config) for config in configs]
    return LossCoefs(
        *(
            column[0] if len(set(column)) == 1 else torch.tensor(column, device=device)
            for column in zip(*values, strict=True)
        )
    )


class FlatLayout:
    """Where each of a list of tensors (one seed's parameters) lies in one flat vector."""

    def __init__(self, shapes: Sequence[torch.Size]) -> None:
        self.shapes = [tuple(shape) for shape in shapes]
        self.sizes = [math.prod(shape) for shape in self.shapes]

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of `flat` `[..., P]` as the tensors `[..., *shape]`, in order."""
        lead = flat.shape[:-1]
        return [
            part.view(*lead, *shape)
            for part, shape in zip(flat.split(self.sizes, -1), self.shapes, strict=True)
        ]


def flat_adam_state(
    optimizer: torch.optim.Adam, layout: FlatLayout, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat moments `[K, P]` beside `weights` and one step count, holding `optimizer`'s
    state (zeros for a fresh run, as torch's Adam starts); the optimizer's state entries
    become views of them, so its `state_dict` holds whatever `adam_step` writes."""
    params = optimizer.param_groups[0]["params"]
    exp_avg, exp_avg_sq = torch.zeros_like(weights), torch.zeros_like(weights)
    step = torch.zeros((), dtype=torch.float32, device=weights.device)
    for name, flat in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        for p, view in zip(params, layout.split(flat), strict=True):
            if optimizer.state[p]:
                view.copy_(optimizer.state[p][name])
    if optimizer.state[params[0]]:
        step.fill_(float(optimizer.state[params[0]]["step"]))  # every tensor stepped alike
    for p, avg, avg_sq in zip(params, layout.split(exp_avg), layout.split(exp_avg_sq), strict=True):
        optimizer.state[p] = {"step": step, "exp_avg": avg, "exp_avg_sq": avg_sq}
    return exp_avg, exp_avg_sq, step


@torch.no_grad()
def adam_step(
    weight: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    lr: torch.Tensor,
    eps: float | torch.Tensor,
    betas: tuple[float, float] = (0.9, 0.999),
) -> None:
    """`torch.optim.Adam`'s update (no weight decay, no amsgrad) of one tensor, in place,
    as plain tensor ops that compile into the caller's program. Elementwise, so over
    flat `[K, P]` tensors it is K independent Adams."""
    beta1, beta2 = betas
    step.add_(1)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = (1 - beta2**step).sqrt()
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    weight.sub_(exp_avg / denom * (lr / bias_correction1))


def stack_optimizer_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Solo Adam state dicts of the same parameters, one per seed, as one over the stacked
    parameters: moments stacked `[K, ...]`; step counts and settings are the first's (all
    seeds have taken the same steps)."""
    stacked = {}
    for index, first in states[0]["state"].items():
        stacked[index] = {
            name: value
            if name == "step"
            else torch.stack([s["state"][index][name] for s in states])
            for name, value in first.items()
        }
    return {"state": stacked, "param_groups": states[0]["param_groups"]}


def slice_optimizer_state(state: dict[str, Any], k: int) -> dict[str, Any]:
    """Seed k's part of the stacked Adam's state dict: a solo Adam's state dict."""
    return {
        "state": {
            index: {
                name: value.clone() if name == "step" else value[k].clone()
                for name, value in entry.items()
            }
            for index, entry in state["state"].items()
        },
        "param_groups": [dict(group) for group in state["param_groups"]],
    }


def pooled_metrics(metrics: list[MappoMetrics]) -> MappoMetrics:
    """The seeds' metrics of one update as one, for progress output: env steps and steps/s
    of all seeds together, the episode-weighted mean return (over the slots whose return is
    of the first slot's kind) and rates (win, per-seat outcomes, rewarded episodes: each
    over the seeds that report it), losses averaged."""
    # A sweep of team_reward mixes team and per-agent returns: the line pools the first
    # slot's kind only (each slot's own return is in its run folder).
    same_kind = [m for m in metrics if m.return_definition == metrics[0].return_definition]
    episodes = sum(m.episodes for m in same_kind)
    finished = [(m.episode_return, m.episodes) for m in same_kind if m.episodes]

    def weighted(name: str) -> float:
        """`name`'s episode-weighted mean over the seeds that report it; NaN where none do."""
        rated = [(getattr(m, name), m.episodes) for m in metrics if m.episodes]
        rated = [(rate, n) for rate, n in rated if not math.isnan(rate)]
        count = sum(n for _, n in rated)
        return sum(rate * n for rate, n in rated) / count if count else math.nan

    pooled = MappoMetrics(
        **{
            name: sum(getattr(m, name) for m in metrics) / len(metrics)
            for name in (
                "policy_loss",
                "value_loss",
                "entropy",
                "approx_kl",
                "clip_fraction",
                "explained_variance",
                "grad_norm",
            )
        },
        episode_return=sum(r * n for r, n in finished) / episodes if episodes else math.nan,
        return_definition=metrics[0].return_definition,
        episodes=episodes,
        # The fractions of the finished episodes.
        **{
            name: weighted(name)
            for name in (
                "win_rate",
                "first_seat_win_rate",
                "second_seat_win_rate",
                "draw_rate",
                "rewarded_fraction",
            )
        },
        env_steps=sum(m.env_steps for m in metrics),
        steps_per_second=sum(m.steps_per_second for m in metrics),
    )
    return pooled
