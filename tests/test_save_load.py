"""Checkpoints: exact resume, atomic writes, and refusal of bad files with a clear reason."""

import csv
import errno
import hashlib
import os
import pickle
import re
import signal
import struct
import zipfile

import pytest
import pz_envs
import torch

import mappo.run_folder
import mappo.trainer
from mappo import MappoTrainer
from mappo.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, saved_config
from mappo.cli import main
from mappo.envs.registry import make_env
from mappo.errors import ConfigError, WriteError, refused_write
from mappo.policy import load_policy
from mappo.presets import build_config
from mappo.run import Run
from mappo.run_folder import RunFolder

RUN = ["--total-steps", "2000", "--num-envs", "16", "--seed", "7", "--quiet"]
MODULE = pz_envs.__name__
SHORT = [
    "--total-steps",
    "600",
    "--num-envs",
    "4",
    "--minibatch-size",
    "50",
    "--seed",
    "3",
    "--quiet",
]
# Episodes of 7 steps, 25-step rollouts: a run stopped after 2 updates is 1 step into an episode.
PZ_RUN = ["--env-kwargs", '{"episode_length": 7}', *SHORT]


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _train_stopped_after_two_updates(run_dir, argv, monkeypatch) -> None:
    """`mappo train` into `run_dir`, stopped by Ctrl-C after its second update."""
    log = RunFolder.log
    calls = []

    def log_then_interrupt(self, metrics):
        log(self, metrics)
        calls.append(metrics.env_steps)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the third update's wait

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "log", log_then_interrupt)
        assert main(["train", "--run-dir", str(run_dir), *argv]) == 130  # saved, then stopped


