"""Small synthetic datasets with learnable structure, for tests, examples and benchmarks.

Users prefer one genre; within it they tend to consume items in a fixed order (item ``i``
is often followed by ``i + 1``). So a sequence model can learn transitions, a factor model
the genre preference, ItemKNN the co-occurrence, and popularity alone does poorly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recagent.tools.data.schema import Dataset, Interactions, ItemCatalog, UserTable

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi")


def make_synthetic(
    n_users: int = 200, n_items: int = 120, length: tuple[int, int] = (12, 30), follow: float = 0.8, seed: int = 0
) -> Dataset:
    """A dataset of ``n_users`` users with genre preferences and sequential habits."""
    rng = np.random.default_rng(seed)
    n_genres = len(GENRES)
    item_genre = np.arange(n_items) % n_genres
    by_genre = [np.flatnonzero(item_genre == g) for g in range(n_genres)]
    users, items, times = [], [], []
    for u in range(n_users):
        g = u % n_genres
        pool = by_genre[g]
        n = int(rng.integers(length[0], length[1] + 1))
        pos = int(rng.integers(len(pool)))
        seen: set[int] = set()
        t = 1_000_000 + int(rng.integers(0, 10_000))
        while len(seen) < min(n, len(pool)):
            item = int(pool[pos % len(pool)])
            if item not in seen:
                seen.add(item)
                users.append(u)
                items.append(item)
                times.append(t)
                t += int(rng.integers(1, 100))
            pos = pos + 1 if rng.random() < follow else int(rng.integers(len(pool)))
    n = len(users)
    catalog = ItemCatalog(
        ids=[str(i + 1) for i in range(n_items)],
        titles=[f"{GENRES[item_genre[i]]} Story {i + 1}" for i in range(n_items)],
        years=(1950 + (np.arange(n_items) * 7) % 50).astype(np.int32),
        genres=[
            (GENRES[item_genre[i]],) + ((GENRES[(item_genre[i] + 1) % n_genres],) if i % 5 == 0 else ())
            for i in range(n_items)
        ],
    )
    inter = Interactions(
        users=np.asarray(users, dtype=np.int64),
        items=np.asarray(items, dtype=np.int64),
        timestamps=np.asarray(times, dtype=np.float64),
        ratings=np.full(n, 4.0, dtype=np.float32),
        rows=np.arange(n, dtype=np.int64),
    )
    return Dataset(
        name="synthetic", interactions=inter, items=catalog, users=UserTable(ids=[str(u + 1) for u in range(n_users)])
    )


def write_atomic(dataset: Dataset, directory: str | Path) -> Path:
    """Write a dataset as RecBole atomic files (``<name>.inter``, ``<name>.item``)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inter, items, name = dataset.interactions, dataset.items, dataset.name
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, i, r, t in zip(inter.users, inter.items, inter.ratings, inter.timestamps):
        lines.append(f"{dataset.users.ids[u]}\t{items.ids[i]}\t{r:g}\t{t:.0f}")
    (directory / f"{name}.inter").write_text("\n".join(lines) + "\n")
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(len(items)):
        lines.append(f"{items.ids[i]}\t{items.titles[i]}\t{int(items.years[i]) or ''}\t{' '.join(items.genres[i])}")
    (directory / f"{name}.item").write_text("\n".join(lines) + "\n")
    return directory
