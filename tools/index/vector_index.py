"""Inner-product retrieval over item or text vectors, backed by faiss.

faiss does the numerical work (exact flat search, IVF and HNSW approximate search, index
serialisation): it is the standard, heavily optimised library for this, and a hand-written
nearest-neighbour search would be slower and less trustworthy. What is hand-written here is
only the glue around it: input validation, the caller's item ids, per-query exclusion sets
(over-fetch and filter), padding of short result lists, and checked persistence.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recagent.errors import RecagentError
from recagent.files import sha256_file

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT_VERSION = 1

Exclude = Iterable[set[int]] | set[int] | frozenset[int] | None


class IndexLoadError(RecagentError):
    """A saved index is missing or corrupt; the message names the file."""


class IndexConfig(BaseModel):
    """How a :class:`VectorIndex` is built and searched."""

    model_config = ConfigDict(extra="forbid")
    metric: Literal["ip", "cosine"] = Field(
        "ip", description="'ip' ranks by raw inner product; 'cosine' L2-normalises vectors and queries first"
    )
    approx_threshold: int = Field(
        50_000, ge=1, description="with kind='auto', catalogs of at least this many items get an approximate index"
    )
    kind: Literal["auto", "flat", "ivf", "hnsw"] = Field(
        "auto", description="'auto': exact flat below approx_threshold, IVF-Flat at or above it"
    )
    nlist: int | None = Field(None, ge=1, description="IVF cells; None means about 4*sqrt(N), capped at N")
    nprobe: int = Field(
        32, ge=1, description="IVF cells visited per query (more: better recall, slower; see benchmarks)"
    )
    hnsw_m: int = Field(32, ge=2, description="HNSW neighbours per node (more: better recall, more memory)")
    ef_search: int = Field(64, ge=1, description="HNSW search beam width (more: better recall, slower)")
    seed: int = Field(0, description="seed of the IVF k-means training")


def _faiss() -> Any:
    """Import faiss on first use so importing this module stays cheap."""
    import faiss

    return faiss


def _check_finite(x: np.ndarray, what: str) -> None:
    """Raise if ``x`` holds NaN or inf, pointing at the first bad row."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} contain NaN or inf (first bad row: {int(np.flatnonzero(bad)[0])})")


