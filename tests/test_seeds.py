"""Several seeds in one process (`MultiSeedTrainer`, `mappo train --seeds`): each seed learns
exactly what it would alone, and writes a run folder exactly like a solo run's."""

from __future__ import annotations

import csv
import math
import os
import signal

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.policy import load_policy
from mappo.run import Run
from mappo.run_folder import RunFolder
from mappo.seeds import FlatLayout, MultiSeedTrainer, adam_step, flat_adam_state

TIMINGS = {
    "steps_per_second",
    "env_time",
    "inference_time",
    "update_time",
    "forward_time",
    "backward_time",
}


def small(**overrides) -> MappoConfig:
    settings = {
        "num_envs": 8,
        "rollout_steps": 20,
        "minibatch_size": 64,
        "update_epochs": 2,
        "total_steps": 480,
        "compile": "false",
        **overrides,
    }
    return MappoConfig(**settings)


def comparable(metrics) -> dict:
    """The metrics without timings, NaN as text (NaN != NaN)."""
    return {k: repr(v) for k, v in metrics.as_dict().items() if k not in TIMINGS}


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def test_one_seed_is_bitwise_a_solo_run() -> None:
    config = small(seed=4)
    multi = MultiSeedTrainer(config, [4])
    multi_history = multi.train()
    solo = MappoTrainer(config)
    solo_history = solo.train()
    assert len(multi_history) == len(solo_history) == 3
    for [seed_metrics], solo_metrics in zip(multi_history, solo_history, strict=True):
        assert comparable(seed_metrics) == comparable(solo_metrics)
    assert not math.isnan(multi_history[-1][0].episode_return)  # episodes finished
    for ours, theirs in zip(
        multi.trainers[0].policy.parameters(), solo.policy.parameters(), strict=True
    ):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"recurrent": True, "data_chunk_length": 5},
        {"recurrent": True, "data_chunk_length": 5, "critic_recurrent": False},
        {"critic": "local", "share_policy": False},
        {"env": "pz_envs:BoxActionEnv", "num_envs": 4, "rollout_steps": 10, "minibatch_size": 16},
        {
            "env": "gymnasium:gym_envs:TupleCounter-v0",
            "num_envs": 4,
            "rollout_steps": 10,
            "minibatch_size": 40,
        },
        {"env": "pz_envs:MaskedEnv", "num_envs": 4, "rollout_steps": 10, "minibatch_size": 16},
        {"env": "aec_envs:RelayEnv", "num_envs": 4, "rollout_steps": 10, "minibatch_size": 16},
        {
            "env": "image_envs:ColourEnv",
            "env_kwargs": {"image_state": True},
            "num_envs": 4,
            "rollout_steps": 8,
            "minibatch_size": 16,
        },
        {"max_grad_norm": 0.05},
    ],
    ids=[
        "feed-forward",
        "recurrent",
        "recurrent-actor-only",
        "ippo-per-agent",
        "pettingzoo-box",
        "gymnasium",
        "action-masks",
        "turn-based",
        "images",
        "gradients-clipped",
    ],
)
def test_each_seeds_update_equals_a_solo_update_on_the_same_data(overrides) -> None:
    config = small(**overrides)
    multi = MultiSeedTrainer(config, [3, 5, 7])
    solo = MappoTrainer(config.replace(seed=5))
    multi.collect_rollouts()
    solo.collect_rollout()
    seed5 = multi.trainers[1]
    # Seed 5 starts and samples as a solo run with seed 5 does: the same data, bit for bit.
    for name in ("observations", "actions", "rewards", "log_probs"):
        assert torch.equal(getattr(seed5.buffer, name), getattr(solo.buffer, name)), name
    before = [p.clone() for p in solo.parameters]
    [_, metrics, _] = multi.update()
    solo_metrics = solo.update()
    assert max_difference(seed5.parameters, before) > 1e-4  # the update moved them
    assert max_difference(seed5.parameters, solo.parameters) < 1e-6
    assert metrics.policy_loss == pytest.approx(solo_metrics.policy_loss, abs=1e-6)
    assert metrics.grad_norm == pytest.approx(solo_metrics.grad_norm, rel=1e-4)
    if "max_grad_norm" in overrides:  # the clip acted on (nearly) every step
        assert solo_metrics.grad_norm > 2 * config.max_grad_norm


