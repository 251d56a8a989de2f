"""`--preset paper-mpe` and `--preset epymarl`: published settings, under files and flags."""

import pytest

from mappo import ConfigError, MappoConfig
from mappo.cli import main
from mappo.presets import epymarl_preset, paper_mpe_preset


def test_paper_preset_per_task() -> None:
    spread = MappoConfig(**paper_mpe_preset("spread"))
    assert (spread.recurrent, spread.hidden_dim, spread.activation, spread.update_epochs) == (
        True,
        64,
        "tanh",
        10,
    )
    assert (spread.vf_coef, spread.huber_delta, spread.lr) == (1.0, 10.0, 7e-4)
    assert spread.num_envs == 128
    assert spread.minibatch_size == 0 and spread.share_policy and spread.input_layer_norm
    # The official network, time-limit and reward handling: LayerNorm after hidden layers, no
    # agent id for the shared policy, the 25-step limit read as a terminal state, and every
    # agent trained on the team reward (the official MPE env's shared_reward).
    assert spread.hidden_layer_norm and not spread.agent_id and not spread.bootstrap_time_limits
    assert spread.team_reward
    # Unlike the library's auto settings on MPE, its critic does not see the time left.
    assert spread.critic_time_left is False
    comm = MappoConfig(**paper_mpe_preset("speaker_listener"))
    assert (comm.update_epochs, comm.share_policy, comm.activation) == (15, False, "relu")
    with pytest.raises(ConfigError, match="covers the envs spread, reference, speaker_listener"):
        paper_mpe_preset("mpe2.simple_tag_v3:parallel_env")


def test_preset_on_the_command_line_with_flags_on_top(tmp_path) -> None:
    run = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--preset",
                "paper-mpe",
                "--env",
                "reference",
                "--num-envs",
                "4",
                "--total-steps",
                "200",
                "--update-epochs",
                "2",
                "--run-dir",
                str(run),
                "--quiet",
            ]
        )
        == 0
    )
    config = MappoConfig.load(run / "config.toml")
    assert (config.env, config.recurrent, config.num_envs, config.update_epochs) == (
        "reference",
        True,
        4,
        2,
    )
    assert (config.huber_delta, config.minibatch_size, config.activation) == (10.0, 0, "relu")


def test_preset_fields_without_effect_do_not_warn_but_flags_do(tmp_path, caplog) -> None:
    flags = [
        "--preset",
        "paper-mpe",
        "--env",
        "spread",
        "--recurrent",
        "false",
        "--num-envs",
        "4",
        "--total-steps",
        "100",
        "--quiet",
    ]
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        assert main(["train", "--run-dir", str(tmp_path / "a"), *flags]) == 0
        assert not caplog.records  # the preset's data_chunk_length, unused without a GRU
        assert (
            main(["train", "--run-dir", str(tmp_path / "b"), *flags, "--data-chunk-length", "5"])
            == 0
        )
    assert [r.getMessage() for r in caplog.records] == [
        "data_chunk_length has no effect without recurrent = true"
    ]


