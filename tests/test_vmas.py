"""VMAS scenarios as `--env vmas:<scenario>`: shapes, padding and masks, in-place resets,
time limits, snapshots, training, and the command line (skipped without vmas)."""

import json
import math

import numpy as np
import pytest
import torch

vmas = pytest.importorskip("vmas")

from mappo import ConfigError, MappoConfig, MappoTrainer  # noqa: E402
from mappo.cli import main  # noqa: E402
from mappo.distributions import ActionDistribution  # noqa: E402
from mappo.envs.registry import make_env  # noqa: E402
from mappo.presets import BENCHMARL_VMAS_TASKS, benchmarl_vmas_preset  # noqa: E402


def navigation(num_envs: int = 4, seed: int = 0, **kwargs) -> object:
    return make_env(
        "vmas:navigation", num_envs, "cpu", seed, {"n_agents": 2, "max_steps": 10, **kwargs}
    )


def random_actions(env, generator: torch.Generator) -> torch.Tensor:
    E, A, D = env.num_envs, env.num_agents, env.spec.action.action_dim
    return torch.rand(E, A, D, generator=generator) * 2 - 1  # [E, A, D] in the box


def test_agents_of_different_sizes_are_padded_and_masked() -> None:
    # simple_speaker_listener: the speaker observes 3 floats and acts in 5 dimensions
    # (2 moves, 3 message), the listener observes 11 and acts in 2.
    env = make_env("vmas:simple_speaker_listener", 3, "cpu", 0, {})
    assert env.spec.agent_names == ("speaker_0", "listener_0")
    assert env.spec.obs_sizes == (3, 11) and env.spec.obs_dim == 11
    assert env.spec.state_dim == 22 and env.spec.state_source == "concat_obs"
    assert env.spec.action.kind == "continuous" and env.spec.action.action_dim == 5
    assert env.get_action_mask()[0].tolist() == [[True] * 5, [True, True, False, False, False]]
    # The same observations as VMAS's own env built with the same seed.
    raw = vmas.make_env("simple_speaker_listener", num_envs=3, seed=0, max_steps=100)
    speaker, listener = raw.reset()  # the construction's reset, then this one, as VmasEnv
    obs = env.get_global_state().view(3, 2, 11)
    assert torch.equal(obs[:, 0, :3], speaker) and torch.equal(obs[:, 1], listener)
    assert not obs[:, 0, 3:].any()  # padding
    result = env.step(torch.zeros(3, 2, 5))
    assert result.obs.shape == (3, 2, 11) and result.reward.shape == (3, 2)
    assert result.state.shape == (3, 22) and torch.equal(result.state, result.obs.flatten(1))
    assert not result.obs[:, 0, 3:].any()


def test_continuous_actions_are_clipped_to_each_agents_box() -> None:
    env = make_env("vmas:simple_speaker_listener", 2, "cpu", 0, {})
    low, high = env.action_bounds  # [A, D]; the listener's padded dimensions are 0
    assert low.tolist() == [[-1, -1, 0, 0, 0], [-1, -1, 0, 0, 0]]
    assert high.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    env.step(torch.full((2, 2, 5), 5.0))  # VMAS asserts on actions outside the box
    speaker, listener = env._env.agents
    assert torch.equal(listener.action.u, torch.full((2, 2), 1.0) * listener.action.u_multiplier)
    assert torch.equal(speaker.action.c, torch.ones(2, 3))  # message dims clipped to [0, 1]
    env.step(torch.full((2, 2, 5), -5.0))
    assert torch.equal(speaker.action.c, torch.zeros(2, 3))


