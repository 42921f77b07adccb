"""A throwaway PostgreSQL server for tests (stdlib + asyncpg only).

Choice: every test session starts **its own cluster** with ``initdb`` + ``pg_ctl`` from
Debian's ``postgresql`` package (binaries under ``/usr/lib/postgresql/<major>/bin``) instead of
using the distro's cluster on port 5432.  That keeps tests independent of whatever runs on the
machine, needs no ``systemctl``/``pg_ctlcluster``, and leaves nothing behind:

- the cluster lives in a fresh temporary directory (data, Unix socket, log) that is deleted
  when the server stops;
- it listens on a free port on 127.0.0.1 only; the Unix socket is inside the temp directory;
- the superuser ``postgres`` authenticates with a random password (``scram-sha-256`` for local
  and host connections), so code under test logs in with username + password like it would
  against a real server;
- ``initdb`` and ``postgres`` refuse to run as root: as root the cluster runs as the
  ``postgres`` system user the package creates (``runuser``/``setpriv``), and the temp
  directory is handed to it; as any other user it runs as that user;
- durability is switched off (``fsync``, ``full_page_writes``, ``synchronous_commit``): a
  test cluster trades crash safety for speed.

Set ``BLOCKFLOW_PG_BINDIR`` to use binaries from elsewhere.  When no binaries are found,
:class:`PostgresNotInstalledError` says what to install (tests never skip silently).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

#: The superuser the throwaway cluster is initialised with.
SUPERUSER = "postgres"
#: The OS account that runs the server when the tests run as root.
OS_USER_WHEN_ROOT = os.environ.get("BLOCKFLOW_PG_OS_USER", "postgres")

_INSTALL_HINT = (
    "install Debian's `postgresql` package (`apt-get install -y postgresql`, or run "
    "`hack/install-deps.sh`), or set BLOCKFLOW_PG_BINDIR to a directory holding initdb and pg_ctl"
)


class PostgresNotInstalledError(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing."""


class PostgresStartError(RuntimeError):
    """The throwaway cluster could not be initialised or started."""


def find_bindir() -> Path:
    """The directory with initdb/pg_ctl/postgres: $BLOCKFLOW_PG_BINDIR, Debian's newest, PATH."""
    needed = ("initdb", "pg_ctl", "postgres")

    def complete(directory: Path) -> bool:
        return all(os.access(directory / name, os.X_OK) for name in needed)

    override = os.environ.get("BLOCKFLOW_PG_BINDIR")
    if override:
        if complete(Path(override)):
            return Path(override)
        raise PostgresNotInstalledError(
            f"BLOCKFLOW_PG_BINDIR={override} does not hold {', '.join(needed)}"
        )
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if p.name.isdigit() and complete(p / "bin")),
            key=lambda p: int(p.name),
            reverse=True,
        )
        if majors:
            return majors[0] / "bin"
    on_path = shutil.which("initdb")
    if on_path and complete(Path(on_path).parent):
        return Path(on_path).parent
    raise PostgresNotInstalledError(
        f"PostgreSQL server binaries ({', '.join(needed)}) not found under "
        f"/usr/lib/postgresql/<major>/bin or on PATH: {_INSTALL_HINT}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """Where a running server is and how to log in as its superuser."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    socket_dir: Path
    version: str

    def app_config(self) -> dict[str, Any]:
        """The ``postgresql`` App's config, credentials merged in as configFrom would."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "username": self.user,
            "password": self.password,
        }

    async def connect(
        self, *, user: str | None = None, password: str | None = None, database: str | None = None
    ) -> Any:
        """An asyncpg connection over TCP (superuser unless ``user``/``password`` are given)."""
        return await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=user or self.user,
            password=self.password if password is None else password,
            database=database or self.database,
            timeout=10,
            ssl="disable",
        )


class ThrowawayPostgres:
    """Context manager: initdb + pg_ctl start in a temp dir; pg_ctl stop + delete on exit."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.root: Path | None = None
        self.server: PostgresServer | None = None
        self._owner: pwd.struct_passwd | None = None

    # -- running commands as the cluster's owner ------------------------------------------

    def _command(self, *args: str) -> list[str]:
        if self._owner is None:
            return list(args)
        if shutil.which("runuser"):
            return ["runuser", "-u", self._owner.pw_name, "--", *args]
        if shutil.which("setpriv"):
            return [
                "setpriv",
                f"--reuid={self._owner.pw_uid}",
                f"--regid={self._owner.pw_gid}",
                "--init-groups",
                *args,
            ]
        raise PostgresStartError("running as root, but neither runuser nor setpriv is available")

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        assert self.root is not None
        return subprocess.run(
            self._command(*args),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )

    def _give(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam(OS_USER_WHEN_ROOT)
            except KeyError:
                raise PostgresNotInstalledError(
                    f"running as root and there is no '{OS_USER_WHEN_ROOT}' user to run "
                    f"PostgreSQL as (initdb refuses root): {_INSTALL_HINT}, which creates it, "
                    f"or set BLOCKFLOW_PG_OS_USER"
                ) from None
        self.root = Path(tempfile.mkdtemp(prefix="blockflow-pg-"))
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PostgresServer:
        assert self.root is not None
        self._give(self.root)
        self.root.chmod(0o700)
        sockets = self.root / "run"
        sockets.mkdir(mode=0o700)
        self._give(sockets)
        password = secrets.token_urlsafe(24)
        pwfile = self.root / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._give(pwfile)
        data = self.root / "data"
        initdb = self._run(
            str(self.bindir / "initdb"),
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        if initdb.returncode != 0:
            raise PostgresStartError(
                f"initdb failed ({initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}"
            )
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# blockflow tests: loopback only, socket in the temp dir, no durability\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sockets}'\n"
                "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n"
                "max_connections = 100\n"
            )
        log = self.root / "server.log"
        last_error = ""
        for _ in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            started = self._run(
                str(self.bindir / "pg_ctl"),
                "start",
                "--wait",
                "--timeout=60",
                f"--pgdata={data}",
                f"--log={log}",
                f"--options=-p {port}",
            )
            if started.returncode == 0:
                self.server = PostgresServer(
                    host="127.0.0.1",
                    port=port,
                    user=SUPERUSER,
                    password=password,
                    database="postgres",
                    socket_dir=sockets,
                    version=self._version(),
                )
                return self.server
            server_log = log.read_text(errors="replace") if log.exists() else ""
            last_error = f"{started.stdout}\n{started.stderr}\n{server_log[-4000:]}"
            if "could not bind" not in server_log and "already in use" not in server_log:
                break
        raise PostgresStartError(f"pg_ctl start failed:\n{last_error}")

    def _version(self) -> str:
        out = subprocess.run(
            [str(self.bindir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip()

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory.  Safe to call twice."""
        root = self.root
        if root is None:
            return
        data = root / "data"
        try:
            if (data / "postmaster.pid").exists():
                stopped = self._run(
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "--mode=fast",
                    "--wait",
                    "--timeout=60",
                    f"--pgdata={data}",
                )
                if stopped.returncode != 0 and (data / "postmaster.pid").exists():
                    # Immediate shutdown of the postmaster this object started.
                    pid = int((data / "postmaster.pid").read_text().split()[0])
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGQUIT)
        finally:
            self.root = None
            self.server = None
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
