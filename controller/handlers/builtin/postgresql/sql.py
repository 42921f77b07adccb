"""SQL text the handler builds: identifiers and literals quoted, SCRAM-SHA-256 verifiers
(so a password never crosses the wire in clear, and an unchanged one is recognised)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

# -- quoting ------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    """An SQL identifier, always double-quoted (so case, spaces and quotes survive)."""
    if "\x00" in name:
        raise ValueError("identifiers cannot contain NUL characters")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """An SQL string literal, correct whatever ``standard_conforming_strings`` is.

    Like libpq's ``PQescapeLiteral``: quotes are doubled; if there is a backslash the
    literal is an escape string (``E'...'``) with backslashes doubled too.
    """
    if "\x00" in value:
        raise ValueError("string literals cannot contain NUL characters")
    quoted = value.replace("'", "''")
    if "\\" in value:
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


# -- SCRAM-SHA-256 verifiers ----------------------------------------------------------------------

_SCRAM = re.compile(r"SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)")


def scram_sha_256(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The verifier PostgreSQL stores for ``password`` (RFC 5802/7677, as libpq computes it).

    Only for ASCII passwords: for those SASLprep is the identity, as in the server.
    """
    if not password.isascii():
        raise ValueError("client-side SCRAM verifiers are computed for ASCII passwords only")
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier was made from ``password``."""
    match = _SCRAM.fullmatch(verifier)
    if match is None or not password.isascii():
        return False
    iterations = int(match[1])
    if not 1 <= iterations <= 1_000_000:
        return False
    try:
        salt = base64.b64decode(match[2], validate=True)
    except binascii.Error:
        return False
    expected = scram_sha_256(password, salt=salt, iterations=iterations)
    return hmac.compare_digest(expected.encode(), verifier.encode())
