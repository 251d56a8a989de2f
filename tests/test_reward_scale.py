"""Converting spread returns to the official MAPPO code's scale, checked against its definition."""

import pytest
import torch

from mappo.envs.mpe.spread import SpreadEnv, official_team_return


def test_conversion_matches_the_official_team_reward_step_by_step() -> None:
    torch.manual_seed(0)
    env = SpreadEnv(64, seed=1, dtype=torch.float64)
    # Start the agents close together so collisions (the -1 terms) really happen.
    pos = 0.1 * torch.rand(64, 3, 2, dtype=torch.float64)
    env.set_state(pos, torch.rand(64, 3, 2, dtype=torch.float64) * 2 - 1)
    ours = torch.zeros(64, dtype=torch.float64)
    official = torch.zeros(64, dtype=torch.float64)
    other_collisions = 0
    for _ in range(25):
        result = env.step(torch.randint(0, 5, (64, 3)))
        # The official reward of the positions this step reached (before any reset):
        obs = result.final_obs  # [E, A, O]: vel, pos, landmark rel, other rel, comm
        agent_pos = obs[..., 2:4]  # [E, A, 2]
        landmarks = agent_pos[:, :1] + obs[:, :1, 4:10].reshape(64, 3, 2)  # [E, L, 2]
        dist = (agent_pos[:, :, None] - landmarks[:, None]).norm(dim=-1)  # [E, A, L]
        team_global = -dist.amin(1).sum(-1)  # [E]
        pair = (agent_pos[:, :, None] - agent_pos[:, None]).norm(dim=-1)  # [E, A, A], self incl.
        collisions = (pair < 0.3).sum(-1)  # [E, A], at least 1: every agent meets itself
        official += (team_global[:, None] - collisions).sum(-1)
        other_collisions += int((collisions - 1).sum())
        ours += result.reward.mean(-1)
    assert other_collisions > 0
    for e in range(64):
        assert official_team_return(ours[e].item()) == pytest.approx(official[e].item(), abs=1e-9)


def test_known_values() -> None:
    assert official_team_return(-10.0) == -135.0
    assert official_team_return(-7.9) == pytest.approx(-122.4)
    with pytest.raises(ValueError, match="local_ratio 0.3"):
        official_team_return(-10.0, local_ratio=0.3)


def test_speaker_listener_conversion_matches_the_official_team_reward() -> None:
    from mappo.envs.mpe.speaker_listener import SpeakerListenerEnv
    from mappo.envs.mpe.speaker_listener import official_team_return as official_comm_return

    env = SpeakerListenerEnv(32, seed=2, dtype=torch.float64)
    env.reset(seed=2)
    ours = torch.zeros(32, dtype=torch.float64)
    official = torch.zeros(32, dtype=torch.float64)
    for _ in range(25):
        goal = env._goal.clone()  # the goal of the episode this step belongs to
        result = env.step(torch.randint(0, 3, (32, 2)))
        # The listener observes [vel (2), landmark - listener (3 x 2), message (3)].
        rel = result.final_obs[:, 1, 2:8].reshape(32, 3, 2)[torch.arange(32), goal]  # [E, 2]
        official += 2 * -(rel.square().sum(-1))  # every agent gets the sum of both rewards
        ours += result.reward.mean(-1)
    assert ours.std() > 0
    for e in range(32):
        assert official_comm_return(ours[e].item()) == pytest.approx(official[e].item(), abs=1e-9)
