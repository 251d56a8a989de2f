"""A sweep's slots (`MultiSeedTrainer.of_configs`): K configs that differ in settings
(`SWEEPABLE_FIELDS`) train as one batched network, each slot learning what a solo run of its
config learns; any other difference is refused in one line naming the field."""

from __future__ import annotations

import math

import pytest
import torch
from test_seeds import small  # the same small config as the seeds' tests

from mappo import MappoTrainer
from mappo import seeds as seeds_module
from mappo.config import FIELDS, ConfigError
from mappo.losses import ppo_policy_loss, ppo_value_loss
from mappo.seeds import (
    FIXED_FIELDS,
    SWEEPABLE_FIELDS,
    MultiSeedTrainer,
    SeedStreams,
    slot_loss_coefs,
)
from mappo.trainer import LossCoefs


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


# Three slots, two of them with the same seed: every sweepable setting differs from the
# defaults in one slot or the other (spread decides team_reward = true under auto).
LOSS_SETTINGS = {
    "ent_coef": 0.2,
    "vf_coef": 1.0,
    "clip_coef": 0.1,
    "huber_delta": 0.5,
    "clip_value_loss": False,
    "norm_adv": False,
    "max_grad_norm": 0.05,
    "value_norm_beta": 0.9,
}
OTHER_SETTINGS = {
    "lr": 3e-3,
    "adam_eps": 1e-3,
    "gamma": 0.9,
    "gae_lambda": 0.5,
    "value_norm": False,
    "team_reward": False,
    "policy_head_gain": 1.0,
    "reward_norm": True,
}
SLOTS = [{"seed": 3}, {"seed": 3, **LOSS_SETTINGS}, {"seed": 5, **OTHER_SETTINGS}]


def test_every_config_field_is_sweepable_or_fixed_with_a_reason() -> None:
    assert set(SWEEPABLE_FIELDS) | set(FIXED_FIELDS) == set(FIELDS)
    assert not set(SWEEPABLE_FIELDS) & set(FIXED_FIELDS)
    assert len(SWEEPABLE_FIELDS) == 18
    assert all(why for why in (*SWEEPABLE_FIELDS.values(), *FIXED_FIELDS.values()))


def test_one_slot_is_bitwise_a_solo_run_of_its_settings() -> None:
    config = small(**{**LOSS_SETTINGS, **OTHER_SETTINGS, "anneal_lr": True, "seed": 4})
    multi = MultiSeedTrainer.of_configs([config])
    multi_history = multi.train()
    solo = MappoTrainer(config)
    solo_history = solo.train()
    assert len(multi_history) == len(solo_history) == 3
    for [ours], theirs in zip(multi_history, solo_history, strict=True):
        assert (ours.policy_loss, ours.value_loss, ours.grad_norm) == (
            theirs.policy_loss,
            theirs.value_loss,
            theirs.grad_norm,
        )
    for ours, theirs in zip(
        multi.trainers[0].policy.parameters(), solo.policy.parameters(), strict=True
    ):
        assert torch.equal(ours, theirs)
    # Annealed: the last update ran at 2/3 of the way, lr 3e-3 * (1 - 320/480).
    assert multi.trainers[0].optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "overrides",
    [{}, {"recurrent": True, "data_chunk_length": 5}],
    ids=["feed-forward", "recurrent"],
)
def test_each_slot_learns_what_a_solo_run_of_its_settings_learns(overrides) -> None:
    configs = [small(**slot, **overrides) for slot in SLOTS]
    multi = MultiSeedTrainer.of_configs(configs)
    multi.collect_rollouts()
    before = [[p.clone() for p in t.parameters] for t in multi.trainers]
    metrics = multi.update()
    for k, config in enumerate(configs):
        solo = MappoTrainer(config)
        solo.collect_rollout()
        solo_metrics = solo.update()
        # The rewards as the update credited them (scaled in the third slot).
        assert torch.equal(multi.trainers[k].buffer.rewards, solo.buffer.rewards)
        slot = multi.trainers[k]
        assert torch.equal(slot.reward_norm.var, solo.reward_norm.var)
        assert max_difference(slot.parameters, before[k]) > 1e-4  # the update moved them
        assert max_difference(slot.parameters, solo.parameters) < 1e-6, k
        assert metrics[k].policy_loss == pytest.approx(solo_metrics.policy_loss, abs=1e-6)
        assert metrics[k].value_loss == pytest.approx(solo_metrics.value_loss, abs=1e-5)
        assert metrics[k].entropy == pytest.approx(solo_metrics.entropy, abs=1e-6)
        assert metrics[k].grad_norm == pytest.approx(solo_metrics.grad_norm, rel=1e-4)
        assert metrics[k].return_definition == solo_metrics.return_definition
        assert torch.equal(slot.policy.value_norm.running_mean, solo.policy.value_norm.running_mean)
        # The slot's checkpoint holds its own lr and eps, as a solo run's does.
        saved = multi.seed_state_dict(k)["optimizer"]["param_groups"]
        assert saved == solo.state_dict()["optimizer"]["param_groups"]
    assert [m.return_definition for m in metrics] == ["team", "team", "per_agent"]
    # Clipped at 0.05: the second slot's gradient norm is far above its clip.
    assert metrics[1].grad_norm > 10 * 0.05


