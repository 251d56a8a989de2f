"""`benchmarks/published.toml`, the data `benchmarks/reproduce.py` trains and scores from: every
task builds a valid config with its suite's preset, at the published budget, and converts
to its figure's scale as the table says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest
import torch
from benchmark_scripts import load_script

from mappo.run import Run
from mappo.run_lock import RunLock


@pytest.fixture(scope="module")
def reproduce():
    return load_script("reproduce")


def refused(call, capsys, *args: str) -> str:
    """The one line on stderr with which `call(*args)` (`reproduce.main`) was refused, after
    checking that it exited with code 2, as `mappo` does for bad input."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        call(*args)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("reproduce.py: error: ")
    return line


@pytest.mark.parametrize(
    "suite", ["mpe", "smax", "lbf", "rware", "vmas", "epymarl-lbf", "epymarl-rware"]
)
def test_every_task_builds_its_published_config(reproduce, suite) -> None:
    from mappo.presets import build_config

    if suite == "smax":
        pytest.importorskip("jaxmarl")  # the preset checks the map against JaxMARL's
    table, tasks = reproduce.read_suite(suite)
    assert table["title"] and tasks
    # How the source chose actions is read from it, never the code's default.
    assert table["actions"] in reproduce.ACTIONS and table["actions_source"]
    for task in tasks:
        fields = {**task.fields, "env": task.env, "total_steps": task.budget}
        config = build_config(task.preset, None, fields)
        assert config.total_steps == task.budget and config.env == task.env
        assert task.source and (task.figure is not None or task.figure_text)
        if suite == "mpe":  # built in: the env takes the task's options (a typo would raise)
            from mappo.envs.registry import make_env

            make_env(task.env, 1, env_kwargs=config.env_kwargs).close()


def test_scores_convert_to_the_published_scale(reproduce) -> None:
    task = reproduce.Task("t", "spread", 1, "s", "spread_official")
    # 3 agents, 25 steps: the official team return is 6 R - 75.
    assert reproduce.converted(task, np.array([-7.5]), 3).tolist() == [-120.0]
    summed = reproduce.Task("t", "e", 1, "s", "team_sum")
    assert reproduce.converted(summed, np.array([0.25, 0.5]), 2).tolist() == [0.5, 1.0]


def test_a_variant_changes_only_what_it_names(reproduce) -> None:
    """`--preset none --set recurrent=false --set env_kwargs=...` on the SMAX table: the
    preset goes, the field is parsed to its type, and the map of each task stays."""
    _, tasks = reproduce.read_suite("smax")
    sets = reproduce.parse_sets(["recurrent=false", 'env_kwargs={"see_enemy_actions": true}'])
    assert sets == {"recurrent": False, "env_kwargs": {"see_enemy_actions": True}}
    varied = reproduce.variant_of(tasks, "none", sets)
    assert [t.preset for t in varied] == [None, None]
    assert [t.fields["env_kwargs"] for t in varied] == [
        {"scenario": "3m", "see_enemy_actions": True},
        {"scenario": "2s3z", "see_enemy_actions": True},
    ]
    assert varied[0].fields["compile"] == "false" and varied[0].fields["recurrent"] is False
    assert reproduce.variant_name("none", {"recurrent": False}) == (
        "preset=none,recurrent=false",
        "preset_none_recurrent_false",
    )
    assert reproduce.variant_name(None, {}) == ("", "")
    for bad, says in (
        (["recurent=false"], "give FIELD=VALUE with a config field"),
        (["lr=fast"], "config key 'lr' = 'fast': expected float"),
    ):
        with pytest.raises(reproduce.UsageError, match=says):
            reproduce.parse_sets(bad)
    with pytest.raises(reproduce.UsageError, match="--preset 'epymarl2': the presets are none, "):
        reproduce.variant_of(tasks, "epymarl2", {})


def test_a_budget_short_of_its_end_never_reads_100_percent(reproduce) -> None:
    assert [reproduce.share(f) for f in (0.997, 0.9949, 1.0, 1.004, 0.0011, 0)] == [
        "99.7%",
        "99%",
        "100%",
        "100%",
        "0.11%",
        "0%",
    ]


