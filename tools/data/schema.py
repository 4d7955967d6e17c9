"""The typed dataset model: interactions, an item catalog with attributes, optional user features.

External ids (strings, as in the source files) are mapped once to dense internal indices
(``0..n-1``); every array in this module uses internal indices, every tool result uses
external ids. Validation happens in the readers, which know file names and line numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """User-item events as parallel arrays of internal indices (one row per event)."""

    users: np.ndarray  # int64 internal user index
    items: np.ndarray  # int64 internal item index
    timestamps: np.ndarray  # float64 seconds (or any monotone clock)
    ratings: np.ndarray  # float32; 1.0 for implicit data
    rows: np.ndarray  # int64 row number in the source file: the identity used by leakage checks

    def __post_init__(self) -> None:
        n = len(self.users)
        for name in ("items", "timestamps", "ratings", "rows"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} rows, users has {n}")

    def __len__(self) -> int:
        return len(self.users)

    def take(self, mask_or_index: np.ndarray) -> Interactions:
        """Subset of rows selected by a boolean mask or an index array."""
        return Interactions(
            users=self.users[mask_or_index],
            items=self.items[mask_or_index],
            timestamps=self.timestamps[mask_or_index],
            ratings=self.ratings[mask_or_index],
            rows=self.rows[mask_or_index],
        )

    @staticmethod
    def concat(parts: list[Interactions]) -> Interactions:
        """Rows of several interaction sets, in the given order."""
        return Interactions(
            users=np.concatenate([p.users for p in parts]),
            items=np.concatenate([p.items for p in parts]),
            timestamps=np.concatenate([p.timestamps for p in parts]),
            ratings=np.concatenate([p.ratings for p in parts]),
            rows=np.concatenate([p.rows for p in parts]),
        )

    def chronological_order(self) -> np.ndarray:
        """Row order by (user, timestamp, source row): stable, so ties keep file order."""
        return np.lexsort((self.rows, self.timestamps, self.users))


@dataclass(frozen=True)
class ItemCatalog:
    """Items with their attributes; position ``i`` describes internal item ``i``."""

    ids: list[str]
    titles: list[str]
    years: np.ndarray  # int32, 0 where unknown
    genres: list[tuple[str, ...]]
    extra: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.titles) == len(self.years) == len(self.genres) == n):
            raise ValueError("ItemCatalog columns have different lengths")
        for name, col in self.extra.items():
            if len(col) != n:
                raise ValueError(f"ItemCatalog.extra[{name!r}] has {len(col)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def index_of(self) -> dict[str, int]:
        """External item id -> internal index."""
        return {iid: i for i, iid in enumerate(self.ids)}

    @cached_property
    def all_genres(self) -> tuple[str, ...]:
        """Sorted genre vocabulary of the catalog."""
        return tuple(sorted({g for gs in self.genres for g in gs}))

    @cached_property
    def genre_matrix(self) -> np.ndarray:
        """Boolean (n_items, n_genres) matrix in the order of :attr:`all_genres`."""
        col = {g: j for j, g in enumerate(self.all_genres)}
        m = np.zeros((len(self), len(col)), dtype=bool)
        for i, gs in enumerate(self.genres):
            for g in gs:
                m[i, col[g]] = True
        return m

    def display(self, i: int) -> str:
        """Human-readable label, e.g. ``Heat (1995)``."""
        year = int(self.years[i])
        return f"{self.titles[i]} ({year})" if year else self.titles[i]

    def description(self, i: int) -> str:
        """Text used for semantic search, e.g. ``Heat (1995): Action, Crime, Thriller``."""
        genres = self.genres[i]
        return f"{self.display(i)}: {', '.join(genres)}" if genres else self.display(i)


@dataclass(frozen=True)
class UserTable:
    """Users with optional categorical features; position ``u`` describes internal user ``u``."""

    ids: list[str]
    features: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def index_of(self) -> dict[str, int]:
        """External user id -> internal index."""
        return {uid: u for u, uid in enumerate(self.ids)}


@dataclass(frozen=True)
class Dataset:
    """A recommendation dataset: interactions over a user table and an item catalog."""

    name: str
    interactions: Interactions
    items: ItemCatalog
    users: UserTable

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of catalog items."""
        return len(self.items)

    def summary(self) -> dict[str, object]:
        """Counts and ranges for ``recagent data info``."""
        inter = self.interactions
        n = len(inter)
        density = n / max(1, self.n_users * self.n_items)
        per_user = np.bincount(inter.users, minlength=self.n_users)
        years = self.items.years[self.items.years > 0]
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "density": round(float(density), 5),
            "interactions_per_user": {
                "min": int(per_user.min()) if n else 0,
                "median": float(np.median(per_user)) if n else 0.0,
                "max": int(per_user.max()) if n else 0,
            },
            "genres": list(self.items.all_genres),
            "years": [int(years.min()), int(years.max())] if len(years) else None,
            "user_features": sorted(self.users.features),
        }
