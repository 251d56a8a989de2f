"""Turn-based PettingZoo (AEC) envs: one agent acts per step, rewards between turns are
credited to its last action, masks are honoured, games end as PettingZoo says."""

import json

import aec_envs
import numpy as np
import pytest
import torch

from mappo import MappoConfig, MappoTrainer, compute_gae
from mappo.cli import main
from mappo.envs.pettingzoo.wrapper import PettingZooWrapper

MODULE = aec_envs.__name__


def relay(num_envs: int = 1, **kwargs) -> PettingZooWrapper:
    """`num_envs` RelayEnvs in process, seeded 0, 1, ..."""
    return PettingZooWrapper(lambda: aec_envs.RelayEnv(**kwargs), num_envs, seed=0, name="relay")


def test_only_the_agent_to_act_is_alive_and_a_done_agent_leaves_the_game() -> None:
    # Three players, player_1 eliminated at turn 3 (player_2's move), game over at turn 6.
    env = relay(num_players=3, turns=6, eliminated=(1, 3))
    assert env.spec.turn_based and env.spec.agent_names == ("player_0", "player_1", "player_2")
    alive, rewards, terminated, done = [env.get_alive()[0].tolist()], [], [], []
    for _ in range(7):
        result = env.step(torch.ones(1, 3, dtype=torch.long))  # action 1 is legal at turns 1-6
        alive.append(result.alive[0].tolist())
        rewards.append(result.reward[0].tolist())
        terminated.append(result.terminated[0].tolist())
        done.append(bool(result.env_done[0]))
        # The slots of players not to act read zeros.
        assert (result.obs[0][~result.alive[0]] == 0).all()
    p0, p1, p2 = [True, False, False], [False, True, False], [False, False, True]
    assert alive == [p0, p1, p2, p0, p2, p0, p0, p1]  # after turn 6 a new game starts
    # Every player still in the game is rewarded t at turn t except the mover; the last
    # mover gets +10, the others t - 10; player_1 is gone after turn 3.
    assert rewards == [
        [0, 1, 1],
        [2, 0, 2],
        [3, 3, 0],
        [0, 0, 4],
        [5, 0, 0],
        [10, 0, -4],
        [0, 1, 1],
    ]
    assert terminated == [
        [False] * 3,
        [False] * 3,
        [False, True, False],
        [False] * 3,
        [False] * 3,
        [True, False, True],
        [False] * 3,
    ]
    assert done == [False] * 5 + [True, False]
    # Each move went to the player to act; player_1 was stepped with None, never an action.
    moves = [(agent, action) for agent, action, _ in env.local_envs[0].env.received]
    assert moves == [
        ("player_0", 1),
        ("player_1", 1),
        ("player_2", 1),
        ("player_0", 1),
        ("player_2", 1),
        ("player_0", 1),
        ("player_0", 1),
    ]
    env.close()


def test_gae_credits_the_rewards_between_turns_to_the_last_action_by_hand() -> None:
    # One env, two players alternating: player 0 acts at t = 0, 2, 4; player 1 at 1, 3.
    # Player 0's reward for its move at t=0 arrives at t=1, after player 1 moved. Player 1
    # wins at t=3 (+1, player 0 -1), which ends the game; t=4 starts the next.
    acting = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=torch.bool)  # [T, A]
    rewards = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [-1.0, 1.0], [0.0, 0.5]])
    dones = torch.tensor([[0, 0], [0, 0], [0, 0], [1, 1], [0, 0]], dtype=torch.bool)
    # Values at the acting steps; the others (99) must not be read.
    values = torch.tensor([[0.5, 99.0], [99.0, 0.25], [0.5, 99.0], [99.0, 0.25], [0.5, 99.0]])
    last_value = torch.tensor([0.3, 0.7])  # the critic's after the rollout
    gamma, lam = 0.9, 0.8
    adv = compute_gae(rewards, values, dones, last_value, gamma, lam, acting=acting)
    # Player 0. t=4: 0 + 0.9 * 0.3 - 0.5 = -0.23 (cut by the rollout: bootstrapped from
    # last_value). t=2: the game ends before its next turn: -1 (received at t=3) - 0.5 = -1.5.
    # t=0: 1 (received at t=1) + 0.9 * V(t=2) 0.5 - 0.5 + 0.9 * 0.8 * -1.5 = -0.13.
    # Player 1. t=3: 1 - 0.25 = 0.75 (terminal; the 0.5 at t=4 belongs to the next game).
    # t=1: 2 (received at t=2) + 0.9 * 0.25 - 0.25 + 0.72 * 0.75 = 2.515.
    # Steps a player waits through carry no advantage.
    assert adv[:, 0].tolist() == pytest.approx([-0.13, 0.0, -1.5, 0.0, -0.23], abs=1e-6)
    assert adv[:, 1].tolist() == pytest.approx([0.0, 2.515, 0.0, 0.75, 0.0], abs=1e-6)


