"""User-facing errors: each carries a one-line message that says what is wrong and how to fix it."""

from __future__ import annotations

from pathlib import Path


class RecagentError(Exception):
    """An error the CLI prints as one clear line (no traceback)."""


class DataFormatError(RecagentError):
    """A data file is malformed; names the file, the line and the problem."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class DatasetNotFoundError(RecagentError):
    """A dataset is not in the cache; says how to fetch it."""


class ModelNotFoundError(RecagentError):
    """A trained recommender is missing; says how to train it."""


class ConfigError(RecagentError):
    """A config file or override is invalid."""
