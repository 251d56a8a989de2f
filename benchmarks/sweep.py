"""A sweep in one process (`mappo train --sweep`) against the same runs one after another.

    python benchmarks/sweep.py [--updates 2] [--warmup 1] [--compile auto|true|false]
                               [--counts 8 4 2 1] [--one-thread-only]

Eight settings of seed 0 (4 learning rates x 2 entropy coefficients) of the
default config, measured as `benchmarks/seeds.py` measures eight seeds (one
thread: K settings in one process against the same K runs one after another;
both cores: two processes of 4 against two solo processes at once, and 8 in
one process with two threads). Writes benchmarks/results/sweep.md; last line:
one JSON object.
"""

from __future__ import annotations

import sys

from seeds import main

if __name__ == "__main__":
    main(["--sweep", *sys.argv[1:]])
