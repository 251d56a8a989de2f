"""`mappo plot`: runs grouped by config but for the seed, labelled by what differs, banded."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from mappo.cli import main
from mappo.plotting import group_runs, plot_runs, read_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(path, config: str, rows: list[tuple[int, float, float]]):
    """A run folder written by hand: `config.toml` text and (env_steps, return, steps/s) rows."""
    path.mkdir(parents=True)
    (path / "config.toml").write_text(config)
    lines = ["env_steps,episode_return,policy_loss,steps_per_second"]
    lines += [f"{steps},{ret},0.1,{speed}" for steps, ret, speed in rows]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path


def linear_rows(steps: list[int], offset: float) -> list[tuple[int, float, float]]:
    """Return = steps / 100 + offset, at 1000 steps/s."""
    return [(s, s / 100 + offset, 1000.0) for s in steps]


@pytest.fixture
def runs(tmp_path):
    """Two seeds of one config, an independent-policy run, and a run with another lr."""
    return [
        make_run(
            tmp_path / "a",
            'env = "spread"\nseed = 0\nshare_policy = true\n',
            linear_rows([100, 200, 300], 0.0),
        ),
        make_run(
            tmp_path / "b",
            'env = "spread"\nseed = 1\nshare_policy = true\n',
            linear_rows([150, 250, 350], 2.0),
        ),
        make_run(
            tmp_path / "c",
            'env = "spread"\nseed = 0\nshare_policy = false\n',
            linear_rows([100, 200], -1.0),
        ),
        make_run(
            tmp_path / "d",
            'env = "spread"\nseed = 5\nshare_policy = true\nlr = 5e-4\n',
            linear_rows([100, 200], 1.0),
        ),
    ]


def test_seeds_group_and_labels_name_the_keys_that_differ(runs) -> None:
    groups = group_runs([read_run(r) for r in runs])
    assert [[run.path.name for run in g.runs] for g in groups] == [["a", "b"], ["c"], ["d"]]
    assert [g.label for g in groups] == [
        "lr=0.0007, share_policy=True",
        "lr=0.0007, share_policy=False",
        "lr=0.0005, share_policy=True",
    ]
    assert groups[1].differing == {"lr": 0.0007, "share_policy": False}


def test_runs_differing_only_in_when_they_save_and_evaluate_are_seeds_of_one_group(
    tmp_path,
) -> None:
    """Nor in how many worker processes and torch threads computed them."""
    common = 'env = "spread"\nlr = 5e-4\n'
    runs = [
        make_run(
            tmp_path / "a", common + "seed = 0\neval_interval = 1000000\n", linear_rows([100], 0.0)
        ),
        make_run(
            tmp_path / "b",
            common + "seed = 1\neval_interval = 2000000\n"
            "eval_episodes = 100\ncheckpoint_interval = 60.0\nnum_workers = 2\n"
            "torch_threads = 1\n",
            linear_rows([100], 0.0),
        ),
        make_run(tmp_path / "c", 'env = "spread"\nlr = 3e-4\nseed = 2\n', linear_rows([100], 0.0)),
    ]
    groups = group_runs([read_run(r) for r in runs])
    assert [[run.path.name for run in g.runs] for g in groups] == [["a", "b"], ["c"]]
    assert [g.label for g in groups] == ["lr=0.0005", "lr=0.0003"]


def test_band_is_mean_and_std_over_seeds_on_the_common_range(runs) -> None:
    group = group_runs([read_run(runs[0]), read_run(runs[1])])[0]
    assert group.label == "spread"  # a single group: nothing differs
    grid, mean, std = group.band("env_steps", points=7)
    # Only steps both runs cover: 150..300. Run a is x/100, run b is x/100 + 2.
    np.testing.assert_allclose(grid, np.linspace(150, 300, 7))
    np.testing.assert_allclose(mean, grid / 100 + 1.0)
    np.testing.assert_allclose(std, 1.0)


def test_wall_time_sums_each_updates_steps_over_its_speed(tmp_path) -> None:
    run = read_run(
        make_run(
            tmp_path / "w",
            "seed = 0\n",
            [
                (100, 1.0, 100.0),  # 1 s
                (200, math.nan, 50.0),  # 2 s; no episode finished, but the time still passed
                (300, 3.0, 100.0),  # 1 s
            ],
        )
    )
    np.testing.assert_allclose(run.env_steps, [100, 300])
    np.testing.assert_allclose(run.wall_time, [1.0, 4.0])
    np.testing.assert_allclose(run.returns, [1.0, 3.0])


def test_plot_writes_an_image_for_either_axis(runs, tmp_path, capsys) -> None:
    groups = plot_runs(runs, tmp_path / "steps.png")
    assert len(groups) == 3
    assert (tmp_path / "steps.png").read_bytes()[:8] == PNG_MAGIC
    argv = ["plot", *map(str, runs), "--out", str(tmp_path / "wall.png"), "--x", "wall_time"]
    assert main(argv) == 0
    assert (tmp_path / "wall.png").read_bytes()[:8] == PNG_MAGIC
    out = capsys.readouterr().out
    assert "lr=0.0007, share_policy=True: 2 runs" in out


def test_a_folder_without_metrics_is_refused(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.toml").write_text("seed = 0\n")
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "x.png")]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_run_folder_that_is_not_there_is_named_so(tmp_path, capsys) -> None:
    (tmp_path / "a_file").write_text("")
    for name, says in (("gone", "does not exist"), ("a_file", "is a file")):
        for command in ("plot", "report"):
            assert main([command, str(tmp_path / name)]) == 2
            err = capsys.readouterr().err
            assert err == f"mappo: error: run folder {tmp_path / name} {says}\n"


def test_a_cell_that_is_not_a_number_is_named_by_its_line(tmp_path, capsys) -> None:
    """The rows RunFolder writes (nan and empty cells where nothing was computed) plot; a
    cell edited to something else is one line naming the file and the line."""
    from mappo import MappoConfig
    from mappo.run_folder import RunFolder
    from mappo.trainer import MappoMetrics

    folder = RunFolder.create(tmp_path / "run", MappoConfig(team_reward=False))
    try:
        folder.log(MappoMetrics(0.1, 0.2, 1.6, episode_return=-30.0, episodes=4, env_steps=100))
        folder.log(MappoMetrics(0.1, 0.2, 1.6, forward_time=math.nan, env_steps=200))
        folder.log(MappoMetrics(0.1, 0.2, 1.6, episode_return=-20.0, episodes=4, env_steps=300))
    finally:
        folder.close()
    metrics = tmp_path / "run" / "metrics.csv"
    written = metrics.read_text()
    assert ",nan,per_agent,0,,,,,,," in written.splitlines()[2]  # the update with no episode
    np.testing.assert_allclose(read_run(tmp_path / "run").returns, [-30.0, -20.0])
    metrics.write_text(written.replace(",-20.0,", ",-2O.0,"))
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: {metrics} is damaged at line 4 (episode_return is '-2O.0', not a "
        "number): restore it, or move it away (a resumed run then starts a new one)\n"
    )
    assert not (tmp_path / "x.png").exists()


def test_a_run_named_twice_is_one_seed_of_its_band(runs, tmp_path, capsys) -> None:
    argv = ["plot", str(runs[0]), f"{runs[0]}/", str(runs[1]), "--out", str(tmp_path / "x.png")]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("spread: 2 runs\n")


def test_the_return_an_auto_team_reward_decided_on_labels_the_axis(tmp_path) -> None:
    """A run's config.toml keeps `team_reward = "auto"`; what it became is in its table."""
    from mappo.plotting import returns_label

    rows = linear_rows([100, 200], 0.0)
    text = 'env = "e"\nteam_reward = "auto"\n\n[read_off_env]\nnum_agents = 2\n'
    mean = make_run(tmp_path / "mean", text + "\n[auto_decided]\nteam_reward = false\n", rows)
    team = make_run(tmp_path / "team", text + "\n[auto_decided]\nteam_reward = true\n", rows)
    assert read_run(mean).config["team_reward"] is False
    assert returns_label(group_runs([read_run(mean)])) == "mean per-agent episode return"
    assert returns_label(group_runs([read_run(team)])) == "team episode return"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
def test_an_output_that_fills_the_disk_is_named(runs, tmp_path, capsys) -> None:
    """A write that fails midway names no file of its own: the flag's path is named."""
    full = tmp_path / "full.png"
    full.symlink_to("/dev/full")
    assert main(["plot", str(runs[0]), "--out", str(full)]) == 2
    assert capsys.readouterr().err == f"mappo: error: {full}: No space left on device\n"
