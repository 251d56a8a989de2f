"""`mappo status`: one line per run saying whether it trains, how far it is, its recent return,
its checkpoint, and the command that goes on from there."""

from __future__ import annotations

import csv
import os
import re
import socket

import pytest

from mappo import MappoConfig
from mappo.cli import main
from mappo.progress import RecentReturns
from mappo.run import Run
from mappo.run_folder import RunFolder
from mappo.run_lock import RunLock

SMALL = dict(num_envs=16, total_steps=1600, minibatch_size=0, compile="false", seed=3)


def recent_return(folder) -> str:
    """The episode-weighted mean return of the last 10 rows, as the progress line has it."""
    recent = RecentReturns()
    with open(folder / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            recent.add(float(row["episode_return"] or "nan"), int(row["episodes"]))
    return recent.text()


def status_of(capsys, *paths) -> list[str]:
    capsys.readouterr()  # what training printed
    assert main(["status", *map(str, paths)]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_finished_run_says_so_with_its_recent_return(tiny_run, capsys) -> None:
    [line] = status_of(capsys, tiny_run)
    assert line.startswith(
        f"{tiny_run}: finished at env step 1,600 of 1,600 (100.0 %), recent return "
        f"{recent_return(tiny_run)}, last update logged "
    )
    assert line.endswith(
        f"; train it further with: mappo train --resume {tiny_run} --total-steps N"
    )


def test_a_run_past_its_total_steps_says_the_budget_was_rounded_up(tmp_path, capsys) -> None:
    run = tmp_path / "r"  # updates of 16 copies x 25 steps: 1,500 rounds up to 1,600
    Run.start(MappoConfig(**{**SMALL, "total_steps": 1500}), run).train(quiet=True)
    [line] = status_of(capsys, run)
    assert line.startswith(
        f"{run}: finished at env step 1,600 (total_steps 1,500, rounded up to whole updates), "
        "recent return "
    )  # it said "of 1,500 (106.7 %)", where progress had counted 1,600 of 1,600


def test_a_damaged_metrics_csv_leaves_a_finished_run_finished(tmp_path, capsys, caplog) -> None:
    """A line of garbage in metrics.csv mid-run: the run trained and saved to its budget,
    then failed at its last curve (exit code 2, no closing line); and `mappo status`
    failed outright instead of saying where the checkpoint stands."""
    run = tmp_path / "r"

    def damage(metrics) -> bool:
        if metrics[0].env_steps == 400:
            with open(run / "metrics.csv", "a") as handle:
                handle.write("garbage line\n")
        return False

    summary = Run.start(MappoConfig(**SMALL), run).train(quiet=True, callback=damage)
    assert summary.finished and summary.env_steps == 1600
    assert caplog.text.count("curve.png not redrawn: ") == 1
    assert f"{run / 'metrics.csv'} is damaged at line 3" in caplog.text
    [line] = status_of(capsys, run)
    assert line.startswith(f"{run}: finished at env step 1,600 of 1,600 (100.0 %), {run}")
    assert "metrics.csv is damaged at line 3" in line


def test_a_count_that_is_no_whole_number_is_damage_named_by_its_line(tmp_path, capsys) -> None:
    """`episodes` of "nan" passed as a number, then failed `mappo status` and a resume with a
    traceback (no integer from NaN); it is damage, named by its line, as a word there is."""
    run = tmp_path / "r"
    Run.start(MappoConfig(**SMALL), run).train(quiet=True, callback=lambda metrics: True)
    text = (run / "metrics.csv").read_text().splitlines()
    for count in ("nan", "2.5"):
        columns = text[0].split(",")
        cells = text[1].split(",")
        cells[columns.index("episodes")] = count
        (run / "metrics.csv").write_text("\n".join([text[0], ",".join(cells)]) + "\n")
        [line] = status_of(capsys, run)
        assert (
            f"metrics.csv is damaged at line 2 (episodes is '{count}', not a whole number" in line
        )
        assert main(["train", "--resume", str(run)]) == 2
        [error] = capsys.readouterr().err.splitlines()
        assert "is damaged at line 2 (episodes is" in error


def test_a_stopped_run_says_where_its_checkpoint_is_and_how_to_go_on(tmp_path, capsys) -> None:
    run = tmp_path / "r"
    Run.start(MappoConfig(**SMALL), run).train(quiet=True, callback=lambda metrics: True)
    [line] = status_of(capsys, run)
    assert line.startswith(f"{run}: stopped at env step 400 of 1,600 (25.0 %), recent return ")
    assert line.endswith(f"; continue with: mappo train --resume {run}")
    # While a process holds its lock, it trains: the step of its last update and its checkpoint.
    lock = RunLock.take(run)
    try:
        [line] = status_of(capsys, run)
    finally:
        lock.release()
    assert line.startswith(
        f"{run}: training (pid {os.getpid()} on {socket.gethostname()}), env step 400 of 1,600 "
        "(25.0 %), recent return "
    )
    assert re.search(r"; checkpoint: env step 400, \d+ s ago$", line)


def test_a_killed_run_names_the_updates_its_checkpoint_lacks(tmp_path, capsys) -> None:
    """After `kill -9`, metrics.csv holds updates past the checkpoint, which a resume drops:
    the recent return and step were theirs, not the checkpoint's."""
    run = tmp_path / "r"
    Run.start(MappoConfig(**SMALL), run).train(quiet=True, callback=lambda metrics: True)
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(run / "metrics.csv", "a", newline="") as handle:  # two updates the kill lost
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        for steps in (800, 1200):
            writer.writerow({**rows[-1], "env_steps": steps, "episode_return": -1000.0})
    [line] = status_of(capsys, run)
    assert line.startswith(
        f"{run}: stopped at env step 400 of 1,600 (25.0 %), 2 later updates logged, which a "
        f"resume drops, recent return {float(rows[-1]['episode_return']):.2f}, "
    )


def test_a_run_without_a_checkpoint_says_how_to_start_it_again(tmp_path, capsys) -> None:
    run = tmp_path / "r"
    RunFolder.create(run, MappoConfig(team_reward=True, **SMALL)).close()
    assert status_of(capsys, run) == [
        f"{run}: stopped before its first checkpoint, env step 0 of 1,600 (0.0 %); start it "
        f"again with: mappo train --config {run / 'config.toml'} --run-dir {run} --force"
    ]


def test_each_seed_of_a_seeds_run_has_its_line_and_goes_on_from_the_seeds_folder(
    tmp_path, capsys
) -> None:
    run = tmp_path / "seeds"
    Run.start(MappoConfig(**SMALL), run, seeds=[1, 2]).train(quiet=True, callback=lambda m: True)
    lines = status_of(capsys, run)
    assert [line.split(":")[0] for line in lines] == [str(run / "seed_1"), str(run / "seed_2")]
    assert all(line.endswith(f"continue with: mappo train --resume {run}") for line in lines)
    # One seed's folder named alone goes on with its seeds too; one stopped before its first
    # checkpoint starts again as the seeds run it is.
    [line] = status_of(capsys, run / "seed_2")
    assert line.endswith(f"continue with: mappo train --resume {run}")
    for seed in (1, 2):
        (run / f"seed_{seed}" / "checkpoint.pt").unlink()
    [line] = status_of(capsys, run / "seed_2")
    assert line.endswith(
        f"start it again with: mappo train --config {run / 'seed_2' / 'config.toml'} --seeds "
        f"1,2 --run-dir {run} --force"
    )


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda path: None, "does not exist"),
        (lambda path: path.write_text("x"), "is a file, not a run folder"),
        (lambda path: path.mkdir(), "not a run folder (no config.toml)"),
    ],
)
def test_what_holds_no_run_is_one_line(tmp_path, capsys, make, said) -> None:
    path = tmp_path / "x"
    make(path)
    assert main(["status", str(path)]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"run folder {path} {said}".replace(f"{path} not", f"{path}: not"))
    )


def test_a_folder_of_runs_is_no_sweep_even_with_a_seeds_run_among_them(tmp_path, capsys) -> None:
    """A sweep's settings are `field=value` folders: a folder holding a seeds run beside
    other runs was taken for a sweep of one setting, and plot, report and status showed the
    seeds alone."""
    from mappo.run_folder import slot_folders

    Run.start(MappoConfig(**SMALL), tmp_path / "seeds", seeds=[1, 2]).train(
        quiet=True, callback=lambda m: True
    )
    RunFolder.create(tmp_path / "single", MappoConfig(team_reward=True, **SMALL)).close()
    assert slot_folders(tmp_path) == []
    for command in ("status", "plot", "report"):
        assert main([command, str(tmp_path)]) == 2
        assert f"{tmp_path}" in capsys.readouterr().err
