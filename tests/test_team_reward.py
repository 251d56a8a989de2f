"""Credit by hand: a dying agent's last action with and without `team_reward`, and an agent
truncated while its env goes on, bootstrapped from its final observation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mappo import MappoConfig, MappoTrainer
from mappo.episodes import return_label

GAMMA = 0.5


class SumCritic(nn.Module):
    """A stand-in critic whose value for every agent is the sum of its input `[B, S]`."""

    def __init__(self, num_agents: int) -> None:
        super().__init__()
        self.num_agents = num_agents

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return state.sum(-1, keepdim=True).expand(-1, self.num_agents)


def _one_episode(env: str, critic_value: float | None = 0.0, **overrides) -> MappoTrainer:
    """A trainer on one copy of `env` after one 5-step rollout (one whole episode), GAE
    with gamma 0.5 and lambda 1; the critic outputs `critic_value` everywhere (or the sum
    of its input when None)."""
    config = MappoConfig(
        env=f"pz_envs:{env}",
        num_envs=1,
        rollout_steps=5,
        minibatch_size=0,
        gamma=GAMMA,
        gae_lambda=1.0,
        value_norm=False,
        total_steps=5,
        compile="false",
        **overrides,
    )
    trainer = MappoTrainer(config)
    if critic_value is None:
        trainer.policy.critic = SumCritic(trainer.env.num_agents)
    else:
        with torch.no_grad():
            trainer.policy.critic.head.weight.zero_()
            trainer.policy.critic.head.bias.fill_(critic_value)
    trainer.collect_rollout()
    trainer.buffer.compute_returns_and_advantage(torch.zeros(1, trainer.env.num_agents), GAMMA, 1.0)
    return trainer


# DyingAgentEnv: agent a earns 10 a + t at step t = 1..5; agent_1 dies at step 2, the others
# are truncated at step 5. Its last action is stored at index 1 (rewarded 12).


def test_own_reward_ends_a_dying_agents_credit_at_its_death() -> None:
    trainer = _one_episode("DyingAgentEnv")
    buf = trainer.buffer
    assert buf.advantages[1, 0, 1].item() == pytest.approx(12.0)  # terminal: nothing follows
    assert buf.advantages[0, 0, 1].item() == pytest.approx(11.0 + GAMMA * 12.0)
    assert buf.alive[:, 0, 1].tolist() == [True, True, False, False, False]
    # The episode return: mean over the three agents of their own sums, (15 + 23 + 115) / 3.
    assert trainer.episodes.pop_mean() == (pytest.approx(51.0), 1)


def test_team_reward_keeps_crediting_a_dead_agent_until_the_episode_ends() -> None:
    trainer = _one_episode("DyingAgentEnv", team_reward=True)
    buf = trainer.buffer
    # Team reward: the mean of the agents that acted, (t + 10 + t + 20 + t) / 3 = 10 + t for
    # t = 1, 2 and (t + 20 + t) / 2 = 10 + t after the death, in every slot.
    assert buf.rewards[:, 0, 1].tolist() == pytest.approx([11.0, 12.0, 13.0, 14.0, 15.0])
    assert torch.equal(buf.rewards[:, 0, 0], buf.rewards[:, 0, 1])
    dying = 12.0 + GAMMA * 13.0 + GAMMA**2 * 14.0 + GAMMA**3 * 15.0  # 23.875
    assert buf.advantages[1, 0, 1].item() == pytest.approx(dying)
    # Only the env's end stops the credit; losses still weigh only the agents that acted.
    assert buf.dones[:, 0, 1].tolist() == [False, False, False, False, True]
    assert buf.alive[:, 0, 1].tolist() == [True, True, False, False, False]
    assert buf.env_rewards[:, 0, 1].tolist() == [11.0, 12.0, 0.0, 0.0, 0.0]
    # The episode return is the team return: 11 + 12 + 13 + 14 + 15.
    assert trainer.episodes.pop_mean() == (pytest.approx(65.0), 1)


def test_team_episode_ended_by_the_time_limit_is_bootstrapped() -> None:
    trainer = _one_episode("DyingAgentEnv", critic_value=2.0, team_reward=True)
    buf = trainer.buffer
    assert buf.truncated[4, 0].tolist() == [True, True, True]  # the dead slot too
    assert buf.advantages[4, 0, 1].item() == pytest.approx(15.0 + GAMMA * 2.0 - 2.0)


def test_team_episode_cut_by_the_time_limit_is_bootstrapped_though_an_agent_died_then() -> None:
    # LastStepDeathEnv: agent_1 dies on the step that truncates the others; the team goes on.
    trainer = _one_episode("LastStepDeathEnv", critic_value=2.0, team_reward=True)
    buf = trainer.buffer
    assert buf.truncated[4, 0].tolist() == [True, True, True]
    # Team reward at t = 5: (5 + 15 + 25) / 3 = 15, then the survivors' value, 2.
    assert buf.advantages[4, 0, 0].item() == pytest.approx(15.0 + GAMMA * 2.0 - 2.0)


def test_return_labels_name_the_definition() -> None:
    assert return_label(False) == "mean per-agent episode return"
    assert return_label(True) == "team episode return"


# LoneTruncationEnv: agent_0 is truncated at step 2 while agent_1 goes on to step 5.


def test_agent_truncated_while_its_env_goes_on_bootstraps_from_its_final_observation() -> None:
    trainer = _one_episode("LoneTruncationEnv", critic_value=None)
    buf = trainer.buffer
    offset, episode = buf.observations[0, 0, 0, :2].tolist()
    # The critic's view of the step that cut agent_0: both agents' observations at t = 2.
    final_state = torch.tensor([offset, episode, 2.0, 0.0, offset, episode, 2.0, 1.0])
    assert buf.truncated[1, 0].tolist() == [True, False]
    assert buf.truncation_values[1, 0, 0].item() == pytest.approx(final_state.sum().item())
    value_before = buf.states[1, 0].sum().item()
    expected = 2.0 + GAMMA * final_state.sum().item() - value_before  # agent_0 earns t = 2
    assert buf.advantages[1, 0, 0].item() == pytest.approx(expected)
    # Nothing after the cut reaches agent_0's last action.
    assert buf.dones[1, 0, 0].item() and not buf.alive[2:, 0, 0].any()


def test_without_time_limit_bootstrapping_a_lone_truncation_is_terminal() -> None:
    trainer = _one_episode("LoneTruncationEnv", critic_value=3.0, bootstrap_time_limits=False)
    assert trainer.buffer.advantages[1, 0, 0].item() == pytest.approx(2.0 - 3.0)


def test_metrics_and_eval_say_which_return_they_report(tmp_path, capsys) -> None:
    import csv
    import json

    from mappo.cli import main

    flags = [
        "--env",
        "pz_envs:DyingAgentEnv",
        "--num-envs",
        "2",
        "--rollout-steps",
        "5",
        "--minibatch-size",
        "0",
        "--total-steps",
        "20",
        "--quiet",
    ]
    for team in ("false", "true"):
        run = tmp_path / team
        assert main(["train", "--run-dir", str(run), "--team-reward", team, *flags]) == 0
        with open(run / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        definition = "team" if team == "true" else "per_agent"
        assert {row["return_definition"] for row in rows} == {definition}
        # Rewards do not depend on actions: every episode returns 65 (team) or 51 (mean).
        assert float(rows[0]["episode_return"]) == pytest.approx(65.0 if team == "true" else 51.0)
        capsys.readouterr()
        assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
        line, payload = capsys.readouterr().out.strip().splitlines()
        label = "team episode return" if team == "true" else "mean per-agent episode return"
        assert f"{label} {65.0 if team == 'true' else 51.0:.3f}" in line
        assert json.loads(payload)["return_definition"] == definition
