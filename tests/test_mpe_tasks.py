"""What every built-in MPE task shares through `MpeTask`, checked on each task.

Time limits and auto-reset, seeding, snapshots and action validation are the
base class's; each test runs for spread, reference and speaker-listener. What
is particular to a task (mpe2 equivalence, layouts, returns) stays in its own
test file.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from mappo.envs.mpe.mpe_task import MpeTask
from mappo.envs.mpe.reference import ReferenceEnv
from mappo.envs.mpe.speaker_listener import SpeakerListenerEnv
from mappo.envs.mpe.spread import SpreadEnv

MAX_CYCLES = 25


@dataclass(frozen=True)
class Task:
    """How the generic tests drive one task."""

    make: Callable[..., MpeTask]  # (num_envs, **kwargs), like the task's constructor
    num_agents: int
    num_actions: int  # logits per agent; action `num_actions` is out of range
    # Uniform legal actions `[E, A]` from a generator.
    random_actions: Callable[[int, torch.Generator], torch.Tensor]
    # Put `env` at an arbitrary start drawn from the generator, with step counters `[E]`,
    # through the task's own `set_state`.
    set_state_at: Callable[[MpeTask, torch.Tensor, torch.Generator], torch.Tensor]
    # Assert that observations `[E, A, O]` are those of freshly spawned episodes.
    check_fresh_start: Callable[[torch.Tensor], None]


def _uniform_actions(num_actions: int, num_agents: int) -> Callable:
    def actions(num_envs: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randint(0, num_actions, (num_envs, num_agents), generator=gen)

    return actions


def _speaker_listener_actions(num_envs: int, gen: torch.Generator) -> torch.Tensor:
    """Speaker word 0..2, listener move 0..4."""
    words = torch.randint(0, 3, (num_envs,), generator=gen)
    moves = torch.randint(0, 5, (num_envs,), generator=gen)
    return torch.stack([words, moves], 1)


def _uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Uniform in [-1, 1]."""
    return torch.rand(shape, generator=gen) * 2 - 1