def test_a_results_dir_the_table_cannot_go_to_is_refused_before_training(
    reproduce, tmp_path, monkeypatch, capsys
) -> None:
    """It was a FileExistsError traceback after the hours of training."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    common = ["reproduce.py", "--suite", "tiny", "--runs-dir", str(tmp_path / "runs")]
    for results, says in (
        (a_file, f"--results-dir {a_file}: a file, not a folder"),
        (a_file / "sub", f"--results-dir {a_file / 'sub'}: under the file {a_file}, not a "
                         "folder"),
    ):  # fmt: skip
        monkeypatch.setattr(sys, "argv", [*common, "--results-dir", str(results)])
        assert refused(reproduce.main, capsys) == f"reproduce.py: error: {says}"
    assert not (tmp_path / "runs").exists()  # nothing made, nothing trained


def test_tasks_left_when_the_hours_run_out_are_named(reproduce, tmp_path, monkeypatch) -> None:
    tiny_suite(reproduce, tmp_path, monkeypatch)
    _, tasks = reproduce.read_suite("tiny")
    trained: list[str] = []
    stops = reproduce.Stops()  # not entered: no signal handlers taken
    assert reproduce.train_tasks(tasks, tmp_path, [0], 0.0, None, trained, stops) is None
    assert trained == ["spread, reference not started: --hours ran out"]


def test_bad_options_are_refused_before_the_table_is_touched(
    reproduce, tmp_path, monkeypatch, capsys
) -> None:
    """A zero, negative or NaN `--hours`, `--scale`, `--episodes` or `--torch-threads`, or a
    `--runs-dir` that is a file, is refused in one line naming the option, and the table
    is not rewritten (a `--hours -1` once rewrote it with nothing trained)."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    common = ["reproduce.py", "--suite", "tiny", "--runs-dir", str(tmp_path / "runs")]
    for option, value, says in (
        ("--hours", "-1", "argument --hours: '-1': give a finite number above 0"),
        ("--hours", "nan", "argument --hours: 'nan': give a finite number above 0"),
        ("--scale", "0", "argument --scale: '0': give a finite number above 0"),
        ("--scale", "inf", "argument --scale: 'inf': give a finite number above 0"),
        ("--scale", "half", "argument --scale: 'half' is not a number"),
        ("--episodes", "0", "argument --episodes: '0': give a finite number above 0"),
        ("--torch-threads", "1.5", "argument --torch-threads: '1.5' is not an integer"),
    ):
        monkeypatch.setattr(sys, "argv", [*common, option, value])
        with pytest.raises(SystemExit):
            reproduce.main()
        assert capsys.readouterr().err.splitlines()[-1] == f"reproduce.py: error: {says}"
    for option, value, says in (
        ("--set", "seed=5", "--set 'seed=5': the table sets seed; give --seeds"),
        ("--set", "env=spread", "--set 'env=spread': the table sets env; give --tasks (each"),
        ("--scale", "1e-3", "--scale 0.001: spread's budget of 800 env steps scales to none; "),
        ("--runs-dir", "", "--runs-dir: give a folder"),
        # Refused once the runs' folder is made: it is removed again, empty.
        ("--set", "hidden_dim=-1", "config key 'hidden_dim' = -1: must be an integer >= 1"),
    ):
        monkeypatch.setattr(sys, "argv", [*common, option, value])
        assert says in refused(reproduce.main, capsys)
    monkeypatch.setattr(sys, "argv", [*common[:3], "--runs-dir", str(a_file)])
    says = f"--runs-dir {a_file}: cannot make {a_file / 'tiny'}: Not a directory"
    assert says in refused(reproduce.main, capsys)
    monkeypatch.setattr(sys, "argv", [*common, "--tasks", "", "sprd"])
    says = "--tasks: tiny has no '', 'sprd'; its tasks are spread, reference"
    assert says in refused(reproduce.main, capsys)
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()


def test_a_dropped_record_of_any_shape_gets_its_line(reproduce, monkeypatch) -> None:
    """A record's NaN scores are kept as null; a legacy one has no `learns_with`, date or
    machine: its dropped line still names what it held instead of failing the whole call."""
    _, tasks = reproduce.read_suite("mpe")
    monkeypatch.setattr(reproduce, "utc_now", lambda: "2099-01-01 00:00 UTC")
    entry = {
        "result": {"steps": 1200, "score": [None, 0.5], "iqm": None},
        "config": {"env": "spread", "preset": "paper-mpe", "fields": {}, "scale": "same"},
    }
    line = reproduce.dropped_line(tasks[0], entry)
    assert line == (
        "2099-01-01 00:00 UTC  record dropped, of another config than the task's now "
        "(fields; scale): spread at 1,200 env steps per seed, IQM n/a (n/a, 0.500), scored at "
        "an unknown date on unknown"
    )


def tiny_suite(reproduce, tmp_path, monkeypatch):
    """A published table of two tiny MPE tasks in `tmp_path`, results written beside it."""
    import bench_common

    table = tmp_path / "published.toml"
    table.write_text(
        '[tiny]\ntitle = "A tiny suite"\nfields = { num_envs = 4, compile = "false" }\n'
        '[[tiny.task]]\nname = "spread"\nenv = "spread"\nbudget = 800\nscale = "same"\n'
        'figure = -20.0\nmetric = "team return"\nsource = "a test"\n'
        '[[tiny.task]]\nname = "reference"\nenv = "reference"\nbudget = 400\n'
        'fields = { minibatch_size = 0 }\nscale = "same"\n'
        'metric = "mean return"\nsource = "a test"\n'
    )
    monkeypatch.setattr(reproduce, "DATA", table)
    monkeypatch.setattr(bench_common, "RESULTS_DIR", tmp_path / "results")
    return table


def table_calls(reproduce, tmp_path, monkeypatch):
    """The options of a tiny suite's calls (2 seeds, 2 episodes, runs in `tmp_path/runs`),
    and `call(*more)`, which runs reproduce.py with them and returns its table."""
    common = ["--suite", "tiny", "--seeds", "0,1", "--runs-dir", str(tmp_path / "runs")]
    common += ["--episodes", "2"]

    def call(*extra: str, stopped_by: str | None = None) -> str:
        """The table; a call a signal stopped (`stopped_by`) exits as `mappo train` does."""
        monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, *extra])
        if stopped_by is None:
            reproduce.main()
        else:
            with pytest.raises(SystemExit) as exited:
                reproduce.main()
            assert exited.value.code == 128 + signal.Signals[stopped_by]
        return (tmp_path / "results" / "published_tiny.md").read_text()

    return common, call


