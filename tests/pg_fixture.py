"""A throwaway PostgreSQL server for the shared-session tests (the fixtures are in conftest.py).

``RECAGENT_TEST_POSTGRES_URL`` names an existing server to use instead (its user needs CREATEDB: every
test gets a database of its own, dropped afterwards). Otherwise a cluster is made with ``initdb`` in a
temporary folder and started with ``pg_ctl`` on a free loopback port (trust authentication, loopback
only, no fsync: a test cluster), and removed at the end. ``initdb`` refuses to run as root, so as root
the cluster belongs to the ``postgres`` OS user that Debian's package creates (run through ``runuser``).
Binaries are looked up in ``$RECAGENT_PG_BIN``, then Debian's ``/usr/lib/postgresql/<version>/bin``
(newest first), then ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

INSTALL = "apt-get install -y postgresql, as root; Debian 12 gives PostgreSQL 15"


def postgres_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None if PostgreSQL is not installed."""
    candidates = [os.environ.get("RECAGENT_PG_BIN")]
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [str(p / "bin") for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    found = shutil.which("initdb")
    candidates.append(str(Path(found).resolve().parent) if found else None)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres(bin_dir: Path) -> Iterator[str]:
    """Start a fresh cluster on a free loopback port; yields the URL of its ``postgres`` database."""
    as_root = os.geteuid() == 0
    # not under pytest's tmp folder: that is private to root (0700), and the server runs as `postgres`
    base = Path(tempfile.mkdtemp(prefix="recagent-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    prefix: list[str] = []
    if as_root:
        try:
            pw = pwd.getpwnam("postgres")  # created by Debian's postgresql package
        except KeyError:
            raise RuntimeError("initdb refuses to run as root, and there is no `postgres` OS user to run it") from None
        for p in (base, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name

    def run(*cmd: str) -> None:
        done = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {sock} -c fsync=off -c max_connections=200"
    try:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
    except RuntimeError as e:
        text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"{e}\n{text}") from None
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(Exception):
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``server_url``; yields its URL and drops it afterwards."""
    import psycopg
    from psycopg import sql

    name = f"recagent_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:  # FORCE: servers a test killed may hold sessions
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