def test_gae_with_every_step_a_turn_is_plain_gae() -> None:
    torch.manual_seed(0)
    T, E, A = 7, 3, 2
    rewards, values, last = torch.randn(T, E, A), torch.randn(T, E, A), torch.randn(E, A)
    dones, truncated = torch.rand(T, E, A) < 0.3, torch.rand(T, E, A) < 0.5
    cut_values = torch.randn(T, E, A)
    plain = compute_gae(rewards, values, dones, last, 0.99, 0.95, truncated & dones, cut_values)
    turns = compute_gae(
        rewards,
        values,
        dones,
        last,
        0.99,
        0.95,
        truncated & dones,
        cut_values,
        acting=torch.ones(T, E, A, dtype=torch.bool),
    )
    torch.testing.assert_close(turns, plain)


def test_trainer_credits_rewards_between_turns_by_hand() -> None:
    # Two players, games of 4 turns (player_0 moves at turns 1 and 3, player_1 at 2 and 4,
    # which wins it). A 6-step rollout holds one game and two turns of the next.
    config = MappoConfig(
        env=f"{MODULE}:RelayEnv",
        num_envs=1,
        rollout_steps=6,
        minibatch_size=0,
        total_steps=6,
        compile="false",
    )
    trainer = MappoTrainer(config)
    trainer.collect_rollout()
    buf = trainer.buffer
    steps = slice(buf.carry_rows, None)  # after the carry rows (one per player, none yet)
    assert buf.carry_rows == 2 and not buf.alive[: buf.carry_rows].any()
    assert buf.alive[steps, 0].tolist() == [[True, False], [False, True]] * 3
    # Rewards of waiting players are kept: player_0 gets 2 at turn 2 and 4 - 10 at turn 4.
    assert buf.rewards[steps, 0].tolist() == [[0, 1], [2, 0], [0, 3], [-6, 10], [0, 1], [2, 0]]
    assert buf.dones[steps, 0].tolist() == [[False] * 2] * 3 + [[True] * 2] + [[False] * 2] * 2
    # With a zero critic, and 1 and 3 after the rollout, γ = 0.5 and λ = 0.5:
    buf.values.zero_()
    buf.compute_returns_and_advantage(
        torch.tensor([[1.0, 3.0]]), 0.5, 0.5, next_acting=torch.tensor([[True, False]])
    )
    # player_0 acts next, so its last turn is completed with its value then (1):
    # t=2: -6; t=0: 0 + 2 + 0.25 * -6 = 0.5; t=4: 0 + 2 + 0.5 * 1 = 2.5.
    # player_1 waits: its turn at t=5 stays open (deferred: no advantage yet);
    # t=3: 10; t=1: 0 + 3 + 0.25 * 10 = 5.5.
    assert buf.advantages[steps, 0, 0].tolist() == pytest.approx([0.5, 0, -6, 0, 2.5, 0])
    assert buf.advantages[steps, 0, 1].tolist() == pytest.approx([0, 5.5, 0, 10, 0, 0])
    assert buf.deferred[steps, 0].tolist() == [[False, False]] * 5 + [[False, True]]
    assert not buf.trained[buf.carry_rows + 5, 0, 1]
    # The trainer's own update takes the turn-based path: waiting steps have no advantage.
    trainer.update()
    assert (buf.advantages[~buf.alive] == 0).all() and (buf.advantages[buf.alive] != 0).any()
    trainer.close()


