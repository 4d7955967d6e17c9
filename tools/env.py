"""The environment the tools run in: dataset, split, trained models, indexes, candidate buffer.

Heavy handles (models, faiss indexes, the text encoder) are loaded once and shared; each
conversation gets its own :class:`CandidateBuffer` through :meth:`ToolEnv.session`. Tools
see only the histories allowed by ``history_upto`` (training data by default), so nothing
held out for evaluation reaches an agent through a tool.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from recagent.config import JobConfig
from recagent.paths import index_dir
from recagent.tools.data import Dataset, LeaveOneOutSplit, leave_one_out, load_dataset
from recagent.tools.recommenders import Query, Recommender, load_trained
from recagent.tools.toolkit import ToolInputError

TEXT_INDEX = "text-minilm"


class ToolEnvConfig(JobConfig):
    """What the tools run over: which dataset, which trained models, what history they may see."""

    dataset: str = Field("ml-100k", description="dataset name (fetched) or folder")
    models: list[str] = Field(["pop", "itemknn", "bpr", "sasrec"], description="trained recommenders to load")
    default_model: str = Field("sasrec", description="model used when a tool call names none")
    similarity_model: Literal["itemknn", "bpr", "sasrec", "text"] = Field(
        "itemknn", description="what similar_items uses by default: co-consumption (itemknn, bpr, sasrec) or text"
    )
    history_upto: Literal["train", "valid"] = Field(
        "train", description="newest user data tools may see: 'train' (evaluate on valid/test) or 'valid' (test only)"
    )
    max_k: int = Field(100, ge=1, description="largest k a tool returns")
    max_candidate_sets: int = Field(32, ge=1, description="named candidate sets kept per session (oldest evicted)")
    max_candidate_size: int = Field(500, ge=1, description="items kept per candidate set")

    @model_validator(mode="after")
    def _default_is_loaded(self) -> ToolEnvConfig:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} must be one of models {self.models}")
        return self


@dataclass
class CandidateBuffer:
    """Named candidate sets for one conversation (InteRecAgent's candidate bus)."""

    max_sets: int = 32
    max_size: int = 500
    sets: OrderedDict[str, list[int]] = field(default_factory=OrderedDict)

    def put(self, name: str, items: list[int]) -> None:
        """Store (or replace) a set; the oldest set is evicted past ``max_sets``."""
        self.sets.pop(name, None)
        self.sets[name] = list(items)[: self.max_size]
        while len(self.sets) > self.max_sets:
            self.sets.popitem(last=False)

    def get(self, name: str) -> list[int]:
        """Items of set ``name``; a clear tool error lists the sets that exist."""
        if name not in self.sets:
            have = ", ".join(self.sets) or "none yet (pass save_as to a retrieval tool to create one)"
            raise ToolInputError(f"no candidate set named {name!r}; existing sets: {have}", field="candidates")
        return self.sets[name]


class ToolEnv:
    """Shared handles plus one session's candidate buffer."""

    def __init__(
        self,
        dataset: Dataset,
        split: LeaveOneOutSplit,
        models: dict[str, Recommender],
        config: ToolEnvConfig | None = None,
        buffer: CandidateBuffer | None = None,
        _shared: dict | None = None,
        history_limit: int | None = None,
    ):
        if history_limit is not None and history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        self.dataset, self.split, self.models = dataset, split, models
        self.history_limit = history_limit
        self.config = config or ToolEnvConfig(dataset=dataset.name)
        self.buffer = buffer or CandidateBuffer(self.config.max_candidate_sets, self.config.max_candidate_size)
        self._shared = _shared if _shared is not None else {}  # lazily built indexes, shared by sessions

    @classmethod
    def load(cls, config: ToolEnvConfig | None = None) -> ToolEnv:
        """Load the dataset, its split and the trained models named in ``config``."""
        config = config or ToolEnvConfig()
        dataset = load_dataset(config.dataset)
        split = leave_one_out(dataset)
        models = {name: load_trained(dataset.name, name) for name in config.models}
        return cls(dataset, split, models, config)

    def session(self) -> ToolEnv:
        """A view sharing models and indexes, with a fresh candidate buffer."""
        return ToolEnv(self.dataset, self.split, self.models, self.config, None, self._shared, self.history_limit)

    def with_history_limit(self, n: int | None) -> ToolEnv:
        """A view whose tools see only each user's last ``n`` visible items (history-length studies)."""
        return ToolEnv(self.dataset, self.split, self.models, self.config, None, self._shared, n)

    # -- lookups -------------------------------------------------------------------------------------------------

    @property
    def catalog(self):
        """The item catalog."""
        return self.dataset.items

    def item(self, item_id: str, field: str = "item_ids") -> int:
        """Internal index of an external item id, or a tool error."""
        idx = self.catalog.index_of.get(str(item_id))
        if idx is None:
            raise ToolInputError(
                f"unknown item id {item_id!r}; ids come from tool results (use search_items or get_item to find one)",
                field=field,
            )
        return idx

    def user(self, user_id: str, field: str = "user_id") -> int:
        """Internal index of an external user id, or a tool error."""
        idx = self.dataset.users.index_of.get(str(user_id))
        if idx is None:
            ids = self.dataset.users.ids
            raise ToolInputError(
                f"unknown user id {user_id!r}; this dataset has {len(ids)} users (ids such as {ids[0]!r}..{ids[-1]!r})",
                field=field,
            )
        return idx

    def history(self, user: int) -> np.ndarray:
        """Chronological history of a user that tools may see (the last ``history_limit`` items in a limited view)."""
        full = self.split.history(user, self.config.history_upto)
        return full[-self.history_limit :] if self.history_limit else full

    def seen(self, user: int) -> np.ndarray:
        """Every item of the user's visible history (for excluding seen items, whatever the history limit)."""
        return self.split.history(user, self.config.history_upto)

    def query(self, user: int | None, history: np.ndarray) -> Query:
        """The model query for a user; a limited view drops the user so user-factor models fold in the short history."""
        return Query(history=history, user=None if self.history_limit else user)

    def model(self, name: str | None) -> Recommender:
        """A loaded model by name (the default when None), or a tool error."""
        name = name or self.config.default_model
        if name not in self.models:
            raise ToolInputError(f"model {name!r} is not available; available: {', '.join(self.models)}", field="model")
        return self.models[name]

    def check_k(self, k: int) -> int:
        """k within 1..max_k, or a tool error."""
        if not 1 <= k <= self.config.max_k:
            raise ToolInputError(f"k must be between 1 and {self.config.max_k}, got {k}", field="k")
        return k

    @cached_property
    def popularity(self) -> np.ndarray:
        """Training interaction count of every item."""
        return np.bincount(self.split.train.items, minlength=self.dataset.n_items)

    def genres(self, names: list[str], field: str = "genres") -> list[str]:
        """Catalog spellings of genre names (case-insensitive), or a tool error listing valid genres."""
        vocab = {g.lower(): g for g in self.catalog.all_genres}
        out = []
        for n in names:
            g = vocab.get(n.strip().lower())
            if g is None:
                raise ToolInputError(
                    f"unknown genre {n!r}; valid genres: {', '.join(self.catalog.all_genres)}", field=field
                )
            out.append(g)
        return out

    def score(self, model: str | None, user: int | None, history: np.ndarray) -> np.ndarray:
        """Full-catalog scores of a model for a user or a history."""
        return self.model(model).score([self.query(user, history)])[0]

    # -- indexes ---------------------------------------------------------------------------------------------------

    def text_index(self):
        """faiss index over MiniLM vectors of item descriptions (built once, persisted)."""
        if "text" not in self._shared:
            from recagent.tools.index.text_encoder import TextEncoder

            encoder = TextEncoder()
            self._shared["encoder"] = encoder
            self._shared["text"] = build_text_index(self.dataset, encoder)
        return self._shared["text"]

    def encode_query(self, text: str) -> np.ndarray:
        """MiniLM vector of a search query (cached: agents repeat queries)."""
        self.text_index()
        cache = self._shared.setdefault("query_cache", OrderedDict())
        if text not in cache:
            cache[text] = self._shared["encoder"].encode([text])[0]
            if len(cache) > 1024:
                cache.popitem(last=False)
        return cache[text]

    def item_vector_index(self, model: str):
        """faiss index over a model's item vectors (cosine), built on first use."""
        key = f"items:{model}"
        if key not in self._shared:
            from recagent.tools.index.vector_index import IndexConfig, VectorIndex

            vectors = self.model(model).item_vectors()
            if vectors is None:
                raise ToolInputError(f"model {model!r} has no item vectors; use sasrec or bpr", field="model")
            ids = np.arange(len(vectors), dtype=np.int64)
            self._shared[key] = VectorIndex.build(vectors.astype(np.float32), ids, IndexConfig(metric="cosine"))
        return self._shared[key]


def build_text_index(dataset: Dataset, encoder, rebuild: bool = False):
    """Load the persisted text index of ``dataset``, or encode the catalog and persist it."""
    from recagent.tools.index.vector_index import IndexConfig, VectorIndex

    directory = index_dir(dataset.name, TEXT_INDEX)
    texts = [dataset.items.description(i) for i in range(dataset.n_items)]
    # the index is valid only for exactly these texts: a changed catalog triggers a rebuild
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    stamp = directory / "texts.sha256"
    if not rebuild and stamp.is_file() and stamp.read_text().strip() == digest:
        return VectorIndex.load(directory)
    vectors = encoder.encode(texts, show_progress=True)
    index = VectorIndex.build(vectors, np.arange(dataset.n_items, dtype=np.int64), IndexConfig(metric="cosine"))
    index.save(directory)
    stamp.write_text(digest)
    return index
