"""Fetch known datasets into the cache, verify checksums, and load any dataset by name or path.

Sources for ML-100K, in order: the official GroupLens archive, then the copy of the same
data that ships inside the ``recbole`` wheel on PyPI (read as files; RecBole itself is never
imported). ML-1M comes from the GroupLens archive only. A download is checked against the
checksum its publisher gives (GroupLens publishes MD5; the wheel's SHA-256 is pinned here); a
finished fetch writes a manifest with the SHA-256 of every file, so fetching again is a no-op
unless a file was changed or removed.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recagent.errors import DatasetNotFoundError, RecagentError
from recagent.files import sha256_file
from recagent.paths import dataset_dir
from recagent.tools.data.readers import read_atomic, read_movielens_1m, read_movielens_raw
from recagent.tools.data.schema import Dataset

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Source:
    """One place a dataset can come from, with the checksums that make it trustworthy."""

    kind: str  # "zip-url" | "pypi-wheel"
    location: str  # URL, or "package==version" on PyPI
    archive_sha256: str | None  # checksum of the downloaded archive (None: check members only)
    archive_md5: str | None  # some publishers (GroupLens) only publish MD5
    members: dict[str, str]  # member path inside the archive -> file name in the cache
    member_sha256: dict[str, str] = field(default_factory=dict)  # cache file name -> sha256
    format: str = "atomic"  # "atomic" | "movielens-raw" (ML-100K u.* files) | "movielens-1m" (ML-1M *.dat files)


@dataclass(frozen=True)
class KnownDataset:
    """A dataset recagent knows how to fetch."""

    name: str
    description: str
    sources: tuple[Source, ...]


KNOWN: dict[str, KnownDataset] = {
    "ml-100k": KnownDataset(
        name="ml-100k",
        description="MovieLens 100K: 100,000 ratings by 943 users on 1,682 films (GroupLens, 1998)",
        sources=(
            Source(
                kind="zip-url",
                location="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                archive_sha256=None,
                archive_md5="0e33842e24a9c977be4e0107933c0723",  # published on the GroupLens page
                members={f"ml-100k/{f}": f for f in ("u.data", "u.item", "u.user", "u.genre")},
                format="movielens-raw",
            ),
            Source(
                kind="pypi-wheel",
                location="recbole==1.2.1",
                archive_sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
                archive_md5=None,
                members={
                    f"recbole/dataset_example/ml-100k/ml-100k.{s}": f"ml-100k.{s}" for s in ("inter", "item", "user")
                },
                member_sha256={
                    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
                    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
                },
                format="atomic",
            ),
        ),
    ),
    "ml-1m": KnownDataset(
        name="ml-1m",
        description="MovieLens 1M: 1,000,209 ratings by 6,040 users on 3,706 films (GroupLens, 2003)",
        sources=(
            Source(
                kind="zip-url",
                location="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                # GroupLens publishes only an MD5 for the archive; no SHA-256 of it or of its members could be
                # verified offline, so none is pinned. The manifest records each extracted file's SHA-256.
                archive_sha256=None,
                archive_md5="c4d9eecfca2ab87c1945afe126590906",  # published on the GroupLens page
                members={f"ml-1m/{f}": f for f in ("ratings.dat", "movies.dat", "users.dat")},
                format="movielens-1m",
            ),
        ),
    ),
}


def _manifest_ok(directory: Path) -> dict | None:
    """The manifest if every file it lists is present with its recorded checksum."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        return None
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    for name, digest in files.items():
        p = directory / name
        if not p.is_file() or sha256_file(p) != digest:
            return None
    return manifest


def _download_zip(source: Source, timeout: float) -> bytes:
    with urllib.request.urlopen(source.location, timeout=timeout) as resp:  # noqa: S310 (fixed https URL)
        data = resp.read()
    if source.archive_md5 and hashlib.md5(data).hexdigest() != source.archive_md5:  # noqa: S324 (publisher's checksum)
        raise RecagentError(f"checksum mismatch for {source.location}")
    return data


