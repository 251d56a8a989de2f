"""SpreadEnv against mpe2's simple_spread_v3, step by step, plus its own contract.

Behaviour shared by every MPE task (auto-reset, seeding, snapshots, action
shapes) is tested in test_mpe_tasks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mappo.envs.mpe.spread import SpreadEnv

simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")

MAX_CYCLES = 25


def _colliding_episode(
    num_envs: int, num_agents: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start states and actions where agents 0 and 1 crash into each other.

    Agent 1 starts 0.2-0.3 to the right of agent 0 (contact distance is 0.3);
    they push together for 3 steps, back off for 3, then every agent moves at
    random. Positions are float32-representable so both envs start identically.
    Contact is kept short on purpose: mpe2's contact integration is unstable
    under sustained pressure (rounding errors grow ~1.7x per step), so a long
    push would make any float32 port drift from float64 mpe2 by ~1e-2.
    Returns agent_pos [E, A, 2], landmark_pos [E, A, 2], actions [T, E, A].
    """
    rng = np.random.default_rng(seed)
    agent_pos = rng.uniform(-0.8, 0.8, (num_envs, num_agents, 2))
    agent_pos[:, 1] = agent_pos[:, 0] + [0.25, 0.0] + rng.uniform(-0.05, 0.05, (num_envs, 2))
    landmark_pos = rng.uniform(-1.0, 1.0, (num_envs, num_agents, 2))
    actions = rng.integers(0, 5, (MAX_CYCLES, num_envs, num_agents))
    actions[:3, :, 0], actions[:3, :, 1] = 2, 1  # right into agent 1, left into agent 0
    actions[3:6, :, 0], actions[3:6, :, 1] = 1, 2  # apart again
    agent_pos = agent_pos.astype(np.float32).astype(float)
    landmark_pos = landmark_pos.astype(np.float32).astype(float)
    return agent_pos, landmark_pos, actions


