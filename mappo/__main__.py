"""`python -m mappo` is the `mappo` command."""

import sys

from mappo.console import main

sys.exit(main())
