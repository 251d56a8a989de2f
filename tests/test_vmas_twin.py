"""Every scenario VMAS ships, against a twin env: copies that are not reset go on bit for bit
while others restart in place, and a snapshot continues exactly (skipped without vmas)."""

import collections
import dataclasses
import io

import pytest
import torch

vmas = pytest.importorskip("vmas")

from mappo.envs.registry import make_env  # noqa: E402

# All of VMAS's scenarios, as `VmasEnv` accepts them.
SCENARIOS = [*vmas.scenarios, *vmas.mpe_scenarios, *vmas.debug_scenarios]
# Smaller where the default is slow on one CPU core (road_traffic: 20 cars, pollock: 15
# agents, sampling: a reset sums its field over a 40 x 40 grid, one point at a time); the
# tensors the env keeps are the same kinds.
SMALLER = {
    "road_traffic": {"n_agents": 4},
    "pollock": {"n_agents": 3},
    "sampling": {"grid_spacing": 0.25},
}
E = 4  # copies
MAX_STEPS = 20


def build(scenario: str, seed: int) -> object:
    return make_env(
        f"vmas:{scenario}", E, "cpu", seed, {"max_steps": MAX_STEPS, **SMALLER.get(scenario, {})}
    )


def action_source(env, seed: int):
    """Uniform actions in each agent's box, `[E, A, D]`, from a generator of the test's own."""
    generator = torch.Generator().manual_seed(seed)
    low, high = (torch.as_tensor(b) for b in env.action_bounds)
    return lambda: low + (high - low) * torch.rand(E, *low.shape, generator=generator)


def take_copy(twin, env, index: int) -> None:
    """Give `twin` copy `index` of `env` (every per-copy tensor's row, by `state_dict`) and
    `env`'s random streams; the twin's other copies stay as they are."""
    mine, theirs = twin.state_dict(), env.state_dict()
    world = {}
    for path, tensor in mine["world"].items():
        world[path] = tensor.clone()
        world[path][index] = theirs["world"][path][index]
    obs = mine["obs"].clone()
    obs[index] = theirs["obs"][index]
    twin.load_state_dict({**theirs, "world": world, "shared": mine["shared"], "obs": obs})


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_copies_not_reset_go_on_as_their_twins(scenario) -> None:
    env, twin = build(scenario, 0), build(scenario, 0)
    actions = action_source(env, 1)
    for _ in range(3):
        chosen = actions()
        assert torch.equal(env.step(chosen).obs, twin.step(chosen).obs)
    # VMAS truncates a copy when its step count reaches max_steps: copy 0 of `env` (only)
    # does at the next step.
    env._env.steps[0] = MAX_STEPS - 1
    chosen = actions()
    a, b = env.step(chosen), twin.step(chosen)
    assert a.env_done.tolist() == [True, False, False, False] and not b.env_done.any()
    assert int(env._env.steps[0]) == 0  # copy 0 restarted
    assert torch.equal(a.obs[1:], b.obs[1:]) and torch.equal(a.reward, b.reward)
    # Copies interact through the random streams: football's AI draws noise for the
    # copies where a player lacks the ball, so what copy 0 does moves the others' draws.
    # The twin takes copy 0's new episode and `env`'s streams (the reset drew from them):
    # from there on, both go on alike exactly if `env` kept its other copies whole.
    take_copy(twin, env, 0)
    for step in range(1, 4):
        chosen = actions()
        a, b = env.step(chosen), twin.step(chosen)
        same = torch.equal(a.obs[1:], b.obs[1:])
        assert same, (
            f"step {step} after the reset: copies 1.. differ from the twin's by "
            f"{float((a.obs[1:] - b.obs[1:]).abs().max()):.3g}"
        )
        assert torch.equal(a.reward[1:], b.reward[1:]) and torch.equal(a.env_done, b.env_done)
        assert torch.equal(a.obs[0], b.obs[0]) and torch.equal(a.reward[0], b.reward[0])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_snapshot_continues_exactly(scenario) -> None:
    env = build(scenario, 0)
    actions = action_source(env, 2)
    for _ in range(3):
        env.step(actions())
    env._env.steps[0] = MAX_STEPS - 2  # copy 0 restarts on the way, the others go on
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)  # as a checkpoint holds it
    buffer.seek(0)
    other = build(scenario, 7)  # another seed: everything comes from the snapshot
    other.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(4):
        chosen = actions()
        a, b = env.step(chosen), other.step(chosen)
        assert torch.equal(a.env_done, b.env_done)
        same = torch.equal(a.obs, b.obs)
        assert same, f"observations differ by {float((a.obs - b.obs).abs().max()):.3g}"
        assert torch.equal(a.reward, b.reward)
    assert int(env._env.steps[0]) == int(other._env.steps[0]) == 2


