"""Competitive and sparse-reward runs say what they learned: each seat's win, draw and loss
rates in zero-sum games (training metrics, progress lines, `mappo eval`, `--opponent`), and
the fraction of episodes that earned any reward."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
from pathlib import Path

import game_envs
import pytest
import torch

from mappo import MappoMetrics
from mappo import progress as progress_module
from mappo.cli import main
from mappo.config import ConfigError
from mappo.envs.base import ActionSpec, EnvSpec
from mappo.episodes import DRAW, LOSS, WIN, EpisodeTracker, SeatOutcomes, seat_outcomes
from mappo.evaluation import RandomPlayer
from mappo.seeds import pooled_metrics

MODULE = game_envs.__name__
TICTACTOE = "pettingzoo.classic.tictactoe_v3:env"
CONNECT_FOUR = "pettingzoo.classic.connect_four_v3:env"
# A board of 3x3x2 (6x7x2) is no picture whose channels can be told: read it flat.
BOARD = ["--encoder", "mlp"]
SEAT_LINE = re.compile(
    r"^as seat (\d) \((\w+)\): wins (\d\.\d{3}), draws (\d\.\d{3}), losses (\d\.\d{3}) "
    r"over (\d+) episodes$"
)
TRAINING_SEATS = re.compile(r"seat 1 wins (\d\.\d\d), seat 2 wins (\d\.\d\d), draws (\d\.\d\d)")


def seats(out: str) -> dict[int, tuple[float, float, float, int]]:
    """`mappo eval --opponent`'s seat lines: seat → (wins, draws, losses, episodes)."""
    found = {}
    for line in out.splitlines():
        if match := SEAT_LINE.match(line):
            seat, _, wins, draws, losses, episodes = match.groups()
            found[int(seat)] = (float(wins), float(draws), float(losses), int(episodes))
    return found


def train(run: Path, env: str, *flags: str) -> None:
    """`mappo train` of `env` into `run`, seed 0, with `flags` (each item may hold several,
    split at spaces)."""
    argv = ["train", "--env", env, "--run-dir", str(run), "--seed", "0"]
    assert main([*argv, *(word for item in flags for word in item.split())]) == 0


def metrics_rows(run: Path) -> list[dict[str, str]]:
    """The run's metrics.csv rows."""
    with open(run / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


# --- scoring the seats of finished episodes -------------------------------------------


def test_a_seat_wins_with_the_strict_maximum_all_draw_when_equal_else_it_loses() -> None:
    returns = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.5]])
    scored = seat_outcomes(returns, torch.ones_like(returns, dtype=torch.bool))
    assert scored.outcome.tolist() == [
        [WIN, LOSS],
        [LOSS, WIN],
        [DRAW, DRAW],
        [DRAW, DRAW],  # equal, though not zero-sum
        [WIN, LOSS],
    ]
    assert scored.zero_sum.tolist() == [True, True, True, False, False]
    assert scored.decisive.tolist() == [True, True, False, False, False]  # a draw is not

    # Three seats: two sharing the top both lose; a seat not in the game takes no part.
    returns = torch.tensor([[2.0, -1.0, -1.0], [1.0, 1.0, -2.0], [1.0, -1.0, 5.0]])
    seated = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    scored = seat_outcomes(returns, seated)
    assert scored.outcome[:, :2].tolist() == [[WIN, LOSS], [LOSS, LOSS], [WIN, LOSS]]
    assert scored.outcome[0, 2] == LOSS and scored.zero_sum.tolist() == [True, True, True]
    # float32 sums of fractions are zero-sum within the tolerance.
    fractions = torch.tensor([[0.1, 0.2, -0.3]])
    assert seat_outcomes(fractions, torch.ones(1, 3, dtype=torch.bool)).zero_sum.item()


