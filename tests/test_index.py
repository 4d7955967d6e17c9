"""The faiss-backed vector index and the bundled sentence encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recagent.tools.index import IndexConfig, IndexLoadError, TextEncoder, VectorIndex


def _clustered(n: int, d: int, seed: int, n_clusters: int = 50, spread: float = 1.0) -> np.ndarray:
    """Gaussian blobs around fixed centres (queries drawn with another seed share the centres)."""
    centres = np.random.default_rng(1234).standard_normal((n_clusters, d))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, n_clusters, n)] + spread * rng.standard_normal((n, d))).astype(np.float32)


def _brute_force(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), ids[top]


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact, strict=True)]))


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k x 32 clustered items with scattered ids, and 200 queries from the same mixture."""
    x = _clustered(20_000, 32, seed=0)
    ids = np.random.default_rng(5).permutation(100_000)[:20_000].astype(np.int64)
    return x, ids, _clustered(200, 32, seed=1)


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_exact_index_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3
    q = rng.standard_normal((25, 16)).astype(np.float32)
    index = VectorIndex.build(x, ids, IndexConfig(metric=metric))
    assert index.kind == "flat" and len(index) == 2000 and index.dim == 16

    scores, got = index.search(q, 10)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    want_scores, want = _brute_force(x, ids, q, 10)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(index.reconstruct(ids[5]), x[5], rtol=1e-6)


def test_single_query_vector_gives_one_row():
    x = np.eye(5, dtype=np.float32)
    scores, ids = VectorIndex.build(x, np.arange(5)).search(x[2] * 3, 2)
    assert scores.shape == ids.shape == (1, 2)
    assert ids[0, 0] == 2 and scores[0, 0] == pytest.approx(3.0)


def test_auto_switches_to_ivf_at_threshold():
    x = _clustered(600, 8, seed=0)
    assert VectorIndex.build(x, np.arange(600), IndexConfig(approx_threshold=601)).kind == "flat"
    assert VectorIndex.build(x, np.arange(600), IndexConfig(approx_threshold=600)).kind == "ivf"


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_at_10(big, kind):
    x, ids, q = big
    _, exact = VectorIndex.build(x, ids, IndexConfig(kind="flat")).search(q, 10)
    index = VectorIndex.build(x, ids, IndexConfig(kind=kind))
    assert index.kind == kind
    _, approx = index.search(q, 10)
    assert set(approx.ravel().tolist()) <= set(ids.tolist())
    assert _recall(approx, exact) >= 0.9


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_exclusions_are_honoured_per_query(kind):
    x = _clustered(3000, 16, seed=2)
    ids = np.arange(3000, dtype=np.int64) + 1000
    q = _clustered(4, 16, seed=3)
    index = VectorIndex.build(x, ids, IndexConfig(kind=kind, nlist=30, nprobe=2))
    _, plain = index.search(q, 10)
    # Excluding each row's own top 50 forces the over-fetch loop to go round more than once.
    _, top50 = index.search(q, 50)
    excl = [set(row.tolist()) for row in top50]
    scores, got = index.search(q, 10, exclude=excl)
    for row, banned in zip(got, excl, strict=True):
        assert len(set(row.tolist())) == 10 and -1 not in row
        assert not banned & set(row.tolist())
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    # A single set applies to every query.
    shared = set(plain[:, 0].tolist())
    _, got = index.search(q, 10, exclude=shared)
    assert not shared & set(got.ravel().tolist())


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_small_catalog_pads_with_minus_one(kind):
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    index = VectorIndex.build(x, np.arange(10, 16), IndexConfig(kind=kind, nlist=3, nprobe=1, ef_search=1))
    scores, ids = index.search(x[:2], 5, exclude=[{10, 11}, set()])
    assert sorted(ids[0, :4].tolist()) == [12, 13, 14, 15]
    assert ids[0, 4] == -1 and scores[0, 4] == -np.inf
    assert len(set(ids[1].tolist())) == 5 and -1 not in ids[1]
    scores, ids = index.search(x[0], 9)
    assert sorted(ids[0, :6].tolist()) == list(range(10, 16))
    assert ids[0, 6:].tolist() == [-1, -1, -1] and np.all(np.isneginf(scores[0, 6:]))


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, kind):
    x = _clustered(2000, 12, seed=4)
    ids = np.arange(2000, dtype=np.int64) * 2
    q = _clustered(30, 12, seed=5)
    index = VectorIndex.build(x, ids, IndexConfig(kind=kind, metric="cosine", nprobe=4))
    index.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    assert meta["kind"] == kind and meta["n"] == 2000 and meta["dim"] == 12 and len(meta["sha256"]) == 64

    loaded = VectorIndex.load(tmp_path / "idx")
    assert (loaded.kind, len(loaded), loaded.dim, loaded.config) == (kind, 2000, 12, index.config)
    for exclude in (None, {int(ids[0]), int(ids[1])}):
        s1, i1 = index.search(q, 10, exclude=exclude)
        s2, i2 = loaded.search(q, 10, exclude=exclude)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(loaded.reconstruct(ids[7]), index.reconstruct(ids[7]))


