"""Limits and timeouts of the PostgreSQL handler."""

from __future__ import annotations

#: Seconds until a sync that failed for a transient reason (server unreachable) runs again.
TRANSIENT_RETRY_SECONDS = 30.0
#: Seconds any one statement may run.
COMMAND_TIMEOUT_SECONDS = 60.0
#: PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes.
MAX_IDENTIFIER_BYTES = 63
_MAX_DESCRIPTION = 1024

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