def _mpe2_episode(
    agent_pos: np.ndarray, landmark_pos: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Play one env of the batch in mpe2 from the given start.

    Returns float64 observations [T, A, O], rewards [T, A] and truncation flags
    [T, A] after every step, and the number of steps with a collision penalty.
    """
    num_agents = agent_pos.shape[0]
    env = simple_spread_v3.parallel_env(
        N=num_agents, local_ratio=0.5, max_cycles=MAX_CYCLES, continuous_actions=False
    )
    env.reset(seed=0)
    raw = env.unwrapped
    world, scenario = raw.world, raw.scenario
    for agent, pos in zip(world.agents, agent_pos, strict=True):
        agent.state.p_pos = pos.copy()
        agent.state.p_vel = np.zeros(2)
    for landmark, pos in zip(world.landmarks, landmark_pos, strict=True):
        landmark.state.p_pos = pos.copy()
    names = raw.possible_agents
    # mpe2's own observe (float32) must see the start we set.
    start_obs = np.stack([raw.observe(n) for n in names])
    assert np.allclose(start_obs[:, 2:4], agent_pos, atol=1e-7)

    obs, rewards, truncated, collision_steps = [], [], [], 0
    for step_actions in actions:
        step = dict(zip(names, step_actions.tolist(), strict=True))
        _, rew, term, trunc, _ = env.step(step)
        assert not any(term.values())
        truncated.append([trunc[n] for n in names])
        # Compare against mpe2's float64 state: its returned obs are cast to float32.
        obs.append(np.stack([scenario.observation(a, world) for a in world.agents]))
        rewards.append([rew[n] for n in names])
        collision_steps += any(scenario.reward(a, world) < 0 for a in world.agents)
    return np.array(obs), np.array(rewards), np.array(truncated), collision_steps


@pytest.mark.parametrize(
    ("num_agents", "dtype", "tol"),
    [(3, torch.float64, 1e-6), (3, torch.float32, 1e-4), (4, torch.float64, 1e-6)],
)
def test_matches_mpe2_step_by_step(num_agents: int, dtype: torch.dtype, tol: float) -> None:
    num_envs = 6
    agent_pos, landmark_pos, actions = _colliding_episode(num_envs, num_agents, seed=num_agents)
    env = SpreadEnv(num_envs, num_agents, max_cycles=MAX_CYCLES, dtype=dtype, seed=0)
    obs0 = env.set_state(torch.from_numpy(agent_pos), torch.from_numpy(landmark_pos))
    assert obs0.shape == (num_envs, num_agents, env.spec.obs_dim)

    ours_obs, ours_rew, ours_done = [], [], []
    for step_actions in actions:
        out = env.step(torch.from_numpy(step_actions))
        ours_obs.append(out.final_obs.double().numpy())
        ours_rew.append(out.reward.double().numpy())
        ours_done.append(out.env_done.numpy())
        assert torch.equal(out.final_state, out.final_obs.reshape(num_envs, -1))
        assert not out.terminated.any()
        assert torch.equal(out.truncated, out.env_done[:, None].expand(-1, num_agents))
    ours_obs, ours_rew = np.stack(ours_obs, 1), np.stack(ours_rew, 1)  # [E, T, A, O], [E, T, A]

    obs_err = rew_err = 0.0
    for e in range(num_envs):
        ref_obs, ref_rew, ref_truncated, collision_steps = _mpe2_episode(
            agent_pos[e], landmark_pos[e], actions[:, e]
        )
        assert collision_steps >= 1, "the scripted crash must trigger a collision penalty"
        # mpe2 truncates every agent after exactly max_cycles steps, never before.
        assert ref_truncated[-1].all() and not ref_truncated[:-1].any()
        obs_err = max(obs_err, np.abs(ours_obs[e] - ref_obs).max())
        rew_err = max(rew_err, np.abs(ours_rew[e] - ref_rew).max())
    assert obs_err <= tol and rew_err <= tol, (obs_err, rew_err)
    # Our episodes end at the same step.
    assert np.stack(ours_done).nonzero()[0].tolist() == [MAX_CYCLES - 1] * num_envs


def test_spec_and_state_layout() -> None:
    env = SpreadEnv(4, seed=0)
    spec = env.spec
    assert (spec.obs_dim, spec.state_dim, spec.num_agents) == (18, 54, 3)
    assert spec.agent_names == ("agent_0", "agent_1", "agent_2")
    assert spec.action.nvec == (5,) and spec.action.kind == "discrete"
    assert spec.max_episode_steps == MAX_CYCLES and spec.state_source == "concat_obs"
    assert spec.obs_sizes == (18, 18, 18)

    out = env.step(torch.randint(0, 5, (4, 3)))
    state = env.get_global_state()
    assert state.shape == (4, 54)
    assert torch.equal(state, out.obs.reshape(4, 54))
    for i in range(3):
        assert torch.equal(env.get_observation(i), out.obs[:, i])
        assert torch.equal(state[:, 18 * i : 18 * (i + 1)], out.obs[:, i])
    assert env.get_action_mask().shape == (4, 3, 5) and env.get_action_mask().all()
    assert env.get_alive().shape == (4, 3) and env.get_alive().all()
    # The comm slots of silent agents are zeros, as in mpe2.
    assert (out.obs[..., 14:] == 0).all()

    # mpe2's state is its observations concatenated too, of the same size.
    ref = simple_spread_v3.parallel_env(N=3, max_cycles=MAX_CYCLES)
    ref.reset(seed=0)
    assert ref.unwrapped.state().shape == (54,)


def test_random_policy_return() -> None:
    # mpe2 itself gives -26.3 +- 0.15 (3000 episodes of uniform random actions).
    num_envs = 512
    env = SpreadEnv(num_envs, seed=0)
    gen = torch.Generator().manual_seed(0)
    episode_return = torch.zeros(num_envs, 3)
    for _ in range(MAX_CYCLES):
        episode_return += env.step(torch.randint(0, 5, (num_envs, 3), generator=gen)).reward
    assert abs(episode_return.mean().item() - (-27.5)) < 3.0


@pytest.mark.parametrize("physics", ["mpe2", "official"])
def test_core_world_step_matches_mpe2_world(physics: str) -> None:
    """The shared physics on features spread does not use: immovable and
    speed-limited agents, per-agent accel and mass, a colliding landmark. With
    `move_first=False`, against mpe2's world integrated in the original MPE's order
    (the official MAPPO code's `World.integrate_state`): damp, push, clip, then move."""
    from mpe2._mpe_utils.core import Agent, Landmark, World

    from mappo.envs.mpe import mpe_core

    class OriginalOrderWorld(World):
        def integrate_state(self, p_force):
            for i, entity in enumerate(self.entities):
                if not entity.movable:
                    continue
                state = entity.state
                state.p_vel = state.p_vel * (1 - self.damping)
                if p_force[i] is not None:
                    state.p_vel += (p_force[i] / entity.mass) * self.dt
                speed = np.linalg.norm(state.p_vel)
                if entity.max_speed is not None and speed > entity.max_speed:
                    state.p_vel = state.p_vel / speed * entity.max_speed
                state.p_pos += state.p_vel * self.dt

    rng = np.random.default_rng(0)
    world = World() if physics == "mpe2" else OriginalOrderWorld()
    world.agents = [Agent() for _ in range(3)]
    world.landmarks = [Landmark()]
    accel, mass = [3.0, 4.0, 5.0], [1.0, 2.0, 1.0]
    for agent, a, m in zip(world.agents, accel, mass, strict=True):
        agent.silent, agent.accel, agent.initial_mass = True, a, m
    world.agents[0].max_speed = 0.5
    world.agents[2].movable = False
    world.landmarks[0].size = 0.2  # collides, does not move
    for entity in world.entities:
        entity.state.p_pos = rng.uniform(-0.3, 0.3, 2)  # close enough to touch
        entity.state.p_vel = rng.uniform(-1, 1, 2) if entity.movable else np.zeros(2)
    entities = world.entities
    pos = torch.tensor(np.array([e.state.p_pos for e in entities]))[None]  # [1, 4, 2]
    vel = torch.tensor(np.array([e.state.p_vel for e in entities]))[None]
    size = torch.tensor([e.size for e in entities], dtype=torch.float64)
    movable = torch.tensor([e.movable for e in entities])
    table = mpe_core.discrete_move_table(torch.tensor(accel), dtype=torch.float64)  # [3, 5, 2]
    pair_mask = mpe_core.contact_pair_mask(torch.ones(4, dtype=torch.bool))
    params = mpe_core.PhysicsParams(move_first=physics == "mpe2")

    unit_moves = mpe_core.discrete_move_table(1.0, dtype=torch.float64).numpy()  # [5, 2]
    max_contact, clipped = 0.0, 0
    for actions in rng.integers(0, 5, (10, 3)):
        contact = mpe_core.collision_force(pos, size, pair_mask, 1e2, 1e-3)
        max_contact = max(max_contact, contact.abs().max().item())
        force = mpe_core.discrete_action_force(torch.tensor(actions)[None], table)  # [1, 3, 2]
        force = torch.cat([force, torch.zeros(1, 1, 2, dtype=torch.float64)], dim=1)
        pos, vel = mpe_core.world_step(
            pos, vel, force, size, pair_mask, params,
            mass=torch.tensor(mass + [1.0], dtype=torch.float64),
            max_speed=torch.tensor([0.5, np.inf, np.inf, np.inf], dtype=torch.float64),
            movable=movable,
        )  # fmt: skip
        for agent, a in zip(world.agents, actions, strict=True):
            agent.action.u = unit_moves[a] * agent.accel
        world.step()
        ref_pos = np.array([e.state.p_pos for e in entities])
        ref_vel = np.array([e.state.p_vel for e in entities])
        np.testing.assert_allclose(pos[0].numpy(), ref_pos, rtol=0, atol=1e-12)
        np.testing.assert_allclose(vel[0].numpy(), ref_vel, rtol=0, atol=1e-12)
        clipped += bool(np.isclose(np.linalg.norm(ref_vel[0]), 0.5))
    assert max_contact > 1.0 and clipped > 0  # both features were exercised


def test_landmark_range_draws_the_official_codes_landmarks() -> None:
    """`landmark_range=0.8` spawns landmarks as the official MAPPO code does, 0.8 U(-1, 1):
    the same draw as mpe2's scaled by 0.8, agents untouched, at every reset."""
    num_envs, cycles = 256, 3
    mpe2 = SpreadEnv(num_envs, max_cycles=cycles, seed=5, global_state="world")
    official = SpreadEnv(
        num_envs, max_cycles=cycles, seed=5, global_state="world", landmark_range=0.8
    )
    gen = torch.Generator().manual_seed(0)
    for _ in range(2 * cycles):  # through one reset of every copy
        actions = torch.randint(0, 5, (num_envs, 3), generator=gen)
        mpe2.step(actions)
        official.step(actions)
        # World state `[pos (3 x 2), vel (3 x 2), landmarks (3 x 2)]` per copy.
        small, wide = official.get_global_state(), mpe2.get_global_state()
        torch.testing.assert_close(small[:, :12], wide[:, :12], rtol=0, atol=0)
        torch.testing.assert_close(small[:, 12:], 0.8 * wide[:, 12:], rtol=0, atol=0)
    assert small[:, 12:].abs().max() <= 0.8 < wide[:, 12:].abs().max()
    for bad in (0.0, -0.5, True):
        with pytest.raises(ValueError, match="landmark_range = .* must be a number > 0"):
            SpreadEnv(1, landmark_range=bad)


def test_official_physics_moves_an_agent_in_the_step_of_its_action() -> None:
    """With `physics="official"` a move action displaces its agent in the same step, by
    the new velocity times dt; with mpe2's order only from the next step on."""
    positions = {}
    for physics in ("mpe2", "official"):
        env = SpreadEnv(1, seed=0, physics=physics, global_state="world")
        agents = torch.tensor([[[-0.9, -0.9], [0.0, 0.9], [0.9, 0.0]]])  # far apart
        env.set_state(agents, torch.zeros(1, 3, 2))
        env.step(torch.tensor([[2, 0, 0]]))  # agent 0 pushes right (+x), from rest
        positions[physics] = env.get_global_state()[0, :6].reshape(3, 2)
    # From rest: velocity 5.0 (sensitivity) x dt 0.1 = 0.5, then 0.5 x dt = 0.05 moved.
    assert positions["mpe2"][0].tolist() == pytest.approx([-0.9, -0.9])
    assert positions["official"][0].tolist() == pytest.approx([-0.85, -0.9])
    torch.testing.assert_close(positions["official"][1:], agents[0, 1:])  # no-ops
    with pytest.raises(ValueError, match="physics = .x. must be one of mpe2, official"):
        SpreadEnv(1, physics="x")
