"""The value clip is centred on the critic's own output at collection time."""

import torch

from mappo import MappoConfig, MappoTrainer


def _collected(rollout_steps: int = 5) -> MappoTrainer:
    torch.manual_seed(0)
    cfg = MappoConfig(
        num_envs=4, rollout_steps=rollout_steps, minibatch_size=0, total_steps=40, compile="false"
    )
    trainer = MappoTrainer(cfg)
    trainer.collect_rollout()
    return trainer


def _first_minibatch_after_a_normalizer_move(trainer: MappoTrainer):
    """What the update sees first: GAE, a normalizer update that moves a lot, a minibatch."""
    buf = trainer.buffer
    buf.compute_returns_and_advantage(torch.zeros(4, 3), 0.99, 0.95)
    trainer.policy.value_norm.update(buf.returns + 50.0, buf.alive)
    mb = next(buf.minibatches(1, trainer.policy.value_norm.normalize))
    with torch.no_grad():
        return mb, trainer.policy.critic(mb.state)


def test_first_minibatch_values_equal_the_stored_raw_outputs() -> None:
    trainer = _collected()
    mb, new_values = _first_minibatch_after_a_normalizer_move(trainer)
    buf = trainer.buffer
    # Before any optimizer step the critic, run on each collection step's batch again,
    # gives bit for bit the stored centre, whatever the normalizer did meanwhile.
    with torch.no_grad():
        for t in range(buf.rollout_steps):
            assert torch.equal(trainer.policy.critic(buf.states[t]), buf.critic_values[t])
    # The shuffled minibatch is a matmul of another shape: equal up to float32 rounding.
    torch.testing.assert_close(new_values, mb.values, rtol=0, atol=1e-6)
    # The previous centre, the return-units values mapped through the moved normalizer,
    # sat far outside the clip range (0.2) of the critic's own output.
    buf = trainer.buffer
    old_centre = trainer.policy.value_norm.normalize(buf.values).flatten(0, 1)
    assert (old_centre - buf.critic_values.flatten(0, 1)).abs().min().item() > 0.2


def test_stored_raw_outputs_map_to_the_return_units_values_at_collection() -> None:
    trainer = _collected()
    buf = trainer.buffer
    trainer.policy.value_norm.update(torch.randn(5, 4, 3) * 7 + 3)  # as after an earlier update
    trainer.buffer.clear()
    trainer.collect_rollout()
    torch.testing.assert_close(trainer.policy.value_norm.denormalize(buf.critic_values), buf.values)
    assert not torch.allclose(buf.critic_values, buf.values)


def test_clipped_value_loss_keeps_its_gradient_after_a_normalizer_move() -> None:
    """With the clip centred on the old output, every live sample gets a value gradient at
    the start of an update however far the normalizer moved."""
    trainer = _collected()
    buf = trainer.buffer
    buf.compute_returns_and_advantage(torch.zeros(4, 3), 0.99, 0.95)
    trainer.policy.value_norm.update(buf.returns * 100.0 + 1000.0, buf.alive)
    mb = next(buf.minibatches(1, trainer.policy.value_norm.normalize))
    values = trainer.policy.critic(mb.state)
    values.retain_grad()
    from mappo.losses import ppo_value_loss

    loss = ppo_value_loss(values, mb.values, mb.returns, 0.2, mb.weights)
    loss.backward()
    assert bool((values.grad[mb.weights > 0] != 0).all())
