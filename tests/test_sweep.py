"""`mappo train --sweep`: a grid of settings x seeds in one process, each slot a normal run
folder named by its settings, which eval, plot, report and --resume read as any other."""

from __future__ import annotations

import tomllib

import pytest

from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.config import ConfigError, parse_sweep
from mappo.run import setting_name, sweep_settings
from mappo.run_folder import slot_folders

TINY = ["--total-steps", "400", "--num-envs", "8", "--minibatch-size", "50",
        "--compile", "false", "--quiet"]  # fmt: skip
SWEEP = ["--sweep", "lr=1e-3,3e-3", "--sweep", "ent_coef=0,0.01", "--seeds", "0,1"]


def test_sweep_values_parse_to_their_fields_types() -> None:
    assert parse_sweep(["lr=1e-4,3e-4", "norm-adv=true,false", "update_epochs=4"]) == {
        "lr": [1e-4, 3e-4], "norm_adv": [True, False], "update_epochs": [4]}  # fmt: skip
    settings = sweep_settings({"lr": [1, 2], "gamma": [0.9, 0.99]})
    assert settings == [{"lr": 1, "gamma": 0.9}, {"lr": 1, "gamma": 0.99},
                        {"lr": 2, "gamma": 0.9}, {"lr": 2, "gamma": 0.99}]  # fmt: skip
    assert setting_name({"lr": 3e-4, "ent_coef": 0.0, "norm_adv": False}) == (
        "lr=0.0003,ent_coef=0,norm_adv=false"
    )


@pytest.mark.parametrize(("item", "message"), [
    ("lr", "--sweep 'lr': give FIELD=VALUE,VALUE,... e.g. lr=1e-4,3e-4"),
    ("learning_rate=1e-3", "--sweep 'learning_rate=1e-3': 'learning_rate' is not a config "
     "field; did you mean 'lr'?"),
    ("lr=fast", "config key 'lr' = 'fast': expected float"),
])  # fmt: skip
def test_bad_sweep_items_are_one_line(item, message) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_sweep([item])
    assert str(refused.value) == message


def test_a_sweep_writes_one_run_folder_per_setting_and_seed(tmp_path, capsys) -> None:
    run = tmp_path / "sweep"
    assert main(["train", "--run-dir", str(run), *SWEEP, *TINY]) == 0
    out = capsys.readouterr().out
    assert (
        f"8 runs in one process (4 settings x 2 seeds), run folders {run}/<setting>/seed_<s>" in out
    )
    folders = slot_folders(run)
    names = [str(f.relative_to(run)) for f in folders]
    assert names == [f"lr={lr},ent_coef={ent}/seed_{seed}" for lr in ("0.001", "0.003")
                     for ent in ("0", "0.01") for seed in (0, 1)]  # fmt: skip
    for folder in folders:
        config = tomllib.loads((folder / "config.toml").read_text())
        setting, seed = folder.parent.name, int(folder.name[5:])
        assert setting == f"lr={config['lr']:g},ent_coef={config['ent_coef']:g}"
        assert config["seed"] == seed
        assert load_checkpoint(folder / "checkpoint.pt")["env_steps"] == 400
    # The runs differ: the settings reached their own slots.
    weights = [load_checkpoint(f / "checkpoint.pt")["actor"]["fc1.weight"] for f in folders]
    assert len({float(w.sum()) for w in weights}) == 8

    # report: one group per setting, ranked, with the best config named
    assert main(["report", str(run), "--episodes", "4"]) == 0
    text = capsys.readouterr().out
    assert "Ranked by IQM (spread)" in text and "| 4 |" in text
    best = text.split("Best: ")[1].split(";")[0]
    first = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert first.split(" | ")[1] == best  # the top of the ranking
    ent, lr = (part.split("=")[1] for part in best.split(", "))  # "ent_coef=0.01, lr=0.001"
    config_file = text.split("its config is ")[1].split(" ")[0]
    best_config = tomllib.loads(open(config_file).read())
    assert (best_config["lr"], best_config["ent_coef"]) == (float(lr), float(ent))
    assert main(["train", "--config", config_file, "--run-dir", str(tmp_path / "best"),
                 *TINY]) == 0  # fmt: skip

    # plot: one band per setting
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert capsys.readouterr().out.count("2 runs") == 4

    # resume: every slot goes on
    assert main(["train", "--resume", str(run), "--total-steps", "800", "--quiet"]) == 0
    assert all(load_checkpoint(f / "checkpoint.pt")["env_steps"] == 800 for f in folders)
    assert main(["eval", str(folders[-1]), "--episodes", "2"]) == 0


@pytest.mark.parametrize(("flags", "message"), [
    (["--sweep", "hidden_dim=32,64"], "hidden_dim cannot differ between the slots of one sweep"),
    (["--sweep", "seed=1,2"], "--sweep seed=...: give the seeds of the runs with --seeds"),
    (["--sweep", "lr=1e-3,1e-3"], "--sweep lr: a value appears twice"),
    # The flag was dropped without a word: the sweep's values trained.
    (["--sweep", "lr=1e-3,2e-3", "--lr", "5e-4"], "--sweep lr=... and --lr: give the values "
     "of lr with --sweep only"),
    (["--sweep", "lr=1e-3", "--nproc", "2"], "--sweep trains every run in one process; it "
     "does not combine with --nproc"),
])  # fmt: skip
def test_sweeps_that_cannot_run_are_one_line(flags, message, tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "s"), *flags, *TINY]) == 2
    said = capsys.readouterr()
    assert message in said.err and "building" not in said.out  # refused before any work


def test_a_swept_team_reward_does_not_mix_returns_in_the_progress_line() -> None:
    from mappo.seeds import pooled_metrics
    from mappo.trainer import MappoMetrics

    def slot(ret: float, kind: str) -> MappoMetrics:
        return MappoMetrics(0.0, 0.0, 0.0, episode_return=ret, return_definition=kind,
                            episodes=4, env_steps=100)  # fmt: skip

    pooled = pooled_metrics([slot(-30.0, "team"), slot(-10.0, "per_agent"), slot(-20.0, "team")])
    assert pooled.return_definition == "team" and pooled.episode_return == -25.0
    assert pooled.episodes == 8 and pooled.env_steps == 300
