"""The `mappo` command's entry point: a Ctrl-C while torch and the library load (a second
or more) ends it with one line, as a Ctrl-C later does, not with the import's traceback."""

from __future__ import annotations

import sys


def main() -> int:
    """Load `mappo.cli` and run the command `sys.argv` names; its exit code."""
    try:
        from mappo.cli import main as command
    except KeyboardInterrupt:
        print("mappo: interrupted", file=sys.stderr)
        return 130
    return command()