@pytest.mark.parametrize(
    "overrides",
    [{}, {"recurrent": True, "data_chunk_length": 5}],
    ids=["feed-forward", "recurrent"],
)
def test_compiled_step_equals_the_eager_step(overrides) -> None:
    # The compiled step takes its gradient with torch.func.grad, the eager one with autograd.
    trained = []
    for compile_mode in ("true", "false"):
        multi = MultiSeedTrainer(small(compile=compile_mode, **overrides), [0, 1])
        multi.collect_rollouts()
        [metrics, _] = multi.update()
        trained.append((multi, metrics))
    (compiled, compiled_metrics), (eager, eager_metrics) = trained
    assert compiled.compiled and not eager.compiled
    assert max_difference(compiled.parameters, eager.parameters) < 1e-5
    assert compiled_metrics.policy_loss == pytest.approx(eager_metrics.policy_loss, abs=1e-6)
    assert compiled_metrics.grad_norm == pytest.approx(eager_metrics.grad_norm, rel=1e-4)


def test_seeds_do_not_interact() -> None:
    config = small()
    runs = [MultiSeedTrainer(config, [0, 1]) for _ in range(2)]
    for multi in runs:
        multi.collect_rollouts()
    changed = runs[1].trainers[1].buffer
    changed.rewards.mul_(-3.0).add_(1.0)  # seed 1's data differs in the second run
    changed.observations.add_(0.5)
    for multi in runs:
        multi.update()
    seed0 = [multi.trainers[0].parameters for multi in runs]
    seed1 = [multi.trainers[1].parameters for multi in runs]
    assert max_difference(*seed1) > 1e-4
    for a, b in zip(*seed0, strict=True):
        assert torch.equal(a, b)
    value_norms = [multi.trainers[0].policy.value_norm.running_mean for multi in runs]
    assert torch.equal(*value_norms)


def test_adam_step_equals_torch_adam_and_fills_its_state_dict() -> None:
    torch.manual_seed(0)
    layout = FlatLayout([torch.Size([3, 4]), torch.Size([3])])
    weights = torch.randn(2, 15)  # 2 seeds, each a 3x4 and a 3 tensor
    optimizer = torch.optim.Adam(
        [torch.nn.Parameter(v) for v in layout.split(weights)], lr=0.01, eps=1e-5
    )
    theirs = [torch.nn.Parameter(v.clone()) for v in layout.split(weights)]
    reference = torch.optim.Adam(theirs, lr=0.01, eps=1e-5)
    exp_avg, exp_avg_sq, step = flat_adam_state(optimizer, layout, weights)
    for _ in range(5):
        grad = torch.randn(2, 15)
        for p, g in zip(theirs, layout.split(grad), strict=True):
            p.grad = g.clone()
        reference.step()
        adam_step(weights, grad, exp_avg, exp_avg_sq, step, torch.tensor(0.01), eps=1e-5)
    assert max_difference(layout.split(weights), [p.detach() for p in theirs]) < 1e-6
    # The moments are the optimizer's state, in torch's Adam's layout.
    saved, expected = optimizer.state_dict()["state"], reference.state_dict()["state"]
    for index in (0, 1):
        assert saved[index]["step"].item() == expected[index]["step"].item() == 5
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(saved[index][name], expected[index][name], atol=1e-7)


