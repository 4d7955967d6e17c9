"""Who owns which session: a small table beside the agent's LangGraph checkpoints in the same SQLite file.

The conversation itself lives in the checkpointer (as for ``recagent chat``); this table only says
which key made a session, for which dataset user, and when; it shares the checkpointer's connection. Server sessions use thread ids of
their own (``srv-...``), so they never collide with named terminal sessions.
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
    """Sessions by owner; every read and write is filtered by the owner asking."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock):
        # the checkpointer's own connection and lock: a second connection to the file would contend with it for
        # SQLite's write lock ("database is locked") under concurrent turns
        self._conn, self._lock = conn, lock
        with self._lock, self._conn:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS serve_sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, user_id TEXT, "
                "title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL, turns INTEGER NOT NULL DEFAULT 0)"
            )
            self._conn.execute("CREATE INDEX IF NOT EXISTS serve_sessions_owner ON serve_sessions (owner, updated)")

    def create(self, owner: str, user_id: str | None = None, title: str = "") -> SessionInfo:
        """A new session for ``owner``."""
        now = time.time()
        info = SessionInfo(f"srv-{uuid.uuid4().hex}", owner, user_id, title or "new chat", now, now)
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO serve_sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (info.id, owner, user_id, info.title, now, now, 0),
            )
        return info

    def get(self, owner: str, session_id: str) -> SessionInfo | None:
        """The session if ``owner`` made it (another owner's session is as absent as an unknown one)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM serve_sessions WHERE id = ? AND owner = ?", (session_id, owner)
            ).fetchone()
        return SessionInfo(*row) if row else None

    def list(self, owner: str, limit: int = 100) -> list[SessionInfo]:
        """The owner's sessions, most recently used first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM serve_sessions WHERE owner = ? ORDER BY updated DESC LIMIT ?", (owner, limit)
            ).fetchall()
        return [SessionInfo(*r) for r in rows]

    def update(self, owner: str, session_id: str, **fields: Any) -> None:
        """Set ``user_id``/``title``/``turns`` and touch ``updated``."""
        allowed = {k: v for k, v in fields.items() if k in ("user_id", "title", "turns")}
        sets = ", ".join(f"{k} = ?" for k in allowed)
        with self._lock, self._conn:
            self._conn.execute(
                f"UPDATE serve_sessions SET {sets}{', ' if sets else ''}updated = ? WHERE id = ? AND owner = ?",
                (*allowed.values(), time.time(), session_id, owner),
            )

    def delete(self, owner: str, session_id: str) -> bool:
        """Remove the owner's session row; False if there was none."""
        with self._lock, self._conn:
            cur = self._conn.execute("DELETE FROM serve_sessions WHERE id = ? AND owner = ?", (session_id, owner))
        return cur.rowcount > 0
