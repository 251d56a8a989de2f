"""`reward_norm`: rewards divided by the pooled running root mean square of all rewards before
GAE (EPyMARL's `standardise_rewards` without its mean shift), with statistics computed by
hand, per agent slot, pooled over ranks, carried by checkpoints; advantages that no longer
depend on the reward's scale, zero rewards that stay zero (no cost per step), and a steady
reward that stays about 1."""

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.reward_norm import RewardNorm


def test_sparse_rewards_scale_as_computed_by_hand() -> None:
    """Rewards 0, 0, 0, 1: mean 0.25 and sample variance 0.25, pooled with the prior (mean 0,
    variance 1, weight 1e-4); then 1, 1 folded in."""
    norm = RewardNorm(num_agents=1)
    first = torch.tensor([[0.0], [0.0], [0.0], [1.0]])  # [N, A]
    norm.update(first)
    pooled = 4 + 1e-4
    mean = 0.25 * 4 / pooled
    var = (1e-4 * 1.0 + 4 * 0.25 + 0.25**2 * 1e-4 * 4 / pooled) / pooled
    assert norm.mean.item() == pytest.approx(mean, rel=1e-12)
    assert norm.var.item() == pytest.approx(var, rel=1e-12)
    scaled = norm.scale(first).squeeze(-1)
    # Divided by the root mean square, sqrt(var + mean^2), not shifted by the mean: a step
    # with no reward costs nothing.
    rms = (var + mean**2) ** 0.5
    assert scaled.tolist() == pytest.approx([0.0, 0.0, 0.0, 1 / rms], rel=1e-6)
    assert 1 / rms == pytest.approx(1.789, abs=1e-3)
    assert scaled.dtype == torch.float32
    second = torch.tensor([[1.0], [1.0]])  # sample variance 0
    norm.update(second)
    delta = 1.0 - mean
    var2 = (var * pooled + 0.0 + delta**2 * pooled * 2 / (pooled + 2)) / (pooled + 2)
    assert norm.mean.item() == pytest.approx(mean + delta * 2 / (pooled + 2), rel=1e-12)
    assert norm.var.item() == pytest.approx(var2, rel=1e-12)
    assert norm.count.item() == pytest.approx(6 + 1e-4)


def test_each_slot_has_its_own_statistics_and_disabled_is_the_identity() -> None:
    torch.manual_seed(0)
    base = (torch.rand(50, 8) < 0.1).float()  # [T, E], sparse
    rewards = torch.stack([base, 10 * base - 3], dim=-1)  # [T, E, A]: slot 1 scaled, shifted
    norm = RewardNorm(num_agents=2)
    norm.update(rewards)
    scaled = norm.scale(rewards)
    # A unit root mean square in each slot, whatever its scale; the zeros of slot 0 stay 0.
    for slot in range(2):
        assert scaled[..., slot].square().mean().sqrt().item() == pytest.approx(1.0, abs=1e-2)
    assert torch.equal(scaled[..., 0] == 0, base == 0)
    torch.testing.assert_close(
        scaled[..., 0], base / base.square().mean().sqrt(), atol=1e-2, rtol=0
    )
    off = RewardNorm(num_agents=2, enabled=False)
    off.update(rewards)
    assert off.scale(rewards) is rewards and off.count.item() == pytest.approx(1e-4)


def test_a_steady_reward_stays_about_one_update_after_update() -> None:
    """A constant reward has a deviation that shrinks towards 0 as it is seen longer: divided
    by that it would grow without bound (-71, -100, -122, ... for -0.01); by the root mean
    square it stays -1."""
    norm = RewardNorm(num_agents=1)
    for _ in range(5):
        rewards = torch.full((5000, 1), -0.01)
        norm.update(rewards)
        assert norm.scale(rewards)[0, 0].item() == pytest.approx(-1.0, abs=1e-3)


def test_ranks_pool_their_moments_into_the_statistics_of_the_whole_batch() -> None:
    torch.manual_seed(1)
    mine, theirs = torch.randn(30, 4, 3), 2 + torch.randn(20, 4, 3)
    other = RewardNorm(num_agents=3)
    whole = RewardNorm(num_agents=3)
    whole.update(torch.cat([mine, theirs]))

    def reduce(sums: torch.Tensor) -> torch.Tensor:  # what a sum over the two ranks gives
        x = theirs.double().reshape(-1, 3)
        return sums + torch.cat([x.new_tensor([x.shape[0]]), x.sum(0), x.square().sum(0)])

    ranked = RewardNorm(num_agents=3)
    ranked.update(mine, reduce)
    torch.testing.assert_close(ranked.mean, whole.mean)
    torch.testing.assert_close(ranked.var, whole.var)
    assert other.count.item() != ranked.count.item()  # the update did fold something in


def _trainer(**overrides) -> MappoTrainer:
    config = MappoConfig(
        env="spread", num_envs=4, rollout_steps=16, total_steps=10_000, compile="false",
        minibatch_size=0, value_norm=False, **overrides,
    )  # fmt: skip
    return MappoTrainer(config)


@pytest.mark.parametrize("reward_norm", [True, False])
def test_advantages_do_not_depend_on_the_rewards_scale(reward_norm) -> None:
    """The same rollout with its rewards times 100: with `reward_norm` the scaled rewards, and
    so GAE's advantages, are those of the original; without, they are not."""
    plain = _trainer(reward_norm=reward_norm)
    plain.collect_rollout()
    scaled = _trainer(reward_norm=reward_norm)  # seeds torch afresh: the same draws
    scaled.collect_rollout()
    assert torch.equal(plain.buffer.rewards, scaled.buffer.rewards)  # same seed, same rollout
    raw = plain.buffer.rewards.clone()
    scaled.buffer.rewards.mul_(100)
    plain.prepare_update()
    scaled.prepare_update()
    same = torch.allclose(plain.buffer.advantages, scaled.buffer.advantages, atol=1e-3)
    assert same == reward_norm
    if reward_norm:  # the buffer holds the rollout's rewards scaled, per slot
        expected = RewardNorm(raw.shape[-1])
        expected.update(raw)
        torch.testing.assert_close(plain.buffer.rewards, expected.scale(raw))
        rms = plain.buffer.rewards.square().mean().sqrt().item()
        assert rms == pytest.approx(1.0, abs=0.05)
    else:
        assert torch.equal(plain.buffer.rewards, raw)


def test_a_checkpoint_carries_the_statistics() -> None:
    trainer = _trainer(reward_norm=True)
    trainer.collect_rollout()
    trainer.prepare_update()
    state = trainer.state_dict()
    fresh = _trainer(reward_norm=True)
    assert not torch.equal(fresh.reward_norm.mean, trainer.reward_norm.mean)
    fresh.load_state_dict(state)
    for name in ("count", "mean", "var"):
        assert torch.equal(getattr(fresh.reward_norm, name), getattr(trainer.reward_norm, name))
    # A checkpoint from before the field: the statistics start afresh.
    del state["reward_norm"]
    older = _trainer()
    older.load_state_dict(state)
    assert older.reward_norm.count.item() == pytest.approx(1e-4)