def _spread_at(env: MpeTask, step_count: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    E = env.num_envs
    positions = _uniform(gen, E, 3, 2)
    return env.set_state(positions, -positions, step_count=step_count)


def _reference_at(env: MpeTask, step_count: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    E = env.num_envs
    goal = torch.randint(0, 3, (E, 2), generator=gen)
    return env.set_state(
        _uniform(gen, E, 2, 2), _uniform(gen, E, 3, 2), goal, step_count=step_count
    )


def _speaker_listener_at(
    env: MpeTask, step_count: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    E = env.num_envs
    goal = torch.randint(0, 3, (E,), generator=gen)
    return env.set_state(_uniform(gen, E, 2), _uniform(gen, E, 3, 2), goal, step_count=step_count)


def _spread_fresh(obs: torch.Tensor) -> None:
    assert (obs[..., 0:2] == 0).all()  # at rest
    assert (obs[..., 2:4].abs() <= 1).all()  # spawned in [-1, 1]^2


def _reference_fresh(obs: torch.Tensor) -> None:
    assert (obs[..., 0:2] == 0).all() and (obs[..., 11:] == 0).all()  # at rest, silent
    assert (obs[..., 2:8].abs() <= 2).all()  # both spawned in [-1, 1]^2


def _speaker_listener_fresh(obs: torch.Tensor) -> None:
    listener = obs[:, 1]
    assert (listener[:, 0:2] == 0).all() and (listener[:, 8:] == 0).all()  # at rest, unspoken


# One row a task: Task(make, num_agents, num_actions, random_actions, set_state_at,
# check_fresh_start).
TASKS = {
    "spread": Task(SpreadEnv, 3, 5, _uniform_actions(5, 3), _spread_at, _spread_fresh),
    "reference": Task(
        ReferenceEnv, 2, 50, _uniform_actions(50, 2), _reference_at, _reference_fresh
    ),
    "speaker_listener": Task(
        SpeakerListenerEnv, 2, 5, _speaker_listener_actions, _speaker_listener_at,
        _speaker_listener_fresh,
    ),
}  # fmt: skip


@pytest.fixture(params=list(TASKS))
def task(request: pytest.FixtureRequest) -> Task:
    return TASKS[request.param]


def test_auto_reset_keeps_final_state(task: Task) -> None:
    num_envs = 5
    env = task.make(num_envs, seed=3)
    # Same start and actions, but no time limit at step 25: its state at step 25
    # is what the finished episode reached.
    twin = task.make(num_envs, max_cycles=MAX_CYCLES + 1, seed=3)
    gen = torch.Generator().manual_seed(0)
    for t in range(MAX_CYCLES):
        actions = task.random_actions(num_envs, gen)
        out, twin_out = env.step(actions), twin.step(actions)
        if t < MAX_CYCLES - 1:
            assert not out.env_done.any() and not out.truncated.any()
            assert torch.equal(out.obs, twin_out.obs)
    assert out.env_done.all() and out.truncated.all() and not out.terminated.any()
    assert torch.equal(out.final_state, twin_out.state)
    assert torch.equal(out.final_obs, twin_out.obs)
    assert torch.equal(out.reward, twin_out.reward)
    # A new episode started.
    assert not torch.equal(out.obs, out.final_obs)
    assert not torch.equal(out.state, out.final_state)
    assert torch.equal(out.state, env.get_global_state())
    if env.spec.state_source == "concat_obs":
        assert torch.equal(out.state, out.obs.reshape(num_envs, -1))
    task.check_fresh_start(out.obs)
    # The next episode again lasts 25 steps.
    noop = torch.zeros(num_envs, task.num_agents, dtype=torch.long)
    done_steps = [t for t in range(MAX_CYCLES) if env.step(noop).env_done.any()]
    assert done_steps == [MAX_CYCLES - 1]


def test_envs_at_different_steps_reset_independently(task: Task) -> None:
    env = task.make(4, seed=0)
    task.set_state_at(env, torch.tensor([0, 24, 10, 24]), torch.Generator().manual_seed(0))
    noop = torch.zeros(4, task.num_agents, dtype=torch.long)
    out = env.step(noop)
    assert out.env_done.tolist() == [False, True, False, True]
    assert out.truncated.tolist() == [[d] * task.num_agents for d in [False, True, False, True]]
    kept = ~out.env_done
    assert torch.equal(out.final_state[kept], out.state[kept])
    assert not torch.equal(out.final_state[~kept], out.state[~kept])
    # Every env then runs to 25 steps from where it was: env 2 has 14 steps left,
    # env 0 has 24, and envs 1 and 3 restarted at 0.
    ends = {e: [] for e in range(4)}
    for t in range(1, 26):
        for e in env.step(noop).env_done.nonzero().flatten().tolist():
            ends[e].append(t)
    assert ends == {0: [24], 1: [25], 2: [14], 3: [25]}


def test_seed_determinism(task: Task) -> None:
    a, b, c = task.make(8, seed=7), task.make(8, seed=7), task.make(8, seed=8)
    assert torch.equal(a.get_global_state(), b.get_global_state())
    assert not torch.equal(a.get_global_state(), c.get_global_state())
    actions = task.random_actions(8, torch.Generator().manual_seed(0))
    for _ in range(MAX_CYCLES):
        out_a, out_b = a.step(actions), b.step(actions)
    assert out_a.env_done.all()
    # The auto-reset draws the same starts.
    assert torch.equal(out_a.obs, out_b.obs)
    assert torch.equal(out_a.state, out_b.state)
    assert torch.equal(a.reset(seed=1), b.reset(seed=1))


def test_snapshot_resumes_exactly(task: Task) -> None:
    num_envs = 6
    env = task.make(num_envs, seed=0)
    gen = torch.Generator().manual_seed(1)
    # Out of lockstep, so the snapshot must carry per-env step counters.
    task.set_state_at(env, torch.arange(num_envs) * 3, gen)
    for _ in range(7):
        env.step(task.random_actions(num_envs, gen))
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)  # what a checkpoint does with it
    buffer.seek(0)
    resumed = task.make(num_envs, seed=99)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(resumed.get_global_state(), env.get_global_state())
    for i in range(task.num_agents):
        assert torch.equal(resumed.get_observation(i), env.get_observation(i))
    # Through every env's auto-reset, so the generator state is exercised too.
    for _ in range(2 * MAX_CYCLES):
        actions = task.random_actions(num_envs, gen)
        out, out_resumed = env.step(actions), resumed.step(actions)
        for field in ("obs", "state", "reward", "env_done", "final_obs", "final_state"):
            assert torch.equal(getattr(out, field), getattr(out_resumed, field)), field


def test_action_shape_is_validated(task: Task) -> None:
    env = task.make(4, seed=0)
    A = task.num_agents
    with pytest.raises(ValueError, match=rf"\[E, A\] = \[4, {A}\], got \[4\]"):
        env.step(torch.zeros(4, dtype=torch.long))
    for extra in (1, 2):
        with pytest.raises(ValueError, match=rf"got \[4, {A}, {extra}\]"):
            env.step(torch.zeros(4, A, extra, dtype=torch.long))
    with pytest.raises(IndexError):  # one past the last action
        env.step(torch.full((4, A), task.num_actions))
