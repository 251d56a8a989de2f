"""A run whose update meets NaN or inf gradients (a learning rate far too high, rewards of
a scale the network cannot follow) stops with one line, saving nothing of that update."""

import csv
import math

import pytest
import torch

from mappo import MappoConfig
from mappo.checkpoint import load_checkpoint
from mappo.cli import main
from mappo.errors import DivergenceError
from mappo.seeds import MultiSeedTrainer
from mappo.trainer import MappoTrainer

TINY = ["--num-envs", "4", "--compile", "false", "--quiet", "--checkpoint-interval", "1e-9"]


def nan_from_update(monkeypatch, first_bad: int) -> None:
    """The loss turns NaN from update `first_bad` on (updates counted from 1)."""
    loss = MappoTrainer.minibatch_loss

    def poisoned(self, mb, coefs=None):
        value, stats = loss(self, mb, coefs)
        return (value * math.nan if self.updates + 1 >= first_bad else value), stats

    monkeypatch.setattr(MappoTrainer, "minibatch_loss", poisoned)


def test_a_diverged_update_stops_the_run_and_keeps_the_checkpoint_before(
    tmp_path, monkeypatch, capsys
) -> None:
    """Update 3's gradients are NaN: the run stops with one line naming the update, what to
    change and the env step the checkpoint still holds; neither that checkpoint's weights
    nor metrics.csv hold anything of update 3 (it used to train on to its budget, every
    loss NaN, and overwrite the checkpoint with NaN weights, exit code 0)."""
    nan_from_update(monkeypatch, 3)
    run = tmp_path / "r"
    argv = ["train", "--run-dir", str(run), "--total-steps", "1000", "--lr", "0.01", *TINY]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "mappo: error: training of seed 0 diverged at update 3 (env step 300): its gradient "
        "norm is nan, so the weights are not numbers now; lower lr (0.01) or max_grad_norm "
        "(10) and start it again with --force, as a resume keeps them; the checkpoint holds "
        "env step 200\n"
    )
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["env_steps"] == 200
    weights = [w for part in ("actor", "critic") for w in payload[part].values()]
    assert weights and all(torch.isfinite(w).all() for w in weights)
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["env_steps"]) for row in rows] == [100, 200]
    assert all(math.isfinite(float(row["policy_loss"])) for row in rows)


def test_every_seed_of_a_seeds_run_is_checked(monkeypatch) -> None:
    """Seeds trained as one network: a seed's NaN gradients stop the run all the same."""
    config = MappoConfig(num_envs=4, total_steps=400, compile="false")
    multi = MultiSeedTrainer.of_configs([config.replace(seed=s) for s in (1, 2)])
    step = multi._train_step

    def nan_grads(*args):
        stats = step(*args)
        return {**stats, "grad_norm": stats["grad_norm"] * torch.tensor([1.0, math.nan])}

    monkeypatch.setattr(multi, "_train_step", nan_grads)
    with pytest.raises(DivergenceError, match=r"^training of seed 2 diverged at update 1 "):
        multi.iteration()
    multi.close()


def test_a_checkpoint_with_nan_weights_is_refused(tiny_run, tmp_path, capsys) -> None:
    """Such a file (a run that diverged before the check above) was evaluated as if it held
    a policy (a finite return: the greedy action of NaN logits is the first) and resumed."""
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    name = next(iter(payload["actor"]))
    payload["actor"][name] = payload["actor"][name] * math.nan
    path = tmp_path / "diverged.pt"
    torch.save(payload, path)
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: checkpoint {path} holds actor weights that are not numbers (NaN or "
        "inf): its run diverged; use a checkpoint from before, or train again\n"
    )
