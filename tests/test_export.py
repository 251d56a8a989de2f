"""`mappo export`: the exported actors act exactly as the trained policy does, greedily."""

from __future__ import annotations

import json

import pytest
import pz_envs
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import save_checkpoint
from mappo.cli import main
from mappo.envs.spread import SpreadEnv
from mappo.export import export_policy, onnx_available

NUM_OBS = 1000
# torch 2.13 marks TorchScript deprecated; loading it is what this feature promises.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


def _spread_observations(seed: int = 5) -> torch.Tensor:
    """1000 spread observations `[1000, 3, 18]`, a few random steps into their episodes."""
    env = SpreadEnv(num_envs=NUM_OBS, seed=seed)
    obs = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(6):
        obs = env.step(torch.randint(0, 5, (NUM_OBS, 3), generator=generator)).obs
    return obs


def _random_inputs(trainer: MappoTrainer, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1000 random observations `[1000, A, O]` and masks `[1000, A, K]` that fit the env.

    Masks keep the env's own illegal logits illegal and leave one legal action per head.
    """
    generator = torch.Generator().manual_seed(seed)
    env = trainer.env
    obs = 2 * torch.randn(NUM_OBS, env.num_agents, env.spec.obs_dim, generator=generator)
    for a, size in enumerate(env.spec.obs_sizes):
        obs[:, a, size:] = 0.0  # padding, as the env pads
    static = env.get_action_mask()[0]  # [A, K]
    mask = static & (torch.rand(NUM_OBS, *static.shape, generator=generator) < 0.6)
    start = 0
    for size in env.spec.action.nvec:
        first_legal = static[:, start : start + size].float().argmax(-1)  # [A]
        mask[:, torch.arange(env.num_agents), start + first_legal] = True
        start += size
    return obs, mask


def _exported_actions(out_dir, layout, obs, mask=None, pass_agent=True) -> torch.Tensor:
    """Every agent's action from its exported file, `[B, A, D]`."""
    actions = []
    for entry in layout["agents"]:
        policy = torch.jit.load(str(out_dir / entry["policy_file"]))
        a = entry["index"]
        agent = torch.full((obs.shape[0],), a) if pass_agent else None
        actions.append(policy(obs[:, a], agent, None if mask is None else mask[:, a]))
    return torch.stack(actions, 1)


def _reference(trainer: MappoTrainer, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trained policy's greedy actions, `[B, A, D]` whatever the env's action format."""
    action, _ = trainer.policy.act(obs, mask, deterministic=True)
    return action.unsqueeze(-1) if action.dim() == 2 else action


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny spread run (shared policy), trained and written to a run folder."""
    torch.manual_seed(0)
    trainer = MappoTrainer(MappoConfig(total_steps=1600, num_envs=16, seed=2, compile="false"))
    trainer.train()
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "checkpoint.pt", trainer.state_dict())
    return trainer, run


def test_shared_policy_export_equals_trained_greedy_actions(trained, tmp_path) -> None:
    trainer, run = trained
    out = tmp_path / "actors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    layout = json.loads((out / "layout.json").read_text())
    assert [p["file"] for p in layout["policies"]] == ["policy.pt"]
    assert layout["policies"][0]["agents"] == [0, 1, 2]
    assert layout["policies"][0]["needs_agent_index"] is True
    assert (layout["obs_dim"], layout["action"]["nvec"]) == (18, [5])
    assert layout["has_action_mask"] is False
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer, obs, mask)
    assert torch.equal(_exported_actions(out, layout, obs), expected)
    assert torch.equal(_exported_actions(out, layout, obs, mask), expected)
    # A policy that does not act the same for everyone (the one-hot is inside the file).
    assert len(expected.unique()) > 1
    assert not torch.equal(expected[:, 0], expected[:, 1])


def test_shared_policy_needs_a_served_agent_index(trained, tmp_path) -> None:
    trainer, _ = trained
    export_policy(trainer.policy, trainer.env, tmp_path, onnx=False)
    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    obs = torch.zeros(4, 18)
    with pytest.raises(torch.jit.Error, match="serves several agents"):
        policy(obs)
    with pytest.raises(torch.jit.Error, match="not served"):
        policy(obs, torch.full((4,), 3))
    assert policy(obs, torch.tensor(1)).shape == (4, 1)  # one index for the whole batch


@pytest.mark.skipif(not onnx_available(), reason="onnx is not installed")
def test_onnx_file_gives_the_same_actions(trained, tmp_path) -> None:
    from onnx.reference import ReferenceEvaluator

    trainer, _ = trained
    layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=True)
    entry = layout["policies"][0]
    assert entry["onnx_inputs"] == ["obs", "agent", "mask"]
    session = ReferenceEvaluator(str(tmp_path / entry["onnx"]))
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer, obs, mask)
    for a in range(3):
        (action,) = session.run(None, {"obs": obs[:, a].numpy(),
                                       "agent": torch.full((NUM_OBS,), a).numpy(),
                                       "mask": mask[:, a].numpy()})
        assert torch.equal(torch.from_numpy(action), expected[:, a])


