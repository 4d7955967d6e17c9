"""Readers for RecBole atomic files, GroupLens raw MovieLens (100K and 1M) and generic CSV/Parquet tables.

Atomic and GroupLens files are parsed line by line (not with pandas) so that a bad line is
reported with its file and line number; at 100k lines this costs well under a second, at
ML-1M's million ratings a few seconds.
Tables go through pandas and are reported by row.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from recagent.errors import DataFormatError
from recagent.tools.data.schema import Dataset, Interactions, ItemCatalog, UserTable

_YEAR_IN_TITLE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


@dataclass(slots=True)  # one per interaction: slots keep ML-1M's million of them small
class _Event:
    user: str
    item: str
    timestamp: float
    rating: float
    line: int


@dataclass
class _Item:
    id: str
    title: str
    year: int
    genres: tuple[str, ...]
    extra: dict[str, str]
    line: int


def _float(value: str, path: Path, line: int, column: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise DataFormatError(path, line, f"column {column!r} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise DataFormatError(path, line, f"column {column!r} must be finite, got {value!r}")
    return x


# Markers for a missing year seen in public datasets ("unkonwn" is in RecBole's ml-100k.item).
_MISSING = {"", "unknown", "unkonwn", "nan", "none", "null", "na", "n/a", "-", "0"}


def _year(value: str, path: Path, line: int) -> int:
    value = value.strip()
    if value.lower() in _MISSING:
        return 0
    m = re.search(r"(\d{4})", value)
    if not m:
        raise DataFormatError(path, line, f"cannot read a year from {value!r}")
    return int(m.group(1))


def _looks_like_year(value: str) -> bool:
    return re.fullmatch(r"\s*\d{4}\s*", value) is not None


def _open_text(path: Path, encoding: str):
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    return path.open("r", encoding=encoding, newline="")


def _split_lines(path: Path, encoding: str, sep: str, width: int) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for every non-blank line of a ``sep``-separated file of ``width`` fields."""
    what = "tab" if sep == "\t" else repr(sep)
    with _open_text(path, encoding) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split(sep)
            if len(parts) != width:
                raise DataFormatError(path, lineno, f"expected {width} {what}-separated fields, got {len(parts)}")
            yield lineno, parts


def _build(
    name: str,
    events: list[_Event],
    items: list[_Item] | None,
    users: list[tuple[str, dict[str, str]]] | None,
    inter_path: Path,
) -> Dataset:
    """Map external ids to internal indices and check references between the files."""
    if not events:
        raise DataFormatError(inter_path, None, "no interactions found")
    if items is not None:
        catalog = ItemCatalog(
            ids=[it.id for it in items],
            titles=[it.title for it in items],
            years=np.array([it.year for it in items], dtype=np.int32),
            genres=[it.genres for it in items],
            extra={k: [it.extra.get(k, "") for it in items] for k in (items[0].extra if items else {})},
        )
        item_index = catalog.index_of
        for ev in events:
            if ev.item not in item_index:
                raise DataFormatError(inter_path, ev.line, f"item {ev.item!r} is not in the item file")
    else:
        seen: dict[str, int] = {}
        for ev in events:
            seen.setdefault(ev.item, len(seen))
        ids = list(seen)
        catalog = ItemCatalog(
            ids=ids, titles=list(ids), years=np.zeros(len(ids), dtype=np.int32), genres=[()] * len(ids)
        )
        item_index = catalog.index_of

    user_ids: dict[str, int] = {}
    feats: dict[str, list[str]] = {}
    if users:
        feature_names = list(users[0][1])
        feats = {f: [] for f in feature_names}
        for uid, f in users:
            user_ids[uid] = len(user_ids)
            for k in feature_names:
                feats[k].append(f.get(k, ""))
    for ev in events:
        if ev.user not in user_ids:
            user_ids[ev.user] = len(user_ids)
            for k in feats:
                feats[k].append("")
    user_table = UserTable(ids=list(user_ids), features=feats)

    inter = Interactions(
        users=np.fromiter((user_ids[e.user] for e in events), dtype=np.int64, count=len(events)),
        items=np.fromiter((item_index[e.item] for e in events), dtype=np.int64, count=len(events)),
        timestamps=np.fromiter((e.timestamp for e in events), dtype=np.float64, count=len(events)),
        ratings=np.fromiter((e.rating for e in events), dtype=np.float32, count=len(events)),
        rows=np.arange(len(events), dtype=np.int64),
    )
    return Dataset(name=name, interactions=inter, items=catalog, users=user_table)


# ---------------------------------------------------------------- RecBole atomic files


