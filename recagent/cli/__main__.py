"""``python -m recagent.cli``: the same command as ``recagent`` (what ``accelerate launch -m`` needs)."""

import sys

from recagent.cli.app import main

sys.exit(main())
