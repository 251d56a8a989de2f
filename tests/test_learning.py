"""Training on spread raises the return: the whole loop, end to end, on a small budget."""

import statistics

import pytest

from mappo import MappoConfig, MappoTrainer


@pytest.mark.slow
@pytest.mark.parametrize("share_policy", [True, False])
def test_return_rises_on_spread(share_policy: bool) -> None:
    config = MappoConfig(total_steps=48_000, num_envs=32, seed=0, share_policy=share_policy)
    history = MappoTrainer(config).train()
    first = statistics.fmean(m.episode_return for m in history[:5])
    last = statistics.fmean(m.episode_return for m in history[-5:])
    # A random policy scores about -26; the first updates are near it.
    assert first < -22.0
    assert last > first + 2.5, (first, last)
    assert all(m.approx_kl < 0.1 for m in history)
    assert history[-1].explained_variance > 0.5
