"""The README's commands and its Python example run as written."""

from __future__ import annotations

import re
from pathlib import Path

from mappo.checkpoint import load_checkpoint

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of `language` ("" for unlabeled ones)."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.M | re.S)


def test_readme_python_example_trains_resumes_and_saves(tmp_path, monkeypatch, capsys) -> None:
    (example,) = readme_blocks("python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    run = tmp_path / "runs" / "python-example"
    assert load_checkpoint(run / "checkpoint.pt")["env_steps"] == 60_800  # whole updates
    assert namespace["summary"].env_steps == 32_000 and namespace["summary"].finished
    assert (run / "best.pt").is_file() and (run / "curve.png").is_file()
    out = capsys.readouterr().out
    assert f"resuming {Path('runs/python-example')} at env step 32,000 (update 10)" in out
    assert namespace["policy"].actor is not None


def readme_mappo_commands() -> list[list[str]]:
    """The `mappo` command lines of the README's shell blocks, comments dropped."""
    return [
        line.split("#")[0].split()[1:]
        for block in readme_blocks("")
        for line in block.splitlines()
        if line.startswith("mappo ")
    ]


def test_readme_commands_run_as_written(tmp_path, monkeypatch, capsys) -> None:
    """Each `mappo train` line runs with its flags (on a budget of one update: appended flags
    win), and the eval, plot and export lines run as written on the run it made."""
    from mappo.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.toml").write_text("env = 'spread'\nclip_coef = 0.1\n")
    tiny = ["--total-steps", "400", "--num-envs", "16", "--quiet"]
    commands = readme_mappo_commands()
    trains = [c for c in commands if c[0] == "train"]
    assert len(trains) >= 5 and {c[0] for c in commands} >= {"eval", "plot", "export"}
    for number, command in enumerate(trains):
        folder = [] if "--run-dir" in command else ["--run-dir", f"runs/readme-{number}"]
        assert main([*command, *folder, *tiny]) == 0, command
    for command in commands:
        if command[0] != "train":
            command = [
                part.replace("runs/spread-<time>", "runs/readme-0").replace(
                    "runs/other-run", "runs/readme-1"
                )
                for part in command
            ]
            assert main(command) == 0, command
    assert (tmp_path / "spread.gif").stat().st_size > 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert (tmp_path / "actors" / "layout.json").is_file()
    assert (tmp_path / "runs" / "spread3" / "seed_2" / "checkpoint.pt").is_file()