def test_a_reward_received_across_the_rollout_boundary_reaches_the_last_action() -> None:
    # As above; player_1's turn at t=5 (turn 2 of game 2) is open when the rollout ends. It is
    # carried into the next rollout, where player_1 receives 3 at turn 3 (player_0's move)
    # and wins at turn 4 (+10): with a zero critic, γ = λ = 0.5, its advantage is
    # 3 + 0.25 * 10 = 5.5. Raising the reward by 1000 raises that advantage by 1000.
    def carried_advantage(bonus_of_turn_3: float) -> float:
        config = MappoConfig(
            env=f"{MODULE}:RelayEnv",
            num_envs=1,
            rollout_steps=6,
            minibatch_size=0,
            total_steps=12,
            compile="false",
            gamma=0.5,
            gae_lambda=0.5,
            value_norm=False,
        )
        trainer = MappoTrainer(config)
        head = trainer.policy.critic.head
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)  # V = 0 everywhere
        trainer.collect_rollout()
        trainer.prepare_update()
        trainer.buffer.carry_open_turns()
        trainer.collect_rollout()
        buf = trainer.buffer
        buf.rewards[buf.carry_rows, 0, 1] += bonus_of_turn_3  # received at its first step
        trainer.prepare_update()
        # Carry row 1 is player_1's open turn, acting alone there, with nothing received yet.
        assert buf.alive[: buf.carry_rows, 0].tolist() == [[False, False], [False, True]]
        assert buf.rewards[1, 0, 1] == 0.0
        # It saw [offset, episode, 1 turn played, player 1].
        assert buf.trained[1, 0, 1] and buf.observations[1, 0, 1, 2:].tolist() == [1, 1]
        advantage = float(buf.advantages[1, 0, 1])
        trainer.close()
        return advantage

    assert carried_advantage(0.0) == pytest.approx(5.5)
    assert carried_advantage(1000.0) == pytest.approx(1005.5)


def test_both_players_learn_when_one_is_always_paid_in_the_next_rollout() -> None:
    # Two-step rollouts: player_1 moves last in each, and its pay arrives with player_0's
    # move, the first step of the next rollout (games outlast the run: no pay at a game's
    # end). Separate policies, so that neither learns from the other's pay. Both must learn
    # to play their target (chance: 1 in 3); without the carried turns player_1 played
    # [2, 1, 1], [1, 1, 0], [2, 0, 1] for seeds 1-3.
    config = MappoConfig(
        env=f"{MODULE}:LateRewardEnv",
        env_kwargs={"turns": 1000},
        num_envs=16,
        rollout_steps=2,
        share_policy=False,
        minibatch_size=0,
        update_epochs=4,
        lr=3e-3,
        total_steps=3000,
        compile="false",
        seed=1,
    )
    trainer = MappoTrainer(config)
    trainer.train()
    targets = torch.eye(3).unsqueeze(1).expand(3, 2, 3)  # [target, player, one-hot]
    moves, _ = trainer.policy.act(
        targets, torch.ones(3, 2, 3, dtype=torch.bool), deterministic=True
    )
    assert moves.tolist() == [[0, 0], [1, 1], [2, 2]]  # every target, both players
    trainer.close()


def test_a_game_cut_by_its_time_limit_is_bootstrapped_from_every_players_last_view() -> None:
    # PettingZoo MPE's turn-based Spread, cut after 2 cycles of 3 turns: at the 6th step every
    # agent is truncated, and its final observation is what it sees then, before the
    # done-steps remove it (a twin env played the same way), not zeros.
    from mpe2 import simple_spread_v3

    env = PettingZooWrapper(
        lambda: simple_spread_v3.env(max_cycles=2), 1, seed=0, name="spread_aec"
    )
    twin = simple_spread_v3.env(max_cycles=2)
    twin.reset(seed=0)
    for _ in range(6):
        result = env.step(torch.zeros(1, 3, dtype=torch.long))
        twin.step(0)
    assert result.truncated.tolist() == [[True] * 3] and result.env_done.tolist() == [True]
    seen = torch.tensor(np.stack([twin.observe(agent) for agent in twin.possible_agents]))
    assert seen.abs().sum(-1).min() > 1.0  # every agent's view holds positions, not zeros
    torch.testing.assert_close(result.final_obs[0, :, : seen.shape[1]], seen)
    env.close()


