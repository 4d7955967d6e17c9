"""The ``recagent`` command line."""

from recagent.cli.app import main

__all__ = ["main"]
