"""Masked categorical and Gaussian: probabilities and entropies computed by hand."""

import math

import pytest
import torch

from mappo.distributions import ActionDistribution
from mappo.envs.base import ActionSpec


def test_masked_action_has_probability_exactly_zero_and_is_never_sampled() -> None:
    torch.manual_seed(0)
    spec = ActionSpec("discrete", nvec=(4,))
    logits = torch.zeros(2000, 4)
    mask = torch.tensor([True, False, True, True]).expand(2000, 4)
    dist = ActionDistribution(spec, logits, mask)
    assert dist.log_probs_all[:, 1].exp().max().item() == 0.0
    samples = dist.sample()
    assert (samples != 1).all()
    counts = torch.bincount(samples.flatten(), minlength=4).float() / 2000
    assert counts[[0, 2, 3]].tolist() == pytest.approx([1 / 3] * 3, abs=0.04)
    assert dist.entropy()[0].item() == pytest.approx(math.log(3))


def test_multi_discrete_log_prob_sums_heads() -> None:
    spec = ActionSpec("discrete", nvec=(2, 3))
    logits = torch.log(torch.tensor([[0.25, 0.75, 0.2, 0.3, 0.5]]))
    dist = ActionDistribution(spec, logits)
    assert dist.log_prob(torch.tensor([[1, 2]])).item() == pytest.approx(math.log(0.75 * 0.5))
    assert dist.mode().tolist() == [[1, 2]]


def test_gaussian_log_prob_and_entropy() -> None:
    spec = ActionSpec("continuous", low=(-1.0, -1.0), high=(1.0, 1.0))
    dist = ActionDistribution(spec, torch.zeros(1, 2), log_std=torch.log(torch.tensor([1.0, 2.0])))
    lp = dist.log_prob(torch.tensor([[1.0, 2.0]])).item()
    expected = sum(-0.5 * 1.0 - math.log(s) - 0.5 * math.log(2 * math.pi) for s in (1.0, 2.0))
    assert lp == pytest.approx(expected)
    assert dist.entropy().item() == pytest.approx(
        sum(0.5 * math.log(2 * math.pi * math.e * s * s) for s in (1.0, 2.0))
    )


def test_padded_box_dimensions_take_no_part_in_log_prob_or_entropy() -> None:
    # Agent 0 acts in 2 dimensions, agent 1 in 3: agent 0's third is padding.
    spec = ActionSpec("continuous", low=(-1.0,) * 3, high=(1.0,) * 3)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    mean = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5]])
    log_std = torch.tensor([[0.0, -0.5, 0.7], [0.2, 0.2, 0.2]])
    action = torch.tensor([[0.4, 0.1, -2.0], [0.3, 0.3, 0.3]])
    dist = ActionDistribution(spec, mean, mask, log_std)
    normal = torch.distributions.Normal(mean, log_std.exp())
    expected = torch.stack([normal.log_prob(action)[0, :2].sum(), normal.log_prob(action)[1].sum()])
    torch.testing.assert_close(dist.log_prob(action), expected)
    one_dim = 0.5 * math.log(2 * math.pi * math.e)
    assert dist.entropy().tolist() == pytest.approx([2 * one_dim - 0.5, 3 * one_dim + 0.6])
    # Whatever the padded dimension holds, agent 0's log-probability stays the same.
    moved = ActionDistribution(spec, mean + torch.tensor([0.0, 0.0, 9.0]), mask, log_std)
    other = action.clone()
    other[0, 2] = 7.0
    assert moved.log_prob(other)[0].item() == pytest.approx(dist.log_prob(action)[0].item())