def read_rows(path) -> list[dict]:
    """metrics.csv's rows without the timing columns."""
    with open(path, newline="") as handle:
        return [
            {k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(handle)
        ]


def train_args(run_dir, *extra: str) -> list[str]:
    return [
        "train",
        "--run-dir",
        str(run_dir),
        "--num-envs",
        "8",
        "--rollout-steps",
        "20",
        "--minibatch-size",
        "64",
        "--update-epochs",
        "2",
        "--compile",
        "false",
        "--quiet",
        *extra,
    ]


def test_cli_seeds_write_solo_run_folders_and_resume_all_seeds(tmp_path) -> None:
    multi_dir, solo_dir = tmp_path / "seeds", tmp_path / "solo"
    assert (
        main(
            train_args(
                multi_dir,
                "--seeds",
                "2,9",
                "--total-steps",
                "320",
                "--eval-interval",
                "160",
                "--eval-episodes",
                "2",
            )
        )
        == 0
    )
    assert (
        main(
            train_args(
                solo_dir,
                "--seed",
                "9",
                "--total-steps",
                "320",
                "--eval-interval",
                "160",
                "--eval-episodes",
                "2",
            )
        )
        == 0
    )
    ours = load_checkpoint(multi_dir / "seed_9" / "checkpoint.pt")
    solo = load_checkpoint(solo_dir / "checkpoint.pt")
    assert sorted(ours) == sorted(solo)
    assert ours["config"] == solo["config"] and ours["config"]["seed"] == 9
    assert ours["env_steps"] == solo["env_steps"] == 320
    for name in ("actor", "critic"):
        for key, tensor in solo[name].items():
            assert ours[name][key].shape == tensor.shape, key
            assert (ours[name][key] - tensor).abs().max().item() < 1e-5, key
    assert ours["optimizer"]["param_groups"] == solo["optimizer"]["param_groups"]
    for index, state in solo["optimizer"]["state"].items():
        assert ours["optimizer"]["state"][index]["exp_avg"].shape == state["exp_avg"].shape
    # Each seed folder is a run folder: evaluation, best.pt, metrics.
    assert ours["best_eval_return"] == pytest.approx(solo["best_eval_return"], abs=1e-4)
    for seed in (2, 9):
        folder = multi_dir / f"seed_{seed}"
        assert {"config.toml", "metrics.csv", "checkpoint.pt", "best.pt", "curve.png"} <= {
            p.name for p in folder.iterdir()
        }
        assert len((folder / "metrics.csv").read_text().splitlines()) == 1 + 2
        policy, env = load_policy(folder / "checkpoint.pt", lambda c: MappoTrainer(c).env)
        env.close()
        assert policy.config.seed == seed

    # Stopped after 2 updates and resumed to 4 = 4 updates straight, bit for bit.
    straight = tmp_path / "straight"
    assert (
        main(
            train_args(
                straight,
                "--seeds",
                "2,9",
                "--total-steps",
                "640",
                "--eval-interval",
                "160",
                "--eval-episodes",
                "2",
            )
        )
        == 0
    )
    assert main(["train", "--resume", str(multi_dir), "--total-steps", "640", "--quiet"]) == 0
    for seed in (2, 9):
        resumed = load_checkpoint(multi_dir / f"seed_{seed}" / "checkpoint.pt")
        expected = load_checkpoint(straight / f"seed_{seed}" / "checkpoint.pt")
        assert resumed["env_steps"] == 640
        for name in ("actor", "critic"):
            for key, tensor in expected[name].items():
                assert torch.equal(resumed[name][key], tensor), (seed, key)
        rows = [read_rows(run / f"seed_{seed}" / "metrics.csv") for run in (multi_dir, straight)]
        assert len(rows[0]) == 4 and rows[0] == rows[1]


def test_seeds_resume_together_only_from_one_step(tmp_path, capsys) -> None:
    """A seed resumed alone is ahead of the others: the batch refuses, naming how to even
    them, rather than train on with one seed's step for all (or a seed that never moves)."""
    run = tmp_path / "seeds"
    assert main(train_args(run, "--seeds", "2,9", "--total-steps", "320")) == 0
    assert main(["train", "--resume", str(run / "seed_9"), "--total-steps", "480", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--total-steps", "640", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run}: its seeds' checkpoints are at different env steps "
        "(seed_2 320, seed_9 480): a seed was resumed alone, or the run was killed between "
        "the seeds' saves; they train together only from one step: bring the others to 480 "
        f"first, e.g. mappo train --resume {run / 'seed_2'} --total-steps 480\n"
    )
    assert main(["train", "--resume", str(run / "seed_2"), "--total-steps", "480", "--quiet"]) == 0
    assert main(["train", "--resume", str(run), "--total-steps", "640", "--quiet"]) == 0
    for seed in (2, 9):
        assert load_checkpoint(run / f"seed_{seed}" / "checkpoint.pt")["env_steps"] == 640


def test_a_seed_brought_level_alone_goes_on_with_the_others_to_their_budget(
    tmp_path, capsys, caplog
) -> None:
    """The refusal's advice, `--resume <seed> --total-steps <step>`, saves that step as the
    seed's budget: the run's own `--resume` then refused with "total_steps cannot differ
    between the slots of one sweep", a dead end. It goes on to the others' budget."""
    config = MappoConfig(
        num_envs=8, rollout_steps=20, minibatch_size=64, update_epochs=2, compile="false",
        total_steps=640,
    )  # fmt: skip
    run = tmp_path / "seeds"
    Run.start(config, run, seeds=[2, 9]).train(quiet=True, callback=lambda metrics: True)
    Run.resume(run / "seed_9").train(quiet=True, callback=lambda metrics: True)  # one ahead
    assert main(["train", "--resume", str(run / "seed_2"), "--total-steps", "320", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0, capsys.readouterr().err
    assert f"{run}: its seeds' total_steps differ (320, 640): they go on to 640" in caplog.text
    for seed in (2, 9):
        assert load_checkpoint(run / f"seed_{seed}" / "checkpoint.pt")["env_steps"] == 640


def test_seeds_refuse_a_folder_holding_a_solo_run(tmp_path, capsys) -> None:
    run = tmp_path / "solo"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    assert main(train_args(run, "--seeds", "0,1", "--force")) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run} holds a run of its own (checkpoint.pt); --seeds "
        "writes its runs in RUN_DIR/seed_<s>: choose another --run-dir\n"
    )


@pytest.mark.parametrize(
    "flags, hidden",
    [
        ([], "seed_0, seed_1"),
        (["--force"], "seed_0, seed_1"),  # --force replaces runs; it deletes no folders
        (["--seeds", "1,2"], "seed_0"),
        (["--seeds", "0,1", "--sweep", "lr=0.001"], "seed_0, seed_1"),
    ],
    ids=["one-run", "one-run-forced", "other-seeds", "a-sweep"],
)
def test_a_new_run_beside_a_seeds_runs_folders_is_refused(tmp_path, capsys, flags, hidden) -> None:
    """A run started in the folder of a finished seeds run used to be written beside its
    seed_<s> folders: --resume then continued the new run alone (the seeds hidden), or the
    seeds of both runs as one."""
    run = tmp_path / "seeds"
    for seed in (0, 1):
        (run / f"seed_{seed}").mkdir(parents=True)
        (run / f"seed_{seed}" / "checkpoint.pt").write_bytes(b"")
    assert main(train_args(run, *flags)) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run} holds the runs of an earlier --seeds or --sweep run "
        f"({hidden}), which this run would not write; continue them with mappo train "
        f"--resume {run}, or choose another --run-dir\n"
    )
    assert sorted(p.name for p in run.iterdir()) == ["seed_0", "seed_1"]  # nothing written


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seeds", "0,0"], "--seeds: seed 0 appears twice; each run needs its own"),
        (["--seeds", "0,,1"], "--seeds = '0,,1': a seed is missing between commas"),
        (
            ["--seeds", f"0,{2**62}"],
            f"--seeds: seed {2**62} is not between 0 and 2**62",
        ),
        (
            ["--seeds", "0,x"],
            "--seeds = '0,x': give integers separated by commas, e.g. --seeds 0,1,2",
        ),
        (
            ["--seeds", "0,1", "--seed", "3"],
            "--seed and --seeds: give the seeds of the runs with --seeds only",
        ),
        (
            ["--seeds", "0,1", "--nproc", "2"],
            "--seeds trains every run in one process; it does not combine with --nproc",
        ),
    ],
)
def test_bad_seeds_are_refused_in_one_line(tmp_path, capsys, flags, message) -> None:
    assert main(train_args(tmp_path / "run", *flags)) == 2
    assert capsys.readouterr().err == f"mappo: error: {message}\n"


