"""Property test: whatever malformed output an env returns, training fails with a clear EnvError."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappo import MappoConfig, MappoTrainer
from mappo.envs.base import EnvError

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10))
bad_values = st.one_of(
    st.none(),
    st.text(max_size=3),
    numbers,
    st.lists(numbers, max_size=6).map(lambda xs: np.array(xs, dtype=np.float64)),
    st.lists(st.text(max_size=2), min_size=1, max_size=4),
    st.dictionaries(st.text(max_size=3), numbers, max_size=2),
    st.just(np.full(4, math.nan, np.float32)),
    st.just(np.full(4, math.inf, np.float32)),
    st.just(np.zeros((2, 2), np.float32)),
    st.just(np.zeros(4, np.float32)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["observation", "reward"]), bad_value=bad_values)
def test_malformed_env_output_trains_cleanly_or_raises_a_named_env_error(field, bad_value):
    config = MappoConfig(
        env="pz_envs:MalformedEnv",
        num_envs=2,
        rollout_steps=5,
        minibatch_size=10,
        update_epochs=1,
        total_steps=10,
        env_kwargs={"field": field, "bad_value": bad_value, "bad_step": 2},
    )
    try:
        trainer = MappoTrainer(config)
        trainer.train()
    except EnvError as err:
        message = str(err)
        assert "pz_envs:MalformedEnv" in message
        assert "agent_1" in message
        assert field in message
        assert "step" in message
    else:
        # Accepted output must have been well-formed numbers that reached the buffer.
        assert np.isfinite(trainer.buffer.rewards.numpy()).all()
        assert np.isfinite(trainer.buffer.observations.numpy()).all()