@pytest.mark.parametrize("team_reward", [False, True])
def test_tracker_counts_each_seats_wins_draws_and_losses(team_reward: bool) -> None:
    alive = torch.ones(4, 2, dtype=torch.bool)
    tracker = EpisodeTracker(alive, team_reward=team_reward)
    # Env 0's seat 1 wins over two steps (0.5 + 0.5); env 1's seat 1 and env 2's seat 2 win
    # at once; env 3 draws.
    tracker.step(
        torch.tensor([[0.5, -0.5], [1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]]),
        alive,
        torch.tensor([False, True, True, False]),
        alive,
    )
    tracker.step(
        torch.tensor([[0.5, -0.5], [3.0, 3.0], [3.0, 3.0], [0.0, 0.0]]),  # envs 1, 2 go on
        alive,
        torch.tensor([True, False, False, True]),
        alive,
    )
    outcomes = tracker.pop_outcomes()
    assert outcomes == SeatOutcomes(((2, 1, 1), (1, 1, 2)))
    assert outcomes.rates(0) == (0.5, 0.25, 0.25) and outcomes.rates(1) == (0.25, 0.25, 0.5)
    again = tracker.pop_outcomes()  # popped: still a zero-sum game, with nothing since
    assert again is not None and all(math.isnan(rate) for rate in again.rates(0))


def test_no_seat_outcomes_unless_every_episode_is_zero_sum_and_one_was_decided() -> None:
    alive = torch.ones(1, 2, dtype=torch.bool)
    done = torch.tensor([True])
    tracker = EpisodeTracker(alive)
    tracker.step(torch.tensor([[0.0, 0.0]]), alive, done, alive)  # a draw, or no reward at all
    assert tracker.pop_outcomes() is None
    tracker.step(torch.tensor([[1.0, -1.0]]), alive, done, alive)  # decided: a zero-sum game
    assert tracker.pop_outcomes() == SeatOutcomes(((1, 0, 0), (0, 0, 1)))
    tracker.step(torch.tensor([[1.0, 1.0]]), alive, done, alive)  # summing to 2: it is not
    tracker.step(torch.tensor([[1.0, -1.0]]), alive, done, alive)
    assert tracker.pop_outcomes() is None  # from then on

    cooperative = EpisodeTracker(alive, team_reward=True)
    cooperative.step(torch.tensor([[-3.0, -3.0]]), alive, done, alive)
    assert cooperative.pop_outcomes() is None


def test_rewarded_fraction_counts_the_episodes_in_which_any_agent_was_paid() -> None:
    alive = torch.ones(4, 2, dtype=torch.bool)
    tracker = EpisodeTracker(alive)
    # Env 1 pays agent 1 at step 1; env 2 pays a dead agent (not counted); env 3 pays
    # +1 and -1, which sums to 0 but is a reward.
    acted = alive.clone()
    acted[2, 0] = False
    tracker.step(
        torch.tensor([[0.0, 0.0], [0.0, 0.3], [5.0, 0.0], [1.0, -1.0]]),
        acted,
        torch.tensor([False, False, False, False]),
        acted,
    )
    tracker.step(torch.zeros(4, 2), acted, torch.ones(4, dtype=torch.bool), alive)
    assert tracker.pop_rewarded_fraction() == (0.5, 4)
    # The next episodes start unrewarded.
    tracker.step(torch.zeros(4, 2), alive, torch.ones(4, dtype=torch.bool), alive)
    assert tracker.pop_rewarded_fraction() == (0.0, 4)
    rate, count = tracker.pop_rewarded_fraction()
    assert math.isnan(rate) and count == 0


def test_seeds_pool_the_rates_by_their_episodes() -> None:
    def seed(episodes: int, first: float, second: float, draw: float, paid: float):
        return MappoMetrics(
            policy_loss=0.0,
            value_loss=0.0,
            entropy=0.0,
            episode_return=0.0,
            episodes=episodes,
            first_seat_win_rate=first,
            second_seat_win_rate=second,
            draw_rate=draw,
            rewarded_fraction=paid,
        )

    nan = math.nan
    pooled = pooled_metrics(
        [seed(10, 0.8, 0.1, 0.1, 0.9), seed(30, 0.4, 0.4, 0.2, 0.5), seed(0, nan, nan, nan, nan)]
    )
    assert pooled.episodes == 40
    assert pooled.first_seat_win_rate == pytest.approx((8 + 12) / 40)
    assert pooled.second_seat_win_rate == pytest.approx((1 + 12) / 40)
    assert pooled.draw_rate == pytest.approx((1 + 6) / 40)
    assert pooled.rewarded_fraction == pytest.approx((9 + 15) / 40)
    # A seed that saw no zero-sum game does not count in the seat rates.
    mixed = pooled_metrics([seed(10, 0.8, 0.1, 0.1, 1.0), seed(30, nan, nan, nan, 0.0)])
    assert mixed.first_seat_win_rate == pytest.approx(0.8)
    assert mixed.rewarded_fraction == pytest.approx(10 / 40)
    assert math.isnan(pooled_metrics([seed(5, nan, nan, nan, 1.0)]).draw_rate)


