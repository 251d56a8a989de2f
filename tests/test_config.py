"""Config: TOML round trip, validation that names the key, env dimensions taken from the env."""

import re

import pytest

from mappo import ConfigError, MappoConfig
from mappo.cli import main
from mappo.config import from_dict, parse_cli_value
from mappo.run import Run
from mappo.seeds import parse_seeds


def exactly(message: str) -> str:
    """A `match=` pattern for the whole message and nothing else."""
    return f"^{re.escape(message)}$"


def test_toml_round_trip(tmp_path) -> None:
    cfg = MappoConfig(lr=3e-4, share_policy=False, env_kwargs={"num_agents": 4})
    cfg.save(tmp_path / "c.toml")
    assert MappoConfig.load(tmp_path / "c.toml") == cfg


def test_unknown_key_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'clip_coeff'.*'clip_coef'"):
        from_dict({"clip_coeff": 0.1})


def test_an_unknown_keyword_in_python_is_named_with_the_nearest_field() -> None:
    with pytest.raises(ConfigError) as info:
        MappoConfig(lr=1e-3, lrr=1e-3)
    assert str(info.value) == "unknown config key 'lrr' in MappoConfig(...); did you mean 'lr'?"
    with pytest.raises(ConfigError, match="'n_epochs' in MappoConfig.*'update_epochs'"):
        MappoConfig(n_epochs=4)  # the name another library gives it


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"'update_epochs' = 'ten': expected int"):
        from_dict({"update_epochs": "ten"})


def test_python_and_toml_spellings_of_a_value_are_taken(tmp_path) -> None:
    """`compile=False` (a choice of strings) and numpy's scalars, as a script writes them,
    were refused as the wrong type: np.int64 always, np.float32 for a float field."""
    import numpy as np

    cfg = MappoConfig(compile=False, total_steps=np.int64(5000), lr=np.float32(0.5))
    assert (cfg.compile, cfg.total_steps, cfg.lr) == ("false", 5000, 0.5)
    assert type(cfg.total_steps) is int and type(cfg.lr) is float  # written to TOML as such
    (tmp_path / "c.toml").write_text("compile = true\n")
    assert MappoConfig.load(tmp_path / "c.toml").compile == "true"


@pytest.mark.parametrize(
    ("env_kwargs", "problem"),
    [
        ({"render_mode": None}, "env_kwargs['render_mode'] is None, which config.toml cannot "
         "hold (leave a keyword out for its default)"),
        ({"sizes": [3, None]}, "env_kwargs['sizes'][1] is None, which config.toml cannot hold "
         "(leave a keyword out for its default)"),
        ({"fn": len}, "env_kwargs['fn'] is a builtin_function_or_method, which config.toml "
         "cannot hold: give strings, numbers, booleans, lists or dicts of them"),
        ({1: 2}, "env_kwargs has the key 1: keys must be strings"),
    ],
)  # fmt: skip
def test_env_kwargs_that_config_toml_cannot_hold_are_refused(tmp_path, env_kwargs, problem):
    """PettingZoo's `render_mode=None` trained, then the run folder's config.toml failed to
    be written ("Object of type 'NoneType' is not TOML serializable"), leaving a folder
    locked by a process that had gone on."""
    config = MappoConfig(env_kwargs=env_kwargs)  # a trainer in memory takes them
    with pytest.raises(ConfigError, match=exactly(f"config key 'env_kwargs' = {env_kwargs!r}: "
                                                  f"{problem}")):  # fmt: skip
        Run.start(config, tmp_path / "python")
    assert not (tmp_path / "python").exists()
    run = tmp_path / "r"
    code = main(["train", "--run-dir", str(run), "--env-kwargs", '{"render_mode": null}'])
    assert code == 2 and not run.exists()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2.5e7", 25_000_000),
        ("1e30", 10**30),  # exactly: a float gives 1000000000000000019884624838656
        ("12345678901234567", 12345678901234567),  # not a double
        ("-7", -7),
    ],
)
def test_integer_flags_parse_exactly(text, value) -> None:
    assert parse_cli_value("total_steps", text) == value


@pytest.mark.parametrize("text", ["2.5", "1e-3", "nan", "inf", "ten", "", "1e400", "1e9999999"])
def test_integer_flags_refuse_what_is_not_an_integer(text) -> None:
    with pytest.raises(ConfigError, match=f"'total_steps' = {text!r}: expected"):
        parse_cli_value("total_steps", text)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("gamma", 1.5, r"in \[0, 1\]"),
        ("gae_lambda", -0.1, r"in \[0, 1\]"),
        ("num_envs", 0, "an integer >= 1"),
        ("lr", 0.0, "> 0"),
        ("activation", "gelu", "one of tanh, relu"),
        ("seed", -(2**62), r"an integer between 0 and 2\*\*62"),
        ("seed", 2**62, r"an integer between 0 and 2\*\*62"),
        ("torch_threads", 100_000, "between 0 and 1024"),  # torch segfaulted building them
    ],
)
def test_impossible_values(key, value, allowed) -> None:
    with pytest.raises(ConfigError, match=f"'{key}' = {value!r}: must be {allowed}"):
        from_dict({key: value})