def _assert_same_training(straight, resumed, env_steps) -> None:
    """Both runs end with bitwise the same parameters, optimizer state and metrics."""
    a = load_checkpoint(straight / "checkpoint.pt")
    b = load_checkpoint(resumed / "checkpoint.pt")
    assert a["env_steps"] == b["env_steps"] == env_steps
    for part in ("actor", "critic", "value_norm"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name}"
    for index, state in a["optimizer"]["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, b["optimizer"]["state"][index][key])
    rows_a, rows_b = _rows(straight), _rows(resumed)
    assert [r["env_steps"] for r in rows_b] == [r["env_steps"] for r in rows_a]
    assert [r["policy_loss"] for r in rows_b] == [r["policy_loss"] for r in rows_a]
    assert [r["episode_return"] for r in rows_b] == [r["episode_return"] for r in rows_a]


def test_interrupted_and_resumed_equals_straight_through(tmp_path, monkeypatch) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--run-dir", str(straight), *RUN]) == 0
    _train_stopped_after_two_updates(resumed, RUN, monkeypatch)
    assert load_checkpoint(resumed / "checkpoint.pt")["env_steps"] == 800
    assert not (resumed / "env_state.pkl").exists()  # spread's state is in the checkpoint
    assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    _assert_same_training(straight, resumed, 2000)


@pytest.mark.parametrize(
    ("env", "kwargs", "num_workers"),
    [
        (f"{MODULE}:CounterEnv", '{"episode_length": 7}', 0),
        (f"{MODULE}:CounterEnv", '{"episode_length": 7}', 2),
        # mpe2's envs are gymnasium EzPickles, which pickle their constructor arguments only.
        ("mpe2.simple_spread_v3:parallel_env", '{"max_cycles": 7}', 2),
        # A turn-based (AEC) game of 7 turns, stopped mid-game.
        ("aec_envs:RelayEnv", '{"turns": 7}', 0),
        ("aec_envs:RelayEnv", '{"turns": 7}', 2),
    ],
)
def test_pettingzoo_run_resumed_mid_episode_equals_straight_through(
    env, kwargs, num_workers, tmp_path, monkeypatch, caplog
) -> None:
    argv = ["--env", env, "--env-kwargs", kwargs, "--num-workers", str(num_workers), *SHORT]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--run-dir", str(straight), *argv]) == 0
    _train_stopped_after_two_updates(resumed, argv, monkeypatch)
    assert (resumed / "env_state.pkl").is_file()
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        assert main(["train", "--resume", str(resumed), "--quiet"]) == 0
    _assert_same_training(straight, resumed, 600)
    assert "episodes restart" not in caplog.text  # they continued


def test_pettingzoo_copies_continue_their_episodes(tmp_path, monkeypatch) -> None:
    run = tmp_path / "r"
    _train_stopped_after_two_updates(run, ["--env", f"{MODULE}:CounterEnv", *PZ_RUN], monkeypatch)
    payload = load_checkpoint(run / "checkpoint.pt")
    trainer, _ = MappoTrainer.from_checkpoint(
        run / "checkpoint.pt", pickled_env=RunFolder.read_pickled_env(run, payload)
    )
    # 50 steps per copy: episodes 1 (the wrapper's reset) + 1 (the trainer's) + 7 full ones.
    assert [(copy.episode, copy.t) for copy in trainer.env.local_envs] == [(9, 1)] * 4
    assert (trainer._obs[:, :, 1:3] == torch.tensor([9.0, 1.0])).all()
    trainer.env.close()


def test_unpicklable_env_resumes_with_fresh_episodes_and_says_why(
    tmp_path, monkeypatch, caplog
) -> None:
    run = tmp_path / "r"
    _train_stopped_after_two_updates(
        run, ["--env", f"{MODULE}:UnpicklableEnv", *PZ_RUN], monkeypatch
    )
    why = (
        f"env '{MODULE}:UnpicklableEnv' cannot be pickled (TypeError: cannot pickle "
        "'_thread.lock' object)"
    )
    payload = load_checkpoint(run / "checkpoint.pt")
    assert payload["env_state"] == {"unpicklable": why}
    assert not (run / "env_state.pkl").exists()
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        trainer, _ = MappoTrainer.from_checkpoint(
            run / "checkpoint.pt", pickled_env=RunFolder.read_pickled_env(run, payload)
        )
    assert [(copy.episode, copy.t) for copy in trainer.env.local_envs] == [(2, 0)] * 4
    trainer.env.close()
    restarts = [r.getMessage() for r in caplog.records if "episodes restart" in r.getMessage()]
    assert restarts == [f"episodes restart from a reset instead of continuing: {why}"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert f"episodes restart from a reset instead of continuing: {why}" in caplog.text
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 600


def test_env_state_file_is_unpickled_only_by_resume_and_only_when_it_is_the_checkpoints(
    tmp_path, monkeypatch, caplog
) -> None:
    run = tmp_path / "r"
    _train_stopped_after_two_updates(run, ["--env", f"{MODULE}:CounterEnv", *PZ_RUN], monkeypatch)
    (run / "env_state.pkl").write_bytes(pickle.dumps(_Exploit()))
    assert main(["eval", str(run), "--episodes", "2"]) == 0
    payload = load_checkpoint(run / "checkpoint.pt")
    assert RunFolder.read_pickled_env(run, payload) == (
        f"{run / 'env_state.pkl'} is not the one the checkpoint recorded (another save wrote it)"
    )
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert "is not the one the checkpoint recorded" in caplog.text
    assert not os.path.exists("/tmp/mappo-pwned")


def test_a_failed_save_leaves_the_env_state_of_the_checkpoint_before(tmp_path, monkeypatch) -> None:
    """env_state.pkl and the checkpoint stay a pair through a save that fails midway: the
    new pickle waits beside the old one until its checkpoint is written."""
    run = tmp_path / "r"
    _train_stopped_after_two_updates(run, ["--env", f"{MODULE}:CounterEnv", *PZ_RUN], monkeypatch)
    before = load_checkpoint(run / "checkpoint.pt")
    pickled = (run / "env_state.pkl").read_bytes()
    config = saved_config(before, run / "checkpoint.pt")  # as a resume takes it
    folder = RunFolder.resume(run, config, before["env_steps"])
    try:
        monkeypatch.setattr(mappo.run_folder, "save_checkpoint", _no_room)
        with pytest.raises(WriteError):
            folder.save({**before, "env_steps": 999}, b"the copies one update later")
    finally:
        folder.close()
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == before["env_steps"]
    assert RunFolder.read_pickled_env(run, before) == pickled
    # Stopped after the checkpoint was written, before its pickle took the old one's place:
    # the checkpoint's pickle is read, and a resume moves it into place (the next save would
    # otherwise overwrite it before its own checkpoint is written).
    later = {**before, "env_state": {"sha256": hashlib.sha256(b"later").hexdigest()}}
    (run / ".env_state.next.pkl").write_bytes(b"later")
    assert RunFolder.read_pickled_env(run, later) == b"later"
    assert RunFolder.read_pickled_env(run, before) == pickled
    torch.save(later, run / "checkpoint.pt")
    RunFolder.resume(run, config, before["env_steps"]).close()
    assert (run / "env_state.pkl").read_bytes() == b"later"
    assert not (run / ".env_state.next.pkl").exists()
    # One whose checkpoint was never written goes.
    (run / ".env_state.next.pkl").write_bytes(b"never checkpointed")
    RunFolder.resume(run, config, before["env_steps"]).close()
    assert (run / "env_state.pkl").read_bytes() == b"later"
    assert not (run / ".env_state.next.pkl").exists()


def test_a_write_refused_for_another_reason_is_not_blamed_on_space(tmp_path) -> None:
    """Only a full disk or quota says "make room"; a folder made read-only says "fix that"."""
    locked = OSError(errno.EACCES, "Permission denied")
    refused = refused_write(tmp_path / "checkpoint.pt", locked, "kept")
    assert str(refused) == f"cannot write {tmp_path / 'checkpoint.pt'} (Permission denied); kept"
    assert not refused.no_space
    run = Run.start(build_config(None, None, {"env": "spread", "total_steps": 100}), tmp_path)
    try:
        assert run._going_on(1200, False, None) == (
            f"the checkpoint holds env step 1,200: fix that, then mappo train --resume {tmp_path}"
        )
        assert run._going_on(0, True, "python reproduce.py --suite mpe") == (
            "no checkpoint was written: make room, then start it again: python reproduce.py "
            "--suite mpe"
        )
    finally:
        run._close()


def test_a_curve_that_cannot_be_redrawn_at_the_end_does_not_fail_the_run(
    tmp_path, monkeypatch, caplog
) -> None:
    def no_room(self) -> None:
        raise WriteError(f"cannot write {self.curve_path} (No space left on device)")

    monkeypatch.setattr(RunFolder, "draw_curve", no_room)
    fields = {"env": "spread", "num_envs": 4, "total_steps": 200, "compile": "false"}
    run = Run.start(build_config(None, None, {**fields, "minibatch_size": 0}), tmp_path / "r")
    with caplog.at_level("WARNING", logger="mappo.run_folder"):
        assert run.train(quiet=True).finished
    assert f"curve.png not redrawn: cannot write {tmp_path / 'r' / 'curve.png'}" in caplog.text
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["env_steps"] == 200


def _no_room(path, payload) -> None:
    raise WriteError(f"cannot write {path} (No space left on device)")


def test_resume_refuses_other_flags(tmp_path, capsys) -> None:
    run = tmp_path / "r"
    assert (
        main(
            ["train", "--run-dir", str(run), "--total-steps", "400", "--num-envs", "16", "--quiet"]
        )
        == 0
    )
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert (
        "a resumed run keeps the config it learns with: lr cannot change (these can: "
        "total_steps, compile, device,"
    ) in capsys.readouterr().err


def test_a_finished_run_resumed_trains_nothing_and_writes_nothing(tmp_path, capsys) -> None:
    """A finished run resumed as it was rewrote its checkpoint and said "recent episode
    return n/a"; a total_steps below the env steps reached was written into config.toml,
    a run at 800 then saying its budget was 100. Both now leave the files as they were.
    The run's own budget, 500, is below its 800 steps (whole rollouts of 400): no error."""
    run = tmp_path / "r"
    flags = ["--total-steps", "500", "--num-envs", "16", "--compile", "false", "--quiet"]
    assert main(["train", "--run-dir", str(run), *flags]) == 0

    def files() -> dict[str, bytes]:  # not .lock, which each process holding it rewrites
        return {f.name: f.read_bytes() for f in run.iterdir() if f.name != ".lock"}

    before = files()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--total-steps", "100"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: total_steps 100: run {run} has reached env step 800, and a run does "
        "not go back; give more, or leave it out\n"
    )
    for budget in ("500", "800"):  # its own, or one given that it has reached
        given = [] if budget == "500" else ["--total-steps", budget]
        assert main(["train", "--resume", str(run), *given]) == 0
        assert capsys.readouterr().out.endswith(
            f"nothing to train: {run} is at env step 800, its total_steps being {budget}; "
            "give a larger --total-steps to go on\n"
        )
        now = files()
        assert f"total_steps = {budget}\n" in now.pop("config.toml").decode()  # as asked
        assert now == {k: v for k, v in before.items() if k != "config.toml"}


def test_a_temporary_file_a_killed_save_left_is_removed_when_the_run_goes_on(tmp_path) -> None:
    """`kill -9` mid-save leaves `.checkpoint.pt.<pid>.tmp` beside the checkpoint: the next
    process to hold the folder removes it; other dot files stay."""
    run = tmp_path / "r"
    flags = ["--num-envs", "16", "--compile", "false", "--quiet"]
    assert main(["train", "--run-dir", str(run), "--total-steps", "400", *flags]) == 0
    left = [run / ".checkpoint.pt.4242.tmp", run / ".metrics.csv.77.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    (run / ".notes.tmp").write_text("the user's")
    assert main(["train", "--resume", str(run), "--total-steps", "800", "--quiet"]) == 0
    assert not any(path.exists() for path in left)
    assert (run / ".notes.tmp").read_text() == "the user's"


def test_a_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path,
        {
            "config": {},
            "actor": {"w": torch.ones(3)},
            "critic": {},
            "value_norm": {},
            "optimizer": {},
            "ranks": [],
        },
    )

    def dies_halfway(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # as torch's zip writer does, on top of it
            raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos") from None

    monkeypatch.setattr(torch, "save", dies_halfway)
    says = f"cannot write {path} (No space left on device); the file there before, if any, is"
    with pytest.raises(WriteError, match=re.escape(says)):
        save_checkpoint(
            path,
            {
                "config": {},
                "actor": {"w": torch.zeros(3)},
                "critic": {},
                "value_norm": {},
                "optimizer": {},
                "ranks": [],
            },
        )
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["actor"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left


def test_a_full_disk_stops_the_run_in_one_line_that_says_how_to_go_on(
    tmp_path, monkeypatch, capsys
) -> None:
    """A checkpoint the disk has no room for, after the first was saved: the run stops with
    one line naming the file, the reason, the step its checkpoint holds and the command that
    continues; once there is room again, that command goes on from there."""
    run_dir = tmp_path / "run"
    fields = {"env": "spread", "num_envs": 4, "rollout_steps": 25, "minibatch_size": 0}
    fields |= {"total_steps": 800, "compile": "false", "checkpoint_interval": 1e-6}
    full = []
    fsync = os.fsync

    def no_room_once_full(fd: int) -> None:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", no_room_once_full)
    run = Run.start(build_config(None, None, fields), run_dir)
    with pytest.raises(WriteError) as raised:
        run.train(quiet=True, callback=lambda metrics: full.append(True) and False)
    says = (
        f"cannot write {run_dir / 'checkpoint.pt'} (No space left on device); the file there "
        f"before, if any, is as it was; the checkpoint holds env step 100: make room, then "
        f"mappo train --resume {run_dir}"
    )
    assert str(raised.value) == says
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_steps"] == 100
    assert not list(run_dir.glob(".*.tmp"))
    # Resuming on the full disk: one line, exit code 2, the files as they were.
    config_toml = (run_dir / "config.toml").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: cannot write {run_dir / 'config.toml'} (No space left on device); the "
        "file there before, if any, is as it was\n"
    )
    assert (run_dir / "config.toml").read_text() == config_toml
    full.clear()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_steps"] == 800
    with open(run_dir / "metrics.csv") as handle:
        assert [int(row["env_steps"]) for row in csv.DictReader(handle)] == list(
            range(100, 900, 100)
        )


def test_a_checkpoint_changed_after_it_was_saved_is_refused(tiny_run, tmp_path, capsys) -> None:
    """One bit flipped in the actor's weights still reads as a checkpoint, with other
    weights (torch.load does not check the CRC-32 that torch.save writes); it is refused,
    in one line naming the file and the part."""
    data = bytearray((tiny_run / "checkpoint.pt").read_bytes())
    with zipfile.ZipFile(tiny_run / "checkpoint.pt") as archive:
        payload = load_checkpoint(tiny_run / "checkpoint.pt")
        weights = next(iter(payload["actor"].values()))
        # The part holding the actor's first tensor: the one whose bytes are its bytes.
        part = next(
            info
            for info in archive.infolist()
            if "/data/" in info.filename
            and archive.read(info.filename) == weights.numpy().tobytes()
        )
    name_length, extra_length = struct.unpack(
        "<HH", data[part.header_offset + 26 : part.header_offset + 30]
    )
    data[part.header_offset + 30 + name_length + extra_length + 4] ^= 0x01
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.toml", "metrics.csv"):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    (run / "checkpoint.pt").write_bytes(bytes(data))
    flipped = torch.load(run / "checkpoint.pt", weights_only=True)["actor"]
    assert not torch.equal(next(iter(flipped.values())), weights)  # torch reads it as weights
    assert main(["eval", str(run), "--episodes", "2"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"mappo: error: checkpoint {run / 'checkpoint.pt'} is corrupt: its part "
        f"{part.filename} does not match the checksum written with it (the file changed "
        "after it was saved)"
    )


def test_truncated_checkpoint_is_refused_naming_the_file(tiny_run, tmp_path) -> None:
    data = (tiny_run / "checkpoint.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"checkpoint {bad} is corrupt or truncated"):
        load_checkpoint(bad)
    # Torch's own words would advise weights_only=False, which runs what the file holds.
    garbage, text = tmp_path / "garbage.pt", tmp_path / "notes.pt"
    garbage.write_bytes(b"\x80\x02" + os.urandom(4094))
    text.write_text("hello\n")
    for path in (garbage, text):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        says = str(info.value)
        assert says.startswith(f"checkpoint {path} is corrupt or truncated, or not a file torch")
        assert "weights_only" not in says and len(says.splitlines()) == 1
    folder = tmp_path / "run" / "checkpoint.pt"
    folder.mkdir(parents=True)
    with pytest.raises(CheckpointError, match=f"checkpoint {folder} is a folder, not a file"):
        load_checkpoint(folder)


def test_other_format_version_is_refused(tiny_run, tmp_path) -> None:
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    payload["format_version"] = 99
    path = tmp_path / "v99.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99, this mappo reads version 1"):
        load_checkpoint(path)


def test_checkpoint_of_another_env_shape_is_refused(tiny_run, tmp_path) -> None:
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    payload["config"]["env_kwargs"] = {"num_agents": 4}
    for key in ("num_agents", "obs_dim", "global_state_dim"):
        payload["config"][key] = {"num_agents": 2, "obs_dim": 16, "global_state_dim": 32}[key]
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} does not fit env 'spread'"):
        MappoTrainer.from_checkpoint(path)


def test_weights_that_do_not_fit_are_named_by_their_first_mismatch(tiny_run, tmp_path) -> None:
    # load_state_dict's first line only heads its list; the line says what does not fit.
    payload = load_checkpoint(tiny_run / "checkpoint.pt")
    payload["config"]["hidden_dim"] = 32  # the weights stay 64 wide
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    assert main(["eval", str(path), "--episodes", "1"]) == 2
    with pytest.raises(CheckpointError) as refused:
        load_policy(path, lambda config: make_env(config.env, 1, config.device, 0))
    assert str(refused.value).startswith(
        f"checkpoint {path} does not fit env 'spread': Error(s) in loading state_dict for "
        "Actor: size mismatch for "
    )
    assert "from checkpoint, the shape in current model is torch.Size([" in str(refused.value)


def test_an_env_that_cannot_be_built_on_resume_is_not_blamed_on_the_checkpoint(
    tiny_run, monkeypatch
) -> None:
    # A missing extra says so, as it does for a new run: the checkpoint is fine.
    missing = ConfigError("env 'jumanji:X': pip install 'mappo[jumanji]' (jumanji is missing)")

    def no_env(*args, **kwargs):
        raise missing

    monkeypatch.setattr(mappo.trainer, "make_env", no_env)
    with pytest.raises(ConfigError) as info:
        MappoTrainer.from_checkpoint(tiny_run / "checkpoint.pt")
    assert info.value is missing


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mappo-pwned",))


def test_pickled_code_is_never_run(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": _Exploit()}, path)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    assert not os.path.exists("/tmp/mappo-pwned")


def test_eval_of_a_corrupt_checkpoint_exits_2(tiny_run, tmp_path, capsys) -> None:
    run = tmp_path / "broken"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(run), "--episodes", "2"]) == 2
    assert f"checkpoint {run / 'checkpoint.pt'}" in capsys.readouterr().err


def test_resume_rewrites_an_older_metrics_header_and_restores_what_the_user_set(
    tmp_path, caplog
) -> None:
    from mappo.cli import main

    run = tmp_path / "run"
    flags = [
        "--env",
        "pz_envs:CounterEnv",
        "--num-envs",
        "2",
        "--rollout-steps",
        "10",
        "--minibatch-size",
        "0",
        "--quiet",
    ]
    assert main(["train", "--run-dir", str(run), "--total-steps", "40", *flags]) == 0
    # metrics.csv as an older mappo wrote it: no return_definition column.
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    drop = header.index("return_definition")
    (run / "metrics.csv").write_text(
        "\n".join(
            ",".join(cell for i, cell in enumerate(line.split(",")) if i != drop) for line in lines
        )
        + "\n"
    )
    with caplog.at_level("WARNING"):
        assert main(["train", "--resume", str(run), "--total-steps", "80", "--quiet"]) == 0
    # use_global_state was never set by the user: no warning that it cannot take effect.
    assert not [r for r in caplog.records if "use_global_state" in r.getMessage()]
    import csv

    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["env_steps"]) for row in rows] == [20, 40, 60, 80]
    assert [row["return_definition"] for row in rows] == ["", "", "per_agent", "per_agent"]


def test_a_snapshot_written_before_the_pettingzoo_folder_moved_still_loads() -> None:
    # mappo/envs/thirdparty became mappo/envs/pettingzoo; a `--resume` snapshot of a turn-based
    # game names its adapter class by the old module.
    import io

    import aec_envs

    from mappo.envs.pettingzoo.aec import AECEnvAsParallel
    from mappo.envs.pettingzoo.batch import _StateUnpickler

    old = pickle.dumps(AECEnvAsParallel(aec_envs.RelayEnv())).replace(
        b"mappo.envs.pettingzoo", b"mappo.envs.thirdparty"
    )  # the same length: still a pickle
    with pytest.raises(ModuleNotFoundError, match="mappo.envs.thirdparty"):
        pickle.loads(old)
    restored = _StateUnpickler(io.BytesIO(old)).load()
    assert type(restored) is AECEnvAsParallel and restored.possible_agents == [
        "player_0",
        "player_1",
    ]