@pytest.mark.parametrize(
    "overrides",
    [  # compiling takes ~15 s feed-forward, ~30 s recurrent on a 2-core CPU
        {},
        pytest.param({"recurrent": True, "data_chunk_length": 5}, marks=pytest.mark.slow),
    ],
    ids=["feed-forward", "recurrent"],
)
def test_compiled_sweep_step_equals_the_eager_one(overrides) -> None:
    # Every loss setting differs between the slots: the compiled step reads them as tensors.
    trained = []
    for compile_mode in ("true", "false"):
        multi = MultiSeedTrainer.of_configs(
            [small(compile=compile_mode, **slot, **overrides) for slot in SLOTS]
        )
        multi.collect_rollouts()
        trained.append((multi, multi.update()))
    (compiled, compiled_metrics), (eager, eager_metrics) = trained
    assert compiled.compiled and not eager.compiled
    assert max_difference(compiled.parameters, eager.parameters) < 1e-5
    for ours, theirs in zip(compiled_metrics, eager_metrics, strict=True):
        assert ours.policy_loss == pytest.approx(theirs.policy_loss, abs=1e-6)
        assert ours.grad_norm == pytest.approx(theirs.grad_norm, rel=1e-4)
    # New learning rates (as anneal_lr sets them) are new values of a tensor: no recompile.
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for trainer in compiled.trainers:
        trainer.optimizer.param_groups[0]["lr"] *= 0.5
    compiled.collect_rollouts()
    compiled.update()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_each_slot_anneals_its_own_learning_rate() -> None:
    configs = [
        small(seed=0, lr=1e-3, anneal_lr=True),
        small(seed=0, lr=1e-3),
        small(seed=1, lr=3e-3, anneal_lr=True),
    ]
    multi = MultiSeedTrainer.of_configs(configs)
    for _ in range(2):
        multi.iteration()
    # The second update ran after 160 of 480 steps: 2/3 of each annealed lr.
    lrs = [t.optimizer.param_groups[0]["lr"] for t in multi.trainers]
    assert lrs == pytest.approx([2e-3 / 3, 1e-3, 2e-3])
    for slot, config in zip(multi.trainers, configs, strict=True):
        solo = MappoTrainer(config)  # one at a time: each draws from torch's global stream
        for _ in range(2):
            solo.iteration()
        assert slot.optimizer.param_groups[0]["lr"] == solo.optimizer.param_groups[0]["lr"]
        assert max_difference(slot.parameters, solo.parameters) < 1e-5


def test_slots_that_differ_only_in_ent_coef_learn_apart() -> None:
    multi = MultiSeedTrainer.of_configs([small(ent_coef=0.0), small(ent_coef=0.5)])
    multi.collect_rollouts()
    [a, b] = multi.trainers
    assert torch.equal(a.buffer.observations, b.buffer.observations)  # the same seed: same data
    multi.update()
    assert max_difference(a.parameters, b.parameters) > 1e-4


