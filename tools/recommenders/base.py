"""The recommender interface: fit on a split, score queries over the whole catalog, save and load.

A :class:`Query` is a user (if known) plus the chronological history to condition on, so
sequence models, user-factor models and item-based models share one scoring call. Every
model has a pydantic config; the config is saved next to the checkpoint.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recagent.errors import ModelNotFoundError, RecagentError
from recagent.tools.data.split import LeaveOneOutSplit


@dataclass(frozen=True)
class Query:
    """What to score for: an optional known user and their chronological item history."""

    history: np.ndarray
    user: int | None = None


class RecommenderConfig(BaseModel):
    """Base config of every recommender."""

    model_config = ConfigDict(extra="forbid")
    seed: int = Field(2020, description="random seed for initialisation and sampling")


@dataclass
class FitReport:
    """What training did: epochs, best validation metrics, wall time, per-epoch log."""

    epochs: int = 0
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log: list[dict[str, float]] = field(default_factory=list)


class Recommender(ABC):
    """A conventional recommender trained on interaction data."""

    name: ClassVar[str]
    config_cls: ClassVar[type[RecommenderConfig]]

    def __init__(self, config: RecommenderConfig | None = None):
        self.config = config or self.config_cls()
        self.n_users = 0
        self.n_items = 0

    @abstractmethod
    def fit(self, split: LeaveOneOutSplit, show_progress: bool = True, checkpoint_dir: Path | None = None) -> FitReport:
        """Train on ``split.train`` (``split.valid`` may drive early stopping; ``split.test`` never)."""

    @abstractmethod
    def score(self, queries: Sequence[Query]) -> np.ndarray:
        """Scores of every catalog item for each query: float32 array (len(queries), n_items)."""

    def item_vectors(self) -> np.ndarray | None:
        """Item embeddings usable for similarity search, or None if the model has none."""
        return None

    def topk(self, query: Query, k: int, exclude: Sequence[int] | np.ndarray = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k internal item indices and their scores for one query, excluding given items."""
        scores = self.score([query])[0].astype(np.float64)
        if len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.argpartition(-scores, k - 1)[:k]
        # stable order: by score, then by item index (matches the evaluation's tie-breaking)
        idx = idx[np.lexsort((idx, -scores[idx]))]
        return idx, scores[idx]

    # -- persistence -------------------------------------------------------------------------------------------

    @abstractmethod
    def state(self) -> dict:
        """Everything needed to restore the trained model (tensors and arrays)."""

    @abstractmethod
    def load_state(self, state: dict) -> None:
        """Restore from :meth:`state`."""

    def save(self, directory: Path, report: FitReport | None = None, meta: dict | None = None) -> None:
        """Write ``model.pt``, ``config.json`` and ``meta.json`` into ``directory``."""
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "model.pt.tmp"
        torch.save({"n_users": self.n_users, "n_items": self.n_items, "state": self.state()}, tmp)
        tmp.replace(directory / "model.pt")
        (directory / "config.json").write_text(json.dumps({"model": self.name, **self.config.model_dump()}, indent=2))
        info = {"model": self.name, **(meta or {})}
        if report is not None:
            info["fit"] = {k: v for k, v in report.__dict__.items()}
        (directory / "meta.json").write_text(json.dumps(info, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        """Load a model saved with :meth:`save`."""
        import torch

        path = directory / "model.pt"
        cfg_path = directory / "config.json"
        if not path.is_file() or not cfg_path.is_file():
            raise ModelNotFoundError(f"no trained {cls.name} model in {directory}")
        cfg = json.loads(cfg_path.read_text())
        if cfg.pop("model", cls.name) != cls.name:
            raise RecagentError(f"{directory} holds a different model than {cls.name}")
        model = cls(cls.config_cls.model_validate(cfg))
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # torch raises several types for truncated/corrupt files
            raise RecagentError(f"{path} is unreadable ({type(e).__name__}: {e}); retrain the model") from None
        model.n_users, model.n_items = blob["n_users"], blob["n_items"]
        model.load_state(blob["state"])
        return model


class TorchRecommender(Recommender):
    """A recommender whose trained state is one torch module, ``self.net``."""

    @abstractmethod
    def _build(self) -> None:
        """Create ``self.net`` (untrained) for the current ``n_users`` / ``n_items``."""

    def state(self) -> dict:
        """The module's state dict."""
        return self.net.state_dict()

    def load_state(self, state: dict) -> None:
        """Rebuild the module and load its weights."""
        self._build()
        self.net.load_state_dict(state)
        self.net.eval()
