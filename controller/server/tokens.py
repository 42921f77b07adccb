"""Unguessable URL tokens (callbacks, triggers) of which only a hash is ever stored.

A token is 256 random bits, URL-safe; resources keep `sha256(token)` so that reading
a WorkflowRun or a Workflow never reveals a URL that can resume or trigger it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token() -> tuple[str, str]:
    """(token for the URL, hash to store)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(token_hash(token), stored_hash)


def same(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets as text, whatever characters they hold
    (`hmac.compare_digest` raises TypeError on non-ASCII str)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def derived_token(key: bytes, purpose: str) -> str:
    """A 256-bit token derived from the controller's token key and what it is for.

    Deterministic, so that a call re-issued after a crash hands the handler the very same
    URL (e.g. the finish callback of one step execution), and nothing but a hash of it
    ever needs to be stored. Unguessable without the key.
    """
    digest = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
