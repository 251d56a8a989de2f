"""`mappo export`: the exported actors act exactly as the trained policy does, greedily."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import pz_envs
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import save_checkpoint
from mappo.cli import main
from mappo.envs.mpe.spread import SpreadEnv
from mappo.envs.registry import make_env
from mappo.export import export_policy, onnx_available
from mappo.policy import Policy
from mappo.presets import paper_mpe_preset

NUM_OBS = 1000
# torch 2.13 marks TorchScript deprecated; loading it is what this feature promises.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
# The feed-forward `--preset paper-mpe` architecture: input and hidden LayerNorms, no agent id.
PAPER_MPE_FEED_FORWARD = {**paper_mpe_preset("spread"), "recurrent": False}
# BoxActionEnv's boxes, padded to 3 dimensions: agent_0 [-1, 1]^2, agent_1 [0, 5]^3.
BOX_LOW = torch.tensor([[-1.0, -1.0, -float("inf")], [0.0, 0.0, 0.0]])
BOX_HIGH = torch.tensor([[1.0, 1.0, float("inf")], [5.0, 5.0, 5.0]])


def _pz(env_class: type) -> str:
    """The env name of a tests/pz_envs.py class."""
    return f"{pz_envs.__name__}:{env_class.__name__}"


def _run_folder(path: Path, **config) -> MappoTrainer:
    """A fresh trainer of `config` whose weights are saved as the run folder `path`."""
    trainer = MappoTrainer(
        MappoConfig(**{"num_envs": 2, "minibatch_size": 2, "seed": 1, "compile": "false", **config})
    )
    save_checkpoint(path / "checkpoint.pt", trainer.state_dict())
    return trainer


def _export(run: Path, out: Path) -> dict:
    """`mappo export run --out out --no-onnx`, and the layout.json it wrote."""
    assert main(["export", str(run), "--out", str(out), "--no-onnx"]) == 0
    return json.loads((out / "layout.json").read_text())


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


def _as_3d(action: torch.Tensor) -> torch.Tensor:
    """Env-format actions as `[B, A, D]` (a single Discrete comes as `[B, A]`)."""
    return action.unsqueeze(-1) if action.dim() == 2 else action


def _reference(policy: Policy, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trained feed-forward policy's greedy actions, `[B, A, D]`."""
    action, _ = policy.act(obs, mask, deterministic=True)
    return _as_3d(action)


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
    layout = _export(run, out)
    assert [p["file"] for p in layout["policies"]] == ["policy.pt"]
    assert layout["policies"][0]["agents"] == [0, 1, 2]
    assert layout["policies"][0]["needs_agent_index"] is True
    assert (layout["obs_dim"], layout["action"]["nvec"]) == (18, [5])
    assert layout["has_action_mask"] is False
    assert (layout["recurrent"], layout["outputs"]) == (None, ["action"])
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer.policy, obs, mask)
    assert torch.equal(_exported_actions(out, layout, obs), expected)
    assert torch.equal(_exported_actions(out, layout, obs, mask), expected)
    # A policy that does not act the same for everyone (the one-hot is inside the file).
    assert len(expected.unique()) > 1
    assert not torch.equal(expected[:, 0], expected[:, 1])


def test_exported_inputs_are_checked_by_name(trained, tmp_path) -> None:
    trainer, _ = trained
    export_policy(trainer.policy, trainer.env, tmp_path, onnx=False)
    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    obs = torch.zeros(4, 18)
    with pytest.raises(torch.jit.Error, match="serves several agents"):
        policy(obs)
    with pytest.raises(torch.jit.Error, match="not served"):
        policy(obs, torch.full((4,), 3))
    with pytest.raises(torch.jit.Error, match=r"obs must be \[B, <= 18\], got \[4, 19\]"):
        policy(torch.zeros(4, 19), torch.tensor(0))
    assert policy(obs, torch.tensor(1)).shape == (4, 1)  # one index for the whole batch


@pytest.mark.skipif(not onnx_available(), reason="onnx is not installed")
def test_onnx_file_gives_the_same_actions(trained, tmp_path) -> None:
    from onnx.reference import ReferenceEvaluator

    trainer, _ = trained
    layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=True)
    entry = layout["policies"][0]
    assert (entry["onnx_inputs"], entry["onnx_outputs"]) == (["obs", "agent", "mask"], ["action"])
    session = ReferenceEvaluator(str(tmp_path / entry["onnx"]))
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer.policy, obs, mask)
    for a in range(3):
        (action,) = session.run(
            None,
            {
                "obs": obs[:, a].numpy(),
                "agent": torch.full((NUM_OBS,), a).numpy(),
                "mask": mask[:, a].numpy(),
            },
        )
        assert torch.equal(torch.from_numpy(action), expected[:, a])


