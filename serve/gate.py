"""Admission: at most ``workers`` agent turns run at once, at most ``max_queue`` wait, one turn per session.

Written by hand because no library here bounds a wait queue with an immediate refusal: an
``asyncio.Semaphore`` queues without limit, and uvicorn's ``limit_concurrency`` counts every
connection (health checks and page loads included) rather than agent turns.
"""

from __future__ import annotations

import asyncio


class QueueFull(Exception):
    """More turns are waiting than the queue holds: answer 503 and let the client retry."""


class SessionBusy(Exception):
    """A turn of this session is still running: answer 409 (turns of one conversation are sequential)."""


class TurnGate:
    """Admits a turn, or refuses it at once; used from the event loop only, so plain counters are safe."""

    def __init__(self, workers: int, max_queue: int):
        self.workers, self.max_queue = workers, max_queue
        self._slots = asyncio.Semaphore(workers)
        self.admitted = 0  # running + waiting
        self.running = 0
        self.peak_running = 0  # most turns that ran at once since start
        self._busy: set[str] = set()

    @property
    def waiting(self) -> int:
        """Turns admitted but not yet running."""
        return self.admitted - self.running

    def admit(self, session: str) -> None:
        """Reserve a place for a turn of ``session`` or raise :class:`QueueFull` / :class:`SessionBusy`."""
        if session in self._busy:
            raise SessionBusy(session)
        if self.admitted >= self.workers + self.max_queue:
            raise QueueFull()
        self.admitted += 1
        self._busy.add(session)

    async def start(self) -> None:
        """Wait for a worker slot (after :meth:`admit`)."""
        await self._slots.acquire()
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)

    def finish(self, session: str, started: bool = True) -> None:
        """Give the place back (``started``: whether :meth:`start` returned)."""
        if started:
            self.running -= 1
            self._slots.release()
        self.admitted -= 1
        self._busy.discard(session)
