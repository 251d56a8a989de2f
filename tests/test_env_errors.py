"""An env that returns NaN or inf is stopped with a message naming env, agent, field and step."""

import math

import pytest
import torch

import mappo.trainer
from mappo import MappoConfig, MappoTrainer
from mappo.cli import main
from mappo.envs.base import EnvError
from mappo.envs.spread import SpreadEnv


class PoisonedSpread(SpreadEnv):
    """spread that puts `value` into one field of agent 1, copy 2, at step `bad_step`."""

    def __init__(self, num_envs, field, value, bad_step, **kwargs):
        super().__init__(num_envs, **kwargs)
        self.field, self.value, self.bad_step, self.calls = field, value, bad_step, 0

    def step(self, actions):
        result = super().step(actions)
        self.calls += 1
        if self.calls == self.bad_step:
            poisoned = getattr(result, self.field).clone()
            poisoned[2, 1] = self.value
            result = result._replace(**{self.field: poisoned})
        return result


@pytest.mark.parametrize(("field", "name", "value", "bad_step"),
                         [("reward", "reward", math.nan, 7), ("obs", "observation", math.inf, 30)])
def test_non_finite_env_output_is_named(field, name, value, bad_step) -> None:
    env = PoisonedSpread(4, field, value, bad_step, seed=0)
    trainer = MappoTrainer(MappoConfig(num_envs=4, minibatch_size=64, total_steps=400), env=env)
    before = [p.detach().clone() for p in trainer.parameters]
    with pytest.raises(EnvError) as info:
        trainer.train()
    message = str(info.value)
    assert f"env 'spread' returned {value} in the {name} of agent 'agent_1', env copy 2" in message
    assert f"at step {bad_step}" in message
    if bad_step > 25:  # the first update ran on clean data; the second never did
        assert trainer.updates == 1
    else:
        assert all(torch.equal(a, b) for a, b in zip(before, trainer.parameters, strict=True))


def test_cli_reports_env_errors_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(mappo.trainer, "make_env",
                        lambda *a, **k: PoisonedSpread(4, "reward", math.nan, 3, seed=0))
    code = main(["train", "--run-dir", str(tmp_path / "r"), "--num-envs", "4",
                 "--minibatch-size", "64", "--total-steps", "400", "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" not in err
    assert err.strip().startswith("mappo: env error: env 'spread' returned nan in the reward")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
