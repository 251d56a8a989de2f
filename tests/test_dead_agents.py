"""A dead agent's samples carry zero weight: no loss, no gradient, no normalizer statistics."""

import torch

from mappo import MappoConfig, MappoTrainer
from mappo.buffer import RolloutMinibatch
from mappo.value_norm import ValueNorm


def _trainer(**overrides) -> MappoTrainer:
    cfg = MappoConfig(num_envs=4, rollout_steps=5, minibatch_size=20, total_steps=20, **overrides)
    trainer = MappoTrainer(cfg)
    trainer.collect_rollout()
    trainer.buffer.compute_returns_and_advantage(torch.zeros(4, 3), 0.99, 0.95)
    return trainer


def _loss_and_grads(trainer: MappoTrainer, mb: RolloutMinibatch):
    trainer.optimizer.zero_grad()
    loss, stats = trainer.minibatch_loss(mb)
    loss.backward()
    grads = [p.grad.clone() for p in trainer.parameters]
    return loss.detach(), stats, grads


def _garbage_for_agent(mb: RolloutMinibatch, agent: int, rows: torch.Tensor) -> RolloutMinibatch:
    """Replace everything the dead agent holds in `rows` with other finite values."""
    fields = mb._asdict()
    for name, scale in (
        ("obs", 1e3),
        ("log_probs", 10.0),
        ("values", 1e3),
        ("advantages", 1e3),
        ("returns", 1e3),
    ):
        x = fields[name].clone()
        x[rows, agent] = scale * torch.randn_like(x[rows, agent])
        fields[name] = x
    actions = fields["actions"].clone()
    actions[rows, agent] = (actions[rows, agent] + 1) % 5
    fields["actions"] = actions
    return RolloutMinibatch(**fields)


def test_dead_agent_changes_no_loss_and_no_gradient() -> None:
    for share_policy in (True, False):
        torch.manual_seed(1)
        trainer = _trainer(share_policy=share_policy)
        mb = next(trainer.buffer.minibatches(1))
        rows = torch.arange(0, mb.weights.shape[0], 2)
        weights = mb.weights.clone()
        weights[rows, 1] = 0.0  # agent 1 is dead in every other row
        mb = mb._replace(weights=weights)
        loss, stats, grads = _loss_and_grads(trainer, mb)
        loss2, stats2, grads2 = _loss_and_grads(trainer, _garbage_for_agent(mb, 1, rows))
        assert loss2.item() == loss.item()
        torch.testing.assert_close(stats2, stats, rtol=0, atol=0)
        for g, g2 in zip(grads, grads2, strict=True):
            torch.testing.assert_close(g2, g, rtol=0, atol=0)


def test_independent_policy_of_an_agent_dead_everywhere_gets_no_gradient() -> None:
    torch.manual_seed(2)
    trainer = _trainer(share_policy=False)
    mb = next(trainer.buffer.minibatches(1))
    weights = mb.weights.clone()
    weights[:, 2] = 0.0
    _loss_and_grads(trainer, mb._replace(weights=weights))
    for layer in (trainer.policy.actor.fc1, trainer.policy.actor.fc2, trainer.policy.actor.head):
        assert layer.weight.grad[2].abs().max().item() == 0.0
        assert layer.weight.grad[0].abs().max().item() > 0.0


def test_value_normalizer_ignores_dead_agents() -> None:
    norm = ValueNorm(beta=0.9)
    targets = torch.tensor([[1.0, 1e6], [3.0, -1e6]])
    norm.update(targets, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    mean, var = norm.moments()
    assert mean.item() == 2.0
    assert var.item() == 1.0