def test_a_config_file_not_in_utf8_is_one_line_naming_it(tmp_path, capsys) -> None:
    path = tmp_path / "c_bin.toml"
    path.write_bytes(b"\xff\xfe" + "seed = 1\n".encode("utf-16-le"))  # PowerShell's `>` writes so
    message = (
        f"cannot read config file {path}: byte 0xff at position 0 is not UTF-8; "
        "a TOML file must be UTF-8 text"
    )
    with pytest.raises(ConfigError, match=exactly(message)):
        MappoConfig.load(path)
    assert main(["train", "--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    path.write_bytes("\ufeffseed = 1\n".encode())  # UTF-8 with a byte-order mark (Notepad)
    assert MappoConfig.load(path).seed == 1
    assert capsys.readouterr().err == f"mappo: error: {message}\n"


def test_integral_floats_in_toml_are_integers(tmp_path) -> None:
    """TOML has no `20e6` integer: budgets written so are floats, taken as the int they are."""
    (tmp_path / "c.toml").write_text("total_steps = 20e6\nnum_envs = 8.0\n")
    loaded = MappoConfig.load(tmp_path / "c.toml")
    assert (loaded.total_steps, loaded.num_envs) == (20_000_000, 8)
    assert type(loaded.total_steps) is int and type(loaded.num_envs) is int
    assert type(MappoConfig(total_steps=1e6).total_steps) is int  # keywords too


@pytest.mark.parametrize("text", ["200.7", "inf", "nan"])
def test_fractional_floats_in_toml_are_refused_as_on_the_command_line(tmp_path, text) -> None:
    (tmp_path / "c.toml").write_text(f"total_steps = {text}\n")
    with pytest.raises(
        ConfigError, match=exactly(f"config key 'total_steps' = {text}: expected int")
    ):
        MappoConfig.load(tmp_path / "c.toml")
    with pytest.raises(
        ConfigError, match=exactly(f"config key 'total_steps' = {text!r}: expected int")
    ):
        parse_cli_value("total_steps", text)


def test_an_integer_beyond_64_bits_is_refused(tmp_path, capsys) -> None:
    """config.toml would hold an integer no TOML reader takes (nor torch): `--total-steps
    1e30` trained on, to a budget no run reaches."""
    says = "config key 'total_steps' = 10**30: must fit in 64 bits (from -2**63 to below 2**63)"
    for value in (10**30, 1e30, 2**63):
        with pytest.raises(ConfigError, match=exactly(says.replace("10**30", repr(int(value))))):
            MappoConfig(total_steps=value)
    assert MappoConfig(total_steps=2**63 - 1).total_steps == 2**63 - 1
    assert main(["train", "--eval-interval", "1e30", "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: config key 'eval_interval' = {10**30}: must fit in 64 bits (from -2**63 "
        "to below 2**63)\n"
    )
    assert not (tmp_path / "r").exists()


def test_seeds_below_0_are_refused_for_new_runs(tmp_path, capsys) -> None:
    """Gymnasium, PettingZoo and numpy refuse negative seeds (a traceback at the env's first
    reset, before): a new run's seed is refused below 0, in one line, wherever it comes
    from; a config read back (a run saved with one on a built-in env) still loads."""
    assert from_dict({"seed": -1}).seed == -1
    (tmp_path / "c.toml").write_text("seed = -3.0\n")
    assert (
        main(["train", "--config", str(tmp_path / "c.toml"), "--run-dir", str(tmp_path / "r")]) == 2
    )
    assert capsys.readouterr().err == (
        "mappo: error: config key 'seed' = -3: must be an integer between 0 and 2**62\n"
    )
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=exactly("--seeds: seed -1 is not between 0 and 2**62")):
        parse_seeds("0,-1")
    assert parse_seeds(f"0,{2**62 - 1}") == [0, 2**62 - 1]
    api = "config key 'seed' = -1: must be an integer between 0 and 2**62"
    with pytest.raises(ConfigError, match=exactly(api)):
        Run.start(MappoConfig(seed=-1, total_steps=100), tmp_path / "api")


def test_minibatch_is_checked_against_the_real_env_batch() -> None:
    # 8 envs x 25 steps: 400 agent-steps with the spec's default of 2 agents, 600 with spread's 3.
    cfg = MappoConfig(num_envs=8, rollout_steps=25, minibatch_size=500)
    assert cfg.matched_to_env("spread", num_agents=3).minibatch_size == 500
    with pytest.raises(ConfigError, match="'minibatch_size' = 700: must be <= .* = 600 for env"):
        MappoConfig(num_envs=8, rollout_steps=25, minibatch_size=700).matched_to_env(
            "spread", num_agents=3
        )


def test_trainer_accepts_a_minibatch_valid_only_for_the_real_env() -> None:
    from mappo import MappoTrainer

    trainer = MappoTrainer(MappoConfig(num_envs=2, rollout_steps=5, minibatch_size=30))
    assert (trainer.config.num_agents, trainer.config.minibatch_size) == (3, 30)


def test_env_dimensions_replace_unset_fields_and_set_ones_must_agree() -> None:
    cfg = MappoConfig().matched_to_env("spread", num_agents=3, obs_dim=18)
    assert (cfg.num_agents, cfg.obs_dim) == (3, 18)
    with pytest.raises(ConfigError, match="'num_agents' = 4 contradicts env 'spread'.* = 3"):
        MappoConfig(num_agents=4).matched_to_env("spread", num_agents=3)
    # Set explicitly to the spec's default is still a contradiction.
    with pytest.raises(ConfigError, match="'num_agents' = 2 contradicts env 'spread'.* = 3"):
        MappoConfig(num_agents=2).matched_to_env("spread", num_agents=3)
    with pytest.raises(ConfigError, match="'obs_dim' = 16 contradicts"):
        from_dict({"obs_dim": 16}).matched_to_env("spread", obs_dim=18)


def test_given_fields_follow_keywords_files_and_replace(tmp_path) -> None:
    assert MappoConfig().given == frozenset()
    assert MappoConfig(lr=1e-3).given == {"lr"}
    (tmp_path / "c.toml").write_text("num_agents = 3\nseed = 4\n")
    loaded = MappoConfig.load(tmp_path / "c.toml")
    assert loaded.given == {"num_agents", "seed"}
    assert loaded.replace(gamma=0.9).given == {"num_agents", "seed", "gamma"}
    # Values taken from the env are not the user's.
    assert MappoConfig().matched_to_env("spread", num_agents=3).given == frozenset()


def test_policy_groups_with_share_policy_false_is_refused() -> None:
    with pytest.raises(ConfigError, match="'policy_groups' = 'adversary,agent' .* share_policy"):
        MappoConfig(policy_groups="adversary,agent", share_policy=False)


def test_use_global_state_without_an_env_state_warns_once_when_set(caplog) -> None:
    from mappo import MappoTrainer

    small = dict(num_envs=2, rollout_steps=5, minibatch_size=0)
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        MappoTrainer(MappoConfig(**small))  # default: spread's critic sees concatenated obs
        assert not caplog.records
        MappoTrainer(MappoConfig(use_global_state=True, **small))
    assert len(caplog.records) == 1
    assert "env 'spread' has no global state of its own" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        MappoTrainer(
            MappoConfig(use_global_state=True, env_kwargs={"global_state": "world"}, **small)
        )
    assert not caplog.records


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch) -> None:
    import torch

    from mappo import MappoTrainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'device' = 'cuda': this torch has no usable CUDA"):
        MappoTrainer(MappoConfig(device="cuda", num_envs=4, minibatch_size=20))


def test_flags_that_cannot_take_effect_warn_once_each(caplog) -> None:
    from mappo import MappoTrainer

    small = dict(num_envs=2, rollout_steps=5, minibatch_size=0)
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        MappoTrainer(MappoConfig(num_workers=2, data_chunk_length=5, **small))
    assert [r.getMessage() for r in caplog.records] == [
        "num_workers = 2 has no effect: env 'spread' steps all its copies in this process",
        "data_chunk_length has no effect without recurrent = true",
    ]


def test_copies_not_divisible_by_workers_is_a_config_error(caplog) -> None:
    """Only for an env that steps in workers: the others warn that the workers do nothing."""
    import pz_envs

    from mappo import MappoTrainer
    from mappo.envs.registry import make_env

    with pytest.raises(ConfigError, match="'num_workers' = 3: num_envs = 4 must be a multiple"):
        make_env(f"{pz_envs.__name__}:CounterEnv", 4, num_workers=3)
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        MappoTrainer(MappoConfig(num_envs=4, num_workers=3, rollout_steps=5, minibatch_size=0))
    assert [r.getMessage() for r in caplog.records] == [
        "num_workers = 3 has no effect: env 'spread' steps all its copies in this process"
    ]


def test_env_help_names_every_form_make_env_takes() -> None:
    """`mappo train --help` is where a user learns the `--env` forms: each built-in env
    and each prefix that `make_env` dispatches on must be there."""
    from dataclasses import fields

    from mappo.envs import registry

    env_help = next(f for f in fields(MappoConfig) if f.name == "env").metadata["help"]
    prefixes = [
        registry.VMAS_PREFIX,
        registry.JAXMARL_PREFIX,
        registry.JUMANJI_PREFIX,
        registry.GYMNASIUM_PREFIX,
    ]
    missing = [form for form in [*registry.BUILTIN_ENVS, *prefixes] if form not in env_help]
    assert missing == [], f"--env's help leaves out {missing}"
    assert "module:callable" in env_help