class VectorIndex:
    """A faiss index over vectors keyed by the caller's int64 ids."""

    def __init__(self, index: Any, config: IndexConfig, kind: str, dim: int):
        self._index = index
        self.config = config
        self._kind = kind
        self._dim = dim

    # -- building ----------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: np.ndarray, ids: np.ndarray, config: IndexConfig | None = None) -> VectorIndex:
        """Index ``vectors`` (N, d) float32 under ``ids`` (N,) int64."""
        config = config or IndexConfig()
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
            raise ValueError(f"vectors must be a 2-D numpy array (N, d), got {_describe(vectors)}")
        if vectors.dtype != np.float32:
            raise ValueError(f"vectors must have dtype float32, got {vectors.dtype} (use .astype(np.float32))")
        n, d = vectors.shape
        if n == 0 or d == 0:
            raise ValueError(f"vectors are empty (shape {vectors.shape}): cannot build an index with no items")
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D integer array, got {_describe(ids)}")
        if len(ids) != n:
            raise ValueError(f"ids length {len(ids)} does not match the number of vectors {n}")
        ids = ids.astype(np.int64)
        if (ids < 0).any():
            raise ValueError(f"ids must be non-negative (-1 marks padding), got {int(ids.min())}")
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids must be unique; duplicated: {uniq[counts > 1][:5].tolist()}")
        _check_finite(vectors, "vectors")

        faiss = _faiss()
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if config.metric == "cosine":
            x = x.copy()
            faiss.normalize_L2(x)  # zero vectors stay zero and score 0 against everything
        kind = config.kind
        if kind == "auto":
            kind = "flat" if n < config.approx_threshold else "ivf"
        inner = _make_inner(faiss, kind, x, config)
        index = faiss.IndexIDMap2(inner)
        index.add_with_ids(x, ids)
        return cls(index, config, kind, d)

    # -- properties ---------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of indexed items."""
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def kind(self) -> str:
        """Resolved index kind: 'flat', 'ivf' or 'hnsw'."""
        return self._kind

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self._kind!r}, n={len(self)}, dim={self._dim}, metric={self.config.metric!r})"

    # -- queries ----------------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids), each (B, k); excluded ids never appear; short rows pad with (-inf, -1)."""
        q = self._prepare_queries(queries)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        b = q.shape[0]
        excl = _normalise_exclude(exclude, b)
        out_s = np.full((b, k), -np.inf, dtype=np.float32)
        out_i = np.full((b, k), -1, dtype=np.int64)
        n = len(self)
        # k + |exclude| results always suffice for an exact index, so one round usually does.
        fetch = min(n, k + max((len(e) for e in excl), default=0))
        boost = 1
        pending = np.arange(b)
        while True:
            scores, labels = self._raw_search(q[pending], fetch, boost)
            still = []
            for row, s_row, l_row in zip(pending, scores, labels, strict=True):
                keep = l_row >= 0
                if excl[row]:
                    keep &= ~np.isin(l_row, np.fromiter(excl[row], dtype=np.int64, count=len(excl[row])))
                got = min(k, int(keep.sum()))
                out_s[row, :got] = s_row[keep][:got]
                out_i[row, :got] = l_row[keep][:got]
                if got < k:
                    still.append(row)
            if not still:
                break
            # An approximate index can run dry before `fetch` (IVF cells visited, HNSW beam):
            # widen its search too, until it is as wide as the index allows.
            ran_dry = bool((labels < 0).any())
            can_widen = self._kind != "flat" and ran_dry and boost < self._max_boost()
            if fetch >= n and not can_widen:
                break  # exhausted: the rest of the row stays padded
            fetch = min(n, fetch * 2)
            if can_widen:
                boost *= 4
            pending = np.asarray(still)
        return out_s, out_i

    def reconstruct(self, item_id: int) -> np.ndarray:
        """Stored vector of ``item_id`` (L2-normalised if metric is cosine)."""
        try:
            return self._index.reconstruct(int(item_id))
        except RuntimeError as exc:
            raise KeyError(f"id {item_id} is not in the index") from exc

    def _prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """Queries as a contiguous (B, d) float32 array, validated (and normalised for cosine)."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise ValueError(f"queries must have shape (d,) or (B, d), got shape {q.shape}")
        if q.shape[1] != self._dim:
            raise ValueError(f"query dimension {q.shape[1]} does not match the index dimension {self._dim}")
        if not np.issubdtype(q.dtype, np.floating):
            raise ValueError(f"queries must be floating point, got dtype {q.dtype}")
        _check_finite(q, "queries")
        q = np.array(q, dtype=np.float32, order="C", copy=True)
        if self.config.metric == "cosine":
            _faiss().normalize_L2(q)
        return q

    def _raw_search(self, q: np.ndarray, fetch: int, boost: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss search with the configured width times ``boost`` (passed per call, so it is thread-safe)."""
        faiss = _faiss()
        params = None
        if self._kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self._nlist(), self.config.nprobe * boost))
        elif self._kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(fetch, self.config.ef_search * boost))
        if params is None:
            return self._index.search(q, fetch)
        return self._index.search(q, fetch, params=params)

    def _nlist(self) -> int:
        return int(_faiss().extract_index_ivf(self._index).nlist)

    def _max_boost(self) -> int:
        """Largest useful widening factor: all IVF cells, or an HNSW beam covering the index."""
        if self._kind == "ivf":
            return math.ceil(self._nlist() / self.config.nprobe)
        return math.ceil(len(self) / self.config.ef_search)

    # -- persistence --------------------------------------------------------------------------------------------

    def save(self, directory: Path | str) -> None:
        """Write ``index.faiss`` and ``index.json`` (config, sizes, checksum) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss = _faiss()
        index_path = directory / INDEX_FILE
        tmp = directory / (INDEX_FILE + ".tmp")
        faiss.write_index(self._index, str(tmp))
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self._kind,
            "n": len(self),
            "dim": self._dim,
            "config": self.config.model_dump(),
            "sha256": sha256_file(tmp),
            "faiss_version": faiss.__version__,
        }
        # The json is written last, so a crash mid-save leaves no checksum that matches.
        os.replace(tmp, index_path)
        meta_tmp = directory / (META_FILE + ".tmp")
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(meta_tmp, directory / META_FILE)

    @classmethod
    def load(cls, directory: Path | str) -> VectorIndex:
        """Read an index written by :meth:`save`, verifying its metadata and checksum."""
        directory = Path(directory)
        meta_path, index_path = directory / META_FILE, directory / INDEX_FILE
        for path in (meta_path, index_path):
            if not path.is_file():
                raise IndexLoadError(f"{path}: missing; rebuild the index (it is written by VectorIndex.save)")
        try:
            meta = json.loads(meta_path.read_text())
            config = IndexConfig.model_validate(meta["config"])
            kind, n, dim, checksum = str(meta["kind"]), int(meta["n"]), int(meta["dim"]), str(meta["sha256"])
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise IndexLoadError(f"{meta_path}: corrupt index metadata ({exc.__class__.__name__}: {exc})") from exc
        if sha256_file(index_path) != checksum:
            raise IndexLoadError(f"{index_path}: checksum mismatch with {META_FILE}; the file is corrupt, rebuild it")
        try:
            index = _faiss().read_index(str(index_path))
        except RuntimeError as exc:
            raise IndexLoadError(f"{index_path}: faiss cannot read it ({exc})") from exc
        if int(index.ntotal) != n or int(index.d) != dim:
            raise IndexLoadError(
                f"{index_path}: holds {index.ntotal} vectors of dim {index.d}, {META_FILE} says {n} of dim {dim}"
            )
        return cls(index, config, kind, dim)


def _make_inner(faiss: Any, kind: str, x: np.ndarray, config: IndexConfig) -> Any:
    """The empty (trained, for IVF) faiss index of ``kind`` over ``x``."""
    n, d = x.shape
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = config.ef_search
        return index
    nlist = min(n, config.nlist or max(1, round(4 * math.sqrt(n))))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = config.seed
    # 64 points per centroid are plenty for k-means here and keep a 1M-item build to seconds;
    # small catalogs legitimately have few points per cell, so faiss's warning about it is noise.
    index.cp.max_points_per_centroid = 64
    index.cp.min_points_per_centroid = 1
    index.train(x)
    index.nprobe = config.nprobe
    index.make_direct_map()  # lets reconstruct() work on IVF too
    return index


def _normalise_exclude(exclude: Exclude, b: int) -> list[set[int]]:
    """One exclusion set per query row."""
    if exclude is None:
        return [set() for _ in range(b)]
    if isinstance(exclude, set | frozenset):
        shared = {int(i) for i in exclude}
        return [shared] * b
    rows = [{int(i) for i in e} for e in exclude]
    if len(rows) != b:
        raise ValueError(f"exclude has {len(rows)} sets but there are {b} queries (pass one set per query)")
    return rows


def _describe(x: object) -> str:
    """Short description of a bad argument for error messages."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return type(x).__name__
