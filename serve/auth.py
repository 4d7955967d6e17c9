"""API keys: who is calling, compared in constant time, and the owner id their sessions are filed under.

A request carries its key as ``Authorization: Bearer KEY`` (OpenAI clients), or as the password of
HTTP Basic auth, which a browser asks for by itself when the chat page answers 401 with
``WWW-Authenticate: Basic``; after that the browser sends it with every request of the page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

LOCAL_OWNER = "local"  # the owner of every session when no keys are configured (loopback only)


def owner_of(key: str) -> str:
    """A stable, non-secret id for a key (sessions are stored under it, never under the key)."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def presented_key(authorization: str | None) -> str | None:
    """The key in an Authorization header (Bearer, or Basic with the key as password), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class KeyRing:
    """The configured keys; ``check`` compares digests with ``hmac.compare_digest`` against every key."""

    def __init__(self, keys: list[str]):
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    @property
    def enabled(self) -> bool:
        """Whether requests must present a key."""
        return bool(self._digests)

    def check(self, key: str | None) -> str | None:
        """The owner id of a valid key, else None (no early exit: timing does not tell which key was close)."""
        if not self.enabled:
            return LOCAL_OWNER
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        match = False
        for d in self._digests:
            match |= hmac.compare_digest(digest, d)
        return owner_of(key) if match else None
