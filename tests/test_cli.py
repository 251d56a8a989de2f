"""`mappo train` and `mappo eval` from the command line: run folder, exit codes, messages."""

import csv
import json
import math
import signal
import subprocess
import sys

import pytest
import torch

from mappo import MappoConfig
from mappo.checkpoint import load_checkpoint
from mappo.cli import main

TINY = ["--total-steps", "1600", "--num-envs", "16", "--quiet"]


def test_train_writes_the_run_folder(tiny_run) -> None:
    for name in ("config.toml", "metrics.csv", "checkpoint.pt", "curve.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    assert list(tiny_run.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((tiny_run / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 4  # 1600 steps / (16 envs * 25 steps)
    for column in (
        "env_steps",
        "episode_return",
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "steps_per_second",
    ):
        assert column in rows[0]
    assert [int(r["env_steps"]) for r in rows] == [400, 800, 1200, 1600]
    # Every update of 25 steps finishes exactly one 25-step episode per env.
    assert all(int(r["episodes"]) == 16 for r in rows)
    assert -60 < float(rows[0]["episode_return"]) < -10


def test_config_toml_is_the_full_config_and_loads(tiny_run) -> None:
    import tomllib

    saved = tomllib.loads((tiny_run / "config.toml").read_text())
    # The env's facts are there to read, apart from the settings: the critic reads the
    # 3 x 18 observations and the time left (Spread's time limit is part of its task).
    assert saved["read_off_env"] == {
        "num_agents": 3,
        "obs_dim": 18,
        "global_state_dim": 55,
        "action_dim": 5,
    }
    # The auto settings stay auto, with what they were decided to be for spread aside.
    auto = ("agent_id", "bootstrap_time_limits", "critic_time_left", "team_reward")
    assert [saved[name] for name in auto] == ["auto"] * 4
    assert saved["auto_decided"] == {
        "agent_id": False,
        "bootstrap_time_limits": False,
        "critic_time_left": True,
        "team_reward": True,
    }
    config = MappoConfig.load(tiny_run / "config.toml")
    assert (config.seed, config.num_envs) == (3, 16)
    # Read back, the facts are not settings (the file trains another size of the env), and
    # the fields the run wrote at their defaults were no one's choice.
    assert config.given == {"seed", "num_envs", "total_steps"}
    bigger = config.replace(env_kwargs={"num_agents": 4}, total_steps=16, minibatch_size=0)
    from mappo import MappoTrainer

    assert MappoTrainer(bigger).config.num_agents == 4


def test_a_runs_config_toml_trains_another_env_with_its_own_auto_settings_and_no_warnings(
    tiny_run, tmp_path, capsys, caplog
) -> None:
    """The documented round trip: spread's decisions (no agent id, terminal time limits)
    are not carried over to an env that has no such conventions."""
    argv = ["train", "--config", str(tiny_run / "config.toml"), "--run-dir", str(tmp_path / "r")]
    with caplog.at_level("INFO", logger="mappo"):
        assert main([*argv, "--env", "pz_envs:CounterEnv", "--total-steps", "16"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert [line for line in said if line.startswith("auto settings")] == [
        "auto settings for env 'pz_envs:CounterEnv': agent_id = true (library default), "
        "team_reward = false (library default), bootstrap_time_limits = true (library default), "
        "critic_time_left = false (time limits are bootstrapped)"
    ]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_existing_run_folder_is_refused(tiny_run, capsys) -> None:
    before = (tiny_run / "metrics.csv").read_bytes()
    assert main(["train", "--run-dir", str(tiny_run), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tiny_run / "metrics.csv").read_bytes() == before


def test_eval_prints_json_last(tiny_run, capsys) -> None:
    assert main(["eval", str(tiny_run), "--episodes", "6", "--json", "--deterministic"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["episodes"] == 6
    assert -60 < result["mean_episode_return"] < 0
    assert result["std_episode_return"] >= 0


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (
            ["--clip-coeff", "0.1"],
            "unknown option '--clip-coeff' for 'mappo train'; did you mean --clip-coef?",
        ),
        (["--gamma", "2"], "'gamma' = 2.0: must be in [0, 1]"),
        (["--update-epochs", "many"], "'update_epochs' = 'many': expected int"),
        (["--share-policy", "maybe"], "'share_policy' = 'maybe': expected bool"),
        # No prefix matching: a misspelt flag is not silently taken for another.
        (
            ["--total-step", "2000"],
            "unknown option '--total-step' for 'mappo train'; did you mean --total-steps?",
        ),
        # Names from other libraries point to ours.
        (
            ["--learning-rate", "1e-3"],
            "unknown option '--learning-rate' for 'mappo train'; did you mean --lr?",
        ),
        (
            ["--env-kwargs", "{n_agents: 4}"],
            "config key 'env_kwargs' = '{n_agents: 4}': not "
            "JSON (Expecting property name enclosed in double quotes at character 1)",
        ),
        (["--env-kwargs", "[4]"], "config key 'env_kwargs' = '[4]': expected dict"),
        (["--nproc", "0"], "--nproc = 0: must be >= 1 (the ranks on this node)"),
        (["--seed", "-1"], "config key 'seed' = -1: must be an integer between 0 and 2**62"),
        (["--debug"], "unknown option '--debug' for 'mappo train': it goes before the command, "
         "mappo --debug train ..."),
    ],
)  # fmt: skip
def test_bad_flags_exit_2_naming_the_culprit(argv, culprit, tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "r"), *argv, *TINY]) == 2
    assert culprit in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_other_commands_suggest_their_own_options(tiny_run, capsys) -> None:
    assert main(["eval", str(tiny_run), "--episdoes", "3"]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: unknown option '--episdoes' for 'mappo eval'; did you mean --episodes?\n"
    )
    assert main(["eval", str(tiny_run), "--env-kwargs", "{}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "mappo: error: 'mappo eval' has no option '--env-kwargs': it reads "
        "the run's own config.toml (options: --help, --episodes,"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--render", "x.gif"], "'mappo train' has no option '--render': it is an "
                                         "option of mappo eval"),
        (["eval", "r", "--out", "o"], "'mappo eval' has no option '--out': it is an option of "
                                      "mappo plot, mappo report and mappo export"),
    ],
)  # fmt: skip
def test_an_option_of_another_command_says_whose_it_is(argv, said, capsys) -> None:
    """`train --render` suggested --encoder, the nearest of train's own options."""
    assert main(argv) == 2
    assert capsys.readouterr().err == f"mappo: error: {said}\n"


def test_unknown_key_in_toml_suggests(tmp_path, capsys) -> None:
    (tmp_path / "c.toml").write_text("learning_rate = 0.001\n")
    assert main(["train", "--config", str(tmp_path / "c.toml"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'learning_rate'" in err and str(tmp_path / "c.toml") in err
    assert err.strip().endswith("did you mean 'lr'?")


def test_help_names_every_form_of_env(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for form in ("vmas:<scenario>", "jaxmarl:<name>", "gymnasium:<module>:<id>", "module:callable"):
        assert form in text


def test_plot_writes_curves_png_without_out(tiny_run, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(tiny_run)]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert capsys.readouterr().out.strip().endswith("wrote curves.png")


def test_an_output_that_cannot_be_written_is_refused_before_any_work(
    tiny_run, tmp_path, capsys
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    cases = [
        (["export", str(tiny_run), "--out", str(a_file)], f"--out {a_file}: {a_file} is a"),
        (["plot", str(tiny_run), "--out", str(a_file / "sub" / "c.png")], f"{a_file} is a file"),
        (["report", str(tiny_run), "--json", str(tmp_path)], f"--json {tmp_path} is a folder"),
        (["report", str(tiny_run), "--out", str(a_file / "r.md")], f"{a_file} is a file, not a"),
        (["eval", str(tiny_run), "--render", str(a_file / "e.gif")], f"{a_file} is a file"),
    ]
    for argv, says in cases:
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"mappo: error: {argv[2]} ") and says in err and not out
        assert len(err.splitlines()) == 1
    assert a_file.read_text() == ""  # nothing written over it


def test_resume_says_what_a_hand_edit_of_config_toml_loses_and_refuses_another_env(
    tiny_run, tmp_path, capsys, caplog
) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    config = run / "config.toml"
    saved = config.read_text()
    assert "\nlr = 0.0007\n" in saved
    config.write_text(saved.replace("\nlr = 0.0007\n", "\nlr = 0.5\n"))
    with caplog.at_level("WARNING", logger="mappo.run"):
        assert main(["train", "--resume", str(run), "--total-steps", "2000", "--quiet"]) == 0
    err = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{run}/config.toml differs from the checkpoint's config, which the run resumes " in err
    # Only the hand edit: the auto settings, `auto` in the file, are the checkpoint's.
    assert err.endswith("writes back: lr = 0.5 (the checkpoint's: 0.0007)")
    assert "\nlr = 0.0007\n" in config.read_text()  # as the run learned with
    assert '\nagent_id = "auto"\n' in config.read_text()  # the checkpoint keeps what was decided
    # A checkpoint copied in from a run of another env is not this folder's: refused, with
    # the folder's metrics untouched.
    config.write_text(config.read_text().replace('env = "spread"', 'env = "reference"'))
    metrics = (run / "metrics.csv").read_text()
    assert main(["train", "--resume", str(run), "--total-steps", "2400"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run}: its checkpoint.pt is a run of env 'spread', its "
        "config.toml of env 'reference'; it is not this folder's checkpoint\n"
    )
    assert (run / "metrics.csv").read_text() == metrics
    # A key mappo does not take (a typo in a hand edit) is named before it is written over.
    config.write_text(saved.replace("\nlr = 0.0007\n", "\nlr = 0.0007\nent_coeff = 0.5\n"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="mappo.run"):
        assert main(["train", "--resume", str(run), "--total-steps", "2400", "--quiet"]) == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"{config} is replaced by the checkpoint's config, which the run resumes with: unknown "
        f"config key 'ent_coeff' in {config}; did you mean 'ent_coef'?"
    ]
    assert "ent_coeff" not in config.read_text()


def test_resume_may_change_how_not_what_and_says_where_it_resumes(
    tiny_run, tmp_path, capsys
) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "lr cannot change" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--resume",
                str(run),
                "--total-steps",
                "2000",
                "--compile",
                "false",
                "--checkpoint-interval",
                "60",
                "--eval-interval",
                "400",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"resuming {run} at env step 1,600 (update 4), from its checkpoint of " in out
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 2000


def test_help_offers_no_env_derived_fields(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--num-envs" in out and "--checkpoint-interval" in out
    for flag in ("--num-agents", "--obs-dim", "--global-state-dim", "--action-dim"):
        assert flag not in out
    # Defaults as the flags take them: `true`, not Python's True; none, not an empty string.
    flat = " ".join(out.split())
    assert "agent_id) (default true)" in flat and "one policy per prefix (default none)" in flat
    assert "(default True)" not in flat and "(default )" not in flat


def test_env_derived_field_as_flag_is_an_unknown_option(tmp_path, capsys) -> None:
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--num-agents", "3", *TINY]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mappo: error: unknown option '--num-agents'; num_agents is read off the "
        "env, not set (the env's own options go in --env-kwargs)\n"
    )
    assert not (tmp_path / "r").exists()


def test_resume_without_checkpoint_says_what_to_run(tiny_run, tmp_path, capsys) -> None:
    # A run killed before its first checkpoint: config.toml and metrics.csv, no checkpoint.pt.
    run = tmp_path / "killed"
    run.mkdir()
    for name in ("config.toml", "metrics.csv"):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    assert main(["train", "--resume", str(run)]) == 2
    again = f"mappo train --config {run / 'config.toml'} --run-dir {run} --force"
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run} has no checkpoint.pt (the run stopped before its "
        f"first checkpoint, or this is not a run folder); start it again with: {again}\n"
    )
    # The saved config (num_agents, obs_dim, ... included) starts the same run again.
    assert main(["train", *again.split()[2:], "--quiet"]) == 0
    assert MappoConfig.load(run / "config.toml") == MappoConfig.load(tiny_run / "config.toml")
    again_actor = load_checkpoint(run / "checkpoint.pt")["actor"]
    for name, tensor in load_checkpoint(tiny_run / "checkpoint.pt")["actor"].items():
        assert torch.equal(again_actor[name], tensor), name

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--resume", str(empty)]) == 2
    assert capsys.readouterr().err.endswith(
        f"start it again with: mappo train --run-dir {empty} --force and the run's flags\n"
    )
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {tmp_path / 'nowhere'} does not exist; start a run there "
        f"with: mappo train --run-dir {tmp_path / 'nowhere'}\n"
    )
    # A seeds run killed before its first checkpoint starts again with all its seeds.
    seeds = tmp_path / "seeds"
    for seed in (3, 5):
        (seeds / f"seed_{seed}").mkdir(parents=True)
        (seeds / f"seed_{seed}" / "config.toml").write_bytes(
            (tiny_run / "config.toml").read_bytes()
        )
    assert main(["train", "--resume", str(seeds)]) == 2
    again = f"mappo train --config {seeds / 'seed_3' / 'config.toml'} --seeds 3,5 --run-dir {seeds}"
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {seeds} has no checkpoint in its seeds' folders (the run "
        f"stopped before its first checkpoint); start it again with: {again} --force\n"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["train", "--run-dir", ""], "mappo train: error: argument --run-dir: give a path"),
        (["export", "RUN", "--out", " "], "mappo export: error: argument --out: give a path"),
        (["eval", ""], "mappo eval: error: argument run_dir: give a path"),
        (["report", "RUN", ""], "mappo report: error: argument RUN_DIR: give a path"),
    ],
)
def test_an_empty_path_is_refused_not_taken_for_this_folder(
    argv, says, tiny_run, tmp_path, monkeypatch, capsys
) -> None:
    """An unset shell variable (`--run-dir "$RUN"`) would have named the current folder: a
    run or an export written among the files there."""
    monkeypatch.chdir(tmp_path)
    argv = [str(tiny_run) if a == "RUN" else a for a in argv]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert says + " (an empty one would mean this folder)" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_eval_refuses_what_the_env_or_torch_cannot_take_and_runs_a_gpu_run_on_the_cpu(
    tiny_run, tmp_path, capsys
) -> None:
    """`--seed -1` (Gymnasium's envs refuse it) and `--device cuda` on a torch without CUDA
    are one line each (an assertion deep in torch, before); a run trained on a GPU is
    evaluated on this machine's CPU without a flag."""
    assert main(["eval", str(tiny_run), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: --seed = -1: must be an integer between 0 and 2**62\n"
    )
    assert main(["eval", str(tiny_run), "--device", "cuda"]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: --device cuda: this torch has no usable CUDA device; use 'cpu'\n"
    )
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    payload["config"]["device"] = "cuda"
    torch.save(payload, tmp_path / "gpu.pt")
    assert main(["eval", str(tmp_path / "gpu.pt"), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["episodes"] == 2 and math.isfinite(result["mean_episode_return"])


def test_a_folder_where_a_run_file_should_be_or_a_file_for_a_folder_says_so(
    tiny_run, tmp_path, capsys
) -> None:
    """Each error names what is there: a run stopped before its first checkpoint (only
    config.toml: --resume has nothing to continue, so only --force is offered), a folder
    in checkpoint.pt's place, a file given to `mappo stop`."""
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.toml").write_text((tiny_run / "config.toml").read_text())
    assert main(["train", "--run-dir", str(stopped), *TINY]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {stopped} holds a run stopped before its first checkpoint "
        "(config.toml), nothing to resume; pass --force to start it again\n"
    )
    (tmp_path / "odd" / "checkpoint.pt").mkdir(parents=True)
    assert main(["train", "--resume", str(tmp_path / "odd")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: checkpoint {tmp_path / 'odd' / 'checkpoint.pt'} is a folder, not a file\n"
    )
    (tmp_path / "job.sh").write_text("")
    assert main(["stop", str(tmp_path / "job.sh")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {tmp_path / 'job.sh'} is a file, not a run folder\n"
    )


def test_a_broken_pipe_that_is_not_stdouts_is_an_error(tiny_run, monkeypatch, capsys) -> None:
    """Only a stdout whose reader has gone ends a command quietly (141); a pipe of its own
    breaking (a worker's, an env's socket) is said, as before."""
    import mappo.evaluation

    def worker_pipe_broke(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(mappo.evaluation, "evaluate_run", worker_pipe_broke)
    assert main(["eval", str(tiny_run)]) == 2
    assert capsys.readouterr().err == "mappo: error: Broken pipe\n"


def test_ctrl_c_while_torch_loads_is_one_line() -> None:
    """The first second or more of every command goes to loading torch: a Ctrl-C then gave
    the import's 20-40-line traceback. `import mappo` loads no torch, and the entry point
    (`mappo.console`) says one line. Here torch's import is what the Ctrl-C interrupts."""
    interrupted_torch = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "import mappo\n"
        "from mappo.console import main\n"
        "sys.exit(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", interrupted_torch, "train"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (-signal.SIGINT, "mappo: interrupted\n")


def test_the_public_names_load_on_first_use() -> None:
    import mappo

    assert sorted(mappo.__all__) == sorted(mappo._HOMES)
    for name in mappo.__all__:
        assert getattr(mappo, name).__name__ == name
    assert set(mappo.__all__) <= set(dir(mappo))
    with pytest.raises(AttributeError, match="module 'mappo' has no attribute 'Trainer'"):
        mappo.Trainer  # noqa: B018