def test_a_suite_trains_resumes_and_writes_its_table(
    reproduce, tmp_path, monkeypatch, capsys
) -> None:
    """A tiny suite of two tasks: the first call trains one task's 2 seeds in one process to
    half its budget (`--scale 0.5 --tasks spread`), the second the other task alone, the
    third continues the first to its budget from its checkpoints (on 2 torch threads); the
    table keeps a row per task through all three and gives the budget reached each time, the
    sessions' log one line per call."""
    table = tiny_suite(reproduce, tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    common = ["--suite", "tiny", "--seeds", "0,1", "--runs-dir", str(runs), "--episodes", "2"]
    monkeypatch.setattr(
        sys, "argv", ["reproduce.py", *common, "--scale", "0.5", "--tasks", "spread"]
    )
    reproduce.main()
    first = (tmp_path / "results" / "published_tiny.md").read_text()
    assert "| spread | 400 / 800 (50%) | 2 |" in first
    assert "| reference | 0 / 400 (0%) | 0 | no checkpoint yet |" in first
    # A call stopped before its first checkpoint leaves config.toml alone: the next starts over.
    for seed in (0, 1):
        (runs / "tiny" / "reference" / f"seed_{seed}").mkdir(parents=True)
        (runs / "tiny" / "reference" / f"seed_{seed}" / "config.toml").write_text("lr = 0.5\n")
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, "--tasks", "reference"])
    reproduce.main()
    between = (tmp_path / "results" / "published_tiny.md").read_text()
    assert "| spread | 400 / 800 (50%) | 2 |" in between  # scored, not trained
    assert "| reference | 400 / 400 (100%) | 2 |" in between
    # The third call replays only the task it trained: reference's score is kept.
    played = []
    evaluate_run = reproduce.evaluate_run
    monkeypatch.setattr(
        reproduce,
        "evaluate_run",
        lambda run, *a, **k: played.append(run) or evaluate_run(run, *a, **k),
    )
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, "--torch-threads", "2"])
    reproduce.main()
    # How the run is computed may change on resume; the runs stay the table's.
    assert "torch_threads = 2" in (runs / "tiny" / "spread" / "seed_0" / "config.toml").read_text()
    # Each seed plays its episodes twice: with sampled actions and with greedy ones.
    assert sorted(p.relative_to(runs).as_posix() for p in played) == [
        "tiny/spread/seed_0",
        "tiny/spread/seed_0",
        "tiny/spread/seed_1",
        "tiny/spread/seed_1",
    ]
    second = (tmp_path / "results" / "published_tiny.md").read_text()
    assert "| spread | 800 / 800 (100%) | 2 |" in second
    assert "| reference | 400 / 400 (100%) | 2 |" in second
    sessions = json.loads((tmp_path / "results" / "published_tiny.json").read_text())["sessions"]
    # The session says what each task trained: reference was at its budget already.
    assert len(sessions) == 3 and "spread to 800; reference already at 400" in sessions[2]
    assert "spread to 800; reference already at 400  (python " in second  # the table quotes
    assert (tmp_path / "results" / "published_tiny.png").stat().st_size > 0  # the curves
    # A variant trains into its own folder and file, and leaves the published table alone.
    monkeypatch.setattr(
        sys, "argv", ["reproduce.py", *common, "--set", "lr=1e-3", "--tasks", "spread"]
    )
    reproduce.main()
    variant = (tmp_path / "results" / "published_tiny_lr_0.001.md").read_text()
    assert "A tiny suite; variant lr=0.001" in variant
    assert "A variant, not the published config" in variant
    assert "| spread | 800 / 800 (100%) | 2 |" in variant
    assert "| reference | 0 / 400 (0%) | 0 | no checkpoint yet |" in variant
    config = (runs / "tiny" / "lr_0.001" / "spread" / "seed_1" / "config.toml").read_text()
    assert "lr = 0.001" in config
    assert (tmp_path / "results" / "published_tiny.md").read_text() == second
    # Other seeds than the folder's are refused in one line, not resumed as the old ones.
    other = [*common[:2], "--seeds", "0,1,2", *common[4:]]
    for seeds, says in (
        ("0,1,2", f"--seeds 0,1,2: {runs / 'tiny' / 'spread'} holds the runs of seeds 0,1; "),
        ("0,x", "--seeds '0,x': give integers joined by commas"),
    ):
        other[3] = seeds
        monkeypatch.setattr(sys, "argv", ["reproduce.py", *other])
        assert says in refused(reproduce.main, capsys)
    # Runs of another config than the task's (the table edited since) are refused, not resumed.
    table.write_text(table.read_text().replace("compile = ", "lr = 1e-3, compile = ", 1))
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, "--tasks", "spread"])
    says = f"{runs / 'tiny' / 'spread'} holds runs of another config than the task's (lr: 0.0007"
    assert says in refused(reproduce.main, capsys)
    # With --restart-changed they are moved aside, as they were, and the task starts afresh.
    monkeypatch.setattr(
        sys, "argv", ["reproduce.py", *common, "--tasks", "spread", "--restart-changed"]
    )
    reproduce.main()
    [aside] = (runs / "tiny").glob("spread.superseded-*")
    assert "lr = 0.0007" in (aside / "seed_0" / "config.toml").read_text()
    assert (aside / "seed_1" / "checkpoint.pt").is_file()
    assert "lr = 0.001" in (runs / "tiny" / "spread" / "seed_0" / "config.toml").read_text()
    restarted = (tmp_path / "results" / "published_tiny.md").read_text()
    assert "| spread | 800 / 800 (100%) | 2 |" in restarted
    assert "record dropped, of another config than the task's now (lr: 0.0007 -> 0.001)" in (
        restarted
    )
    # Runs a process trains in are not moved: refused in one line naming the folder in use.
    table.write_text(table.read_text().replace("lr = 1e-3", "lr = 2e-3", 1))
    lock = RunLock.take(runs / "tiny" / "spread" / "seed_0")
    try:
        says = f"run folder {runs / 'tiny' / 'spread' / 'seed_0'} is in use by this process"
        assert says in refused(reproduce.main, capsys)
    finally:
        lock.release()
    assert not (runs / "tiny" / "spread.superseded").exists()
    assert len(list((runs / "tiny").glob("spread.superseded-*"))) == 1