class AtomicColumns(BaseModel):
    """Which atomic-file fields carry which meaning (first name present wins)."""

    user: list[str] = Field(default=["user_id"], description="user id field in .inter/.user")
    item: list[str] = Field(default=["item_id"], description="item id field in .inter/.item")
    rating: list[str] = Field(default=["rating"], description="rating field in .inter (optional)")
    timestamp: list[str] = Field(default=["timestamp"], description="time field in .inter")
    title: list[str] = Field(default=["movie_title", "title", "name"], description="title field in .item")
    year: list[str] = Field(default=["release_year", "year"], description="year field in .item (optional)")
    genres: list[str] = Field(
        default=["class", "genre", "genres", "categories"], description="space-separated genre field in .item"
    )


def _atomic_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, {field: value}) for an atomic file, checking the header and widths."""
    with _open_text(path, "utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise DataFormatError(path, 1, "file is empty (expected a header like user_id:token)") from None
        names = []
        for col in header:
            if ":" not in col:
                raise DataFormatError(path, 1, f"header field {col!r} lacks a type (expected name:token)")
            names.append(col.split(":", 1)[0])
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(names):
                raise DataFormatError(path, lineno, f"expected {len(names)} tab-separated fields, got {len(row)}")
            yield lineno, dict(zip(names, row))


def _pick(fields: Iterable[str], candidates: list[str]) -> str | None:
    fields = set(fields)
    return next((c for c in candidates if c in fields), None)


def _header_fields(path: Path) -> list[str]:
    with _open_text(path, "utf-8") as fh:
        first = fh.readline().rstrip("\r\n")
    if not first.strip():
        raise DataFormatError(path, 1, "file is empty (expected a header like user_id:token)")
    return [c.split(":", 1)[0] for c in first.split("\t") if c]


def read_atomic(directory: str | Path, name: str | None = None, columns: AtomicColumns | None = None) -> Dataset:
    """Read ``<name>.inter`` (required), ``<name>.item`` and ``<name>.user`` from a folder."""
    directory = Path(directory)
    name = name or directory.name
    cols = columns or AtomicColumns()
    inter_path = directory / f"{name}.inter"
    if not inter_path.is_file():
        raise DataFormatError(inter_path, None, "file not found (an atomic dataset needs <name>.inter)")

    fields = _header_fields(inter_path)
    f_user, f_item = _pick(fields, cols.user), _pick(fields, cols.item)
    f_rating, f_time = _pick(fields, cols.rating), _pick(fields, cols.timestamp)
    for what, f in (("user", f_user), ("item", f_item), ("timestamp", f_time)):
        if f is None:
            raise DataFormatError(
                inter_path, 1, f"no {what} field in header {fields} (looked for {getattr(cols, what)})"
            )
    events = []
    for lineno, row in _atomic_rows(inter_path):
        user, item = row[f_user].strip(), row[f_item].strip()
        if not user or not item:
            raise DataFormatError(inter_path, lineno, "empty user or item id")
        rating = _float(row[f_rating], inter_path, lineno, f_rating) if f_rating else 1.0
        events.append(_Event(user, item, _float(row[f_time], inter_path, lineno, f_time), rating, lineno))

    items = None
    item_path = directory / f"{name}.item"
    if item_path.is_file():
        ifields = _header_fields(item_path)
        fi_item = _pick(ifields, cols.item)
        if fi_item is None:
            raise DataFormatError(item_path, 1, f"no item id field in header {ifields}")
        fi_title, fi_year, fi_genres = (
            _pick(ifields, cols.title),
            _pick(ifields, cols.year),
            _pick(ifields, cols.genres),
        )
        used = {fi_item, fi_title, fi_year, fi_genres}
        items, seen = [], set()
        for lineno, row in _atomic_rows(item_path):
            iid = row[fi_item].strip()
            if not iid:
                raise DataFormatError(item_path, lineno, "empty item id")
            if iid in seen:
                raise DataFormatError(item_path, lineno, f"duplicate item id {iid!r}")
            seen.add(iid)
            title = row[fi_title].strip() if fi_title else iid
            m = _YEAR_IN_TITLE.match(title)
            if m and (not fi_year or not _looks_like_year(row[fi_year])):
                # a year inside the title wins over a missing or garbled year field
                # (RecBole's ml-100k.item has item 1412 with year "V" and "(1995)" in the title)
                title, year = m.group("title"), int(m.group("year"))
            else:
                year = _year(row[fi_year], item_path, lineno) if fi_year else 0
            genres = tuple(g for g in row[fi_genres].split() if g.lower() != "unknown") if fi_genres else ()
            extra = {k: v for k, v in row.items() if k not in used}
            items.append(_Item(iid, title or iid, year, genres, extra, lineno))

    users = None
    user_path = directory / f"{name}.user"
    if user_path.is_file():
        ufields = _header_fields(user_path)
        fu = _pick(ufields, cols.user)
        if fu is None:
            raise DataFormatError(user_path, 1, f"no user id field in header {ufields}")
        users = []
        for lineno, row in _atomic_rows(user_path):
            uid = row[fu].strip()
            if not uid:
                raise DataFormatError(user_path, lineno, "empty user id")
            users.append((uid, {k: v for k, v in row.items() if k != fu}))
    return _build(name, events, items, users, inter_path)


# ---------------------------------------------------------------- GroupLens raw MovieLens

_ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def read_movielens_raw(directory: str | Path, name: str = "ml-100k") -> Dataset:
    """Read the GroupLens ML-100K folder (``u.data``, ``u.item``, ``u.user``, ``u.genre``)."""
    directory = Path(directory)
    data_path = directory / "u.data"
    events = []
    for lineno, (user, item, rating, ts) in _split_lines(data_path, "latin-1", "\t", 4):
        events.append(
            _Event(
                user.strip(),
                item.strip(),
                _float(ts, data_path, lineno, "timestamp"),
                _float(rating, data_path, lineno, "rating"),
                lineno,
            )
        )

    genre_names = list(_ML100K_GENRES)
    genre_path = directory / "u.genre"
    if genre_path.is_file():
        with _open_text(genre_path, "latin-1") as fh:
            pairs = [ln.strip().split("|") for ln in fh if ln.strip()]
        genre_names = [g for g, _ in sorted(((p[0], int(p[1])) for p in pairs), key=lambda x: x[1])]

    item_path = directory / "u.item"
    items = []
    for lineno, parts in _split_lines(item_path, "latin-1", "|", 5 + len(genre_names)):
        iid, raw_title, release = parts[0].strip(), parts[1].strip(), parts[2].strip()
        m = _YEAR_IN_TITLE.match(raw_title)
        title, year = (m.group("title"), int(m.group("year"))) if m else (raw_title, _year(release, item_path, lineno))
        flags = parts[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DataFormatError(item_path, lineno, "genre flags must be 0 or 1")
        genres = tuple(g for g, f in zip(genre_names, flags) if f == "1" and g != "unknown")
        items.append(_Item(iid, title, year, genres, {}, lineno))

    users = None
    user_path = directory / "u.user"
    if user_path.is_file():
        users = []
        for _, parts in _split_lines(user_path, "latin-1", "|", 5):
            uid, age, gender, occupation, zip_code = (p.strip() for p in parts)
            users.append((uid, {"age": age, "gender": gender, "occupation": occupation, "zip_code": zip_code}))
    return _build(name, events, items, users, data_path)


_INT_ID = re.compile(r"[0-9]+")  # ASCII digits only (\d would accept any Unicode digit)


def _int_id(value: str, path: Path, line: int, column: str) -> str:
    """A GroupLens id field: digits only, kept as the external id string."""
    value = value.strip()
    if not _INT_ID.fullmatch(value):
        raise DataFormatError(path, line, f"{column} must be an integer, got {value!r}")
    return value


def read_movielens_1m(directory: str | Path, name: str = "ml-1m") -> Dataset:
    """Read the GroupLens ML-1M folder: ``ratings.dat``, ``movies.dat`` and (optional) ``users.dat``.

    Every file is Latin-1 with ``::`` between fields: ``UserID::MovieID::Rating::Timestamp``,
    ``MovieID::Title::Genres`` (genres ``|``-separated, the year in parentheses at the end of the
    title) and ``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation are the codes of
    the GroupLens README, kept as they are). Ids must be integers; a bad line is a
    :class:`DataFormatError` naming the file and line.
    """
    directory = Path(directory)
    ratings_path = directory / "ratings.dat"
    events = []
    for lineno, (user, item, rating, ts) in _split_lines(ratings_path, "latin-1", "::", 4):
        events.append(
            _Event(
                _int_id(user, ratings_path, lineno, "UserID"),
                _int_id(item, ratings_path, lineno, "MovieID"),
                _float(ts, ratings_path, lineno, "Timestamp"),
                _float(rating, ratings_path, lineno, "Rating"),
                lineno,
            )
        )

    movies_path = directory / "movies.dat"
    items, seen = [], set()
    for lineno, (iid, raw_title, raw_genres) in _split_lines(movies_path, "latin-1", "::", 3):
        iid = _int_id(iid, movies_path, lineno, "MovieID")
        if iid in seen:
            raise DataFormatError(movies_path, lineno, f"duplicate MovieID {iid!r}")
        seen.add(iid)
        raw_title = raw_title.strip()
        m = _YEAR_IN_TITLE.match(raw_title)  # the last "(dddd)": "City of Lost Children, The (Cité ...) (1995)"
        title, year = (m.group("title"), int(m.group("year"))) if m else (raw_title, 0)
        genres = tuple(g for g in (g.strip() for g in raw_genres.split("|")) if g and g.lower() != "unknown")
        items.append(_Item(iid, title or iid, year, genres, {}, lineno))

    users = None
    users_path = directory / "users.dat"
    if users_path.is_file():
        users, seen_users = [], set()
        for lineno, parts in _split_lines(users_path, "latin-1", "::", 5):
            uid = _int_id(parts[0], users_path, lineno, "UserID")
            if uid in seen_users:
                raise DataFormatError(users_path, lineno, f"duplicate UserID {uid!r}")
            seen_users.add(uid)
            gender, age, occupation, zip_code = (p.strip() for p in parts[1:])
            users.append((uid, {"age": age, "gender": gender, "occupation": occupation, "zip_code": zip_code}))
    return _build(name, events, items, users, ratings_path)


# ---------------------------------------------------------------- generic tables


class TableMapping(BaseModel):
    """Column names of a generic interaction table (and optional item table)."""

    user: str = Field("user_id", description="user id column")
    item: str = Field("item_id", description="item id column")
    timestamp: str = Field("timestamp", description="timestamp column (numbers or ISO dates)")
    rating: str | None = Field(None, description="rating column; None for implicit feedback")
    item_title: str = Field("title", description="title column of the item table")
    item_year: str | None = Field(None, description="year column of the item table")
    item_genres: str | None = Field(None, description="genre column of the item table")
    genre_separator: str = Field("|", description="separator between genres in one cell")


def _read_frame(path: Path):
    import pandas as pd

    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix in (".tsv", ".tab") else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except Exception as e:  # pandas/pyarrow raise many types; report them as one format error
        raise DataFormatError(path, None, f"cannot parse as {suffix or 'csv'}: {e}") from None


def _require(df, path: Path, column: str) -> None:
    if column not in df.columns:
        raise DataFormatError(path, None, f"missing column {column!r} (columns: {list(df.columns)})")


def _time_value(v: object, path: Path, line: int) -> float:
    import pandas as pd

    s = str(v).strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        return pd.Timestamp(s).timestamp()
    except (ValueError, TypeError):
        raise DataFormatError(path, line, f"timestamp {s!r} is neither a number nor a date") from None


def read_table(
    interactions: str | Path,
    mapping: TableMapping | None = None,
    items: str | Path | None = None,
    name: str | None = None,
) -> Dataset:
    """Read a CSV/TSV/Parquet interaction table (and optional item table) with a column mapping."""
    m = mapping or TableMapping()
    inter_path = Path(interactions)
    df = _read_frame(inter_path)
    for col in (m.user, m.item, m.timestamp) + ((m.rating,) if m.rating else ()):
        _require(df, inter_path, col)
    # line numbers: header is line 1 for text files; parquet rows are reported 1-based
    offset = 2 if inter_path.suffix.lower() not in (".parquet", ".pq") else 1
    events = []
    users_col, items_col, time_col = df[m.user].astype(str), df[m.item].astype(str), df[m.timestamp]
    rating_col = df[m.rating] if m.rating else None
    for i in range(len(df)):
        line = i + offset
        u, it = users_col.iat[i].strip(), items_col.iat[i].strip()
        if not u or not it:
            raise DataFormatError(inter_path, line, "empty user or item id")
        r = _float(str(rating_col.iat[i]), inter_path, line, m.rating) if rating_col is not None else 1.0
        events.append(_Event(u, it, _time_value(time_col.iat[i], inter_path, line), r, line))

    item_rows = None
    if items is not None:
        item_path = Path(items)
        idf = _read_frame(item_path)
        _require(idf, item_path, m.item)
        item_rows, seen = [], set()
        ioffset = 2 if item_path.suffix.lower() not in (".parquet", ".pq") else 1
        for i in range(len(idf)):
            line = i + ioffset
            iid = str(idf[m.item].iat[i]).strip()
            if iid in seen:
                raise DataFormatError(item_path, line, f"duplicate item id {iid!r}")
            seen.add(iid)
            title = str(idf[m.item_title].iat[i]).strip() if m.item_title in idf.columns else iid
            year = _year(str(idf[m.item_year].iat[i]), item_path, line) if m.item_year else 0
            genres: tuple[str, ...] = ()
            if m.item_genres:
                raw = str(idf[m.item_genres].iat[i])
                genres = tuple(g.strip() for g in raw.split(m.genre_separator) if g.strip())
            item_rows.append(_Item(iid, title or iid, year, genres, {}, line))
    return _build(name or inter_path.stem, events, item_rows, None, inter_path)