# --- the random player ------------------------------------------------------------------


def spec(action: ActionSpec) -> EnvSpec:
    """An env's facts, as far as the random player reads them."""
    return EnvSpec("game", ("player_0", "player_1"), obs_dim=1, state_dim=2, action=action)


def test_random_player_draws_uniformly_among_the_legal_actions() -> None:
    mask = torch.zeros(6000, 2, 5, dtype=torch.bool)
    mask[:, 0, [0, 2, 4]] = True
    mask[:, 1, 3] = True
    player = RandomPlayer(spec(ActionSpec("discrete", (5,))), "cpu", seed=4)
    action, state = player.act(torch.zeros(6000, 2, 1), mask)
    assert state is None and action.shape == (6000, 2)
    counts = torch.bincount(action[:, 0], minlength=5) / 6000
    assert counts.tolist() == pytest.approx([1 / 3, 0, 1 / 3, 0, 1 / 3], abs=0.02)
    assert (action[:, 1] == 3).all()
    again, _ = RandomPlayer(spec(ActionSpec("discrete", (5,))), "cpu", seed=4).act(
        torch.zeros(6000, 2, 1), mask
    )
    assert torch.equal(action, again)  # its own seeded generator

    # MultiDiscrete: each sub-action among its own legal ones.
    nvec = (2, 3)
    mask = torch.tensor([[True, False, False, True, True]]).expand(100, 2, 5)
    action, _ = RandomPlayer(spec(ActionSpec("discrete", nvec)), "cpu").act(
        torch.zeros(100, 2, 1), mask
    )
    assert action.shape == (100, 2, 2) and (action[..., 0] == 0).all()
    assert set(action[..., 1].flatten().tolist()) == {1, 2}


def test_random_player_refuses_continuous_actions_in_one_line() -> None:
    box = ActionSpec("continuous", low=(-1.0,), high=(1.0,))
    with pytest.raises(ConfigError) as err:
        RandomPlayer(spec(box), "cpu")
    assert str(err.value) == (
        "--opponent random: env 'game' has continuous actions; a uniformly random legal "
        "player needs discrete ones (give --opponent RUN_DIR)"
    )


# --- a game whose outcomes are known, through the CLI ------------------------------------


@pytest.fixture(scope="module")
def first_mover(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """FirstMoverGame trained by self-play until the first player always plays 0 (12
    updates of 256 turns); the run and its output as in a log (one line at the end)."""
    run = tmp_path_factory.mktemp("games") / "first_mover"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)
        train(
            run, f"{MODULE}:FirstMoverGame", "--total-steps 3072 --num-envs 16 --rollout-steps 16"
        )
    return run, out.getvalue()


def test_training_of_a_zero_sum_game_logs_each_seats_wins(first_mover) -> None:
    run, out = first_mover
    rows = metrics_rows(run)
    for row in rows:  # every update finished games: rates of a zero-sum game, summing to 1
        first, second, draw = (
            float(row[name])
            for name in ("first_seat_win_rate", "second_seat_win_rate", "draw_rate")
        )
        assert first + second + draw == pytest.approx(1.0)
        # Every seat counts, the loser that never moved too: a zero-sum game's mean is 0.
        assert float(row["episode_return"]) == pytest.approx(0.0, abs=1e-6)
    # Random play: the first player wins 1/2, the second 1/4, draws 1/4 (the policy starts
    # near uniform); learned: the first player always plays 0 and wins.
    first_row = [float(rows[0][name]) for name in ("first_seat_win_rate", "draw_rate")]
    assert first_row[0] < 0.7 and first_row[1] > 0.1
    assert float(rows[-1]["first_seat_win_rate"]) >= 0.97
    summary = next(line for line in out.splitlines() if line.startswith("env steps 3,072"))
    assert "recent return" not in summary  # meaningless in a zero-sum game
    first, second, draws = map(float, TRAINING_SEATS.search(summary).groups())
    assert first >= 0.95 and first + second + draws == pytest.approx(1.0, abs=0.015)