@dataclasses.dataclass
class Plan:
    rows: torch.Tensor
    pair: tuple


class Slotted:
    __slots__ = ("rows", "__hidden")

    def __init__(self, rows: torch.Tensor, hidden: torch.Tensor) -> None:
        self.rows, self.__hidden = rows, hidden


Point = collections.namedtuple("Point", "xy")


def holders(scenario, agent, fill: float) -> dict:
    """Per-copy tensors `[E, 2]` of value `fill + copy`, held every way the walk must see."""

    def rows() -> torch.Tensor:
        return fill + torch.arange(float(E))[:, None].repeat(1, 2)

    expanded = (fill + torch.arange(2.0)).expand(E, 2)  # cannot be written in place
    scenario.by_agent = {
        agent: {"plan": rows()},
        (1, "a"): rows(),
        frozenset({"x", "y"}): [rows(), (rows(), expanded)],
    }
    scenario.by_agent["itself"] = scenario.by_agent  # a cycle
    scenario.plan = Plan(rows(), (rows(), Point(rows())))
    scenario.slotted = Slotted(rows(), rows())
    return scenario.by_agent


def held(scenario, agent) -> list[torch.Tensor]:
    by_agent, plan = scenario.by_agent, scenario.plan
    return [
        by_agent[agent]["plan"],
        by_agent[(1, "a")],
        by_agent[frozenset("xy")][0],
        *by_agent[frozenset("xy")][1],
        plan.rows,
        plan.pair[0],
        plan.pair[1].xy,
        scenario.slotted.rows,
        scenario.slotted._Slotted__hidden,
    ]


def test_per_copy_tensors_are_kept_whatever_holds_them() -> None:
    # A scenario whose reset clobbers state held in dicts keyed by objects, tuples,
    # frozensets, a dataclass, a namedtuple and `__slots__` (as football's AI, which
    # zeroes its plans), or builds it anew (as sampling its gaussians).
    env = build("navigation", 0)
    scenario, agent = env._env.scenario, env._env.agents[0]
    holders(scenario, agent, 10.0)
    reset_world_at = scenario.reset_world_at

    def clobbering_reset(env_index=None):
        reset_world_at(env_index)
        for tensor in held(scenario, agent)[:3]:
            tensor[:] = -1
        holders(scenario, agent, -100.0)  # and all built anew

    scenario.reset_world_at = clobbering_reset
    env._env.steps[0] = MAX_STEPS - 1
    assert env.step(torch.zeros(E, env.num_agents, 2)).env_done.tolist() == [
        True,
        False,
        False,
        False,
    ]
    for tensor in held(scenario, agent):  # copy 0 restarted, the others kept theirs
        assert (tensor[0] < 0).all() and (tensor[1:] >= 10).all(), tensor
    assert scenario.by_agent["itself"] is scenario.by_agent
    # A snapshot of all of it goes into an env that has other values, or none yet.
    snapshot = env.state_dict()
    other = build("navigation", 3)
    other_scenario, other_agent = other._env.scenario, other._env.agents[0]
    holders(other_scenario, other_agent, 50.0)
    del other_scenario.by_agent[(1, "a")]
    other.load_state_dict(snapshot)
    for mine, theirs in zip(held(scenario, agent), held(other_scenario, other_agent), strict=True):
        assert torch.equal(mine, theirs)