def test_scores_choose_actions_as_the_source_did_and_give_the_other_way_beside(
    reproduce, tmp_path, monkeypatch
) -> None:
    """A suite whose source sampled actions is scored with sampled actions, the greedy score
    beside it; the scoring episodes are told which (here each way returns its own number)."""
    table = tiny_suite(reproduce, tmp_path, monkeypatch)
    table.write_text(
        table.read_text().replace("[[tiny.task]]", 'actions = "sampled"\n[[tiny.task]]', 1)
    )
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    evaluate = reproduce.evaluate_run
    by_seed = {"seed_0": -10.0, "seed_1": -30.0}

    def sampled_below_greedy(run_dir, episodes, deterministic):
        evaluation = evaluate(run_dir, episodes, deterministic=deterministic)
        mean = by_seed[run_dir.name] + (5.0 if deterministic else 0.0)
        return evaluation._replace(returns=[mean] * episodes)

    monkeypatch.setattr(reproduce, "evaluate_run", sampled_below_greedy)
    text = call("--scale", "0.5", "--tasks", "reference")
    row = next(line for line in text.splitlines() if line.startswith("| reference |"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    # Two seeds: their IQM is their mean, and the CI spans them.
    assert cells[3:6] == [
        "-20.000 [-30.000, -10.000], sampled",
        "-10.000, -30.000",
        "greedy -15.000 (-5.000, -25.000)",
    ]
    assert "ours: IQM [95 % CI], published scale, actions as the source's" in text
    table.write_text(table.read_text().replace('"sampled"', '"argmax"'))
    with pytest.raises(
        reproduce.UsageError, match="task spread: actions 'argmax', not sampled or greedy"
    ):
        reproduce.read_suite("tiny")


def test_scores_kept_are_played_again_when_evaluation_changes(
    reproduce, tmp_path, monkeypatch
) -> None:
    """A score kept in score.json is reused while the checkpoints are the same, and played
    again once the way episodes are played has changed (`EVALUATION_VERSION`): a fix to
    evaluation reaches the table without a run trained further."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    call("--scale", "0.5", "--tasks", "reference")
    evaluate, played = reproduce.evaluate_run, []
    monkeypatch.setattr(
        reproduce, "evaluate_run", lambda run, *a, **k: played.append(run) or evaluate(run, *a, **k)
    )
    call("--report-only")
    assert played == []
    before = json.loads((tmp_path / "results" / "published_tiny.json").read_text())
    before = before["tasks"]["reference"]
    # Played again, the greedy score (the source's here) is the same, the sampled one not:
    # the row keeps when it was scored, and takes the sampled score played now.
    monkeypatch.setattr(reproduce, "EVALUATION_VERSION", reproduce.EVALUATION_VERSION + 1)

    def sampled_moved(run, episodes, deterministic):
        played.append(run)
        evaluation = evaluate(run, episodes, deterministic=deterministic)
        return evaluation if deterministic else evaluation._replace(returns=[-1.0] * episodes)

    monkeypatch.setattr(reproduce, "evaluate_run", sampled_moved)
    text = call("--report-only")
    assert sorted(run.name for run in played) == ["seed_0", "seed_0", "seed_1", "seed_1"]
    after = json.loads((tmp_path / "results" / "published_tiny.json").read_text())
    after = after["tasks"]["reference"]
    assert (
        after["date_utc"] == before["date_utc"]
        and after["result"]["score"] == (before["result"]["score"])
    )
    assert after["result"]["other_actions"]["score"] == [-1.0, -1.0]
    assert "| sampled -1.000 (-1.000, -1.000) |" in text


def test_the_table_outlives_its_runs(reproduce, tmp_path, monkeypatch, capsys) -> None:
    """The runs folder lost (a new machine): the recorded rows and curves stay; a restarted
    run behind its record leaves the row as it was, says so, and replaces it once it has
    passed it; an edited task drops its record; a damaged record is refused in one line."""
    table = tiny_suite(reproduce, tmp_path, monkeypatch)
    results, runs = tmp_path / "results", tmp_path / "runs"
    common, call = table_calls(reproduce, tmp_path, monkeypatch)

    first = call("--scale", "0.5")
    spread_row = next(line for line in first.splitlines() if line.startswith("| spread |"))
    assert "| spread | 400 / 800 (50%) | 2 |" in spread_row
    assert "| reference | 200 / 400 (50%) | 2 |" in first
    text = (results / "published_tiny.json").read_text()
    record = json.loads(text)
    curve = record["tasks"]["spread"]["curve"]
    assert curve["seeds"] == 2 and curve["env_steps"][-1] == 400
    assert len(curve["env_steps"]) == len(curve["mean"]) == len(curve["std"])
    # MPE has no wins: JSON's null, not Python's NaN, which is no JSON.
    assert record["tasks"]["spread"]["result"]["win_rates"] == [None, None]
    assert "NaN" not in text
    last_line = capsys.readouterr().out.splitlines()[-1]  # the script's JSON line: JSON too
    printed = json.loads(last_line, parse_constant=lambda name: pytest.fail(f"{name} printed"))
    assert printed["results"][0]["win_rates"] == [None, None]
    # The same checkpoints scored again later: when and where they were scored stays.
    monkeypatch.setattr(reproduce, "utc_now", lambda: "2099-01-01 00:00 UTC")
    assert call("--report-only").splitlines().count(spread_row) == 1

    shutil.rmtree(runs)  # the runs are gone: the rows are not
    (results / "published_tiny.png").unlink()
    assert call("--report-only").splitlines().count(spread_row) == 1
    assert (results / "published_tiny.png").stat().st_size > 0  # drawn from the record

    restarted = call("--scale", "0.25", "--tasks", "spread")
    assert restarted.splitlines().count(spread_row) == 1  # the further run's row stays
    assert (
        f"- spread: the runs in {runs / 'tiny' / 'spread'} are at 200 env steps per seed, "
        "behind the recorded ones (400, scored " in restarted
    )
    passed = call("--tasks", "spread")
    assert "| spread | 800 / 800 (100%) | 2 |" in passed and "behind the recorded" not in passed
    assert "| reference | 200 / 400 (50%) | 2 |" in passed  # not here: as recorded

    # Runs saved before a field existed hold, for it, what they trained with: still the task's.
    for config in (runs / "tiny" / "spread").glob("seed_*/config.toml"):
        lines = config.read_text().splitlines(keepends=True)
        config.write_text("".join(x for x in lines if not x.startswith("critic_recurrent")))
    kept = call("--report-only")
    assert "| spread | 800 / 800 (100%) | 2 |" in kept and "not scored" not in kept
    # A config.toml damaged by hand: the checkpoint's config says what the run learns with.
    (runs / "tiny" / "spread" / "seed_0" / "config.toml").write_text("lr = [\n")
    kept = call("--report-only")
    assert "| spread | 800 / 800 (100%) | 2 |" in kept and "not scored" not in kept

    # A record from before records held the settings a task resolves to (no `learns_with`)
    # is compared on the table alone, kept, and keyed from then on by those settings.
    record = json.loads((results / "published_tiny.json").read_text())
    learns_with = record["tasks"]["reference"]["config"].pop("learns_with")
    (results / "published_tiny.json").write_text(json.dumps(record))
    assert "| reference | 200 / 400 (50%) | 2 |" in call("--report-only")
    record = json.loads((results / "published_tiny.json").read_text())
    assert record["tasks"]["reference"]["config"]["learns_with"] == learns_with
    # A record made before a setting existed holds, for it, what its runs trained with (the
    # field's default, the behaviour before it): kept, unless the task now sets it otherwise.
    del record["tasks"]["reference"]["config"]["learns_with"]["reward_norm"]
    (results / "published_tiny.json").write_text(json.dumps(record))
    assert "| reference | 200 / 400 (50%) | 2 |" in call("--report-only")
    record = json.loads((results / "published_tiny.json").read_text())
    assert record["tasks"]["reference"]["config"]["learns_with"] == learns_with
    del record["tasks"]["reference"]["config"]["learns_with"]["reward_norm"]
    (results / "published_tiny.json").write_text(json.dumps(record))
    build = reproduce.build_config
    with monkeypatch.context() as patch:
        patch.setattr(
            reproduce, "build_config", lambda *a, **k: build(*a, **k).replace(reward_norm=True)
        )
        entry = record["tasks"]["reference"]
        assert "(reward_norm: False -> True): reference at 200 env steps" in (
            reproduce.dropped_line(reproduce.read_suite("tiny")[1][1], entry)
        )
    # What the tasks resolve to changed (a preset edited), the table not: both records, of
    # the old settings, go, and spread's runs are not scored.
    with monkeypatch.context() as patch:
        patch.setattr(
            reproduce, "build_config", lambda *a, **k: build(*a, **k).replace(ent_coef=0.02)
        )
        edited = call("--report-only")
    assert "| spread | 0 / 800 (0%) | 0 | no checkpoint yet |" in edited
    assert "ent_coef: 0.01 -> 0.02); not scored" in edited
    assert "| reference | 0 / 400 (0%) | 0 | no checkpoint yet |" in edited
    # Their figures stay in the sessions' log, with what changed.
    dropped = [x for x in edited.splitlines() if " record dropped, " in x]
    assert [x.split(": ")[2].split(" at ")[0] for x in dropped] == ["spread", "reference"]
    assert dropped[0].startswith(
        "2099-01-01 00:00 UTC  record dropped, of another config than the task's now "
        "(ent_coef: 0.01 -> 0.02): spread at 800 env steps per seed, IQM "
    )
    assert "reference at 200 env steps per seed, IQM " in dropped[1]
    assert "| spread | 800 / 800 (100%) | 2 |" in call("--report-only")  # its runs: back

    # The table edited: spread's record is of another config, and goes, and its runs, of the
    # old config, are not scored.
    table.write_text(
        table.read_text().replace("figure = -20.0", "fields = { lr = 1e-3 }\nfigure = -20.0")
    )
    edited = call("--report-only")
    assert "| spread | 0 / 800 (0%) | 0 | no checkpoint yet |" in edited
    assert (
        f"- spread: the runs in {runs / 'tiny' / 'spread'} are of another config than the "
        "task's (lr: 0.0007 -> 0.001); not scored" in edited
    )

    # Damage anywhere in the record is refused before training, left as it was: an entry or
    # a sessions line of another shape failed after training, with no table, before.
    for damaged in (
        '{"tasks": [',
        '{"tasks": {"spread": 5}, "sessions": []}',
        '{"tasks": {"spread": {"config": {}, "result": {}}}, "sessions": []}',
        '{"tasks": {}, "sessions": [5, null]}',
    ):
        (results / "published_tiny.json").write_text(damaged)
        says = f"{results / 'published_tiny.json'}: not a record of reproduce.py ("
        assert says in refused(call, capsys, "--scale", "0.5")
        assert (results / "published_tiny.json").read_text() == damaged


def test_damage_costs_only_what_it_touches(reproduce, tmp_path, monkeypatch, capsys) -> None:
    """A damaged score cache is scored again; a metrics.csv cut short in its last row (a
    crash mid-write) still reads; a seed without its checkpoint or with a corrupt one leaves
    its task as recorded, with a line saying why, and the other task is still scored;
    config-only folders of other seeds are moved aside rather than refuse the folder."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    results, runs = tmp_path / "results", tmp_path / "runs"
    common, call = table_calls(reproduce, tmp_path, monkeypatch)

    first = call("--scale", "0.5")
    rows = [line for line in first.splitlines() if line.startswith("| spread |")]
    assert "Scores: 2 episodes per seed" in first
    spread = runs / "tiny" / "spread"
    (spread / "score.json").write_text('{"key": {"epis')
    metrics = spread / "seed_0" / "metrics.csv"
    metrics.write_bytes(metrics.read_bytes()[:-30])
    again = call("--report-only")
    assert [line for line in again.splitlines() if line.startswith("| spread |")] == rows
    assert json.loads((spread / "score.json").read_text())["result"]["episodes"] == 2
    assert "not scored" not in again
    # A record and score cache from before they kept the count: the same checkpoints scored
    # the same again on this call's count, which the row then gives.
    record = json.loads((results / "published_tiny.json").read_text())
    del record["tasks"]["reference"]["result"]["episodes"]
    (results / "published_tiny.json").write_text(json.dumps(record))
    assert "an unrecorded number" in reproduce.episodes_text(
        reproduce.read_suite("tiny")[1], record
    )
    kept = runs / "tiny" / "reference" / "score.json"
    cache = json.loads(kept.read_text())
    del cache["result"]["episodes"]
    kept.write_text(json.dumps(cache))
    assert "Scores: 2 episodes per seed" in call("--report-only")
    # Scored on 3 episodes: the rows say which count each had.
    (runs / "tiny" / "reference" / "seed_1" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (spread / "seed_1" / "checkpoint.pt").unlink()
    damaged = call("--report-only", "--episodes", "3")
    assert "| reference | 200 / 400 (50%) | 2 |" in damaged  # as recorded
    assert f"- spread: seed_1 in {spread} have no checkpoint yet; not scored" in damaged
    assert "- reference: checkpoint " in damaged and "; not scored" in damaged
    assert "Scores: 2 episodes per seed" in damaged  # nothing was scored on 3
    shutil.rmtree(runs / "tiny" / "reference")
    (spread / "seed_1").rename(spread / "seed_1.lost")
    assert "Scores: episodes (3 for spread; 2 for reference)" in call(
        "--report-only", "--episodes", "3"
    )

    # Stopped before its first checkpoint, then started with other seeds: the old folders go.
    for seed in (0, 1):
        (runs / "tiny" / "reference" / f"seed_{seed}").mkdir(parents=True)
        (runs / "tiny" / "reference" / f"seed_{seed}" / "config.toml").write_text("lr = 0.5\n")
    other = ["--seeds", "5,6", "--scale", "0.5", "--tasks", "reference"]
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *common[:2], *common[4:], *other])
    reproduce.main()
    [aside] = (runs / "tiny").glob("reference.superseded-*")
    assert sorted(p.name for p in aside.iterdir()) == ["seed_0", "seed_1"]
    assert sorted(p.name for p in (runs / "tiny" / "reference").glob("seed_*")) == [
        "seed_5",
        "seed_6",
    ]
    assert "| reference | 200 / 400 (50%) | 2 |" in (results / "published_tiny.md").read_text()
    # A trial run's table goes where it is told, and the committed one stays as it was.
    before = (results / "published_tiny.json").read_text()
    trial = ["--report-only", "--results-dir", str(tmp_path / "trial")]
    monkeypatch.setattr(sys, "argv", ["reproduce.py", *common, *trial])
    reproduce.main()
    assert (
        "| reference | 200 / 400 (50%) | 2 |"
        in (tmp_path / "trial" / "published_tiny.md").read_text()
    )
    assert (results / "published_tiny.json").read_text() == before


def test_sigterm_writes_the_table_without_scoring(reproduce, tmp_path, monkeypatch) -> None:
    """A batch scheduler's SIGTERM mid-training: the runs stop and save, no further task
    trains, and the table is written at once from the record (scoring takes minutes the
    scheduler's kill does not wait for), saying why its rows did not move."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    results, runs = tmp_path / "results", tmp_path / "runs"
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    call("--scale", "0.5")
    record = json.loads((results / "published_tiny.json").read_text())
    record["tasks"]["reference"]["result"]["steps_per_second"] = None  # no metrics rows
    (results / "published_tiny.json").write_text(json.dumps(record))

    train = Run.train

    def terminated_after_one_update(self, *args, callback, **kwargs):
        def then_sigterm(metrics):
            os.kill(os.getpid(), signal.SIGTERM)
            return callback(metrics)

        return train(self, *args, callback=then_sigterm, **kwargs)

    def no_scoring(*args, **kwargs):
        raise AssertionError("scored after SIGTERM")

    monkeypatch.setattr(Run, "train", terminated_after_one_update)
    monkeypatch.setattr(reproduce, "evaluate_run", no_scoring)
    table = call(stopped_by="SIGTERM")
    checkpoint = torch.load(runs / "tiny" / "spread" / "seed_0" / "checkpoint.pt")
    assert 400 < checkpoint["env_steps"] < 800  # saved where it stopped
    assert "| spread | 400 / 800 (50%) | 2 |" in table  # as recorded
    assert "| reference | 200 / 400 (50%) | 2 |" in table  # not trained after the stop
    assert (
        f"- spread, reference (runs in {runs / 'tiny'}): not scored, SIGTERM came during "
        "training; their rows are as recorded before, and the same command" in table
    )
    assert f"spread stopped at {checkpoint['env_steps']:,} of 800  (python " in table
    row = next(line for line in table.splitlines() if line.startswith("| reference |"))
    assert "min, env steps/s unknown |" in row  # a few seconds: in minutes


def test_sigterm_before_a_run_trains_closes_it_and_says_so(
    reproduce, tmp_path, monkeypatch
) -> None:
    """SIGTERM after a run is opened, before its updates (and their own signal handling)
    start: the run is closed there and then (its folders and envs are not left to the end
    of the process), and the table says where the stop came."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    train, close, closed = Run.train, Run._close, []

    def terminated_before_training(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # `Stops` raises `Stopped` at once
        return train(self, *args, **kwargs)

    def closing(self, *args, **kwargs):
        close(self, *args, **kwargs)
        closed.append(RunLock.holder(runs / "tiny" / "spread" / "seed_0"))

    monkeypatch.setattr(Run, "train", terminated_before_training)
    monkeypatch.setattr(Run, "_close", closing)
    table = call(stopped_by="SIGTERM")
    assert closed == [None]  # closed once, its folder free
    assert (
        f"- spread (runs in {runs / 'tiny'}): not scored, SIGTERM came during the opening or "
        "closing of a run; their rows are as recorded before" in table
    )
    assert "SIGTERM outside a run's updates  (python " in table


@pytest.fixture
def hangup_restored():
    """SIGHUP's handler as it was, after a test in which reproduce.py ignores it."""
    handler = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_while_scoring_keeps_the_scores_before_it(
    reproduce, tmp_path, monkeypatch, sig, hangup_restored
) -> None:
    """Ctrl-C (or a scheduler's SIGTERM) after training, while the runs are scored: the
    tasks scored by then count, the rest keep their recorded rows, and the table is written,
    saying which went unscored and why (it used to be a traceback and no table). A closed
    terminal (SIGHUP) stops nothing that is not training: the scoring goes on."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    results, runs = tmp_path / "results", tmp_path / "runs"
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    call("--scale", "0.5")
    evaluate, tasks_scored = reproduce.evaluate_run, []

    def stopped_at_the_second_task(run_dir, *args, **kwargs):
        if run_dir.parent.name not in tasks_scored:
            tasks_scored.append(run_dir.parent.name)
            if len(tasks_scored) == 2:
                os.kill(os.getpid(), sig)
        return evaluate(run_dir, *args, **kwargs)

    monkeypatch.setattr(reproduce, "evaluate_run", stopped_at_the_second_task)
    handler = signal.getsignal(sig)
    name = signal.Signals(sig).name
    table = call(stopped_by=None if sig == signal.SIGHUP else name)  # a hangup stops no scoring
    assert tasks_scored == ["spread", "reference"]
    assert "| spread | 800 / 800 (100%) | 2 |" in table  # trained on, then scored
    record = json.loads((results / "published_tiny.json").read_text())
    assert record["tasks"]["spread"]["result"]["steps"] == 800
    if sig == signal.SIGHUP:
        assert "| reference | 400 / 400 (100%) | 2 |" in table
        assert "not scored" not in table
        assert signal.getsignal(sig) == signal.SIG_IGN  # a second hangup kills no table
        return
    assert signal.getsignal(sig) == handler  # the handler before is back
    assert "| reference | 200 / 400 (50%) | 2 |" in table  # as recorded: its scoring stopped
    assert (
        f"- reference (runs in {runs / 'tiny'}): not scored, {name} came while scoring; their "
        "rows are as recorded before" in table
    )
    assert f"reference to 400; {name} while scoring  (python " in table


def test_a_closed_terminal_while_a_run_opens_stops_training_then_scores(
    reproduce, tmp_path, monkeypatch, hangup_restored
) -> None:
    """SIGHUP before a run's signal handling is up (its env being built): the run saves
    after its first update, no further task trains, and the runs are scored."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    start = Run.start

    def hung_up_while_opening(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)
        return start(*args, **kwargs)

    monkeypatch.setattr(Run, "start", hung_up_while_opening)
    table = call(stopped_by="SIGHUP")
    assert "| spread | 100 / 800 (12%) | 2 |" in table  # one update: 4 copies x 25 steps
    assert "| reference | 0 / 400 (0%) | 0 | no checkpoint yet |" in table
    assert (
        "spread stopped at 100 of 800; reference not started: the terminal closed; SIGHUP "
        "outside a run's updates  (python " in table
    )


def test_resume_continues_only_what_has_runs(reproduce, tmp_path, monkeypatch, capsys) -> None:
    """`--resume` never starts a task: with no runs in `--runs-dir` (a mistyped one) it is
    refused before anything is made; with some, only those tasks train."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    runs = tmp_path / "runs"
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    says = f"--resume: {runs / 'tiny'} holds no runs of spread, reference to continue; check"
    assert says in refused(call, capsys, "--resume")
    assert not runs.exists() and not (tmp_path / "results").exists()
    call("--scale", "0.5", "--tasks", "reference")
    capsys.readouterr()
    table = call("--resume")
    said = capsys.readouterr().out
    assert f"--resume: {runs / 'tiny' / 'spread'} holds no runs to continue; spread not" in said
    assert "| reference | 400 / 400 (100%) | 2 |" in table
    assert "| spread | 0 / 800 (0%) | 0 | no checkpoint yet |" in table
    for flag, does in (("--report-only", "trains nothing"), ("--restart-changed", "starts")):
        says = f"--resume only continues runs; {flag} {does}"
        assert says in refused(call, capsys, "--resume", flag)


def test_report_only_of_a_runs_dir_that_is_not_there_says_so(
    reproduce, tmp_path, monkeypatch, capsys
) -> None:
    """A mistyped --runs-dir with --report-only scored nothing and said nothing."""
    tiny_suite(reproduce, tmp_path, monkeypatch)
    _, call = table_calls(reproduce, tmp_path, monkeypatch)
    table = call("--report-only")
    assert "| spread | 0 / 800 (0%) | 0 | no checkpoint yet |" in table
    assert capsys.readouterr().err == (
        f"--report-only: {tmp_path / 'runs' / 'tiny'} does not exist; nothing to score, the "
        "table is written from the record\n"
    )


def test_the_benchmark_scripts_errors_are_one_line_with_mappos_exit_codes(
    reproduce, capsys
) -> None:
    """`reproduce.py` and the scripts that train through it (`one_line_errors`): 2 for bad
    input, 3 for an env that broke, as `mappo`; a bug keeps its traceback."""
    from mappo.errors import EnvError

    bench_common = reproduce.bench_common
    for error, code, line in (
        (bench_common.UsageError("--seeds 'a': give integers"), 2, "p: error: --seeds 'a'"),
        (EnvError("env 'x' raised ValueError in step()"), 3, "p: env error: env 'x' raised"),
    ):
        with pytest.raises(SystemExit) as exited, bench_common.one_line_errors("p"):
            raise error
        assert exited.value.code == code
        assert capsys.readouterr().err.startswith(line)
    with pytest.raises(ValueError, match="a bug"), bench_common.one_line_errors("p"):
        raise ValueError("a bug")


def test_a_ctrl_c_while_the_script_loads_is_one_line(tmp_path) -> None:
    """torch and the envs take seconds to import; a Ctrl-C then was the import's traceback."""
    import subprocess
    import time

    from benchmark_scripts import BENCHMARKS

    runs, results = str(tmp_path / "runs"), str(tmp_path / "results")
    process = subprocess.Popen(
        [
            sys.executable,
            str(BENCHMARKS / "reproduce.py"),
            "--suite",
            "mpe",
            "--runs-dir",
            runs,
            "--results-dir",
            results,
        ],  # fmt: skip
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # into the imports, before main
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err == "reproduce.py: interrupted while loading; nothing was trained\n"