@pytest.mark.parametrize(
    ("changes", "files"),
    [
        ({"share_policy": False}, ["agent_0.pt", "agent_1.pt", "agent_2.pt"]),
        ({"policy_groups": "agent_0,agent_"}, ["agent_0.pt", "agent.pt"]),
        ({"input_layer_norm": True}, ["policy.pt"]),
        (
            {"input_layer_norm": True, "share_policy": False},
            ["agent_0.pt", "agent_1.pt", "agent_2.pt"],
        ),
        (PAPER_MPE_FEED_FORWARD, ["policy.pt"]),
        (
            {"hidden_layer_norm": True, "share_policy": False},
            ["agent_0.pt", "agent_1.pt", "agent_2.pt"],
        ),
    ],
)
def test_one_file_per_policy(changes, files, tmp_path) -> None:
    trainer = _run_folder(tmp_path, **{**changes, "num_envs": 4, "minibatch_size": 4})
    out = tmp_path / "actors"
    layout = _export(tmp_path, out)
    assert [p["file"] for p in layout["policies"]] == files
    assert sorted(p.name for p in out.glob("*.pt")) == sorted(files)
    obs = _spread_observations()
    mask = torch.ones(NUM_OBS, 3, 5, dtype=torch.bool)
    expected = _reference(trainer.policy, obs, mask)
    assert len(expected.unique()) > 1
    assert torch.equal(_exported_actions(out, layout, obs), expected)
    if len(files) == 3:  # a file serving one agent needs no agent index
        assert torch.equal(_exported_actions(out, layout, obs, pass_agent=False), expected)