def test_discrete_actions_index_each_agents_own_and_masked_ones_are_never_taken() -> None:
    env = make_env("vmas:simple_speaker_listener", 4, "cpu", 0, {"continuous_actions": False})
    # Speaker: 9 moves x 3 messages = 27 actions; listener 9: K = 27, 18 masked.
    assert env.spec.action.kind == "discrete" and env.spec.action.nvec == (27,)
    mask = env.get_action_mask()  # [E, A, K]
    assert mask[:, 0].all() and mask[:, 1, :9].all() and not mask[:, 1, 9:].any()
    torch.manual_seed(0)
    draws = ActionDistribution(
        env.spec.action, torch.zeros(500, 2, 27), mask[:1].expand(500, 2, 27)
    ).sample()  # [500, 2, 1]
    assert int(draws[:, 1].max()) == 8 and int(draws[:, 0].max()) == 26
    actions = draws[:4, :, 0]  # [E, A]
    env.step(actions)  # VMAS asserts on out-of-range discrete actions
    listener = env._env.agents[1]
    u = listener.action.u / listener.action.u_multiplier  # [E, 2]
    # VMAS reads a flat action as 3 x 3 moves, each 0: stay, 1: -1, 2: +1.
    move = torch.tensor([0.0, -1.0, 1.0])
    listener_actions = actions[:, 1]
    assert torch.equal(
        u, torch.stack([move[listener_actions // 3], move[listener_actions % 3]], dim=1)
    )


def test_episodes_are_truncated_at_max_steps() -> None:
    env = navigation(num_envs=3, max_steps=3)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 4):
        result = env.step(random_actions(env, generator))
        assert result.env_done.tolist() == [step == 3] * 3
        assert result.truncated.tolist() == [[step == 3] * 2] * 3
        assert not result.terminated.any()
    assert env.spec.max_episode_steps == 3
    assert env._env.steps.tolist() == [0, 0, 0]  # restarted in place
    assert not torch.equal(result.final_obs, result.obs)  # the new episode's first view
    assert torch.equal(result.final_state, result.final_obs.flatten(1))


@pytest.mark.parametrize(
    "scenario",
    [
        "navigation",
        "balance",
        "transport",
        "sampling",
        "wheel",
        "simple_speaker_listener",
        "give_way",
    ],
)
def test_only_finished_copies_restart_and_the_others_go_on_unchanged(scenario) -> None:
    # Two envs from one snapshot, except that copy 0 of `late` is one step from its limit.
    kwargs = {"max_steps": 10, **({"n_agents": 2} if scenario == "navigation" else {})}
    early = make_env(f"vmas:{scenario}", 4, "cpu", 0, kwargs)
    late = make_env(f"vmas:{scenario}", 4, "cpu", 5, kwargs)
    snapshot = early.state_dict()
    late_snapshot = {**snapshot, "world": dict(snapshot["world"])}
    steps = snapshot["world"]["env.steps"].clone()
    steps[0] = 9
    late_snapshot["world"]["env.steps"] = steps
    early.load_state_dict(snapshot)
    late.load_state_dict(late_snapshot)
    generator = torch.Generator().manual_seed(1)
    low, high = (torch.as_tensor(b) for b in early.action_bounds)

    def actions() -> torch.Tensor:
        return low + (high - low) * torch.rand(4, *low.shape, generator=generator)

    a, b = early.step(chosen := actions()), late.step(chosen)
    assert b.env_done.tolist() == [True, False, False, False]
    assert b.truncated[:, 0].tolist() == [True, False, False, False]
    assert not a.env_done.any()
    assert torch.equal(b.final_obs, a.obs)  # copy 0's episode ended where early's copy 0 is
    assert torch.equal(b.obs[1:], a.obs[1:]) and torch.equal(b.reward, a.reward)
    assert not torch.equal(b.obs[0], a.obs[0])  # copy 0 starts a new episode
    assert late._env.steps.tolist() == [0, 1, 1, 1]
    for _ in range(3):  # the other copies go on exactly as if nothing had happened
        a, b = early.step(chosen := actions()), late.step(chosen)
        assert torch.equal(b.obs[1:], a.obs[1:]) and torch.equal(b.reward[1:], a.reward[1:])
    assert late._env.steps.tolist() == [3, 4, 4, 4]


def test_a_snapshot_continues_exactly_across_resets() -> None:
    env = navigation(max_steps=4)
    generator = torch.Generator().manual_seed(2)
    for _ in range(2):
        env.step(random_actions(env, generator))
    snapshot = env.state_dict()
    actions = [random_actions(env, generator) for _ in range(7)]  # two resets on the way
    first = [env.step(a) for a in actions]
    other = navigation(seed=123, max_steps=4)  # another seed: everything comes from the snapshot
    other.load_state_dict(snapshot)
    again = [other.step(a) for a in actions]
    assert [r.env_done.tolist() for r in first] == [r.env_done.tolist() for r in again]
    assert sum(bool(r.env_done.all()) for r in first) == 2
    for x, y in zip(first, again, strict=True):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.reward, y.reward)


def test_a_snapshot_survives_the_checkpoints_safe_loader(tmp_path) -> None:
    env = navigation()
    torch.save(env.state_dict(), tmp_path / "env.pt")
    loaded = torch.load(tmp_path / "env.pt", weights_only=True)
    other = navigation(seed=9)
    other.load_state_dict(loaded)
    actions = torch.zeros(4, 2, 2)
    assert torch.equal(env.step(actions).obs, other.step(actions).obs)


def test_envs_draw_from_their_own_random_streams() -> None:
    # Building and stepping another VMAS env in between changes nothing of this one's.
    alone, interrupted = navigation(max_steps=2), navigation(max_steps=2)
    navigation(seed=77).reset(seed=78)
    actions = torch.zeros(4, 2, 2)
    for _ in range(3):
        assert torch.equal(alone.step(actions).obs, interrupted.step(actions).obs)


def test_unknown_scenario_and_reserved_kwargs_are_one_line() -> None:
    with pytest.raises(
        ConfigError,
        match=r"VMAS has no scenario 'balanse'; did you mean "
        r"'vmas:balance'\?",
    ):
        make_env("vmas:balanse", 2)
    with pytest.raises(ConfigError, match="sets dict_spaces itself"):
        make_env("vmas:balance", 2, env_kwargs={"dict_spaces": True})
    with pytest.raises(ConfigError, match="max_steps = 0 must be an integer >= 1"):
        make_env("vmas:balance", 2, env_kwargs={"max_steps": 0})
    with pytest.raises(ConfigError, match=r"env 'vmas:navigation' refused them \("):
        make_env("vmas:navigation", 2, env_kwargs={"n_agents": 2, "agents_with_same_goal": 5})


def test_a_keyword_the_scenario_does_not_use_or_a_bare_assert_is_named() -> None:
    """VMAS only warns about a keyword its scenario ignores (a misspelt one trains the
    default), and most of its checks are bare asserts ("refused them (refused)" before)."""
    with pytest.raises(ConfigError) as unused:
        make_env("vmas:balance", 2, env_kwargs={"n_agent": 3})
    assert str(unused.value) == (
        "config key 'env_kwargs' = {'n_agent': 3}: env 'vmas:balance' does not use "
        "{'n_agent': 3} (VMAS passes its scenario only the keywords it reads)"
    )
    with pytest.raises(ConfigError) as asserted:
        make_env("vmas:balance", 2, env_kwargs={"n_agents": 0})
    assert str(asserted.value) == (
        "config key 'env_kwargs' = {'n_agents': 0}: env 'vmas:balance' refused them "
        "(AssertionError: assert self.n_agents > 1)"
    )
    with pytest.raises(ConfigError, match="continuous_actions = 'no' must be true or false"):
        make_env("vmas:balance", 2, env_kwargs={"continuous_actions": "no"})
    for scenario, kwargs in BENCHMARL_VMAS_TASKS.items():  # the preset's, every one used
        make_env(f"vmas:{scenario}", 2, "cpu", 0, dict(kwargs)).close()


@pytest.mark.parametrize("continuous", [True, False])
def test_training_updates_give_finite_metrics(continuous) -> None:
    config = MappoConfig(
        env="vmas:navigation",
        num_envs=8,
        rollout_steps=20,
        env_kwargs={"n_agents": 2, "max_steps": 10, "continuous_actions": continuous},
        total_steps=320,
        update_epochs=2,
        minibatch_size=80,
        compile="false",
    )
    trainer = MappoTrainer(config)
    history = trainer.train()
    assert len(history) == 2 and trainer.env_steps == 320
    for metrics in history:
        assert metrics.episodes == 16  # 8 copies x 20 steps / 10-step episodes
        for value in (
            metrics.policy_loss,
            metrics.value_loss,
            metrics.entropy,
            metrics.episode_return,
            metrics.grad_norm,
        ):
            assert math.isfinite(value)


def test_benchmarl_preset() -> None:
    balance = MappoConfig(**benchmarl_vmas_preset("vmas:balance"))
    assert balance.env_kwargs == {
        "max_steps": 100,
        "n_agents": 4,
        "random_package_pos_on_line": True,
        "package_mass": 5,
    }
    assert (balance.num_envs, balance.rollout_steps, balance.update_epochs) == (600, 100, 45)
    assert balance.minibatch_size == 4096 * 4  # 4096 frames of 4 agents
    assert (balance.gamma, balance.gae_lambda, balance.lr, balance.adam_eps) == (
        0.9,
        0.9,
        5e-5,
        1e-6,
    )
    assert (balance.ent_coef, balance.vf_coef, balance.max_grad_norm) == (0.0, 2.0, 5.0)
    assert (balance.hidden_dim, balance.activation, balance.agent_id) == (256, "tanh", False)
    assert not (balance.value_norm or balance.clip_value_loss or balance.norm_adv)
    assert benchmarl_vmas_preset("vmas:navigation")["minibatch_size"] == 4096 * 3
    with pytest.raises(ConfigError, match="covers the envs vmas:balance, vmas:navigation"):
        benchmarl_vmas_preset("spread")


@pytest.fixture(scope="module")
def vmas_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vmas") / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "benchmarl-vmas",
                "--env",
                "vmas:navigation",
                "--env-kwargs",
                '{"n_agents": 2, "max_steps": 10}',
                "--num-envs",
                "4",
                "--rollout-steps",
                "10",
                "--minibatch-size",
                "0",
                "--update-epochs",
                "2",
                "--total-steps",
                "80",
                "--eval-interval",
                "0",
                "--run-dir",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    return run


def test_cli_trains_into_a_run_folder_and_evaluates(vmas_run, capsys) -> None:
    for name in ("config.toml", "metrics.csv", "checkpoint.pt"):
        assert (vmas_run / name).is_file()
    config = MappoConfig.load(vmas_run / "config.toml")
    assert (config.env, config.hidden_dim, config.gamma) == ("vmas:navigation", 256, 0.9)
    assert main(["eval", str(vmas_run), "--episodes", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 4 and math.isfinite(result["mean_episode_return"])


def test_cli_resume_continues_the_episodes(vmas_run, tmp_path, caplog) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(vmas_run, run)
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--total-steps", "120", "--quiet"]) == 0
    assert not [r for r in caplog.records if "restart" in r.getMessage()]


def test_render_and_export(vmas_run, tmp_path) -> None:
    import imageio.v3 as iio

    out = tmp_path / "episode.gif"
    assert main(["eval", str(vmas_run), "--episodes", "1", "--render", str(out)]) == 0
    frames = iio.imread(out, index=None)
    # Reset + 10 steps; the copies of the last frame held at the end merge into it.
    assert frames.shape[0] == 11 and frames.shape[-1] == 3
    assert not np.array_equal(frames[0], frames[-1])  # agents moved
    assert main(["export", str(vmas_run), "--out", str(tmp_path / "export"), "--no-onnx"]) == 0
    assert any((tmp_path / "export").glob("*.pt"))
