"""Where conversations are kept: a SQLite file (the default) or a PostgreSQL database that processes share.

SQLite (``$RECAGENT_HOME/sessions.sqlite``) suits one process on one machine: ``recagent chat``, or one
``recagent serve``. Several server processes, on one machine or behind a load balancer, share PostgreSQL
instead (``sessions.backend: postgres``): every turn is checkpointed there as it happens, so any process
can continue any session, and a process that dies loses no finished turn. The URL, password included,
comes from an environment variable (``sessions.postgres_url_env``, default ``RECAGENT_POSTGRES_URL``),
never from a config file.

Checkpoints go through LangGraph's savers (``langgraph-checkpoint-sqlite`` /
``langgraph-checkpoint-postgres``); the server keeps its session table beside them, in the same database
(``recagent.serve.sessions``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from recagent.config import JobConfig
from recagent.errors import ConfigError, RecagentError

URL_EXAMPLE = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"
SETUP_LOCK = 0x7265636167  # pg_advisory_lock key: one process at a time creates or migrates the tables


class SessionsConfig(JobConfig):
    """Where sessions (the agent's LangGraph checkpoints, and the server's session table) are stored."""

    backend: Literal["sqlite", "postgres"] = Field(
        "sqlite",
        description="sqlite: $RECAGENT_HOME/sessions.sqlite, one process; postgres: a database that several "
        "`recagent serve` processes (or machines) share, URL from `postgres_url_env`",
    )
    postgres_url_env: str = Field(
        "RECAGENT_POSTGRES_URL",
        min_length=1,
        description=f"environment variable holding the PostgreSQL URL ({URL_EXAMPLE}); never put it in a file",
    )
    pool_size: int = Field(8, ge=2, le=200, description="postgres: connections one process opens at most")
    connect_timeout_s: float = Field(10.0, gt=0, description="postgres: seconds to wait for the database")


def postgres_url(cfg: SessionsConfig) -> str:
    """The PostgreSQL URL from the environment, checked; a :class:`ConfigError` naming the variable if unusable."""
    from psycopg import conninfo

    env = cfg.postgres_url_env
    url = os.environ.get(env, "").strip()
    if not url:
        raise ConfigError(f"sessions.backend is postgres but ${env} is not set; export {env}={URL_EXAMPLE}")
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"${env} is not a PostgreSQL URL: it must start with postgresql:// (e.g. {URL_EXAMPLE})")
    try:
        _ = urlsplit(url).port  # a port that is not a number (libpq would say so only when connecting)
        conninfo.conninfo_to_dict(url)
    except Exception as e:  # libpq's own words, e.g. an unknown option
        raise ConfigError(f"${env} is not a valid PostgreSQL URL: {_one_line(e, url)}") from None
    return url


def describe(url: str) -> str:
    """The URL without its password, for messages and logs: ``postgresql://user@host:port/db``."""
    from psycopg import conninfo

    try:
        d = conninfo.conninfo_to_dict(url)
    except Exception:
        return "postgresql://(unreadable URL)"
    user = f"{d['user']}@" if d.get("user") else ""
    port = f":{d['port']}" if d.get("port") else ""
    return f"postgresql://{user}{d.get('host') or 'localhost'}{port}/{d.get('dbname') or ''}"


def _one_line(exc: BaseException, url: str) -> str:
    """A psycopg error as one line, with the URL's password (if the message quotes it) blanked."""
    diag = getattr(exc, "diag", None)  # an error the server sent: its primary message, without the SQL it quotes
    primary = diag.message_primary if diag is not None else None
    lines = [line.strip() for line in (primary or str(exc)).splitlines() if line.strip()]
    text = "; ".join(lines) or type(exc).__name__
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***")
    return text.replace(url, describe(url))


def check_sessions(cfg: SessionsConfig) -> str:
    """Fail early, in one line, if the configured sessions database is unusable; returns where sessions live."""
    if cfg.backend == "sqlite":
        return "SQLite"
    url = postgres_url(cfg)
    with _probe(cfg, url):
        pass
    return f"PostgreSQL {describe(url)}"


@contextmanager
def _probe(cfg: SessionsConfig, url: str):
    """One plain connection, opened with a deadline: its failure carries the database's own reason."""
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=max(1, round(cfg.connect_timeout_s)), autocommit=True)
    except psycopg.Error as e:
        raise RecagentError(
            f"cannot use the sessions database {describe(url)} (from ${cfg.postgres_url_env}): {_one_line(e, url)}"
        ) from None
    with conn:
        yield conn


def open_checkpointer(cfg: SessionsConfig, db_path: Path, serde) -> tuple[Any, Callable[[], None]]:
    """A LangGraph checkpointer for ``cfg`` (``db_path`` is the SQLite file) and the function that closes it."""
    if cfg.backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        db_path.parent.mkdir(parents=True, exist_ok=True)
        # one connection, used from the graph's worker threads; SqliteSaver serialises access
        conn = sqlite3.connect(db_path, check_same_thread=False)
        return SqliteSaver(conn, serde=serde), conn.close
    return _open_postgres(cfg, serde)


def _open_postgres(cfg: SessionsConfig, serde) -> tuple[Any, Callable[[], None]]:
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool, PoolTimeout

    url = postgres_url(cfg)
    with _probe(cfg, url) as conn:  # reachable; create or migrate the tables, one process at a time
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                PostgresSaver(conn, serde=serde).setup()  # its cursors read rows as dicts whatever the connection's
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
        except psycopg.Error as e:  # e.g. a user without the right to create tables
            raise RecagentError(f"cannot set up the session tables in {describe(url)}: {_one_line(e, url)}") from None
    # the options PostgresSaver needs (autocommit, dict rows, no prepared statements: poolers such as
    # PgBouncer reuse server connections); a broken connection is replaced when it is next taken
    pool = ConnectionPool(
        url,
        min_size=1,
        max_size=cfg.pool_size,
        kwargs={
            "autocommit": True,
            "prepare_threshold": None,
            "row_factory": dict_row,
            "connect_timeout": max(1, round(cfg.connect_timeout_s)),
        },
        check=ConnectionPool.check_connection,
        timeout=cfg.connect_timeout_s,
        name="recagent-sessions",
        open=False,
    )
    pool.open()
    try:
        pool.wait(timeout=cfg.connect_timeout_s)
    except PoolTimeout:
        pool.close()
        raise RecagentError(f"the sessions database {describe(url)} did not accept connections in time") from None
    return PostgresSaver(pool, serde=serde), pool.close
