"""The ``postgres`` fixture: one throwaway PostgreSQL server per test session.

See :mod:`tests.support.pg` for why a throwaway cluster (initdb + pg_ctl in a temp dir, free
loopback port, password auth) rather than the distro's cluster. Missing binaries are an error
that says what to install, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg import PostgresServer, ThrowawayPostgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A running PostgreSQL server; log in as ``postgres.user`` with ``postgres.password``."""
    with ThrowawayPostgres() as server:
        yield server