def test_a_slots_settings_do_not_reach_another_slot() -> None:
    # The second slot differs from the first in every setting, by other values in the two
    # runs (the same fields differ, so the batched programs are the same).
    other = {
        **LOSS_SETTINGS,
        **OTHER_SETTINGS,
        "anneal_lr": True,
        "team_reward": False,
        "seed": 1,
    }
    changed = {
        **other,
        "ent_coef": 0.05,
        "vf_coef": 2.0,
        "clip_coef": 0.3,
        "huber_delta": 2.0,
        "max_grad_norm": 0.5,
        "value_norm_beta": 0.5,
        "lr": 1e-4,
        "adam_eps": 1e-6,
        "gamma": 0.5,
        "gae_lambda": 0.99,
        "policy_head_gain": 0.5,
    }
    runs = [MultiSeedTrainer.of_configs([small(), small(**second)]) for second in (other, changed)]
    for multi in runs:
        for _ in range(2):
            multi.iteration()
    first = [multi.trainers[0].parameters for multi in runs]
    second = [multi.trainers[1].parameters for multi in runs]
    assert max_difference(*second) > 1e-4
    for a, b in zip(*first, strict=True):
        assert torch.equal(a, b)


def test_a_sweep_resumes_from_its_slots_checkpoints_bitwise() -> None:
    configs = [small(**slot) for slot in SLOTS]
    straight = MultiSeedTrainer.of_configs(configs)
    straight.iteration()
    saved = [straight.seed_state_dict(k) for k in range(len(configs))]
    trainers, streams = [], SeedStreams(torch.device("cpu"))
    for config, state in zip(configs, saved, strict=True):
        trainer = MappoTrainer(config)
        trainer.load_state_dict(state)
        trainers.append(trainer)
        streams.capture()  # the slot's stream, as its checkpoint saved it
    resumed = MultiSeedTrainer.from_trainers(trainers, streams)
    for multi in (straight, resumed):
        multi.iteration()
    for a, b in zip(straight.trainers, resumed.trainers, strict=True):
        for x, y in zip(a.parameters, b.parameters, strict=True):
            assert torch.equal(x, y)


def test_settings_shared_by_every_slot_stay_numbers_in_the_batched_loss() -> None:
    shared = slot_loss_coefs([small(seed=0), small(seed=1)], torch.device("cpu"))
    assert shared == LossCoefs.of(small())
    swept = slot_loss_coefs([small(ent_coef=0.0), small(ent_coef=0.5)], torch.device("cpu"))
    assert torch.equal(torch.as_tensor(swept.ent_coef), torch.tensor([0.0, 0.5]))
    assert swept._replace(ent_coef=0.01) == LossCoefs.of(small())


def test_losses_take_per_slot_tensor_settings_under_vmap() -> None:
    # The hand-computed cases of tests/test_losses.py, as three slots of one vmap.
    new, old, returns = torch.tensor([1.0, 0.1]), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0])
    clip = torch.tensor([True, False, True])
    huber = torch.tensor([0.0, 0.0, 0.5])

    def value_loss(clip: torch.Tensor, huber: torch.Tensor) -> torch.Tensor:
        return ppo_value_loss(new, old, returns, 0.2, None, huber, clip)

    losses = torch.func.vmap(value_loss)(clip, huber)
    # Slot 0: 0.5*0.8² and 0.5*0.9² (clipped); slot 1: 0 and 0.405 (unclipped); slot 2:
    # Huber at 0.5: the clipped error 0.8 → 0.5*(0.8 - 0.25) = 0.275, 0.9 → 0.325.
    assert losses.tolist() == pytest.approx([(0.32 + 0.405) / 2, 0.405 / 2, (0.275 + 0.325) / 2])
    for k in range(3):  # equal to the float settings' path
        floats = ppo_value_loss(new, old, returns, 0.2, None, float(huber[k]), bool(clip[k]))
        assert losses[k].item() == pytest.approx(floats.item(), abs=1e-7)

    log_ratio = torch.tensor([math.log(1.5)])

    def policy_loss(clip_coef: torch.Tensor) -> torch.Tensor:
        return ppo_policy_loss(torch.tensor([2.0]), log_ratio, torch.tensor([0.0]), clip_coef)

    # Ratio 1.5, advantage 2: clipped at 1.2 and 1.4; inside a clip of 0.6.
    assert torch.func.vmap(policy_loss)(torch.tensor([0.2, 0.4, 0.6])).tolist() == pytest.approx(
        [-2.4, -2.8, -3.0]
    )