def test_load_reports_missing_and_corrupt_files(tmp_path):
    directory = tmp_path / "idx"
    with pytest.raises(IndexLoadError, match="index.json: missing"):
        VectorIndex.load(directory)
    VectorIndex.build(np.eye(3, dtype=np.float32), np.arange(3)).save(directory)

    data = (directory / "index.faiss").read_bytes()
    (directory / "index.faiss").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(IndexLoadError, match=r"index\.faiss: checksum mismatch"):
        VectorIndex.load(directory)

    (directory / "index.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="index.json: corrupt"):
        VectorIndex.load(directory)

    (directory / "index.faiss").unlink()
    with pytest.raises(IndexLoadError, match="index.faiss: missing"):
        VectorIndex.load(directory)


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.ones((3, 4), dtype=np.float64), np.arange(3), "dtype float32"),
        (np.ones(4, dtype=np.float32), np.arange(1), "2-D"),
        (np.ones((0, 4), dtype=np.float32), np.arange(0), "empty"),
        (np.ones((3, 4), dtype=np.float32), np.arange(4), "ids length 4 does not match"),
        (np.ones((3, 4), dtype=np.float32), np.array([1, 2, 1]), r"unique; duplicated: \[1\]"),
        (np.ones((3, 4), dtype=np.float32), np.array([0.0, 1.0, 2.0]), "integer"),
        (np.ones((3, 4), dtype=np.float32), np.array([0, -1, 2]), "non-negative"),
        (np.array([[1, 0], [np.nan, 0]], dtype=np.float32), np.arange(2), "NaN or inf.*row: 1"),
        (np.array([[1, np.inf]], dtype=np.float32), np.arange(1), "NaN or inf"),
    ],
)
def test_build_rejects_bad_inputs(vectors, ids, message):
    with pytest.raises(ValueError, match=message):
        VectorIndex.build(vectors, ids)


def test_search_rejects_bad_queries():
    index = VectorIndex.build(np.eye(4, dtype=np.float32), np.arange(4))
    with pytest.raises(ValueError, match="query dimension 3 does not match the index dimension 4"):
        index.search(np.ones((2, 3), dtype=np.float32), 2)
    with pytest.raises(ValueError, match=r"shape \(d,\) or \(B, d\)"):
        index.search(np.ones((1, 2, 4), dtype=np.float32), 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        index.search(np.array([np.nan, 0, 0, 0], dtype=np.float32), 2)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.ones(4, dtype=np.float32), 0)
    with pytest.raises(ValueError, match="exclude has 1 sets but there are 2 queries"):
        index.search(np.ones((2, 4), dtype=np.float32), 2, exclude=[{1}])
    with pytest.raises(ValueError):
        IndexConfig(kind="lsh")


def test_text_encoder_groups_similar_films():
    encoder = TextEncoder()
    assert encoder.dim == 384
    vectors = encoder.encode(
        [
            "Toy Story (1995): Animation, Children's, Comedy",
            "A Bug's Life (1998): Animation, Children's, Comedy",
            "The Texas Chainsaw Massacre (1974): Horror, Thriller",
        ]
    )
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[1, 2]
    assert encoder.encode([]).shape == (0, 384)