def test_an_export_over_an_earlier_one_leaves_none_of_its_actor_files(tmp_path) -> None:
    """Another run's policy.pt stayed beside per-agent files, and `torch.jit.load` of
    DIR/policy.pt loaded the wrong actor; the user's own files stay."""
    out = tmp_path / "actors"
    for run in ("shared", "apart"):
        (tmp_path / run).mkdir()
    _run_folder(tmp_path / "shared")
    _export(tmp_path / "shared", out)
    (out / "notes.txt").write_text("mine")
    _run_folder(tmp_path / "apart", share_policy=False)
    _export(tmp_path / "apart", out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["agent_0.pt", "agent_1.pt", "agent_2.pt", "layout.json", "notes.txt"]


@pytest.mark.parametrize(
    ("env_class", "changes"),
    [
        (pz_envs.MaskedEnv, {}),
        (pz_envs.MultiDiscreteEnv, {"share_policy": False}),
        (pz_envs.BoxActionEnv, {}),
        (pz_envs.HeteroObsEnv, {"share_policy": False}),
        (pz_envs.HeteroObsEnv, {"policy_groups": "agent_0,agent_"}),
    ],
)
def test_pettingzoo_masks_sub_actions_bounds_padding_and_groups(
    env_class, changes, tmp_path
) -> None:
    trainer = _run_folder(tmp_path, env=_pz(env_class), **changes)
    try:
        out = tmp_path / "actors"
        layout = _export(tmp_path, out)
        obs, mask = _random_inputs(trainer)
        expected = _reference(trainer.policy, obs, mask)
    finally:
        trainer.env.close()
    exported = _exported_actions(out, layout, obs, mask)
    if trainer.policy.action_spec.kind == "continuous":
        # The trained policy hands the env its raw mean, which the env clips to each
        # agent's own box; the exported one clips it itself.
        clipped = torch.clamp(expected, BOX_LOW, BOX_HIGH)
        assert (clipped != expected).any()  # some means were out of bounds
        torch.testing.assert_close(exported, clipped, rtol=0, atol=1e-6)
        # Dimensions of different sizes are not an action mask.
        assert layout["has_action_mask"] is False
    else:
        assert torch.equal(exported, expected)
        assert len(expected.unique()) > 1
    if env_class is pz_envs.MaskedEnv:
        assert layout["has_action_mask"] is True
        assert layout["agents"][0]["mask_index"] == [0, 1, 2]
        # Without a mask, agent_0 still never picks the two actions it does not have.
        unmasked = _exported_actions(out, layout, obs)
        assert unmasked[:, 0].max() <= 2 and unmasked[:, 1].max() == 4
    if env_class is pz_envs.MultiDiscreteEnv:
        assert layout["agents"][1]["action_space"] == {
            "kind": "discrete",
            "nvec": [4],
            "start": [1],
        }
    if env_class is pz_envs.HeteroObsEnv:
        # Agent 0 observes 2 floats: unpadded rows give the same actions as padded ones.
        assert layout["agents"][0]["obs_size"] == 2
        policy = torch.jit.load(str(out / layout["agents"][0]["policy_file"]))
        assert torch.equal(policy(obs[:, 0, :2]), policy(obs[:, 0]))
    if "policy_groups" in changes:
        assert [(p["file"], p["agents"]) for p in layout["policies"]] == [
            ("agent_0.pt", [0]),
            ("agent.pt", [1, 2]),
        ]


@pytest.mark.skipif(not onnx_available(), reason="onnx is not installed")
def test_onnx_continuous_policy_clips_like_torchscript(tmp_path) -> None:
    from onnx.reference import ReferenceEvaluator

    trainer = _run_folder(tmp_path, env=_pz(pz_envs.BoxActionEnv))
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
        torch.testing.assert_close(
            torch.from_numpy(action), scripted(obs[:, a], agent), rtol=0, atol=1e-6
        )
    assert float(action.min()) == 0.0  # agent_1's box starts at 0: negative means clipped


def _rollout(
    policy: Policy, config: MappoConfig, files: list, steps: int = 30, num_envs: int = 8
) -> tuple[list[tuple[torch.Tensor, ...]], int]:
    """Step `num_envs` copies of the run's env with the trained recurrent policy's greedy
    actions, feeding each agent's file the hidden state it returned last, zeroed where the
    agent's episode starts.

    Returns per step (policy actions `[E, A, D]`, policy actor state `[E, A, H]`, file
    actions, file hidden states), and how many steps after the first started an episode.
    """
    env = make_env(config.env, num_envs, "cpu", 7, config.env_kwargs)
    try:
        obs, mask = env.reset(seed=7), env.get_action_mask()
        start = torch.ones_like(env.get_alive())
        state = policy.initial_state(num_envs)
        hidden = torch.zeros_like(state.actor)
        record, restarts = [], 0
        for t in range(steps):
            restarts += int(t > 0 and bool(start.any()))
            expected, state = policy.act(obs, mask, state, start, deterministic=True)
            hidden = torch.where(start.unsqueeze(-1), 0.0, hidden)  # the caller's reset
            actions = []
            for a, file in enumerate(files):
                action, hidden[:, a] = file(
                    obs[:, a], torch.full((num_envs,), a), mask[:, a], hidden[:, a]
                )
                actions.append(action)
            record.append((_as_3d(expected), state.actor, torch.stack(actions, 1), hidden.clone()))
            result = env.step(expected)
            obs, mask, start = result.obs, result.action_mask, result.agent_done
    finally:
        env.close()
    return record, restarts


@pytest.mark.parametrize(
    "config",
    [
        paper_mpe_preset("spread"),  # shared GRU policy, LayerNorms, no agent id
        {"env": "spread", "recurrent": True, "share_policy": False},
        {"env": _pz(pz_envs.MaskedEnv), "recurrent": True},
        {"env": _pz(pz_envs.BoxActionEnv), "recurrent": True, "share_policy": False},
    ],
    ids=["paper-mpe", "spread-per-agent", "masked", "box"],
)
def test_recurrent_export_carries_its_hidden_state_like_the_policy(config, tmp_path) -> None:
    trainer = _run_folder(tmp_path, **{**config, "num_envs": 2, "minibatch_size": 2})
    trainer.env.close()
    out = tmp_path / "actors"
    layout = _export(tmp_path, out)
    H = trainer.config.hidden_dim
    assert layout["recurrent"] == {
        "hidden_dim": H,
        "initial": "zeros",
        "reset": "at every episode start of that agent, and when it first acts in an episode "
        "it joined late",
        "call": "action, new_hidden = policy(obs, agent, mask, hidden)",
    }
    assert layout["outputs"] == ["action", "new_hidden"]
    assert layout["inputs"]["hidden"].startswith(f"[B, {H}] float32")
    files = [torch.jit.load(str(out / entry["policy_file"])) for entry in layout["agents"]]
    steps, restarts = _rollout(trainer.policy, trainer.config, files)
    assert restarts >= 1  # episodes restarted mid-rollout, and the files were reset there
    box = trainer.policy.action_spec.kind == "continuous"
    for expected, state, actions, hidden in steps:
        if box:
            torch.testing.assert_close(
                actions, torch.clamp(expected, BOX_LOW, BOX_HIGH), rtol=0, atol=1e-6
            )
            torch.testing.assert_close(hidden, state, rtol=0, atol=1e-6)
        else:
            assert torch.equal(actions, expected)
            assert torch.equal(hidden, state)
    assert steps[-1][3].abs().sum() > 0
    if not box:
        assert len(torch.cat([s[0] for s in steps]).unique()) > 1


def test_recurrent_file_starts_from_zeros_and_checks_the_hidden_shape(tmp_path) -> None:
    trainer = _run_folder(tmp_path, recurrent=True)
    export_policy(trainer.policy, trainer.env, tmp_path, onnx=False)
    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    obs, agent = _spread_observations()[:4, 1], torch.tensor(1)
    action, hidden = policy(obs, agent)
    assert hidden.shape == (4, 64)
    assert torch.equal(policy(obs, agent, None, torch.zeros(4, 64))[0], action)
    with pytest.raises(torch.jit.Error, match=r"hidden must be \[4, 64\], got \[4, 32\]"):
        policy(obs, agent, None, torch.zeros(4, 32))


@pytest.mark.skipif(not onnx_available(), reason="onnx is not installed")
def test_onnx_recurrent_file_matches_torchscript_step_by_step(tmp_path) -> None:
    from onnx.reference import ReferenceEvaluator

    trainer = _run_folder(tmp_path, recurrent=True)
    layout = export_policy(trainer.policy, trainer.env, tmp_path, onnx=True)
    entry = layout["policies"][0]
    assert (entry["onnx_inputs"], entry["onnx_outputs"]) == (
        ["obs", "agent", "mask", "hidden"],
        ["action", "new_hidden"],
    )
    session = ReferenceEvaluator(str(tmp_path / entry["onnx"]))
    scripted = torch.jit.load(str(tmp_path / entry["file"]))
    obs, agent = _spread_observations(), torch.full((NUM_OBS,), 2)
    mask = torch.ones(NUM_OBS, 5, dtype=torch.bool)
    onnx_hidden = script_hidden = torch.zeros(NUM_OBS, 64)
    for _ in range(3):  # the same observations again: only the hidden state moves
        action, onnx_hidden = (
            torch.from_numpy(x)
            for x in session.run(
                None,
                {
                    "obs": obs[:, 2].numpy(),
                    "agent": agent.numpy(),
                    "mask": mask.numpy(),
                    "hidden": onnx_hidden.numpy(),
                },
            )
        )
        expected, script_hidden = scripted(obs[:, 2], agent, mask, script_hidden)
        torch.testing.assert_close(onnx_hidden, script_hidden, rtol=0, atol=1e-6)
        assert torch.equal(action, expected)


def test_export_without_onnx_installed_says_which_extra_writes_it(
    tmp_path, monkeypatch, capsys
) -> None:
    import mappo.export

    (tmp_path / "run").mkdir()
    _run_folder(tmp_path / "run")
    monkeypatch.setattr(mappo.export, "onnx_available", lambda: False)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "no .onnx files: onnx is not installed (pip install 'mappo[export]')"
    assert not list((tmp_path / "out").glob("*.onnx")) and list((tmp_path / "out").glob("*.pt"))
    _export(tmp_path / "run", tmp_path / "asked")  # --no-onnx: nothing to say
    assert "no .onnx files" not in capsys.readouterr().out


def test_policy_act_refuses_inputs_of_another_kind_or_shape(trained) -> None:
    """A wrong observation width was torch's "mat1 and mat2 shapes cannot be multiplied", a
    numpy array an AttributeError on `.float`."""
    trainer, _ = trained
    obs, mask = torch.zeros(4, 3, 18), torch.ones(4, 3, 5, dtype=torch.bool)
    assert _reference(trainer.policy, obs, mask).shape == (4, 3, 1)
    for bad_obs, said in ((obs[..., :17], "[4, 3, 17]"), (obs.numpy(), "ndarray")):
        with pytest.raises(ValueError, match=rf"^Policy.act: obs is {re.escape(said)}, not a "
                           r"tensor \[B, 3, 18\] \(B env copies of env 'spread'\)$"):  # fmt: skip
            trainer.policy.act(bad_obs, mask)
    with pytest.raises(
        ValueError, match=r"^Policy.act: mask is \[4, 3\], not a tensor \[B, 3, 5\]"
    ):
        trainer.policy.act(obs, mask[..., 0])
