"""Two gloo ranks on CPU: one update equals a single process averaging both ranks' minibatches,
with the value and reward statistics of both ranks' data pooled; a rank's one-line error is
the whole output of `mappo train --nproc`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mappo import AgentBuffer, MappoConfig, MappoTrainer, distributed
from mappo.distributed import Distributed
from mappo.reward_norm import RewardNorm

CONFIG = dict(
    num_envs=4, rollout_steps=5, minibatch_size=15, update_epochs=2, total_steps=40, seed=11,
    reward_norm=True,
)  # fmt: skip
BUFFER_FIELDS = (
    "observations",
    "states",
    "action_masks",
    "actions",
    "log_probs",
    "values",
    "critic_values",
    "rewards",
    "dones",
    "truncated",
    "truncation_values",
    "alive",
    "advantages",
    "returns",
)


def _rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    trainer = MappoTrainer(MappoConfig(**CONFIG), distributed=Distributed(rank, world_size))
    initial = [p.detach().clone() for p in trainer.parameters]
    trainer.collect_rollout()
    raw_rewards = trainer.buffer.rewards.clone()  # the update scales them in place
    rng_before_update = torch.get_rng_state()  # minibatch order comes from this stream
    trainer.update()
    torch.save(
        {
            "initial": initial,
            "final": [p.detach().clone() for p in trainer.parameters],
            "rng": rng_before_update,
            "buffer": {name: getattr(trainer.buffer, name) for name in BUFFER_FIELDS},
            "env_steps": trainer.env_steps,
            "raw_rewards": raw_rewards,
            "reward_norm": trainer.reward_norm.state_dict(),
        },
        f"{out_dir}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def _buffer_from(saved: dict) -> AgentBuffer:
    obs = saved["observations"]
    buf = AgentBuffer(
        obs.shape[0],
        obs.shape[1],
        obs.shape[2],
        obs.shape[3],
        saved["states"].shape[-1],
        saved["actions"].shape[-1],
        saved["action_masks"].shape[-1],
    )
    for name, value in saved.items():
        getattr(buf, name).copy_(value)
    return buf


def test_two_ranks_equal_one_process_on_both_ranks_data(tmp_path) -> None:
    mp.start_processes(
        _rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]

    # Every rank ends with the same parameters, and they moved.
    for a, b in zip(ranks[0]["final"], ranks[1]["final"], strict=True):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b) for a, b in zip(ranks[0]["initial"], ranks[0]["final"], strict=True)
    )
    assert ranks[0]["env_steps"] == 2 * 4 * 5  # steps of both ranks count
    # The ranks collected different data (own envs, own seed streams).
    assert not torch.equal(ranks[0]["buffer"]["observations"], ranks[1]["buffer"]["observations"])

    # The reward statistics are those of both ranks' rewards together, on each rank, and
    # each rank's rewards were scaled with them.
    pooled = RewardNorm(3)
    pooled.update(torch.cat([r["raw_rewards"] for r in ranks]))
    for rank in ranks:
        for name in ("count", "mean", "var"):
            torch.testing.assert_close(rank["reward_norm"][name], getattr(pooled, name))
        torch.testing.assert_close(rank["buffer"]["rewards"], pooled.scale(rank["raw_rewards"]))
    assert pooled.count.item() > 2 * 5 * 4  # both ranks' steps, not one's

    # One process: same start, pooled value statistics, then per minibatch the mean of
    # both ranks' losses, in each rank's own minibatch order.
    trainer = MappoTrainer(MappoConfig(**CONFIG))
    for p, start in zip(trainer.parameters, ranks[0]["initial"], strict=True):
        assert torch.equal(p.detach(), start)
    buffers = [_buffer_from(r["buffer"]) for r in ranks]
    trainer.policy.value_norm.update(
        torch.cat([b.returns for b in buffers]), torch.cat([b.alive for b in buffers])
    )
    samples = 5 * 4 * 3
    num_minibatches = round(samples / CONFIG["minibatch_size"])
    orders = []
    for rank, buf in zip(ranks, buffers, strict=True):
        torch.set_rng_state(rank["rng"])
        orders.append(
            [
                list(buf.minibatches(num_minibatches, trainer.policy.value_norm.normalize))
                for _ in range(CONFIG["update_epochs"])
            ]
        )
    for epoch in range(CONFIG["update_epochs"]):
        for index in range(num_minibatches):
            losses = [trainer.minibatch_loss(order[epoch][index])[0] for order in orders]
            trainer.optimizer.zero_grad()
            (sum(losses) / 2).backward()
            torch.nn.utils.clip_grad_norm_(trainer.parameters, trainer.config.max_grad_norm)
            trainer.optimizer.step()
    for p, expected in zip(trainer.parameters, ranks[0]["final"], strict=True):
        torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=0)


TESTS = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env_kwargs", "minibatch", "code", "says"),
    [
        # Copy 1 of rank 1 (its copies are seeded from seed + 1,000,003) breaks in its 2nd
        # episode: rank 0, the one that prints, meets it as a collective whose peer is gone.
        (
            {"episode": 2, "step": 3, "seed": 1_000_004},
            "50",
            3,
            "mappo: env error: env 'pz_envs:BrokenEnv' failed in step() of env copy 1 at "
            "episode step 3: RuntimeError: step broke",
        ),
        # Both ranks refuse the same config: one line, not one per rank.
        ({}, "256", 2, "mappo: error: config key 'minibatch_size' = 256: must be <= the batch"),
    ],
    ids=["one-rank-env-error", "every-rank-config-error"],
)
def test_a_failing_rank_is_one_line_with_its_exit_code(
    tmp_path, env_kwargs, minibatch, code, says
) -> None:
    env = {**os.environ, "PYTHONPATH": TESTS}
    done = subprocess.run(
        [sys.executable, "-m", "mappo", "train", "--nproc", "2", "--run-dir",
         str(tmp_path / "run"), "--env", "pz_envs:BrokenEnv", "--env-kwargs",
         json.dumps(env_kwargs), "--num-envs", "4", "--minibatch-size", minibatch,
         "--total-steps", "100000", "--compile", "false", "--seed", "0", "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mappo")]
    assert len(errors) == 1 and errors[0].startswith(says), done.stderr
    assert "Traceback" not in done.stderr and "FAILED" not in done.stderr, done.stderr


def test_ranks_still_waiting_after_a_report_are_killed(tmp_path, monkeypatch) -> None:
    # nccl's collectives (or a rank joining the group) wait out their timeout for a peer
    # that exited 0 after its report; the launcher ends them RANKS_LEFT_S after it.
    monkeypatch.setattr(distributed, "RANKS_LEFT_S", 0.5)
    agent = subprocess.Popen(  # an agent and its one rank, both waiting forever
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen("
         "[sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"],
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (ranks := distributed.child_processes(agent.pid)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (tmp_path / "rank_1").write_text("2\nmappo: error: the run folder is in use")
    start = time.monotonic()
    assert distributed._wait_for_ranks(agent, tmp_path) == -signal.SIGKILL
    assert time.monotonic() - start < 10
    for rank in ranks:  # killed, and reaped by init once the agent is gone
        while os.path.exists(f"/proc/{rank}") and "Z" not in _state(rank):
            assert time.monotonic() - start < 10, "the rank lives on"
            time.sleep(0.05)
    assert distributed.rank_reports(tmp_path) == [(2, "mappo: error: the run folder is in use")]


def _state(pid: int) -> str:
    """A process's state letter from /proc (Z: a zombie, gone but not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"
