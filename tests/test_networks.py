"""Batched policies equal their per-agent definitions."""

import pytest
import torch

from mappo.envs.base import ActionSpec
from mappo.networks import Actor, CentralizedCritic

DISCRETE = ActionSpec("discrete", nvec=(5,))


def _mlp(x, w1, b1, w2, b2, w3, b3):
    h = torch.tanh(x @ w1 + b1)
    h = torch.tanh(h @ w2 + b2)
    return h @ w3 + b3


def test_independent_policies_are_one_batched_matmul_of_separate_mlps() -> None:
    torch.manual_seed(0)
    actor = Actor(obs_dim=6, group_of_agent=[0, 1, 2], hidden_dim=8, action=DISCRETE)
    obs = torch.randn(10, 3, 6)
    out = actor(obs)
    assert out.shape == (10, 3, 5)
    for a in range(3):
        expected = _mlp(
            obs[:, a],
            actor.fc1.weight[a],
            actor.fc1.bias[a],
            actor.fc2.weight[a],
            actor.fc2.bias[a],
            actor.head.weight[a],
            actor.head.bias[a],
        )
        torch.testing.assert_close(out[:, a], expected)
    assert not actor.use_agent_id


def test_shared_policy_sees_the_agent_one_hot() -> None:
    torch.manual_seed(0)
    actor = Actor(obs_dim=6, group_of_agent=[0, 0, 0], hidden_dim=8, action=DISCRETE)
    obs = torch.randn(10, 3, 6)
    out = actor(obs)
    # The same MLP on [obs, one-hot(agent)], first layer = [obs rows; one-hot rows].
    w1 = torch.cat([actor.fc1.weight[0], actor.agent_id_weight[0]], 0)  # [6 + 3, 8]
    for a in range(3):
        one_hot = torch.zeros(10, 3)
        one_hot[:, a] = 1
        expected = _mlp(
            torch.cat([obs[:, a], one_hot], -1),
            w1,
            actor.fc1.bias[0],
            actor.fc2.weight[0],
            actor.fc2.bias[0],
            actor.head.weight[0],
            actor.head.bias[0],
        )
        torch.testing.assert_close(out[:, a], expected)
    # Same observation, different agent: different output.
    same = obs[:, :1].expand(10, 3, 6)
    logits = actor(same)
    assert (logits[:, 0] - logits[:, 1]).abs().max() > 0


def test_shared_policy_without_agent_id_acts_alike_on_alike_observations() -> None:
    torch.manual_seed(0)
    actor = Actor(
        obs_dim=6, group_of_agent=[0, 0, 0], hidden_dim=8, action=DISCRETE, agent_id=False
    )
    obs = torch.randn(10, 1, 6).expand(10, 3, 6)
    logits = actor(obs)
    torch.testing.assert_close(logits[:, 1], logits[:, 0])
    torch.testing.assert_close(logits[:, 2], logits[:, 0])
    assert not actor.agent_id_weight.requires_grad  # not a trained parameter


def _head_inputs(module: torch.nn.Module, run) -> torch.Tensor:
    """What `module.head` received while `run()` ran."""
    seen = []
    handle = module.head.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    run()
    handle.remove()
    return torch.cat([x.reshape(-1, x.shape[-1]) for x in seen])


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("groups", [[0, 0, 0], [0, 1, 2]])
def test_hidden_layer_norm_feeds_the_heads_normalized_features(recurrent, groups) -> None:
    # As the official MAPPO code: LayerNorm after each hidden layer, and after the GRU.
    torch.manual_seed(0)
    actor = Actor(6, groups, 8, DISCRETE, recurrent=recurrent, hidden_layer_norm=True)
    critic = CentralizedCritic(18, 8, 3, recurrent=recurrent, hidden_layer_norm=True)
    obs, state = 3.0 * torch.randn(10, 3, 6) + 1.0, 3.0 * torch.randn(10, 18)
    if recurrent:
        hidden = torch.randn(10, 3, 8)
        actor_in = _head_inputs(actor, lambda: actor.forward_recurrent(obs, hidden))
        critic_in = _head_inputs(critic, lambda: critic.forward_recurrent(state, hidden[:, 0]))
    else:
        actor_in = _head_inputs(actor, lambda: actor(obs))
        critic_in = _head_inputs(critic, lambda: critic(state))
    for features in (actor_in, critic_in):
        torch.testing.assert_close(features.mean(-1), torch.zeros(len(features)), atol=1e-5, rtol=0)
        torch.testing.assert_close(
            features.var(-1, unbiased=False), torch.ones(len(features)), atol=1e-3, rtol=0
        )
    plain = Actor(6, groups, 8, DISCRETE, recurrent=recurrent)
    assert len(list(actor.parameters())) - len(list(plain.parameters())) == 2 * (2 + recurrent)


def test_orthogonal_init_and_small_policy_head() -> None:
    torch.manual_seed(0)
    actor = Actor(obs_dim=16, group_of_agent=[0, 1], hidden_dim=64, action=DISCRETE, head_gain=0.01)
    w = actor.fc2.weight[1]  # [64, 64], orthogonal with gain sqrt(2)
    torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(64), atol=1e-4, rtol=0)
    head = actor.head.weight[0]  # [64, 5]: orthonormal columns scaled by 0.01
    torch.testing.assert_close(head.T @ head, 1e-4 * torch.eye(5), atol=1e-7, rtol=0)


def test_actor_and_critic_grus_start_alike_orthogonal_with_zero_biases() -> None:
    # The official MAPPO code initializes both GRUs so; torch's GRUCell default (uniform
    # weights, non-zero biases) would give the critic another start than the actor.
    torch.manual_seed(0)
    actor = Actor(obs_dim=16, group_of_agent=[0, 0], hidden_dim=32, action=DISCRETE, recurrent=True)
    critic = CentralizedCritic(global_state_dim=40, hidden_dim=32, recurrent=True)
    assert critic.gru is not None and actor.gru is not None
    # Each GRU maps [32] to three gates [96] (actor: x @ W, critic: x @ W.T): orthonormal rows.
    for weight in (actor.gru.input.weight[0], actor.gru.recurrent.weight[0]):
        torch.testing.assert_close(weight @ weight.T, torch.eye(32), atol=1e-5, rtol=0)
    for weight in (critic.gru.weight_ih, critic.gru.weight_hh):
        torch.testing.assert_close(weight.T @ weight, torch.eye(32), atol=1e-5, rtol=0)
    for bias in (
        actor.gru.input.bias,
        actor.gru.recurrent.bias,
        critic.gru.bias_ih,
        critic.gru.bias_hh,
    ):
        assert torch.count_nonzero(bias) == 0