def _download_wheel(source: Source, timeout: float) -> bytes:
    local = os.environ.get("RECAGENT_RECBOLE_WHEEL")
    if local:
        return Path(local).read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-q",
            "-d",
            tmp,
            source.location,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 600))
        if proc.returncode != 0:
            raise RecagentError(f"pip download {source.location} failed: {proc.stderr.strip()[-300:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise RecagentError(f"pip download {source.location} produced no wheel")
        return wheels[0].read_bytes()


def _extract(source: Source, archive: bytes, target: Path) -> dict[str, str]:
    if source.archive_sha256 and hashlib.sha256(archive).hexdigest() != source.archive_sha256:
        raise RecagentError(f"checksum mismatch for {source.location} (expected {source.archive_sha256[:12]}...)")
    files: dict[str, str] = {}
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        for member, out_name in source.members.items():
            try:
                data = zf.read(member)
            except KeyError:
                raise RecagentError(f"{source.location} has no member {member}") from None
            digest = hashlib.sha256(data).hexdigest()
            expected = source.member_sha256.get(out_name)
            if expected and digest != expected:
                raise RecagentError(f"checksum mismatch for {member} in {source.location}")
            (target / out_name).write_bytes(data)
            files[out_name] = digest
    return files


def fetch(
    name: str,
    force: bool = False,
    timeout: float = 10.0,
    offline_url: bool | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> Path:
    """Fetch dataset ``name`` into the cache (idempotent) and return its folder."""
    if name not in KNOWN:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known: {', '.join(KNOWN)}")
    target = dataset_dir(name)
    if not force and _manifest_ok(target):
        log(f"{name} already in {target} (checksums verified)")
        return target
    skip_url = offline_url if offline_url is not None else os.environ.get("RECAGENT_OFFLINE") == "1"
    errors = []
    for source in KNOWN[name].sources:
        if source.kind == "zip-url" and skip_url:
            errors.append(f"{source.location}: skipped (RECAGENT_OFFLINE=1)")
            continue
        log(f"fetching {name} from {source.location} ...")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_ensure_parent(target)))
        try:
            try:
                archive = (_download_zip if source.kind == "zip-url" else _download_wheel)(source, timeout)
                files = _extract(source, archive, staging)
            except (
                OSError,
                RecagentError,
                subprocess.SubprocessError,
                zipfile.BadZipFile,
                http.client.HTTPException,  # e.g. IncompleteRead when the connection drops mid-download
            ) as e:
                errors.append(f"{source.location}: {e}")
                log(f"  not available ({e}); trying the next source")
                continue
            manifest = {
                "name": name,
                "source": source.location,
                "format": source.format,
                "files": files,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            # swap the finished folder in at once so an interrupted fetch never leaves half a dataset
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone after the rename; otherwise a partial download
        log(f"{name} ready in {target} (from {source.location})")
        return target
    raise RecagentError(f"could not fetch {name}: " + " | ".join(errors))


def _ensure_parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def load_dataset(name_or_path: str | Path) -> Dataset:
    """Load a fetched dataset by name, or a folder of atomic / GroupLens (ML-100K or ML-1M) files by path."""
    p = Path(name_or_path)
    if str(name_or_path) in KNOWN and not p.exists():
        directory = dataset_dir(str(name_or_path))
        manifest = _manifest_ok(directory)
        if manifest is None:
            raise DatasetNotFoundError(
                f"dataset {name_or_path!r} is not in the cache ({directory}); run: recagent data fetch {name_or_path}"
            )
        if manifest["format"] == "movielens-raw":
            return read_movielens_raw(directory, name=str(name_or_path))
        if manifest["format"] == "movielens-1m":
            return read_movielens_1m(directory, name=str(name_or_path))
        return read_atomic(directory, name=str(name_or_path))
    if not p.is_dir():
        raise DatasetNotFoundError(
            f"{name_or_path!r} is neither a known dataset ({', '.join(KNOWN)}) nor a folder of dataset files"
        )
    if (p / "u.data").is_file():
        return read_movielens_raw(p, name=p.name)
    if (p / "ratings.dat").is_file():
        return read_movielens_1m(p, name=p.name)
    inters = sorted(p.glob("*.inter"))
    if not inters:
        raise DatasetNotFoundError(
            f"{p}: no <name>.inter (RecBole atomic), u.data (GroupLens ML-100K) or ratings.dat (GroupLens ML-1M) file found"
        )
    return read_atomic(p, name=inters[0].stem)