@pytest.mark.parametrize(
    ("changes", "files"),
    [({"share_policy": False}, ["agent_0.pt", "agent_1.pt", "agent_2.pt"]),
     ({"policy_groups": "agent_0,agent_"}, ["agent_0.pt", "agent.pt"]),
     ({"input_layer_norm": True}, ["policy.pt"]),
     ({"input_layer_norm": True, "share_policy": False},
      ["agent_0.pt", "agent_1.pt", "agent_2.pt"]),
     # The feed-forward paper-mpe layout: LayerNorm after the hidden layers, no agent id.
     ({"input_layer_norm": True, "hidden_layer_norm": True, "agent_id": False}, ["policy.pt"]),
     ({"hidden_layer_norm": True, "share_policy": False},
      ["agent_0.pt", "agent_1.pt", "agent_2.pt"])],
)
def test_one_file_per_policy(changes, files, tmp_path) -> None:
    trainer = MappoTrainer(MappoConfig(num_envs=4, minibatch_size=4, seed=1, compile="false",
                                       **changes))
    layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=False)
    assert [p["file"] for p in layout["policies"]] == files
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == sorted(files)
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer, obs, mask)
    assert torch.equal(_exported_actions(tmp_path, layout, obs), expected)
    if len(files) == 3:  # a file serving one agent needs no agent index
        assert torch.equal(_exported_actions(tmp_path, layout, obs, pass_agent=False), expected)


@pytest.mark.parametrize(
    ("env_class", "share_policy"),
    [(pz_envs.MaskedEnv, True), (pz_envs.MultiDiscreteEnv, False),
     (pz_envs.BoxActionEnv, True), (pz_envs.HeteroObsEnv, False)],
)
def test_pettingzoo_masks_sub_actions_bounds_and_padding(env_class, share_policy,
                                                         tmp_path) -> None:
    config = MappoConfig(env=f"{pz_envs.__name__}:{env_class.__name__}", num_envs=2,
                         minibatch_size=2, share_policy=share_policy, compile="false")
    trainer = MappoTrainer(config)
    try:
        layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=False)
        obs, mask = _random_inputs(trainer)
        expected = _reference(trainer, obs, mask)
    finally:
        trainer.env.close()
    if trainer.policy.action_spec.kind == "continuous":
        # The trained policy hands the env its raw mean; the exported one clips it to each
        # agent's own box (agent_0 [-1, 1]^2, agent_1 [0, 5]^3).
        low = torch.tensor([[-1.0, -1.0, -float("inf")], [0.0, 0.0, 0.0]])
        high = torch.tensor([[1.0, 1.0, float("inf")], [5.0, 5.0, 5.0]])
        clipped = torch.clamp(expected, low, high)
        assert (clipped != expected).any()  # some means were out of bounds
        expected = clipped
    assert torch.equal(_exported_actions(tmp_path, layout, obs, mask), expected)
    if env_class is pz_envs.MaskedEnv:
        assert layout["has_action_mask"] is True
        assert layout["agents"][0]["mask_index"] == [0, 1, 2]
        # Without a mask, agent_0 still never picks the two actions it does not have.
        unmasked = _exported_actions(tmp_path, layout, obs)
        assert unmasked[:, 0].max() <= 2 and unmasked[:, 1].max() == 4
    if env_class is pz_envs.MultiDiscreteEnv:
        assert layout["agents"][1]["action_space"] == {"kind": "discrete", "nvec": [4],
                                                       "start": [1]}
    if env_class is pz_envs.HeteroObsEnv:
        # Agent 0 observes 2 floats: unpadded rows give the same actions as padded ones.
        assert layout["agents"][0]["obs_size"] == 2
        policy = torch.jit.load(str(tmp_path / layout["agents"][0]["policy_file"]))
        assert torch.equal(policy(obs[:, 0, :2]), policy(obs[:, 0]))


@pytest.mark.skipif(not onnx_available(), reason="onnx is not installed")
def test_onnx_continuous_policy_clips_like_torchscript(tmp_path) -> None:
    from onnx.reference import ReferenceEvaluator

    config = MappoConfig(env=f"{pz_envs.__name__}:BoxActionEnv", num_envs=2, minibatch_size=2,
                         compile="false")
    trainer = MappoTrainer(config)
    try:
        layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=True)
        obs, _ = _random_inputs(trainer)
    finally:
        trainer.env.close()
    entry = layout["policies"][0]
    assert entry["onnx_inputs"] == ["obs", "agent"]  # no mask for a box
    session = ReferenceEvaluator(str(tmp_path / entry["onnx"]))
    scripted = torch.jit.load(str(tmp_path / entry["file"]))
    for a in range(2):
        agent = torch.full((NUM_OBS,), a)
        (action,) = session.run(None, {"obs": obs[:, a].numpy(), "agent": agent.numpy()})
        # numpy sums in another order than torch: equal up to float rounding.
        torch.testing.assert_close(torch.from_numpy(action), scripted(obs[:, a], agent),
                                   rtol=0, atol=1e-6)
    assert float(action.min()) == 0.0  # agent_1's box starts at 0: negative means clipped


def test_recurrent_actor_is_refused_by_name(tmp_path, capsys) -> None:
    trainer = MappoTrainer(MappoConfig(num_envs=2, minibatch_size=2, compile="false",
                                       recurrent=True))
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "recurrent actors cannot be exported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
