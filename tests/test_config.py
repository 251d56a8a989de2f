"""Config: TOML round trip, validation that names the key, env dimensions taken from the env."""

import pytest

from mappo import ConfigError, MappoConfig
from mappo.config import from_dict


def test_toml_round_trip(tmp_path) -> None:
    cfg = MappoConfig(lr=3e-4, share_policy=False, env_kwargs={"num_agents": 4})
    cfg.save(tmp_path / "c.toml")
    assert MappoConfig.load(tmp_path / "c.toml") == cfg


def test_unknown_key_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'clip_coeff'.*'clip_coef'"):
        from_dict({"clip_coeff": 0.1})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"'update_epochs' = 'ten': expected int"):
        from_dict({"update_epochs": "ten"})


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("gamma", 1.5, r"in \[0, 1\]"), ("gae_lambda", -0.1, r"in \[0, 1\]"),
     ("num_envs", 0, "an integer >= 1"), ("lr", 0.0, "> 0"),
     ("activation", "gelu", "one of tanh, relu")],
)
def test_impossible_values(key, value, allowed) -> None:
    with pytest.raises(ConfigError, match=f"'{key}' = {value!r}: must be {allowed}"):
        from_dict({key: value})


def test_minibatch_larger_than_the_batch() -> None:
    with pytest.raises(ConfigError, match="'minibatch_size' = 5000: must be <= .* = 400"):
        MappoConfig(num_envs=8, rollout_steps=25, num_agents=2, minibatch_size=5000)


def test_env_dimensions_replace_spec_defaults_and_contradictions_fail() -> None:
    cfg = MappoConfig().matched_to_env("spread", num_agents=3, obs_dim=18)
    assert (cfg.num_agents, cfg.obs_dim) == (3, 18)
    with pytest.raises(ConfigError, match="'num_agents' = 4 contradicts env 'spread'.* = 3"):
        MappoConfig(num_agents=4).matched_to_env("spread", num_agents=3)


def test_cuda_without_a_gpu_is_a_config_error(monkeypatch) -> None:
    import torch

    from mappo import MappoTrainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="'device' = 'cuda': this torch has no usable CUDA"):
        MappoTrainer(MappoConfig(device="cuda", num_envs=4, minibatch_size=20))