def test_ctrl_c_saves_every_seed_and_resume_equals_straight_through(tmp_path, monkeypatch) -> None:
    # A PettingZoo env: each seed's env copies are pickled into its own env_state.pkl.
    run = [
        "--env",
        "pz_envs:CounterEnv",
        "--env-kwargs",
        '{"episode_length": 7}',
        "--total-steps",
        "400",
        "--num-envs",
        "4",
        "--minibatch-size",
        "50",
        "--compile",
        "false",
        "--seeds",
        "3,4",
        "--quiet",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--run-dir", str(straight), *run]) == 0
    log, calls = RunFolder.log, []

    def log_then_interrupt(self, metrics):
        log(self, metrics)
        calls.append(metrics.env_steps)
        if len(calls) == 2 * 2:  # both seeds logged their second update: Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "log", log_then_interrupt)
        assert main(["train", "--run-dir", str(resumed), *run]) == 130  # saved, then stopped
    for seed in (3, 4):
        assert load_checkpoint(resumed / f"seed_{seed}" / "checkpoint.pt")["env_steps"] == 200
        assert (resumed / f"seed_{seed}" / "env_state.pkl").is_file()
    assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    for seed in (3, 4):
        a = load_checkpoint(straight / f"seed_{seed}" / "checkpoint.pt")
        b = load_checkpoint(resumed / f"seed_{seed}" / "checkpoint.pt")
        assert a["env_steps"] == b["env_steps"] == 400
        for part in ("actor", "critic", "value_norm"):
            for name, tensor in a[part].items():
                assert torch.equal(tensor, b[part][name]), (seed, part, name)
        for index, state in a["optimizer"]["state"].items():
            for key, tensor in state.items():
                assert torch.equal(tensor, b["optimizer"]["state"][index][key]), (seed, key)
        rows = [
            read_rows(run_dir / f"seed_{seed}" / "metrics.csv") for run_dir in (straight, resumed)
        ]
        assert len(rows[0]) == 4 and rows[0] == rows[1]


def test_one_seed_of_seeds_names_its_own_folder_at_the_end(tmp_path, capsys) -> None:
    """`--seeds 3` writes RUN_DIR/seed_3; its last line named RUN_DIR, where `mappo eval`
    then found no checkpoint."""
    run = tmp_path / "s"
    assert main(train_args(run, "--seeds", "3", "--total-steps", "160")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("done: 160 env steps") and last.endswith(f"run folder {run / 'seed_3'}")
    assert main(["eval", str(run / "seed_3"), "--episodes", "1"]) == 0


def test_eval_and_export_of_a_seeds_folder_name_its_runs(tmp_path, capsys) -> None:
    """`mappo eval RUN_DIR` of a `--seeds` run said "checkpoint RUN_DIR/checkpoint.pt: no
    such file", as for a mistyped folder; and a refused export left its empty --out folder."""
    run = tmp_path / "s"
    assert main(train_args(run, "--seeds", "0,1", "--total-steps", "160")) == 0
    capsys.readouterr()
    out = tmp_path / "exported" / "x"
    for command in (["eval", str(run)], ["export", str(run), "--out", str(out)]):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"mappo: error: run folder {run} holds the runs of a --seeds run or sweep (seed_0, "
            f"seed_1): give one of them, e.g. {run / 'seed_0'} (mappo report {run} scores them "
            "all)\n"
        )
    assert main(["eval", str(tmp_path / "typo")]) == 2
    assert (
        capsys.readouterr().err == f"mappo: error: run folder {tmp_path / 'typo'} does not exist\n"
    )
    (run / "seed_0" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(run / "seed_0"), "--out", str(out)]) == 2
    assert "is corrupt or truncated" in capsys.readouterr().err
    assert not (tmp_path / "exported").exists()  # the folders it made for --out are gone