def test_eval_against_a_random_player_in_each_seat(first_mover, capsys) -> None:
    run, _ = first_mover
    capsys.readouterr()
    argv = ["eval", str(run), "--opponent", "random", "--deterministic", "--episodes", "40"]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == (
        f"{run} against a uniformly random legal player, 40 episodes in each of 2 seats "
        "(deterministic):"
    )
    found = seats(out)
    # First: it plays 0 and wins every game. Second: the random first player wins half the
    # games at once (its draws are seeded; over 40 games, a win rate outside 0.25-0.75
    # would come one seed in 900); where it passes, ours plays 0 and wins; never a draw.
    assert found[1] == (1.0, 0.0, 0.0, 40)
    wins, draws, losses, episodes = found[2]
    assert 0.25 <= wins <= 0.75 and draws == 0.0 and wins + losses == 1.0 and episodes == 40
    result = json.loads(lines[-1])
    assert (result["opponent"], result["episodes"], result["zero_sum"]) == ("random", 80, True)
    assert [(s["seat"], s["agent"], s["episodes"]) for s in result["seats"]] == [
        (1, "player_0", 40),
        (2, "player_1", 40),
    ]
    assert result["seats"][1]["win_rate"] == pytest.approx(wins)
    assert result["seats"][0]["mean_own_return"] == 1.0
    assert result["seats"][1]["mean_own_return"] == pytest.approx(wins - losses)

    # Self-play, without --opponent: the first player wins every game.
    assert main(["eval", str(run), "--deterministic", "--episodes", "20", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1:3] == [
        "self-play, seat 1 (player_0): wins 1.000, draws 0.000, losses 0.000 over 20 episodes",
        "self-play, seat 2 (player_1): wins 0.000, draws 0.000, losses 1.000 over 20 episodes",
    ]
    assert [s["win_rate"] for s in json.loads(out[-1])["seats"]] == [1.0, 0.0]
    assert "opponent" not in json.loads(out[-1])


def test_report_scores_a_zero_sum_game_against_a_random_player(first_mover, capsys) -> None:
    """Self-play returns cancel (+1 and -1: a mean of 0 whatever was learnt), so `mappo
    report` plays each seat against the random player, as `mappo eval --opponent random`
    does with the same seed: its score is the mean of the two seats' own returns."""
    run, _ = first_mover
    capsys.readouterr()
    argv = ["eval", str(run), "--opponent", "random", "--deterministic", "--episodes", "40"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    by_seat = [seat["mean_own_return"] for seat in result["seats"]]
    assert main(["report", str(run), "--episodes", "40"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith(f"| {MODULE}:FirstMoverGame |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[3:5] == [
        "own episode return against a random legal player",
        "40 greedy episodes per seat against a random legal player",
    ]
    # Seat 1 wins all 40 (+1); seat 2 wins where the random first mover passes (a quarter
    # to three quarters of the games: see the test above), else loses (-1).
    assert float(cells[5]) == pytest.approx(sum(by_seat) / 2, abs=5e-4)
    assert 0.25 <= float(cells[5]) <= 0.75


def test_eval_against_its_own_run_is_symmetric(first_mover, capsys) -> None:
    run, _ = first_mover
    capsys.readouterr()
    argv = ["eval", str(run), "--opponent", str(run), "--deterministic", "--episodes", "8"]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{run} against the policy of {run}, 8 episodes in each of 2 seats")
    # Whoever is ours, the first player plays 0 and wins: ours wins as first, loses as second.
    assert seats(out) == {1: (1.0, 0.0, 0.0, 8), 2: (0.0, 0.0, 1.0, 8)}
    assert json.loads(out.splitlines()[-1])["opponent"] == str(run)


def test_opponent_mistakes_are_one_line(first_mover, tiny_run, capsys) -> None:
    run, _ = first_mover
    capsys.readouterr()
    assert main(["eval", str(run), "--opponent", str(tiny_run)]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: --opponent {tiny_run}: that run played env 'spread', this one "
        f"env '{MODULE}:FirstMoverGame'\n"
    )
    assert main(["eval", str(run), "--opponent", "random", "--render", "x.gif"]) == 2
    assert capsys.readouterr().err == (
        "mappo: error: --opponent does not combine with --render, which draws self-play\n"
    )
    assert main(["eval", str(run), "--opponent", str(run.parent / "nowhere")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: --opponent run folder {run.parent / 'nowhere'} does not exist\n"
    )


# --- tic-tac-toe and connect four ---------------------------------------------------------


def test_tictactoe_beats_a_random_player_after_a_short_training(
    tmp_path, capsys, monkeypatch
) -> None:
    """Measured on a 2-core CPU (greedy, 200 games a seat): after 10,240 turns of self-play
    (about 5 s of training; seeds 0-3), the first player wins 0.82-0.93 and the second
    0.65-0.70 of its games against a random player, where a random player wins about 0.58
    and 0.28."""
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # one line, at the end
    run = tmp_path / "ttt"
    train(run, TICTACTOE, *BOARD, "--total-steps 10240 --num-envs 32 --rollout-steps 32")
    summary = next(line for line in capsys.readouterr().out.splitlines() if "seat 1 wins" in line)
    assert sum(map(float, TRAINING_SEATS.search(summary).groups())) == pytest.approx(1, abs=0.015)
    rows = metrics_rows(run)
    rates = ("first_seat_win_rate", "second_seat_win_rate", "draw_rate")
    assert sum(float(rows[-1][name]) for name in rates) == pytest.approx(1.0)
    capsys.readouterr()
    argv = ["eval", str(run), "--opponent", "random", "--deterministic", "--episodes", "100"]
    assert main(argv) == 0
    found = seats(capsys.readouterr().out)
    for wins, draws, losses, episodes in found.values():
        assert wins + draws + losses == pytest.approx(1.0, abs=0.002) and episodes == 100
    assert found[1][0] >= 0.75 and found[2][0] >= 0.45

    # Against itself, both greedy, each game is the same game whichever side is ours: our
    # wins as the first player are our losses as the second, and self-play's.
    assert (
        main(["eval", str(run), "--opponent", str(run), "--deterministic", "--episodes", "8"]) == 0
    )
    mirrored = seats(capsys.readouterr().out)
    assert mirrored[1][:3] == mirrored[2][2::-1]
    assert main(["eval", str(run), "--deterministic", "--episodes", "8"]) == 0
    assert f"seat 1 (player_1): wins {mirrored[1][0]:.3f}" in capsys.readouterr().out


def test_connect_four_shows_each_seats_wins(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # one line, at the end
    run = tmp_path / "c4"
    train(run, CONNECT_FOUR, *BOARD, "--total-steps 1024 --num-envs 16 --rollout-steps 32")
    out = capsys.readouterr().out
    summary = next(line for line in out.splitlines() if line.startswith("env steps 1,024"))
    first, second, draws = map(float, TRAINING_SEATS.search(summary).groups())
    assert first + second + draws == pytest.approx(1.0, abs=0.015)
    assert main(["eval", str(run), "--opponent", "random", "--episodes", "10"]) == 0
    found = seats(capsys.readouterr().out)
    assert [(seat, n) for seat, (*_, n) in found.items()] == [(1, 10), (2, 10)]
    for wins, draws, losses, _ in found.values():
        assert wins + draws + losses == pytest.approx(1.0, abs=0.002)


# --- sparse rewards -------------------------------------------------------------------------


def test_sparse_rewards_show_the_fraction_of_rewarded_episodes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "SUMMARY_INTERVAL_S", 1e9)  # one line, at the end
    run = tmp_path / "sparse"
    # 4 updates of 8 steps in 8 copies: each copy plays 8 episodes of 4 steps, 2 of them paid.
    train(
        run,
        f"{MODULE}:SparseRewardEnv",
        "--total-steps 256 --num-envs 8 --rollout-steps 8",
        "--minibatch-size 0",
    )
    rows = metrics_rows(run)
    episodes = sum(int(row["episodes"]) for row in rows)
    paid = sum(float(row["rewarded_fraction"]) * int(row["episodes"]) for row in rows)
    assert (episodes, paid) == (64, pytest.approx(16))
    assert {row["first_seat_win_rate"] for row in rows} <= {"", "nan"}  # not a game
    out = capsys.readouterr().out
    assert "recent return 0.00, rewarded episodes 0.25, " in out
    # 512 episodes on 128 copies: each its 4 first, one of them paid.
    assert main(["eval", str(run), "--episodes", "512", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{run}: mean per-agent episode return 0.000 ± 0.000, ")
    assert ", rewarded episodes 0.250 over 512 episodes (stochastic)" in lines[0]
    result = json.loads(lines[-1])
    assert result["rewarded_fraction"] == 0.25
    assert result["mean_episode_return"] == pytest.approx(game_envs.PAY / 4)
    assert "seats" not in result
