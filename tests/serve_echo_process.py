"""`recagent serve` as a real process, with EchoPolicy deciding instead of the configured policy (no model).

Everything else is the command a user runs: the CLI, its config and checks, prepare, the app under uvicorn.
Arguments are those of ``recagent serve``; ``RECAGENT_TEST_ECHO_THINK_S`` sets the seconds each policy
call takes (EchoPolicy's ``think_s``), so a test can catch a turn in the middle.
"""

from __future__ import annotations

import os
import sys

from recagent.agents import agent as agent_module
from recagent.agents.policies.scripted import EchoPolicy
from recagent.cli import main

if __name__ == "__main__":
    think_s = float(os.environ.get("RECAGENT_TEST_ECHO_THINK_S", "0"))
    agent_module.make_policy = lambda cfg: EchoPolicy(think_s=think_s)
    sys.exit(main(["serve", *sys.argv[1:]]))