def test_epymarl_preset_maps_mappo_yaml_and_the_episode_limit() -> None:
    lbf = MappoConfig(**epymarl_preset("gymnasium:lbforaging:Foraging-8x8-2p-2f-coop-v3"))
    # EPyMARL's mappo.yaml: lr 3e-4, hidden 128, GRU, entropy 0.001, 4 epochs, clip 0.2.
    assert (lbf.lr, lbf.hidden_dim, lbf.recurrent, lbf.ent_coef) == (3e-4, 128, True, 0.001)
    assert not lbf.critic_recurrent  # its cv_critic is an MLP on the state; the GRU is the actor's
    assert (lbf.update_epochs, lbf.clip_coef, lbf.minibatch_size) == (4, 0.2, 0)
    # A batch is 10 env copies x one 50-step LBF episode, trained as whole sequences.
    assert (lbf.num_envs, lbf.rollout_steps, lbf.data_chunk_length) == (10, 50, 50)
    assert lbf.team_reward and not lbf.clip_value_loss and lbf.agent_id
    assert not lbf.norm_adv  # EPyMARL does not normalize advantages
    # Its standardise_rewards is on, standardise_returns off: no value normalization.
    assert lbf.reward_norm and not lbf.value_norm
    rware = MappoConfig(**epymarl_preset("gymnasium:rware:rware-tiny-2ag-v2"))
    assert (rware.rollout_steps, rware.data_chunk_length) == (500, 500)
    # Jumanji's LBF and RWARE: the same settings, EPyMARL's limit as the env's time_limit.
    jumanji_lbf = epymarl_preset("jumanji:LevelBasedForaging-v0", {"grid_size": 10})
    assert jumanji_lbf["env_kwargs"] == {"time_limit": 50, "grid_size": 10}
    assert (jumanji_lbf["rollout_steps"], jumanji_lbf["lr"]) == (50, 3e-4)
    own_limit = epymarl_preset("jumanji:RobotWarehouse-v0", {"time_limit": 100})
    assert (own_limit["env_kwargs"]["time_limit"], own_limit["data_chunk_length"]) == (100, 100)
    with pytest.raises(ConfigError, match="covers the Gymnasium envs of lbforaging, rware"):
        epymarl_preset("spread")


def test_a_presets_env_settings_keep_under_the_users_env_kwargs(monkeypatch) -> None:
    from mappo import presets

    def preset(env, env_kwargs):  # a suite's preset: its task settings, the user's on top
        return dict(
            env=env, lr=1e-3, env_kwargs={"max_steps": 100, "n_agents": 4, **(env_kwargs or {})}
        )

    monkeypatch.setitem(presets.PRESETS, "suite", preset)
    config = presets.build_config("suite", None, {"env": "spread", "env_kwargs": {"n_agents": 3}})
    assert config.env_kwargs == {"max_steps": 100, "n_agents": 3}
    assert config.lr == 1e-3 and "env_kwargs" in config.given and "lr" not in config.given


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env-kwargs", '{"n_agents": "4"}', "--env", "vmas:balance"],
         "preset 'benchmarl-vmas': env_kwargs 'n_agents' = '4' must be an integer >= 1 (the "
         "preset sets the minibatch from it)"),
        (["--env-kwargs", '{"n_agents": 0}', "--env", "vmas:balance"],
         "preset 'benchmarl-vmas': env_kwargs 'n_agents' = 0 must be an integer >= 1 (the "
         "preset sets the minibatch from it)"),
        (["--env", "vmas:balance"],
         "config key 'minibatch_size' = 16384 (the preset's): must be <= the batch of "
         "num_envs*rollout_steps*num_agents = 1600 for env 'vmas:balance' (0 takes the whole "
         "batch)"),
    ],
)  # fmt: skip
def test_a_preset_refuses_what_it_cannot_read_in_one_line(tmp_path, capsys, flags, message):
    """A preset reads the env and some env_kwargs: a TOML `env = 5` or `env_kwargs = 5`
    was an AttributeError or TypeError traceback, `"n_agents": "4"` a minibatch size of a
    4,096-character string; the preset's own minibatch size was called "the default"."""
    pytest.importorskip("vmas")
    run = ["train", "--preset", "benchmarl-vmas", "--run-dir", str(tmp_path / "r"),
           "--num-envs", "4", "--total-steps", "2000", "--compile", "false"]  # fmt: skip
    assert main([*run, *flags]) == 2
    assert capsys.readouterr().err == f"mappo: error: {message}\n"
    for text, said in (("env = 5\n", "'env' = 5: expected str"),
                       ("env_kwargs = 5\n", "'env_kwargs' = 5: expected dict")):  # fmt: skip
        (tmp_path / "c.toml").write_text(text)
        assert main([*run, "--config", str(tmp_path / "c.toml")]) == 2
        assert capsys.readouterr().err == f"mappo: error: config key {said}\n"
    assert not (tmp_path / "r").exists()
