"""Where recagent keeps datasets, checkpoints and caches (one root, from an env var)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "RECAGENT_HOME"


def recagent_home() -> Path:
    """Root of all recagent artifacts: ``$RECAGENT_HOME`` or the user's cache dir."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("recagent")).resolve()


def dataset_dir(name: str) -> Path:
    """Folder holding the files of dataset ``name``."""
    return recagent_home() / "datasets" / name


def model_dir(dataset: str, model: str) -> Path:
    """Folder holding the checkpoint of recommender ``model`` trained on ``dataset``."""
    return recagent_home() / "models" / dataset / model


def index_dir(dataset: str, name: str) -> Path:
    """Folder holding a persisted retrieval index."""
    return recagent_home() / "indexes" / dataset / name
