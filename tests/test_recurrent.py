"""rMAPPO: training on chunks from stored hidden states equals the step-by-step computation."""

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.losses import masked_mean, ppo_policy_loss, ppo_value_loss


def _recurrent_trainer(**overrides) -> MappoTrainer:
    config = MappoConfig(
        recurrent=True,
        data_chunk_length=10,
        num_envs=4,
        rollout_steps=25,
        minibatch_size=16,
        total_steps=200,
        seed=3,
        **overrides,
    )
    return MappoTrainer(config)


OFFICIAL_ARCHITECTURE = {"hidden_layer_norm": True, "input_layer_norm": True, "agent_id": False}


@pytest.mark.parametrize(
    "architecture",
    [{}, OFFICIAL_ARCHITECTURE, {"critic_recurrent": False}],
    ids=["default", "official", "feed-forward-critic"],
)
def test_chunked_loss_equals_the_step_by_step_loss_with_stored_hidden_states(
    architecture,
) -> None:
    trainer = _recurrent_trainer(**architecture)
    trainer.collect_rollout()
    buf = trainer.buffer
    buf.compute_returns_and_advantage(torch.zeros(4, 3), 0.99, 0.95)
    trainer.policy.value_norm.update(buf.returns, buf.alive)
    # Sanity: 25 steps in chunks of 10 leave a padded last chunk; episodes restart at step 0.
    assert buf.episode_start[0].all() and not buf.episode_start[1:].any()
    assert buf.actor_hidden[5].abs().sum() > 0

    (mb,) = buf.minibatches(1, trainer.policy.value_norm.normalize, chunk_length=10)
    assert mb.obs.shape[:2] == (3 * 4, 10)  # 3 chunks x 4 envs, 10 steps each
    assert mb.weights.sum().item() == 25 * 4 * 3  # the 5 padded steps per env weigh nothing
    loss, stats = trainer.minibatch_loss(mb)

    # Step by step: every (t, e) from the hidden state stored at that very step.
    with torch.no_grad():
        obs, states = buf.observations.flatten(0, 1), buf.states.flatten(0, 1)
        params, _ = trainer.policy.actor.forward_recurrent(obs, buf.actor_hidden.flatten(0, 1))
        values, _ = trainer.policy.critic.forward_recurrent(states, buf.critic_hidden.flatten(0, 1))
        dist = trainer.policy.distribution(params, buf.action_masks.flatten(0, 1))
        log_prob = dist.log_prob(buf.actions.flatten(0, 1))
        weights = buf.alive.flatten(0, 1).float()
        adv = buf.advantages.flatten(0, 1)
        adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
        cfg = trainer.config
        expected = (
            ppo_policy_loss(adv, log_prob, buf.log_probs.flatten(0, 1), cfg.clip_coef, weights)
            + cfg.vf_coef
            * ppo_value_loss(
                values,
                buf.critic_values.flatten(0, 1),
                trainer.policy.value_norm.normalize(buf.returns.flatten(0, 1)),
                cfg.clip_coef,
                weights,
            )
            - cfg.ent_coef * masked_mean(dist.entropy(), weights)
        )
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    # Same parameters as the rollout: every ratio is 1, so no KL and nothing clipped.
    torch.testing.assert_close(log_prob, buf.log_probs.flatten(0, 1), atol=1e-5, rtol=0)
    assert stats["approx_kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert stats["clip_fraction"].item() == 0.0


@pytest.mark.parametrize("critic", ["centralized", "local"])
def test_a_feed_forward_critic_beside_a_recurrent_actor_values_the_state_alone(critic) -> None:
    """EPyMARL's MAPPO: a GRU in the actor, an MLP critic. The critic keeps no state (its
    part of the recurrent state is empty) and values each step from its input alone."""
    trainer = _recurrent_trainer(critic=critic, critic_recurrent=False)
    policy = trainer.policy
    assert policy.critic.gru is None and policy.actor.gru is not None
    assert not any("gru" in name for name in policy.critic.state_dict())
    trainer.collect_rollout()
    buf = trainer.buffer
    assert buf.critic_hidden.shape == ((25, 4, 0) if critic == "centralized" else (25, 4, 3, 0))
    assert buf.actor_hidden[5].abs().sum() > 0  # the actor's GRU carries its history
    view = buf.states if critic == "centralized" else buf.observations
    with torch.no_grad():
        fresh = policy.critic(view.flatten(0, 1)).unflatten(0, (25, 4))
    torch.testing.assert_close(buf.critic_values, fresh, rtol=0, atol=1e-6)


def test_hidden_state_is_cleared_at_episode_starts_inside_a_chunk() -> None:
    trainer = _recurrent_trainer(env_kwargs={"max_cycles": 7})
    trainer.collect_rollout()
    buf = trainer.buffer
    starts = buf.episode_start[:, 0, 0].nonzero().flatten().tolist()
    assert starts == [0, 7, 14, 21]
    assert buf.actor_hidden[starts].abs().max().item() == 0.0
    assert buf.critic_hidden[starts].abs().max().item() == 0.0
    assert buf.actor_hidden[8].abs().max().item() > 0.0


@pytest.mark.slow
def test_recurrent_training_runs_and_resumes_exactly(tmp_path) -> None:
    from mappo.checkpoint import load_checkpoint
    from mappo.cli import main

    # 10-step rollouts of 25-step episodes: the break at 320 steps falls mid-episode.
    flags = [
        "--recurrent",
        "true",
        "--num-envs",
        "8",
        "--rollout-steps",
        "10",
        "--minibatch-size",
        "64",
        "--quiet",
    ]
    assert main(["train", "--run-dir", str(tmp_path / "a"), "--total-steps", "640", *flags]) == 0
    assert main(["train", "--run-dir", str(tmp_path / "b"), "--total-steps", "320", *flags]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--total-steps", "640", "--quiet"]) == 0
    a, b = (load_checkpoint(tmp_path / name / "checkpoint.pt") for name in "ab")
    for name, tensor in a["actor"].items():
        assert torch.equal(tensor, b["actor"][name]), name


def test_gru_scan_matches_nn_gru_cell_step_by_step_with_resets_values_and_gradients() -> None:
    """The hand-written backward of `GruScan` against autograd through torch.nn.GRUCell."""
    from mappo.networks import gru_scan

    torch.manual_seed(0)
    steps, groups, rows, size = 9, 2, 5, 4
    cells = [torch.nn.GRUCell(size, size).double() for _ in range(groups)]
    x = torch.randn(steps, groups, rows, size, dtype=torch.float64)
    h0 = torch.randn(groups, rows, size, dtype=torch.float64, requires_grad=True)
    starts = torch.rand(steps, groups, rows) < 0.25
    upstream = torch.randn(steps, groups, rows, size, dtype=torch.float64)

    expected = []
    for g, cell in enumerate(cells):
        h, out = h0[g], []
        for t in range(steps):
            h = cell(x[t, g], h * ~starts[t, g].unsqueeze(-1))
            out.append(h)
        expected.append(torch.stack(out))
    expected = torch.stack(expected, 1)  # [L, G, N, H]
    (expected * upstream).sum().backward()

    w_ih, b_ih, w_hh, b_hh = (
        torch.stack([getter(c) for c in cells]).detach().requires_grad_()
        for getter in (
            lambda c: c.weight_ih,
            lambda c: c.bias_ih,
            lambda c: c.weight_hh.t(),
            lambda c: c.bias_hh,
        )
    )
    input_gates = torch.einsum("lgni,goi->lgno", x, w_ih) + b_ih.unsqueeze(1)
    h0_ours = h0.detach().requires_grad_()
    states = gru_scan(input_gates, h0_ours, starts, w_hh, b_hh)
    (states * upstream).sum().backward()

    torch.testing.assert_close(states, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(h0_ours.grad, h0.grad, rtol=0, atol=1e-12)
    for ours, theirs in [
        (w_ih.grad, [c.weight_ih.grad for c in cells]),
        (b_ih.grad, [c.bias_ih.grad for c in cells]),
        (w_hh.grad, [c.weight_hh.grad.t() for c in cells]),
        (b_hh.grad, [c.bias_hh.grad for c in cells]),
    ]:
        torch.testing.assert_close(ours, torch.stack(theirs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shared_input", [False, True], ids=["all-mapped", "input-shared"])
def test_gru_scan_under_vmap_is_each_seeds_own_scan_values_and_gradients(shared_input) -> None:
    """Several seeds as one network (`torch.func.vmap`, mappo.seeds) fold the seeds into
    GruScan's groups: each seed's states and gradients are those of its own scan, whether
    an input is mapped over the seeds or shared by them."""
    from mappo.networks import gru_scan

    torch.manual_seed(1)
    seeds, steps, groups, rows, size = 3, 7, 2, 4, 5
    shape = (steps, groups, rows)
    input_gates = torch.randn(*((1,) if shared_input else (seeds,)), *shape, 3 * size)
    h0 = torch.randn(seeds, groups, rows, size)
    starts = torch.rand(seeds, *shape) < 0.3
    weight = torch.randn(seeds, groups, size, 3 * size) / size**0.5
    bias = torch.randn(seeds, groups, 3 * size)
    upstream = torch.randn(seeds, *shape, size)

    def leaves() -> list[torch.Tensor]:
        return [t.clone().requires_grad_() for t in (input_gates, h0, weight, bias)]

    x, h, w, b = leaves()
    scan = torch.func.vmap(gru_scan, in_dims=(None if shared_input else 0, 0, 0, 0, 0))
    states = scan(x[0] if shared_input else x, h, starts, w, b)
    (states * upstream).sum().backward()

    shared_grad = torch.zeros_like(input_gates[0])
    for k in range(seeds):
        xk, hk, wk, bk = leaves()
        own = gru_scan(xk[0 if shared_input else k], hk[k], starts[k], wk[k], bk[k])
        (own * upstream[k]).sum().backward()
        torch.testing.assert_close(states[k], own, rtol=0, atol=1e-6)
        for ours, solo in ((h.grad, hk.grad), (w.grad, wk.grad), (b.grad, bk.grad)):
            torch.testing.assert_close(ours[k], solo[k], rtol=0, atol=1e-5)
        if shared_input:
            shared_grad += xk.grad[0]
        else:
            torch.testing.assert_close(x.grad[k], xk.grad[k], rtol=0, atol=1e-6)
    if shared_input:  # a shared input's gradient is the seeds' summed
        torch.testing.assert_close(x.grad[0], shared_grad, rtol=0, atol=1e-5)


def test_an_agent_that_joins_late_starts_from_a_zero_state() -> None:
    # LateJoinerEnv: agent_2 is absent for the first two steps of each 5-step episode.
    config = MappoConfig(
        env="pz_envs:LateJoinerEnv",
        recurrent=True,
        num_envs=2,
        rollout_steps=10,
        minibatch_size=0,
        total_steps=20,
        compile="false",
    )
    trainer = MappoTrainer(config)
    trainer.collect_rollout()
    buf = trainer.buffer
    assert buf.alive[:5, 0, 2].tolist() == [False, False, True, True, True]
    # It starts where the episode starts (index 0, 5) and where it first acts (2, 7).
    assert buf.episode_start[:, 0, 2].nonzero().flatten().tolist() == [0, 2, 5, 7]
    assert buf.actor_hidden[[2, 7], :, 2].abs().max().item() == 0.0
    # The others start only with the episode.
    assert buf.episode_start[:, 0, 0].nonzero().flatten().tolist() == [0, 5]
    assert buf.actor_hidden[3, :, 2].abs().max().item() > 0.0
