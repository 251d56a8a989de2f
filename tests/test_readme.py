"""The README's commands and its Python example run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mappo.checkpoint import load_checkpoint

README = Path(__file__).resolve().parent.parent / "README.md"


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of `language` ("" for unlabeled ones) in markdown `text`."""
    blocks, body, fence = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if fence is None:
                fence, body = line[3:].strip(), []
            else:
                if fence == language:
                    blocks.append("\n".join(body) + "\n")
                fence = None
        elif fence is not None:
            body.append(line)
    return blocks


def readme_blocks(language: str) -> list[str]:
    """The README's fenced code blocks of `language` ("" for unlabeled ones)."""
    return code_blocks(README.read_text(), language)


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


DOCS = sorted((README.parent / "docs").glob("*.md"))


def docs_mappo_commands() -> list[tuple[str, list[str]]]:
    """Every `mappo ...` line of the docs' shell blocks: (where, its arguments), with
    `VAR=value` prefixes and comments dropped."""
    found = []
    for page in DOCS:
        for block in code_blocks(page.read_text(), ""):
            for line in block.splitlines():
                if not re.match(r"(\w+=\S+ )*mappo ", line):
                    continue
                words = shlex.split(line.split(" #")[0])
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # PYTHONPATH=examples and the like
                if words[:1] == ["mappo"] and "..." not in words:
                    found.append((f"{page.name}: {line.strip()}", words[1:]))
    return found


@pytest.mark.parametrize(("where", "argv"), docs_mappo_commands(), ids=lambda x: str(x)[:60])
def test_docs_commands_name_real_options_and_values(where, argv) -> None:
    """The docs' commands train for hours or need extras, so they are parsed, not run: every
    option must exist and every config value must parse (a renamed flag fails here)."""
    from mappo.cli import CLI_FIELDS, build_parser
    from mappo.config import parse_cli_value, parse_sweep

    args, unknown = build_parser().parse_known_args(argv)
    assert not unknown, where
    if args.command == "train":
        for name in CLI_FIELDS:
            if getattr(args, f"cfg_{name}") is not None:
                parse_cli_value(name, getattr(args, f"cfg_{name}"))
        if args.sweep:
            parse_sweep(args.sweep)


def test_the_docs_have_commands_to_check() -> None:
    assert len(docs_mappo_commands()) > 30
