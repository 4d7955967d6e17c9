"""How the retrieval index scales with catalog size: build time, latency, throughput, recall, memory.

For each catalog size N it builds the index the way ``kind="auto"`` does (exact flat below
``approx_threshold``, IVF-Flat at or above it) and an exact flat index as ground truth, then
measures one-query-at-a-time latency, batch throughput, recall@10 of the approximate index
against the exact one, the serialised index size and the process peak RSS.

Run: ``nice -n 10 python benchmarks/index_scaling.py`` (about 2-4 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from recagent.tools.index import IndexConfig, VectorIndex

DIM = 64  # the dimension of the recommenders' item embeddings
K = 10
N_CLUSTERS = 256
# Noise 1.5x the centres' scale: clusters overlap, so IVF recall is not trivially 1.0 (at 1.0 it
# is ~0.99 at 100k; at 2.0 it drops to ~0.5; real embeddings sit somewhere in that range).
SPREAD = 1.5
DEFAULT_SIZES = (1_000, 10_000, 100_000, 1_000_000)
OUT = Path(__file__).resolve().parent / "results" / "index_scaling.json"


def clustered(n: int, seed: int) -> np.ndarray:
    """Gaussian-mixture vectors; every call shares the same centres, so queries match the items."""
    centres = np.random.default_rng(12345).standard_normal((N_CLUSTERS, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, N_CLUSTERS, n)]
    x += SPREAD * rng.standard_normal((n, DIM), dtype=np.float32)
    return x


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def index_bytes(index: VectorIndex) -> int:
    """Size of the serialised faiss index, which tracks its in-memory footprint."""
    import faiss

    return int(faiss.serialize_index(index._index).nbytes)


def measure(
    index: VectorIndex, single: np.ndarray, batch: np.ndarray, exact_ids: np.ndarray | None, threads: int
) -> tuple[dict[str, float], np.ndarray]:
    """Latency, throughput and recall of ``index`` through the public search API."""
    import faiss

    # One query gains little from threads, and on a shared 2-core box each OpenMP region
    # stalls until both threads get a core: time single queries on one thread, batches on all.
    faiss.omp_set_num_threads(1)
    for q in single[:10]:  # warm caches
        index.search(q, K)
    lat = []
    approx = []
    for q in single:
        t = time.perf_counter()
        _, ids = index.search(q, K)
        lat.append(time.perf_counter() - t)
        approx.append(ids[0])
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    index.search(batch, K)
    batch_s = time.perf_counter() - t
    out = {
        "latency_p50_ms": float(np.percentile(lat, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(lat, 95) * 1e3),
        "batch_queries": len(batch),
        "batch_qps": float(len(batch) / batch_s),
    }
    if exact_ids is not None:
        hits = [len(set(a.tolist()) & set(e.tolist())) / K for a, e in zip(approx, exact_ids, strict=True)]
        out["recall_at_10"] = float(np.mean(hits))
    return out, np.stack(approx)


def run_size(n: int, n_queries: int, n_batch: int, sweep: tuple[int, ...], threads: int) -> list[dict[str, Any]]:
    """All rows for catalog size ``n``: the exact flat index, then the auto index if it is approximate."""
    items = clustered(n, seed=1)
    ids = np.arange(n, dtype=np.int64)
    single, batch = clustered(n_queries, seed=2), clustered(n_batch, seed=3)
    rows = []

    t = time.perf_counter()
    exact = VectorIndex.build(items, ids, IndexConfig(metric="cosine", kind="flat"))
    build_s = time.perf_counter() - t
    stats, exact_ids = measure(exact, single, batch, None, threads)
    stats["recall_at_10"] = 1.0
    rows.append({"n": n, "index": "flat (exact)", "build_s": build_s, "index_bytes": index_bytes(exact), **stats})
    exact_bytes = rows[-1]["index_bytes"]
    del exact

    config = IndexConfig(metric="cosine")  # kind="auto"
    t = time.perf_counter()
    auto = VectorIndex.build(items, ids, config)
    build_s = time.perf_counter() - t
    if auto.kind == "flat":
        rows[-1]["index"] = "flat (auto, exact)"
    else:
        stats, _ = measure(auto, single, batch, exact_ids, threads)
        nbytes = index_bytes(auto)
        rows.append(
            {
                "n": n,
                "index": f"{auto.kind} (auto)",
                "build_s": build_s,
                "index_bytes": nbytes,
                "nprobe": config.nprobe,
                **stats,
            }
        )
        # Recall is bought with nprobe: show the trade-off without rebuilding.
        for nprobe in sweep:
            auto.config = config.model_copy(update={"nprobe": nprobe})
            stats, _ = measure(auto, single, batch, exact_ids, threads)
            rows.append(
                {
                    "n": n,
                    "index": f"{auto.kind} nprobe={nprobe}",
                    "build_s": None,
                    "index_bytes": nbytes,
                    "nprobe": nprobe,
                    **stats,
                }
            )
    del auto, items
    for row in rows:
        row["peak_rss_mb"] = peak_rss_mb()
    print(f"  n={n:,}: done (flat index {exact_bytes / 2**20:.1f} MiB)", flush=True)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Results as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"VectorIndex scaling (d={DIM}, k={K}, cosine)")
    for col in ("N", "index", "build s", "p50 ms", "p95 ms", "batch q/s", "recall@10", "index MiB", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "index" else "right")
    for r in rows:
        table.add_row(
            f"{r['n']:,}",
            r["index"],
            "-" if r["build_s"] is None else f"{r['build_s']:.2f}",
            f"{r['latency_p50_ms']:.3f}",
            f"{r['latency_p95_ms']:.3f}",
            f"{r['batch_qps']:,.0f}",
            f"{r['recall_at_10']:.3f}",
            f"{r['index_bytes'] / 2**20:.1f}",
            f"{r['peak_rss_mb']:.0f}",
        )
    Console(width=140).print(table)


def main() -> None:
    """Run the benchmark and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--queries", type=int, default=200, help="single queries timed one at a time")
    parser.add_argument("--batch", type=int, default=1000, help="queries in the throughput batch")
    parser.add_argument("--sweep", type=int, nargs="*", default=[16, 64, 128], help="extra IVF nprobe values")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import faiss
    from machine import machine_info  # benchmarks/machine.py (this script's folder is on sys.path)

    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows: list[dict[str, Any]] = []
    for n in args.sizes:
        rows.extend(run_size(n, args.queries, args.batch, tuple(args.sweep), args.threads))
    print_table(rows)
    result = {
        "description": "VectorIndex scaling on synthetic clustered Gaussian data",
        "data": {
            "dim": DIM,
            "dim_note": "d=64 is the dimension of the recommenders' item embeddings",
            "distribution": f"{N_CLUSTERS}-component Gaussian mixture, centres N(0, I), noise sd {SPREAD}",
            "metric": "cosine (as the item-vector and text indexes use)",
            "queries": "fresh draws from the same mixture",
        },
        "protocol": {
            "k": K,
            "single_queries": args.queries,
            "batch_queries": args.batch,
            "auto_rule": "IndexConfig() defaults: flat below approx_threshold=50000, IVF-Flat at or above it "
            "(nlist ~ 4*sqrt(N), nprobe from IndexConfig)",
            "latency": "wall time of VectorIndex.search for one query (includes the Python glue), faiss on 1 thread",
            "batch_qps": "one VectorIndex.search call over the batch, faiss on --threads threads",
            "builds": "faiss on --threads threads",
            "recall_at_10": "overlap of the top-10 ids with the exact flat index's top-10",
            "index_bytes": "len(faiss.serialize_index(index))",
            "peak_rss_mb": "process peak RSS so far (resource.getrusage), cumulative over sizes",
        },
        "machine": machine_info(numpy=np.__version__, faiss=faiss.__version__, load_avg_before=load_before),
        "faiss_threads": args.threads,
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
