"""ReferenceEnv against mpe2's simple_reference_v3, step by step, plus its own contract.

Behaviour shared by every MPE task (auto-reset, seeding, snapshots, action
shapes) is tested in test_mpe_tasks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mappo.envs.mpe.reference import ReferenceEnv

simple_reference_v3 = pytest.importorskip("mpe2.simple_reference_v3")

MAX_CYCLES = 25
A = 2


def _episode_starts(
    num_envs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start states and a full episode of actions for `num_envs` envs.

    Goals cycle through all 9 (g_0, g_1) pairs, coinciding goals included, and
    actions are uniform over all 50 move-word pairs. Positions are
    float32-representable so both envs start identically.
    Returns agent_pos [E, 2, 2], landmark_pos [E, 3, 2], goal [E, 2], actions [T, E, 2].
    """
    rng = np.random.default_rng(seed)
    agent_pos = rng.uniform(-1, 1, (num_envs, A, 2)).astype(np.float32).astype(float)
    landmark_pos = rng.uniform(-1, 1, (num_envs, 3, 2)).astype(np.float32).astype(float)
    pairs = np.arange(num_envs) % 9
    goal = np.stack([pairs // 3, pairs % 3], axis=1)
    actions = rng.integers(0, 50, (MAX_CYCLES, num_envs, A))
    return agent_pos, landmark_pos, goal, actions


def _mpe2_episode(
    agent_pos: np.ndarray,
    landmark_pos: np.ndarray,
    goal: np.ndarray,
    actions: np.ndarray,
    local_ratio: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Play one env of the batch in mpe2 from the given start.

    Returns float64 observations before the first step [A, O], after every step
    [T, A, O], rewards [T, A] and truncation flags [T, A].
    """
    env = simple_reference_v3.parallel_env(
        local_ratio=local_ratio, max_cycles=MAX_CYCLES, continuous_actions=False
    )
    env.reset(seed=0)
    raw = env.unwrapped
    world, scenario = raw.world, raw.scenario
    for agent, pos, g in zip(world.agents, agent_pos, goal, strict=True):
        agent.state.p_pos = pos.copy()
        agent.state.p_vel = np.zeros(2)
        agent.goal_b = world.landmarks[g]
    for landmark, pos in zip(world.landmarks, landmark_pos, strict=True):
        landmark.state.p_pos = pos.copy()
    names = raw.possible_agents

    def observe() -> np.ndarray:
        # mpe2's float64 observations: the ones it returns are cast to float32.
        return np.stack([scenario.observation(a, world) for a in world.agents])

    start_obs = observe()
    obs, rewards, truncated = [], [], []
    for step_actions in actions:
        _, rew, term, trunc, _ = env.step(dict(zip(names, step_actions.tolist(), strict=True)))
        assert not any(term.values())
        truncated.append([trunc[n] for n in names])
        obs.append(observe())
        rewards.append([rew[n] for n in names])
    return start_obs, np.array(obs), np.array(rewards), np.array(truncated)


@pytest.mark.parametrize(
    ("dtype", "local_ratio", "tol"),
    [(torch.float64, 0.5, 1e-6), (torch.float32, 0.5, 1e-4), (torch.float64, 0.2, 1e-6)],
)
def test_matches_mpe2_step_by_step(dtype: torch.dtype, local_ratio: float, tol: float) -> None:
    num_envs = 9
    agent_pos, landmark_pos, goal, actions = _episode_starts(num_envs, seed=1)
    env = ReferenceEnv(num_envs, local_ratio=local_ratio, dtype=dtype, seed=0)
    obs0 = (
        env.set_state(
            torch.from_numpy(agent_pos), torch.from_numpy(landmark_pos), torch.from_numpy(goal)
        )
        .double()
        .numpy()
    )

    ours_obs, ours_rew, ours_done = [], [], []
    for step_actions in actions:
        out = env.step(torch.from_numpy(step_actions))
        ours_obs.append(out.final_obs.double().numpy())
        ours_rew.append(out.reward.double().numpy())
        ours_done.append(out.env_done.numpy())
        assert torch.equal(out.final_state, out.final_obs.reshape(num_envs, -1))
        assert not out.terminated.any()
        assert torch.equal(out.truncated, out.env_done[:, None].expand(-1, A))
    ours_obs, ours_rew = np.stack(ours_obs, 1), np.stack(ours_rew, 1)  # [E, T, A, O], [E, T, A]

    obs_err = rew_err = 0.0
    for e in range(num_envs):
        ref_obs0, ref_obs, ref_rew, ref_truncated = _mpe2_episode(
            agent_pos[e], landmark_pos[e], goal[e], actions[:, e], local_ratio
        )
        # mpe2 truncates every agent after exactly max_cycles steps, never before.
        assert ref_truncated[-1].all() and not ref_truncated[:-1].any()
        obs_err = max(obs_err, np.abs(obs0[e] - ref_obs0).max())
        obs_err = max(obs_err, np.abs(ours_obs[e] - ref_obs).max())
        rew_err = max(rew_err, np.abs(ours_rew[e] - ref_rew).max())
    assert obs_err <= tol and rew_err <= tol, (obs_err, rew_err)
    assert np.stack(ours_done).nonzero()[0].tolist() == [MAX_CYCLES - 1] * num_envs


def test_action_is_word_times_five_plus_move() -> None:
    env = ReferenceEnv(1, dtype=torch.float64, seed=0)
    env.set_state(torch.zeros(1, 2, 2), torch.zeros(1, 3, 2), torch.zeros(1, 2))
    # Agent 0 says word 7 and moves right (7 * 5 + 2); agent 1 says word 0 and stays.
    out = env.step(torch.tensor([[37, 0]]))
    vel, heard = out.obs[0, :, 0:2], out.obs[0, :, 11:21]
    assert vel.tolist() == [[0.5, 0.0], [0.0, 0.0]]  # force 5 * dt 0.1 for the mover
    assert heard[1].tolist() == [0.0] * 7 + [1.0] + [0.0] * 2  # agent 1 hears agent 0's word
    assert heard[0].tolist() == [1.0] + [0.0] * 9  # word 0 is a message too, unlike silence


def test_spec_and_state_layout() -> None:
    env = ReferenceEnv(4, seed=0)
    spec = env.spec
    assert (spec.obs_dim, spec.state_dim, spec.num_agents) == (21, 42, 2)
    assert spec.action.nvec == (50,) and spec.action.kind == "discrete"
    assert spec.max_episode_steps == MAX_CYCLES and spec.state_source == "concat_obs"
    assert spec.obs_sizes == (21, 21)
    # The same names and sizes as mpe2, whose state is its observations concatenated too.
    ref = simple_reference_v3.parallel_env(max_cycles=MAX_CYCLES)
    ref.reset(seed=0)
    assert spec.agent_names == tuple(ref.possible_agents)
    assert all(ref.action_space(a).n == 50 for a in ref.possible_agents)
    assert all(ref.observation_space(a).shape == (21,) for a in ref.possible_agents)
    assert ref.unwrapped.state().shape == (42,)

    obs0 = env.get_global_state().view(4, 2, 21)
    assert (obs0[..., 0:2] == 0).all() and (obs0[..., 11:] == 0).all()  # at rest, silent
    out = env.step(torch.randint(0, 50, (4, 2)))
    state = env.get_global_state()
    assert torch.equal(state, out.obs.reshape(4, 42))
    for i in range(2):
        assert torch.equal(env.get_observation(i), out.obs[:, i])
    assert env.get_action_mask().shape == (4, 2, 50) and env.get_action_mask().all()
    assert env.get_alive().shape == (4, 2) and env.get_alive().all()
    # Every agent hears exactly one word after a step.
    assert (out.obs[..., 11:].sum(-1) == 1).all()


def test_random_policy_return() -> None:
    # mpe2 itself gives -28.45 +- 0.17 per agent (3000 episodes of uniform random actions).
    num_envs = 512
    env = ReferenceEnv(num_envs, seed=0)
    gen = torch.Generator().manual_seed(0)
    episode_return = torch.zeros(num_envs, 2)
    for _ in range(MAX_CYCLES):
        episode_return += env.step(torch.randint(0, 50, (num_envs, 2), generator=gen)).reward
    # 512 episodes: a standard error of about 0.4.
    assert abs(episode_return.mean().item() - (-28.45)) < 2.0
