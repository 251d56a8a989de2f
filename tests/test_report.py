"""`mappo report`: IQM, bootstrap CIs and P(X > Y) by hand; tables, marl-eval JSON, errors."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from test_plot import PNG_MAGIC

from mappo.cli import main
from mappo.report import bootstrap_ci, improvement_ci, iqm, probability_of_improvement


def make_run(path, config: str, returns: list[float], eval_return: float | None = None):
    """A run folder by hand: config.toml text, one update per 100 env steps with the given
    training returns, and an eval_return column whose last non-empty value is `eval_return`."""
    path.mkdir(parents=True)
    (path / "config.toml").write_text(config)
    lines = ["env_steps,episode_return,steps_per_second,eval_return"]
    lines += [f"{100 * (i + 1)},{ret},1000.0," for i, ret in enumerate(returns)]
    if eval_return is not None:
        lines[-1] += str(eval_return)
        lines.append(f"{100 * (len(returns) + 1)},nan,1000.0,")  # updates after it: empty
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path


# --- statistics by hand ---------------------------------------------------------------------


def test_iqm_weights_the_middle_half_fractionally() -> None:
    assert iqm(np.array([4.0, 1.0, 3.0, 2.0])) == pytest.approx(2.5)  # (2 + 3) / 2
    # 5 runs: the lowest and the highest dropped (floor(5/4) = 1 each), as scipy's
    # trim_mean(x, 0.25) that rliable calls: (1 + 2 + 4) / 3.
    assert iqm(np.array([8.0, 0.0, 2.0, 1.0, 4.0])) == pytest.approx(7 / 3)
    # 3 runs: nothing dropped, the plain mean.
    assert iqm(np.array([0.0, 1.0, 5.0])) == pytest.approx(2.0)
    assert iqm(np.array([7.0])) == 7.0
    # Along an axis: each column its own IQM.
    np.testing.assert_allclose(
        iqm(np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]), axis=0), [2.5, 25.0]
    )


def test_probability_of_improvement_counts_pairs_and_halves_ties() -> None:
    x, y = np.array([3.0, 4.0]), np.array([1.0, 2.0])
    assert probability_of_improvement(x, y) == 1.0
    assert probability_of_improvement(y, x) == 0.0
    assert probability_of_improvement(x, x) == 0.5
    # Pairs (2,2) tie, (2,1) win, twice over: (0.5 + 1 + 0.5 + 1) / 4.
    assert probability_of_improvement(np.array([2.0, 2.0]), np.array([2.0, 1.0])) == 0.75
    assert improvement_ci(x, y) == (1.0, 1.0)  # every resample of X beats every one of Y


def test_bootstrap_ci_holds_the_mean_and_repeats_under_its_seed() -> None:
    scores = np.array([1.3, 2.9, 4.1, 8.6, 3.2, 0.7, 5.4])
    lo, hi = bootstrap_ci([scores], np.mean)
    assert lo < scores.mean() < hi
    assert 0.7 < lo and hi < 8.6  # means of 7 resampled runs stay well inside the range
    assert bootstrap_ci([scores], np.mean) == (lo, hi)
    assert bootstrap_ci([scores], np.mean, seed=1) != (lo, hi)


def test_bootstrap_resamples_within_each_stratum() -> None:
    low, high = np.zeros(3), np.full(3, 10.0)
    # Each task keeps its 3 runs in every resample, so the pooled mean is always 5.
    lo, hi = bootstrap_ci([low, high], np.mean)
    assert (lo, hi) == (5.0, 5.0)
    pooled_lo, pooled_hi = bootstrap_ci([np.concatenate([low, high])], np.mean)
    assert pooled_lo < 5.0 < pooled_hi


# --- the command ----------------------------------------------------------------------------

SHARED = 'env = "spread"\nseed = {seed}\nshare_policy = true\ntotal_steps = 300\n'
SEPARATE = 'env = "spread"\nseed = {seed}\nshare_policy = false\ntotal_steps = 300\n'


@pytest.fixture
def runs(tmp_path):
    """Two configs of spread, two seeds each, scored by the eval_return they logged."""
    return [
        make_run(tmp_path / "s0", SHARED.format(seed=0), [-30.0, -20.0], eval_return=-18.0),
        make_run(tmp_path / "s1", SHARED.format(seed=1), [-32.0, -22.0], eval_return=-16.0),
        make_run(tmp_path / "i0", SEPARATE.format(seed=0), [-31.0, -25.0], eval_return=-24.0),
        make_run(tmp_path / "i1", SEPARATE.format(seed=1), [-29.0, -27.0], eval_return=-26.0),
    ]


def test_report_prints_the_groups_and_the_probability_of_improvement(
    runs, tmp_path, capsys
) -> None:
    out = tmp_path / "report.md"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = out.read_text()
    assert table in printed
    # Two runs: the IQM (middle half of 2 values, each weighted 1/2) is the mean.
    assert (
        "| share_policy=True | spread | 2 | team episode return | "
        "eval_return in metrics.csv | -17.000 | [-18.000, -16.000] | -17.000 | "
        "[-18.000, -16.000] |"
    ) in table
    assert "| share_policy=False | spread | 2 |" in table
    assert "| share_policy=True | share_policy=False | spread | 1.000 | [1.000, 1.000] |" in table
    assert "2,000 samples, seed 0" in table


def test_json_is_marl_eval_layout_and_plot_is_an_image(runs, tmp_path) -> None:
    data, image = tmp_path / "runs.json", tmp_path / "iqm.png"
    assert main(["report", *map(str, runs), "--json", str(data), "--plot", str(image)]) == 0
    assert image.read_bytes()[:8] == PNG_MAGIC
    layout = json.loads(data.read_text())
    assert list(layout) == ["spread"]
    assert list(layout["spread"]) == ["spread"]
    algorithms = layout["spread"]["spread"]
    assert list(algorithms) == ["share_policy=true", "share_policy=false"]
    run = algorithms["share_policy=true"]["run_2"]
    assert list(run)[-1] == "absolute_metrics"
    assert run["absolute_metrics"] == {"return": [-16.0]}
    # Curves on one grid over the steps all runs cover (100..200), as many points as the
    # sparsest run logged: 2.
    assert run == {
        "step_1": {"step_count": 100, "return": [-32.0]},
        "step_2": {"step_count": 200, "return": [-22.0]},
        "absolute_metrics": {"return": [-16.0]},
    }


def test_a_run_is_evaluated_from_its_checkpoint_without_eval_return(tmp_path, capsys) -> None:
    from mappo import MappoConfig, MappoTrainer
    from mappo.run_folder import RunFolder

    trainer = MappoTrainer(MappoConfig(num_envs=2, total_steps=100, minibatch_size=0))
    folder = RunFolder.create(tmp_path / "run", trainer.config)
    folder.save(trainer.state_dict())
    (tmp_path / "run" / "metrics.csv").write_text("env_steps,episode_return\n50,-40.0\n")
    data = tmp_path / "runs.json"
    assert main(["report", str(tmp_path / "run"), "--episodes", "3", "--json", str(data)]) == 0
    assert "| spread | spread | 1 | team episode return | 3 greedy episodes |" in (
        capsys.readouterr().out
    )
    returns = json.loads(data.read_text())["spread"]["spread"]["spread"]["run_1"][
        "absolute_metrics"
    ]["return"]
    assert len(returns) == 3 and all(-200 < r < 0 for r in returns)


def test_episodes_given_score_from_the_checkpoint_even_with_eval_return(tmp_path, capsys) -> None:
    from mappo import MappoConfig, MappoTrainer
    from mappo.run_folder import RunFolder

    trainer = MappoTrainer(MappoConfig(num_envs=2, total_steps=100, minibatch_size=0))
    RunFolder.create(tmp_path / "run", trainer.config).save(trainer.state_dict())
    # A training evaluation far from anything an untrained policy scores on spread.
    (tmp_path / "run" / "metrics.csv").write_text(
        "env_steps,episode_return,eval_return\n50,-40.0,-1.5\n"
    )
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "| eval_return in metrics.csv | -1.500 |" in capsys.readouterr().out
    data = tmp_path / "runs.json"
    assert main(["report", str(tmp_path / "run"), "--episodes", "4", "--json", str(data)]) == 0
    assert "| 4 greedy episodes |" in capsys.readouterr().out
    returns = json.loads(data.read_text())["spread"]["spread"]["spread"]["run_1"][
        "absolute_metrics"
    ]["return"]
    assert len(returns) == 4 and all(-200 < r < -5 for r in returns)
    (tmp_path / "run" / "checkpoint.pt").unlink()
    assert main(["report", str(tmp_path / "run"), "--episodes", "4"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {tmp_path / 'run'}: no checkpoint.pt to evaluate\n"
    )


def test_sampled_scores_play_episodes_with_sampled_actions(tmp_path, capsys) -> None:
    """`--sampled` scores as most published MAPPO figures do: its episodes sample their
    actions (the same numbers `mappo eval` gives without --deterministic), and they are
    played even where training logged an eval_return, which is greedy."""
    from mappo import MappoConfig, MappoTrainer
    from mappo.evaluation import evaluate_run
    from mappo.run_folder import RunFolder

    trainer = MappoTrainer(MappoConfig(num_envs=2, total_steps=100, minibatch_size=0))
    RunFolder.create(tmp_path / "run", trainer.config).save(trainer.state_dict())
    (tmp_path / "run" / "metrics.csv").write_text(
        "env_steps,episode_return,eval_return\n50,-40.0,-1.5\n"
    )
    data = tmp_path / "runs.json"
    assert main(["report", str(tmp_path / "run"), "--sampled", "--json", str(data)]) == 0
    assert "| 100 sampled episodes |" in capsys.readouterr().out
    returns = json.loads(data.read_text())["spread"]["spread"]["spread"]["run_1"][
        "absolute_metrics"
    ]["return"]
    sampled = evaluate_run(tmp_path / "run", 100, deterministic=False).returns
    greedy = evaluate_run(tmp_path / "run", 100, deterministic=True).returns
    assert returns == pytest.approx(sampled) and returns != pytest.approx(greedy)


def test_errors_are_one_line(tmp_path, capsys) -> None:
    no_score = make_run(tmp_path / "n", SHARED.format(seed=0), [-30.0])
    assert main(["report", str(no_score)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mappo: error: run folder {no_score}: no checkpoint.pt to evaluate and no "
        "eval_return in metrics.csv\n"
    )
    empty = make_run(tmp_path / "e", SHARED.format(seed=1), [])
    assert main(["report", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {empty}: metrics.csv holds no finished episode yet\n"
    )
    scored = make_run(tmp_path / "ok", SHARED.format(seed=2), [-30.0], eval_return=-20.0)
    assert main(["report", str(scored), "--plot", str(tmp_path / "x.txt")]) == 2
    assert capsys.readouterr().err.startswith("mappo: error: --plot ")
    assert main(["report", str(scored), "--episodes", "0"]) == 2
    assert capsys.readouterr().err == "mappo: error: --episodes = 0: must be >= 1\n"


def test_a_run_without_a_score_is_refused_before_any_evaluation(
    tmp_path, capsys, monkeypatch
) -> None:
    import mappo.evaluation

    def never(*args, **kwargs):
        raise AssertionError("evaluated before every run was checked")

    monkeypatch.setattr(mappo.evaluation, "evaluate_run", never)
    to_evaluate = make_run(tmp_path / "c", SHARED.format(seed=0), [-30.0])
    (to_evaluate / "checkpoint.pt").write_bytes(b"")
    no_score = make_run(tmp_path / "n", SHARED.format(seed=1), [-30.0])
    assert main(["report", str(to_evaluate), str(no_score)]) == 2
    assert f"run folder {no_score}: no checkpoint.pt" in capsys.readouterr().err


def test_a_ranking_whose_best_scores_tie_says_so() -> None:
    """Settings with the same IQM are not ranked by the order they came in: the best names
    those it ties with."""
    from mappo.plotting import RunCurve, RunGroup
    from mappo.report import Comparison, GroupReport, ranking

    def group(label: str, score: float) -> GroupReport:
        run = RunCurve(Path(label), {}, np.zeros(1), np.zeros(1), np.zeros(1))
        return GroupReport(RunGroup([run], label), "t", [], score, (0, 0), score, (0, 0))

    reports = [group("lr=1", 0.5), group("lr=2", 0.5), group("lr=3", 0.2)]
    pairs = [Comparison(x, y, 0.5, (0.5, 0.5)) for x in reports for y in reports if x is not y]
    best = next(line for line in ranking(reports, pairs) if line.startswith("Best:"))
    assert best.startswith("Best: lr=1, tied on IQM with lr=2: the scores do not rank them; ")
    reports[1].iqm = 0.4
    best = next(line for line in ranking(reports, pairs) if line.startswith("Best:"))
    assert best.startswith("Best: lr=1; its config is lr=1/config.toml")


def test_runs_still_training_are_named_with_their_process(runs, capsys) -> None:
    """A report read while a run trains scores what it has saved so far, and says so."""
    import os
    import socket

    from mappo.run_lock import RunLock

    lock = RunLock.take(runs[1])  # another open of the file: as another process's lock
    try:
        assert main(["report", *map(str, runs)]) == 0
        assert capsys.readouterr().out.endswith(
            "\nStill training, so scored as saved so far (their checkpoint, or the last "
            f"evaluation logged): {runs[1]} (pid {os.getpid()} on {socket.gethostname()}).\n"
        )
    finally:
        lock.release()
    assert main(["report", *map(str, runs)]) == 0
    assert "Still training" not in capsys.readouterr().out


def test_runs_stopped_short_of_their_budget_are_named_with_the_steps_they_reached(
    runs, tmp_path, capsys
) -> None:
    """Pooled with finished seeds, a run stopped at a tenth of its budget went unsaid."""
    config = SHARED.format(seed=2).replace("300", "3000")
    short = make_run(tmp_path / "short", config, [-40.0], eval_return=-40.0)
    assert main(["report", *map(str, [*runs, short])]) == 0
    assert capsys.readouterr().out.endswith(
        "\nStopped short of their total_steps, so scored as saved (`mappo train --resume` goes "
        f"on): {short} (200 of 3,000).\n"
    )
    assert main(["report", *map(str, runs)]) == 0
    assert "Stopped short" not in capsys.readouterr().out


def test_a_metrics_cell_or_header_mappo_did_not_write_is_named_by_its_line(
    tmp_path, capsys
) -> None:
    """A cell that is not a number, or a header without the columns every mappo writes, is
    one line naming the file and the line, as a row cut in two is; empty and nan cells (no
    evaluation, no finished episode) are read as the writer means them."""
    run = make_run(tmp_path / "r", SHARED.format(seed=0), [-30.0, -20.0], eval_return=-18.0)
    metrics = run / "metrics.csv"
    written = metrics.read_text()
    assert written.splitlines()[-1] == "300,nan,1000.0,"
    assert main(["report", str(run)]) == 0
    capsys.readouterr()
    metrics.write_text(written.replace("200,-20.0,", "200,abc,"))
    assert main(["report", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: {metrics} is damaged at line 3 (episode_return is 'abc', not a "
        "number): restore it, or move it away (a resumed run then starts a new one)\n"
    )
    for header, missing in (
        ("env_steps,episode_retXrn,steps_per_second,eval_return", "episode_return"),
        ("\x00\x00\x00\x00", "env_steps or episode_return"),
    ):
        metrics.write_text(header + written[written.index("\n") :])
        assert main(["report", str(run)]) == 2
        assert capsys.readouterr().err == (
            f"mappo: error: {metrics} is damaged at line 1 (its header has no {missing} "
            "column): restore it, or move it away (a resumed run then starts a new one)\n"
        )


def test_a_run_folder_file_that_is_not_text_is_one_line(tmp_path, capsys) -> None:
    """A metrics.csv or config.toml overwritten with bytes that are not UTF-8 was a
    UnicodeDecodeError traceback from `report`, `plot` and `--resume`."""
    run = make_run(tmp_path / "r", SHARED.format(seed=0), [-30.0, -20.0])
    metrics, config = run / "metrics.csv", run / "config.toml"
    written = metrics.read_bytes()
    metrics.write_bytes(written + b"300,\xc1\x80,1000.0,\n")
    assert main(["report", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: {metrics} is damaged at line 4 (byte 0xc1 is not text): restore it, "
        "or move it away (a resumed run then starts a new one)\n"
    )
    metrics.write_bytes(written)
    config.write_bytes(b"\xc1" + config.read_bytes())
    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: run folder {run}: config.toml is not UTF-8 text (byte 0xc1 at position 0)\n"
    )


def test_a_run_named_twice_counts_once(tmp_path, capsys, caplog) -> None:
    """Overlapping shell globs name a run twice (`base base/`, `base base/seed_0`, a link):
    it is one run, not two seeds that agree exactly (a CI of width 0), and a warning says
    which."""
    base = tmp_path / "base"
    make_run(base / "seed_0", SHARED.format(seed=0), [-30.0, -20.0], eval_return=-18.0)
    make_run(base / "seed_1", SHARED.format(seed=1), [-32.0, -22.0], eval_return=-16.0)
    (tmp_path / "link").symlink_to(base / "seed_1")
    with caplog.at_level("WARNING"):
        assert main(["report", str(base / "seed_0"), f"{base / 'seed_0'}/"]) == 0
        assert (
            "| spread | spread | 1 | team episode return | eval_return in metrics.csv | "
            + ("-18.000 | [-18.000, -18.000] |")
            in capsys.readouterr().out
        )
        assert caplog.messages == [
            f"run folders named more than once are counted once: {base / 'seed_0'}"
        ]
        caplog.clear()
        argv = ["report", str(base), f"{base}/", str(base / "seed_0"), str(tmp_path / "link")]
        assert main(argv) == 0
        assert (
            "| spread | spread | 2 | team episode return | eval_return in metrics.csv | "
            + ("-17.000 | [-18.000, -16.000] |")
            in capsys.readouterr().out
        )
        assert caplog.messages == [
            f"run folders named more than once are counted once: {base / 'seed_0'}; "
            f"{base / 'seed_1'} (also as {tmp_path / 'link'})"
        ]


def test_report_files_replace_the_ones_before_whole_through_a_link(runs, tmp_path) -> None:
    """`--out` and `--json` are written atomically (a command stopped midway left them half
    written); a link keeps pointing at its file, which takes the new report, and what is
    no regular file (a device, a pipe) is written in place."""
    target = tmp_path / "kept" / "report.md"
    target.parent.mkdir()
    target.write_text("the report before\n")
    link = tmp_path / "report.md"
    link.symlink_to(target)
    assert main(["report", *map(str, runs), "--out", str(link)]) == 0
    assert link.is_symlink() and target.read_text().startswith("Score of a run: ")
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]  # no temporary
    pipe, read = tmp_path / "pipe", []
    os.mkfifo(pipe)
    reader = threading.Thread(target=lambda: read.append(pipe.read_text()), daemon=True)
    reader.start()
    assert main(["report", *map(str, runs), "--json", str(pipe)]) == 0
    reader.join(timeout=60)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and '"step_count"' in read[0]  # not replaced
