"""The clipped policy loss and the clipped value loss at known ratios and values."""

import math

import pytest
import torch

from mappo import ppo_policy_loss, ppo_value_loss


def _policy_loss(ratio: float, advantage: float, clip: float = 0.2) -> tuple[float, float]:
    new_log_prob = torch.tensor([math.log(ratio)], requires_grad=True)
    loss = ppo_policy_loss(torch.tensor([advantage]), new_log_prob, torch.tensor([0.0]), clip)
    loss.backward()
    return loss.item(), new_log_prob.grad.item()


def test_policy_loss_inside_the_clip_is_the_plain_surrogate() -> None:
    loss, grad = _policy_loss(1.1, 2.0)
    assert loss == pytest.approx(-2.2)
    assert grad == pytest.approx(-2.2)  # d(-r*A)/dlog r = -r*A


def test_policy_loss_above_the_clip_is_flat() -> None:
    loss, grad = _policy_loss(1.5, 2.0)
    assert loss == pytest.approx(-1.2 * 2.0)
    assert grad == 0.0


def test_policy_loss_below_the_clip_with_negative_advantage_is_flat() -> None:
    loss, grad = _policy_loss(0.5, -1.0)
    assert loss == pytest.approx(0.8)
    assert grad == 0.0


def test_policy_loss_keeps_the_pessimistic_side_when_the_ratio_moved_against_it() -> None:
    # ratio 0.5 with positive advantage: the unclipped term is smaller, so it is kept
    loss, grad = _policy_loss(0.5, 1.0)
    assert loss == pytest.approx(-0.5)
    assert grad == pytest.approx(-0.5)


def test_value_loss_clipping_takes_the_larger_error() -> None:
    new = torch.tensor([1.0, 0.1])
    old = torch.tensor([0.0, 0.0])
    returns = torch.tensor([1.0, 1.0])
    loss = ppo_value_loss(new, old, returns, clip_coef=0.2)
    # sample 0: unclipped error 0, clipped prediction 0.2 → 0.5*0.8² = 0.32
    # sample 1: inside the clip → 0.5*0.9² = 0.405
    assert loss.item() == pytest.approx((0.32 + 0.405) / 2)
    unclipped = ppo_value_loss(new, old, returns, clip_coef=0.2, clip=False)
    assert unclipped.item() == pytest.approx((0.0 + 0.405) / 2)


def test_value_loss_huber() -> None:
    loss = ppo_value_loss(
        torch.tensor([13.0]),
        torch.tensor([13.0]),
        torch.tensor([0.0]),
        clip_coef=0.2,
        huber_delta=10.0,
    )
    assert loss.item() == pytest.approx(10.0 * (13.0 - 0.5 * 10.0))


def test_weights_drop_samples_from_both_losses() -> None:
    weights = torch.tensor([1.0, 0.0])
    adv = torch.tensor([1.0, 1000.0])
    loss = ppo_policy_loss(adv, torch.zeros(2), torch.zeros(2), 0.2, weights)
    assert loss.item() == pytest.approx(-1.0)
    vloss = ppo_value_loss(
        torch.tensor([1.0, 50.0]),
        torch.tensor([1.0, 50.0]),
        torch.tensor([0.0, -50.0]),
        0.2,
        weights,
    )
    assert vloss.item() == pytest.approx(0.5)


def test_inputs_of_other_shapes_are_refused_not_broadcast() -> None:
    """A critic's `[N, 1]` output against returns `[N]` broadcast to `[N, N]`: the value
    loss 1.4867 where it is 0.9117, the policy loss 0.225 where it is 0.2, and no error."""
    advantages = torch.tensor([1.0, -1.0, 2.0, -2.0])
    old = torch.full((4,), 0.5).log()
    new = torch.tensor([0.8, 0.8, 0.3, 0.3]).log()
    assert ppo_policy_loss(advantages, new, old, 0.2).item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"^ppo_policy_loss: new_log_probs has shape \[4, 1\], "
                       r"not \[4\] as the first argument"):  # fmt: skip
        ppo_policy_loss(advantages, new[:, None], old, 0.2)
    values, returns = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([1.0, 0.0, 3.0])
    with pytest.raises(ValueError, match=r"^ppo_value_loss: old_values has shape \[3\], not "
                       r"\[3, 1\]"):  # fmt: skip
        ppo_value_loss(values[:, None], torch.full((3,), 0.5), returns, 0.2)
    with pytest.raises(ValueError, match=r"^ppo_value_loss: weights has shape \[2\]"):
        ppo_value_loss(values, values, returns, 0.2, weights=torch.ones(2))


@pytest.mark.parametrize("setting", ["clip_coef", "huber_delta"])
def test_negative_settings_are_refused(setting) -> None:
    x = torch.zeros(3)
    settings = {"clip_coef": 0.2, "huber_delta": 1.0, setting: -0.1}
    with pytest.raises(ValueError, match=rf"^ppo_value_loss: {setting} = -0.1: must be >= 0$"):
        ppo_value_loss(x, x, x, settings["clip_coef"], huber_delta=settings["huber_delta"])
