"""Unguessable URL tokens (callbacks, triggers) of which only a hash is ever stored (BRIEF §5).

A token is 256 random bits, URL-safe; resources keep `sha256(token)` so that reading
a WorkflowRun or a Workflow never reveals a URL that can resume or trigger it.
"""

from __future__ import annotations

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
