"""Who owns which session: a small table beside the agent's LangGraph checkpoints, in the same database.

The conversation itself lives in the checkpointer (as for ``recagent chat``); this table only says
which key made a session, for which dataset user, and when. With SQLite it shares the checkpointer's
connection; with PostgreSQL (``agent.sessions.backend: postgres``) its connection pool, so every server
process sharing the database sees the same owners. Server sessions use thread ids of their own
(``srv-...``), so they never collide with named terminal sessions.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class SessionInfo:
    """One server session: its id, owner, dataset user, title, and times."""

    id: str
    owner: str
    user_id: str | None
    title: str
    created: float
    updated: float
    turns: int = 0

    def public(self) -> dict[str, Any]:
        """What a client sees (the owner id stays on the server)."""
        d = asdict(self)
        d.pop("owner")
        return d


class SessionStore:
    """Sessions by owner; every read and write is filtered by the owner asking.

    The SQL is written once, with ``?`` parameters; a backend runs it (:meth:`_rows`, :meth:`_write`).
    """

    TABLE = (
        "CREATE TABLE IF NOT EXISTS serve_sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, user_id TEXT, "
        "title TEXT NOT NULL, created {real} NOT NULL, updated {real} NOT NULL, turns INTEGER NOT NULL DEFAULT 0)"
    )
    INDEX = "CREATE INDEX IF NOT EXISTS serve_sessions_owner ON serve_sessions (owner, updated)"

    @staticmethod
    def beside(saver) -> SessionStore:
        """The session table in the database of the LangGraph checkpointer ``saver`` (SQLite or PostgreSQL)."""
        from langgraph.checkpoint.sqlite import SqliteSaver

        if isinstance(saver, SqliteSaver):
            return SqliteSessionStore(saver.conn, saver.lock)
        from langgraph.checkpoint.postgres import PostgresSaver

        if isinstance(saver, PostgresSaver):
            return PostgresSessionStore(saver.conn)
        raise TypeError(f"no session table for a {type(saver).__name__} checkpointer")

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        raise NotImplementedError

    def _write(self, sql: str, params: tuple = ()) -> int:
        """Run one statement and commit it; returns the rows it changed."""
        raise NotImplementedError

    def create(self, owner: str, user_id: str | None = None, title: str = "") -> SessionInfo:
        """A new session for ``owner``."""
        now = time.time()
        info = SessionInfo(f"srv-{uuid.uuid4().hex}", owner, user_id, title or "new chat", now, now)
        self._write(
            "INSERT INTO serve_sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (info.id, owner, user_id, info.title, now, now, 0),
        )
        return info

    def get(self, owner: str, session_id: str) -> SessionInfo | None:
        """The session if ``owner`` made it (another owner's session is as absent as an unknown one)."""
        rows = self._rows("SELECT * FROM serve_sessions WHERE id = ? AND owner = ?", (session_id, owner))
        return SessionInfo(*rows[0]) if rows else None

    def list(self, owner: str, limit: int = 100) -> list[SessionInfo]:
        """The owner's sessions, most recently used first."""
        rows = self._rows("SELECT * FROM serve_sessions WHERE owner = ? ORDER BY updated DESC LIMIT ?", (owner, limit))
        return [SessionInfo(*r) for r in rows]

    def update(self, owner: str, session_id: str, **fields: Any) -> None:
        """Set ``user_id``/``title``/``turns`` and touch ``updated``."""
        allowed = {k: v for k, v in fields.items() if k in ("user_id", "title", "turns")}
        sets = ", ".join(f"{k} = ?" for k in allowed)
        self._write(
            f"UPDATE serve_sessions SET {sets}{', ' if sets else ''}updated = ? WHERE id = ? AND owner = ?",
            (*allowed.values(), time.time(), session_id, owner),
        )

    def delete(self, owner: str, session_id: str) -> bool:
        """Remove the owner's session row; False if there was none."""
        return self._write("DELETE FROM serve_sessions WHERE id = ? AND owner = ?", (session_id, owner)) > 0


class SqliteSessionStore(SessionStore):
    """The table in the checkpointer's SQLite file."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock):
        # the checkpointer's own connection and lock: a second connection to the file would contend with it for
        # SQLite's write lock ("database is locked") under concurrent turns
        self._conn, self._lock = conn, lock
        with self._lock, self._conn:
            self._conn.execute(self.TABLE.format(real="REAL"))
            self._conn.execute(self.INDEX)

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple = ()) -> int:
        with self._lock, self._conn:
            return self._conn.execute(sql, params).rowcount


class PostgresSessionStore(SessionStore):
    """The table in the checkpointer's PostgreSQL database, through its connection pool (autocommit).

    Several server processes share it; PostgreSQL orders their writes, so no lock is taken here.
    """

    def __init__(self, pool):
        from recagent.agents.session_db import SETUP_LOCK

        self._pool = pool
        with self._pool.connection() as conn:  # two processes creating the table at once would collide
            conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                conn.execute(self.TABLE.format(real="DOUBLE PRECISION"))
                conn.execute(self.INDEX)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))

    def _execute(self, sql: str, params: tuple, fetch: bool):
        from psycopg.rows import tuple_row

        with self._pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if fetch else cur.rowcount

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._execute(sql, params, fetch=True)

    def _write(self, sql: str, params: tuple = ()) -> int:
        return self._execute(sql, params, fetch=False)
