"""SpeakerListenerEnv against mpe2's simple_speaker_listener_v4, step by step, plus its contract.

Behaviour shared by every MPE task (auto-reset, seeding, snapshots, action
shapes) is tested in test_mpe_tasks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mappo.envs.mpe.speaker_listener import SpeakerListenerEnv

simple_speaker_listener_v4 = pytest.importorskip("mpe2.simple_speaker_listener_v4")

MAX_CYCLES = 25
SPEAKER_OBS, LISTENER_OBS = 3, 11


def _random_actions(num_envs: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform legal actions `[E, 2]`: speaker word 0..2, listener move 0..4."""
    words = torch.randint(0, 3, (num_envs,), generator=gen)
    moves = torch.randint(0, 5, (num_envs,), generator=gen)
    return torch.stack([words, moves], 1)


def _episode_starts(
    num_envs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start states and a full episode of legal actions for `num_envs` envs.

    Goals cycle through the 3 landmarks; positions are float32-representable so
    both envs start identically. Returns listener_pos [E, 2], landmark_pos
    [E, 3, 2], goal [E], actions [T, E, 2].
    """
    rng = np.random.default_rng(seed)
    listener_pos = rng.uniform(-1, 1, (num_envs, 2)).astype(np.float32).astype(float)
    landmark_pos = rng.uniform(-1, 1, (num_envs, 3, 2)).astype(np.float32).astype(float)
    goal = np.arange(num_envs) % 3
    words = rng.integers(0, 3, (MAX_CYCLES, num_envs))
    moves = rng.integers(0, 5, (MAX_CYCLES, num_envs))
    return listener_pos, landmark_pos, goal, np.stack([words, moves], axis=2)


def _mpe2_episode(
    listener_pos: np.ndarray, landmark_pos: np.ndarray, goal: int, actions: np.ndarray
) -> tuple[list[np.ndarray], list[list[np.ndarray]], np.ndarray, np.ndarray]:
    """Play one env of the batch in mpe2 from the given start.

    Returns float64 observations (speaker [3], listener [11]) before the first
    step and after every step [T], rewards [T, 2] and truncation flags [T, 2].
    """
    env = simple_speaker_listener_v4.parallel_env(max_cycles=MAX_CYCLES, continuous_actions=False)
    env.reset(seed=0)
    raw = env.unwrapped
    world, scenario = raw.world, raw.scenario
    speaker, listener = world.agents
    speaker.goal_b = world.landmarks[goal]
    listener.state.p_pos = listener_pos.copy()
    listener.state.p_vel = np.zeros(2)
    for landmark, pos in zip(world.landmarks, landmark_pos, strict=True):
        landmark.state.p_pos = pos.copy()
    names = raw.possible_agents

    def observe() -> list[np.ndarray]:
        # mpe2's float64 observations: the ones it returns are cast to float32.
        return [scenario.observation(a, world) for a in world.agents]

    start_obs = observe()
    obs, rewards, truncated = [], [], []
    for step_actions in actions:
        _, rew, term, trunc, _ = env.step(dict(zip(names, step_actions.tolist(), strict=True)))
        assert not any(term.values())
        truncated.append([trunc[n] for n in names])
        obs.append(observe())
        rewards.append([rew[n] for n in names])
    return start_obs, obs, np.array(rewards), np.array(truncated)


def _obs_error(ours: np.ndarray, state: np.ndarray, ref: list[np.ndarray]) -> float:
    """Largest difference of padded obs `[2, 11]` and state `[14]` from mpe2's two observations."""
    speaker, listener = ref
    assert (ours[0, SPEAKER_OBS:] == 0).all()  # the speaker's padding
    return max(
        np.abs(ours[0, :SPEAKER_OBS] - speaker).max(),
        np.abs(ours[1] - listener).max(),
        np.abs(state - np.concatenate(ref)).max(),  # mpe2's state(), unpadded
    )


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_matches_mpe2_step_by_step(dtype: torch.dtype, tol: float) -> None:
    num_envs = 6
    listener_pos, landmark_pos, goal, actions = _episode_starts(num_envs, seed=2)
    env = SpeakerListenerEnv(num_envs, max_cycles=MAX_CYCLES, dtype=dtype, seed=0)
    obs0 = (
        env.set_state(
            torch.from_numpy(listener_pos), torch.from_numpy(landmark_pos), torch.from_numpy(goal)
        )
        .double()
        .numpy()
    )
    state0 = env.get_global_state().double().numpy()

    ours_obs, ours_state, ours_rew, ours_done = [], [], [], []
    for step_actions in actions:
        out = env.step(torch.from_numpy(step_actions))
        ours_obs.append(out.final_obs.double().numpy())
        ours_state.append(out.final_state.double().numpy())
        ours_rew.append(out.reward.double().numpy())
        ours_done.append(out.env_done.numpy())
        assert not out.terminated.any()
        assert torch.equal(out.truncated, out.env_done[:, None].expand(-1, 2))
    ours_obs = np.stack(ours_obs, 1)  # [E, T, 2, 11]
    ours_state = np.stack(ours_state, 1)  # [E, T, 14]
    ours_rew = np.stack(ours_rew, 1)  # [E, T, 2]

    obs_err = rew_err = 0.0
    for e in range(num_envs):
        ref_obs0, ref_obs, ref_rew, ref_truncated = _mpe2_episode(
            listener_pos[e], landmark_pos[e], int(goal[e]), actions[:, e]
        )
        assert ref_truncated[-1].all() and not ref_truncated[:-1].any()
        obs_err = max(obs_err, _obs_error(obs0[e], state0[e], ref_obs0))
        for t in range(MAX_CYCLES):
            obs_err = max(obs_err, _obs_error(ours_obs[e, t], ours_state[e, t], ref_obs[t]))
        rew_err = max(rew_err, np.abs(ours_rew[e] - ref_rew).max())
    assert obs_err <= tol and rew_err <= tol, (obs_err, rew_err)
    assert np.stack(ours_done).nonzero()[0].tolist() == [MAX_CYCLES - 1] * num_envs


def test_spec_and_layout() -> None:
    env = SpeakerListenerEnv(4, seed=0)
    spec = env.spec
    assert (spec.obs_dim, spec.state_dim, spec.num_agents) == (11, 14, 2)
    assert spec.obs_sizes == (3, 11)
    assert spec.action.nvec == (5,) and spec.action.kind == "discrete"
    assert spec.max_episode_steps == MAX_CYCLES and spec.state_source == "env"
    # The same names, sizes and state as mpe2.
    ref = simple_speaker_listener_v4.parallel_env(max_cycles=MAX_CYCLES)
    ref.reset(seed=0)
    assert spec.agent_names == tuple(ref.possible_agents) == ("speaker_0", "listener_0")
    assert [ref.action_space(a).n for a in ref.possible_agents] == [3, 5]
    assert [ref.observation_space(a).shape[0] for a in ref.possible_agents] == [3, 11]
    assert ref.unwrapped.state().shape == (14,)

    mask = env.get_action_mask()
    assert mask.shape == (4, 2, 5)
    assert mask[:, 0].tolist() == [[True, True, True, False, False]] * 4
    assert mask[:, 1].all()
    assert env.get_alive().shape == (4, 2) and env.get_alive().all()

    out = env.step(torch.tensor([[2, 4]] * 4))
    state = env.get_global_state()
    assert state.shape == (4, 14) and torch.equal(state, out.state)
    assert torch.equal(state[:, :3], out.obs[:, 0, :3]) and torch.equal(state[:, 3:], out.obs[:, 1])
    assert (out.obs[:, 0, 3:] == 0).all()
    for i in range(2):
        assert torch.equal(env.get_observation(i), out.obs[:, i])
    assert out.obs[:, 1, 8:].tolist() == [[0.0, 0.0, 1.0]] * 4  # the listener heard word 2
    assert torch.equal(out.reward[:, 0], out.reward[:, 1])  # one shared reward
    # The speaker sees one of the three landmark colors.
    colors = torch.tensor([[0.65, 0.15, 0.15], [0.15, 0.65, 0.15], [0.15, 0.15, 0.65]])
    assert ((out.obs[:, 0, None, :3] - colors).abs().amax(-1).amin(-1) < 1e-7).all()


def test_random_policy_return() -> None:
    # mpe2 itself gives -39.7 +- 0.6 (3000 episodes of uniform random actions).
    num_envs = 512
    env = SpeakerListenerEnv(num_envs, seed=0)
    gen = torch.Generator().manual_seed(0)
    episode_return = torch.zeros(num_envs, 2)
    for _ in range(MAX_CYCLES):
        episode_return += env.step(_random_actions(num_envs, gen)).reward
    # Returns spread widely (std ~33 per episode): 512 episodes give a standard error of ~1.5.
    assert abs(episode_return.mean().item() - (-39.7)) < 5.0


def test_speaker_has_only_three_words() -> None:
    # Action 3 is in range for the listener's moves but not the speaker's words.
    env = SpeakerListenerEnv(4, seed=0)
    with pytest.raises(IndexError):  # the speaker has no word 3: its masked logits
        env.step(torch.tensor([[3, 0]] * 4))
