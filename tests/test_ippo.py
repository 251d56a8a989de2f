"""`critic = local` (IPPO): each agent's critic sees its own observation only."""

import logging
import statistics

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.config import ConfigError
from mappo.evaluation import evaluate_run
from mappo.networks import LocalCritic
from mappo.policy import Policy


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("share_policy", [True, False])
def test_an_agents_value_ignores_the_other_agents_observations(recurrent, share_policy) -> None:
    trainer = MappoTrainer(
        MappoConfig(
            num_envs=4,
            critic="local",
            recurrent=recurrent,
            share_policy=share_policy,
            total_steps=100,
        )
    )
    policy: Policy = trainer.policy
    assert isinstance(policy.critic, LocalCritic)
    obs = torch.randn(4, 3, trainer.config.obs_dim)
    changed = obs.clone()
    changed[:, 1] += 5.0  # agent 1 sees something else; agents 0 and 2 do not
    state = policy.initial_state(4)
    start = torch.ones(4, 3, dtype=torch.bool)
    with torch.no_grad():
        before = policy.step(obs, policy.critic_input(obs, None), state, start).values
        after = policy.step(changed, policy.critic_input(changed, None), state, start).values
    assert before.shape == (4, 3)
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]])
    assert (before[:, 1] - after[:, 1]).abs().min() > 1e-4
    if recurrent:  # one critic state per agent, like the actor's
        assert trainer.buffer.critic_hidden.shape == (25, 4, 3, 64)
    assert trainer.buffer.states.shape == (25, 4, 0)  # the observations are not stored twice


@pytest.mark.slow
def test_ippo_return_rises_on_spread() -> None:
    config = MappoConfig(total_steps=48_000, num_envs=32, seed=0, critic="local")
    history = MappoTrainer(config).train()
    first = statistics.fmean(m.episode_return for m in history[:5])
    last = statistics.fmean(m.episode_return for m in history[-5:])
    assert first < -22.0  # a random policy scores about -26
    assert last > first + 2.5, (first, last)


def test_use_global_state_warns_with_a_local_critic(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        MappoTrainer(MappoConfig(num_envs=4, critic="local", use_global_state=True))
    assert (
        "use_global_state has no effect with critic = local: each agent's critic sees "
        "its own observation"
    ) in caplog.text


def test_checkpoint_round_trip_keeps_the_local_critic(tmp_path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                "--critic",
                "local",
                "--recurrent",
                "true",
                "--total-steps",
                "400",
                "--num-envs",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["config"]["critic"] == "local"
    trainer, _ = MappoTrainer.from_checkpoint(run / "checkpoint.pt")
    assert isinstance(trainer.policy.critic, LocalCritic)
    for name, tensor in trainer.policy.critic.state_dict().items():
        assert torch.equal(tensor, payload["critic"][name]), name
    assert trainer.config.critic == "local"
    assert len(evaluate_run(run, episodes=4, deterministic=True).returns) == 4  # actor only


def test_critic_choices_are_named() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'critic' = 'global': must be one of centralized, "
        r"local",
    ):
        MappoConfig(critic="global")