SHAPES = "it changes the networks' shapes"
ONE_PROCESS = "sweep it with one process per value"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_dim", 128, f"{SHAPES}; {ONE_PROCESS} (mappo train --hidden-dim 128 ...)"),
        ("recurrent", True, f"{SHAPES}; {ONE_PROCESS} (mappo train --recurrent true ...)"),
        ("critic", "local", f"{SHAPES}; {ONE_PROCESS} (mappo train --critic local ...)"),
        ("share_policy", False, f"{SHAPES}; {ONE_PROCESS} (mappo train --share-policy false ...)"),
        ("agent_id", False, f"{SHAPES}; {ONE_PROCESS} (mappo train --agent-id false ...)"),
        (
            "activation",
            "relu",
            "it changes the networks' layers, which all slots run as one program; "
            f"{ONE_PROCESS} (mappo train --activation relu ...)",
        ),
        (
            "env",
            "reference",
            f"it changes the rollout; {ONE_PROCESS} (mappo train --env reference ...)",
        ),
        (
            "env_kwargs",
            {"num_agents": 4},
            "it changes the rollout; "
            f"""{ONE_PROCESS} (mappo train --env-kwargs '{{"num_agents": 4}}' ...)""",
        ),
        (
            "num_envs",
            16,
            f"it changes the rollout and its shapes; {ONE_PROCESS} (mappo train --num-envs 16 ...)",
        ),
        (
            "minibatch_size",
            32,
            "it changes the minibatches' shapes or count, and all slots take their minibatch "
            f"steps together; {ONE_PROCESS} (mappo train --minibatch-size 32 ...)",
        ),
        (
            "update_epochs",
            3,
            "it changes the minibatches' shapes or count, and all slots take their minibatch "
            f"steps together; {ONE_PROCESS} (mappo train --update-epochs 3 ...)",
        ),
        (
            "bootstrap_time_limits",
            True,
            "it changes which steps of the rollout end an episode (and, with critic_time_left "
            f"= auto, the critic's input shape); {ONE_PROCESS} (mappo train "
            "--bootstrap-time-limits true ...)",
        ),
        (
            "total_steps",
            960,
            "the slots train together in one process, which has one total_steps; give it one "
            "value for all slots",
        ),
        (
            "compile",
            "true",
            "the slots train together in one process, which has one compile; give it one "
            "value for all slots",
        ),
        (
            "eval_interval",
            160,
            "the slots train together in one process, which has one eval_interval; give it one "
            "value for all slots",
        ),
    ],
)
def test_a_field_outside_the_sweepable_ones_is_refused_before_any_env_is_built(
    monkeypatch, field, value, message
) -> None:
    def no_trainer(*args, **kwargs):
        raise AssertionError("a trainer was built")

    monkeypatch.setattr(seeds_module, "MappoTrainer", no_trainer)
    # A setting left to the env (auto) is compared once decided: set in both slots here.
    first = {field: not value} if FIELDS[field].type == "AutoBool" else {}
    with pytest.raises(ConfigError) as refused:
        MultiSeedTrainer.of_configs([small(lr=1e-3, **first), small(lr=3e-3, **{field: value})])
    assert str(refused.value) == f"{field} cannot differ between the slots of one sweep: {message}"


def test_a_setting_decided_by_the_env_is_compared_once_decided() -> None:
    # agent_id auto is decided false for spread (the official MPE code): the two slots agree,
    # and train together; true in one slot is refused once the env has decided.
    multi = MultiSeedTrainer.of_configs([small(agent_id="auto"), small(agent_id=False, seed=1)])
    assert [t.config.agent_id for t in multi.trainers] == [False, False]
    multi.close()
    with pytest.raises(ConfigError) as refused:
        MultiSeedTrainer.of_configs([small(agent_id="auto"), small(agent_id=True, seed=1)])
    assert str(refused.value) == (
        f"agent_id cannot differ between the slots of one sweep: {SHAPES}; {ONE_PROCESS} "
        "(mappo train --agent-id true ...)"
    )


def test_the_same_seed_and_settings_twice_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        MultiSeedTrainer.of_configs(
            [small(seed=0, lr=1e-3), small(seed=0, lr=3e-3), small(seed=0, lr=1e-3)]
        )
    assert str(refused.value) == (
        "seed 0 appears twice with the same settings (lr=0.001): each slot of a sweep needs "
        "its own seed or settings"
    )
    with pytest.raises(ConfigError) as refused:
        MultiSeedTrainer.of_configs([small(seed=2), small(seed=2)])
    assert str(refused.value) == "--seeds: seed 2 appears twice; each run needs its own"
    with pytest.raises(ConfigError) as refused:
        MultiSeedTrainer.of_configs([])
    assert str(refused.value) == "a sweep needs at least one slot (a seed, or a config)"
