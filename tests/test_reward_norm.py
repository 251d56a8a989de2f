"""`reward_norm`: rewards divided by the pooled running std of all rewards before GAE
(EPyMARL's `standardise_rewards` without its mean shift), with statistics computed by hand,
per agent slot, pooled over ranks, carried by checkpoints; advantages that no longer depend
on the reward's scale, and zero rewards that stay zero (no cost per step)."""

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
    # Divided by the std (about 0.5), not shifted by the mean: a step with no reward costs 0.
    assert scaled.tolist() == pytest.approx([0.0, 0.0, 0.0, 2.0], abs=1e-4)
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
    # Unit std in each slot, whatever its scale and offset (slot 1's offset stays).
    assert scaled[..., 0].std().item() == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(scaled[..., 1].std(), scaled[..., 0].std(), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        scaled[..., 1] - scaled[..., 1].mean(),
        scaled[..., 0] - scaled[..., 0].mean(),
        atol=1e-4,
        rtol=0,
    )
    off = RewardNorm(num_agents=2, enabled=False)
    off.update(rewards)
    assert off.scale(rewards) is rewards and off.count.item() == pytest.approx(1e-4)


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
        assert plain.buffer.rewards.std().item() == pytest.approx(1.0, abs=0.05)
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