def test_a_recurrent_players_state_advances_only_on_its_own_turns() -> None:
    # Games of 4 turns: player_0 moves at steps 0 and 2, player_1 at 1 and 3; at step 4 a new
    # game starts. The stored states are those each step started from.
    config = MappoConfig(
        env=f"{MODULE}:RelayEnv",
        num_envs=2,
        rollout_steps=7,
        recurrent=True,
        data_chunk_length=3,
        minibatch_size=0,
        total_steps=14,
        compile="false",
    )
    trainer = MappoTrainer(config)
    trainer.collect_rollout()
    buf = trainer.buffer
    hidden = buf.actor_hidden[buf.carry_rows :, 0]  # [T, A, H]
    # Which player's state changed from step t to t + 1: only the one that moved at t.
    assert [
        [bool((hidden[t + 1, a] != hidden[t, a]).any()) for a in range(2)] for t in range(3)
    ] == [[True, False], [False, True], [True, False]]
    # Training replays the same states: before any update every log-probability of an
    # acted step is recomputed as collected (the unroll skips the steps a player waits).
    trainer.prepare_update()

    def recomputed_matches() -> bool:
        mb = next(buf.minibatches(1, trainer.policy.value_norm.normalize, 3))
        dist, _ = trainer.policy.evaluate(mb)
        acted = mb.weights > 0
        return torch.allclose(dist.log_prob(mb.actions)[acted], mb.log_probs[acted], atol=1e-5)

    assert recomputed_matches()
    no_learning = {name: torch.tensor(0.0) for name in ("policy_loss", "value_loss", "entropy")}
    trainer.finish_update(no_learning, 0.0)  # carries the open turn over
    trainer.collect_rollout()
    trainer.prepare_update()
    assert buf.trained[: buf.carry_rows].any() and recomputed_matches()  # the carried turn too
    trainer.close()


def test_a_masked_action_is_never_taken() -> None:
    config = MappoConfig(
        env=f"{MODULE}:RelayEnv",
        env_kwargs={"turns": 5},
        num_envs=4,
        rollout_steps=50,
        minibatch_size=100,
        total_steps=2000,
        compile="false",
    )
    trainer = MappoTrainer(config)
    trainer.train()
    moves = [move for copy in trainer.env.local_envs for move in copy.env.received]
    assert len(moves) == 2000
    assert sum(not legal for _, _, legal in moves) == 0
    # Not vacuous: every action was taken where it was legal.
    assert {action for _, action, _ in moves} == {0, 1, 2}
    trainer.close()


def test_an_exception_inside_the_aec_env_is_one_line(tmp_path, capsys) -> None:
    code = main(
        [
            "train",
            "--env",
            f"{MODULE}:RelayEnv",
            "--env-kwargs",
            '{"turns": 9, "broken_turn": 3}',
            "--run-dir",
            str(tmp_path / "r"),
            "--num-envs",
            "2",
            "--minibatch-size",
            "50",
            "--total-steps",
            "200",
            "--quiet",
        ]
    )
    assert code == 3
    assert capsys.readouterr().err == (
        f"mappo: env error: env '{MODULE}:RelayEnv' failed in step() of env copy 0 at "
        "episode step 3: RuntimeError: turn 3 broke; no checkpoint was written: fix that, "
        "then start it again with the same command and --force\n"
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_cli_trains_evaluates_and_renders_a_turn_based_game(num_workers, tmp_path, capsys) -> None:
    # In a game of 4 turns player_0 receives 2 + 4 - 10 and player_1 1 + 3 + 10, whatever they
    # play: the mean per-agent return is 5, counting the rewards received while waiting.
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                f"{MODULE}:RelayEnv",
                "--total-steps",
                "160",
                "--num-envs",
                "4",
                "--rollout-steps",
                "10",
                "--minibatch-size",
                "0",
                "--num-workers",
                str(num_workers),
                "--quiet",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    with open(run / "metrics.csv") as handle:
        rows = handle.read().splitlines()
    header = rows[0].split(",")
    returns = {float(row.split(",")[header.index("episode_return")]) for row in rows[1:]}
    assert returns == {5.0}
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["episodes"], result["mean_episode_return"]) == (6, 5.0)
    gif = tmp_path / "game.gif"
    assert main(["eval", str(run), "--render", str(gif), "--episodes", "1", "--json"]) == 0
    assert gif.stat().st_size > 0


def test_team_reward_of_a_turn_based_game_is_the_mean_over_every_player() -> None:
    # Turns 1-4 reward the players [0, 1], [2, 0], [0, 3], [4 - 10, 10]: team 0.5, 1, 1.5, 2.
    config = MappoConfig(
        env=f"{MODULE}:RelayEnv",
        num_envs=1,
        rollout_steps=4,
        team_reward=True,
        minibatch_size=0,
        total_steps=4,
        compile="false",
    )
    trainer = MappoTrainer(config)
    metrics = trainer.train()[-1]
    buf = trainer.buffer
    assert buf.rewards[buf.carry_rows :, 0].tolist() == [[0.5, 0.5], [1, 1], [1.5, 1.5], [2, 2]]
    assert (metrics.episodes, metrics.episode_return) == (1, 5.0)
    trainer.close()
