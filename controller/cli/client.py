"""The command line's Kubernetes client: HTTP to the API server, standard library only.

A `blockflow` read command should cost about what `kubectl get` costs. The controller's own
client (:mod:`controller.kube.rest`) is built on aiohttp and kopf's connection info, and
loading them alone takes longer than a whole `kubectl get`; a command line makes a handful of
requests one after another, so blocking HTTP/1.1 on one kept-alive TLS socket is all it
needs. Even :mod:`http.client` costs a read command a sixth of its time (it loads the
``email`` package to parse headers), so the little HTTP spoken here is written out: a
request, a status line, headers, a body by length or in chunks.

Credentials come from :mod:`controller.cli.kubeconfig`; an exec credential plugin's is asked
for again once when the API server answers 401.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from controller.cli.kubeconfig import (
    ConfigError,
    Credentials,
    _run_exec_plugin,
    _temp_pem,
    load_credentials,
)

__all__ = ["ApiError", "Client", "ConfigError", "Credentials", "Unreachable", "load_credentials"]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = 30.0


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code, self.reason, self.message = code, reason, message


class Unreachable(Exception):
    """The API server did not answer (connection refused, TLS failure, timeout)."""


def _ssl_context(creds: Credentials) -> ssl.SSLContext:
    if creds.insecure:
        context = ssl._create_unverified_context()
    else:
        try:
            context = ssl.create_default_context(
                cafile=creds.ca_file, cadata=creds.ca_data.decode() if creds.ca_data else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"the cluster's certificate authority is unusable: {exc}") from None
    try:
        if creds.cert_data and creds.key_data:
            # ssl loads client certificates only from files: write, load, delete.
            cert, key = _temp_pem(creds.cert_data), _temp_pem(creds.key_data)
            try:
                context.load_cert_chain(certfile=cert, keyfile=key)
            finally:
                os.unlink(cert)
                os.unlink(key)
        elif creds.cert_file and creds.key_file:
            context.load_cert_chain(certfile=creds.cert_file, keyfile=creds.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"the kubeconfig user's client certificate is unusable: {exc}") from None
    return context


class Client:
    """JSON requests to the API server on one kept-alive connection."""

    def __init__(self, creds: Credentials, *, user_agent: str = "blockflow-cli") -> None:
        self.creds = creds
        scheme, host, port, prefix = _split_server(creds.server)
        self._https = scheme == "https"
        self._host, self._port, self._prefix = host, port, prefix
        self._host_header = creds.server.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
        self._user_agent = user_agent
        self._conn: _Connection | None = None
        self._context: ssl.SSLContext | None = None

    # -- connection and headers -------------------------------------------------------------

    def _connect(self, timeout: float) -> _Connection:
        context = None
        if self._https:
            if self._context is None:
                self._context = _ssl_context(self.creds)
            context = self._context
        server_name = self.creds.tls_server_name or self._host
        proxy = _proxy_for(self.creds.proxy_url, self._https, self._host, self._port)
        return _Connection(self._host, self._port, context, server_name, timeout, proxy)

    def _headers(self) -> dict[str, str]:
        creds = self.creds
        if creds.exec_plugin and not creds.exec_done:
            _run_exec_plugin(creds)
            self._context = None  # a certificate from the plugin needs a new context
            self.close()
        headers = {
            "Host": self._host_header,
            "Accept": JSON,
            "User-Agent": self._user_agent,
        }
        token = creds.token
        if creds.token_file:
            try:  # read at every login: projected service-account tokens rotate
                with open(creds.token_file, encoding="utf-8") as handle:
                    token = handle.read().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read token file {creds.token_file}: {exc}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif creds.username and creds.password:
            basic = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers

    def _target(self, path: str, params: dict[str, str] | None) -> str:
        if not params:
            return self._prefix + path
        query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in params.items())
        return f"{self._prefix}{path}?{query}"

    def _send(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> _Response:
        """One request on the kept-alive connection (opened again if the server closed it)."""
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                if self._conn is None:
                    self._conn = self._connect(TIMEOUT)
                return self._conn.request(method, target, headers, body)
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise Unreachable(
                    f"the API server's certificate was refused: {exc.verify_message}"
                ) from None
            except _Closed:
                self.close()
                if not reused or attempt == 2:
                    raise Unreachable("the server closed the connection") from None
            except OSError as exc:
                self.close()
                if not reused or attempt == 2:
                    raise Unreachable(_reason(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = JSON,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or ApiError."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in (1, 2):
            headers = self._headers()
            if data is not None:
                headers["Content-Type"] = content_type
            response = self._send(method, self._target(path, params), data, headers)
            try:
                raw = response.read()
            except (OSError, _Closed) as exc:
                self.close()
                raise Unreachable(_reason(exc)) from None
            if not response.keep_alive:
                self.close()
            if response.status == 401 and attempt == 1 and self.creds.exec_plugin:
                self.creds.exec_done = False  # the plugin's credential expired: ask again
                continue
            return _answer(response, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def watch(
        self, path: str, params: dict[str, str], *, timeout: float = 300
    ) -> Iterator[dict[str, Any]]:
        """The watch events of a list path (``watch=1`` is added), one decoded event each."""
        query = {**params, "watch": "1", "timeoutSeconds": str(int(timeout))}
        conn = self._connect(timeout + 30)  # a connection of its own, closed at the end
        try:
            try:
                response = conn.request("GET", self._target(path, query), self._headers(), None)
            except (OSError, _Closed) as exc:
                raise Unreachable(_reason(exc)) from None
            if response.status >= 300:
                _answer(response, response.read())
            while True:
                try:
                    line = response.readline()
                except (OSError, _Closed) as exc:
                    raise Unreachable(_reason(exc)) from None
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def _quote(text: str) -> str:
    """Percent-encoding of a query value (urllib.parse would load ipaddress and more)."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in text.encode())


def _split_server(server: str) -> tuple[str, str, int, str]:
    """https://host:port/prefix -> (scheme, host, port, prefix)."""
    scheme, sep, rest = server.partition("://")
    authority, _, prefix = rest.partition("/")
    host_port = authority.rpartition("@")[2]
    if host_port.startswith("["):  # [::1]:6443
        host, _, tail = host_port[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = host_port.partition(":")
    if (
        not sep
        or scheme not in ("http", "https")
        or not host
        or (not port_text.isdigit() and port_text)
    ):
        raise ConfigError(f"the cluster's server {server!r} is not an http(s) URL")
    port = int(port_text) if port_text else (443 if scheme == "https" else 80)
    return scheme, host, port, ("/" + prefix).rstrip("/") if prefix else ""


class _Closed(Exception):
    """The server closed the connection before a whole answer."""


class _Connection:
    """HTTP/1.1 on one socket (TLS when ``context`` is given)."""

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        server_name: str,
        timeout: float,
        proxy: _Proxy | None = None,
    ) -> None:
        where = (proxy.host, proxy.port) if proxy else (host, port)
        # An ASCII host as bytes: a str would load the idna codec to look it up.
        address = where[0].encode("ascii") if where[0].isascii() else where[0]
        sock = socket.create_connection((address, where[1]), timeout=timeout)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None:
                proxy.tunnel(sock, host, port)
            if context is not None:
                # bytes again: ssl encodes a str with the idna codec
                hostname = server_name.encode("ascii") if server_name.isascii() else server_name
                sock = context.wrap_socket(sock, server_hostname=hostname)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.file = sock.makefile("rb")

    def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None
    ) -> _Response:
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(head + (body or b""))
        return _Response(self.file, method)

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class _Proxy:
    """An HTTP proxy reached with CONNECT (what kubectl does for HTTPS_PROXY / proxy-url)."""

    def __init__(self, url: str) -> None:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "http", url
        if scheme != "http":
            raise ConfigError(f"proxy {url!r}: only http:// proxies are supported")
        authority = rest.split("/", 1)[0]
        userinfo, _, host_port = authority.rpartition("@")
        _, self.host, self.port, _ = _split_server(f"http://{host_port}")
        self.authorization = None
        if userinfo:
            from urllib.parse import unquote

            plain = ":".join(unquote(part) for part in userinfo.split(":", 1))
            self.authorization = "Basic " + base64.b64encode(plain.encode()).decode()

    def tunnel(self, sock: socket.socket, host: str, port: int) -> None:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self.authorization:
            lines.append(f"Proxy-Authorization: {self.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing past the headers
            byte = sock.recv(1)
            if not byte or len(head) > 65536:
                raise OSError(f"the proxy {self.host}:{self.port} closed the connection")
            head += byte
        status = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if len(status) < 2 or status[1] != "200":
            raise OSError(f"the proxy {self.host}:{self.port} answered {' '.join(status[1:])}")


def _proxy_for(configured: str | None, https: bool, host: str, port: int) -> _Proxy | None:
    """The kubeconfig's proxy-url, else $HTTPS_PROXY / $HTTP_PROXY unless $NO_PROXY or a
    loopback host says not to (as Go's ProxyFromEnvironment, which kubectl uses)."""
    if configured:
        return _Proxy(configured)
    name = "https_proxy" if https else "http_proxy"
    url = os.environ.get(name) or os.environ.get(name.upper())
    if not url or host == "localhost" or host.startswith("127.") or host == "::1":
        return None
    for entry in (os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or "").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return None
        name_part, _, entry_port = (
            entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        )
        if entry_port and entry_port != str(port):
            continue
        if "/" in name_part:
            import ipaddress

            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(name_part, strict=False):
                    return None
            except ValueError:
                pass
            continue
        bare = name_part.lstrip(".")
        if host.lower() == bare or host.lower().endswith("." + bare):
            return None
    return _Proxy(url)


class _Response:
    """A status line, headers, and a body read by Content-Length, in chunks, or to the end."""

    def __init__(self, file: Any, method: str) -> None:
        self.file = file
        status_line = file.readline(65537)
        if not status_line:
            raise _Closed
        parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {status_line[:60]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        while True:
            line = file.readline(65537)
            if not line:
                raise _Closed
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        no_body = method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200
        if length is not None and not length.isdigit():
            raise OSError(f"a malformed Content-Length: {length[:20]!r}")
        self.remaining: int | None = 0 if no_body else (int(length) if length else None)
        self.keep_alive = self.headers.get("connection", "").lower() != "close" and (
            self.chunked or self.remaining is not None
        )
        self._chunk_left = 0
        self._done = no_body

    def _read_exact(self, count: int) -> bytes:
        data = self.file.read(count)
        if len(data) < count:
            raise _Closed
        return bytes(data)

    def _next_chunk(self) -> bytes:
        """The next chunk of a chunked body; b"" at its end."""
        size_line = self.file.readline(65537)
        if not size_line:
            raise _Closed
        try:
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        except ValueError:
            raise OSError(f"a malformed chunk size: {size_line[:20]!r}") from None
        if size == 0:
            while self.file.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            self._done = True
            return b""
        data = self._read_exact(size)
        self._read_exact(2)  # CRLF
        return data

    def read(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        if self.chunked:
            parts = []
            self._done = False
            while chunk := self._next_chunk():
                parts.append(chunk)
            return b"".join(parts)
        if self.remaining is not None:
            return self._read_exact(self.remaining)
        return bytes(self.file.read())

    def readline(self) -> bytes:
        """One line of a streamed body (a watch event); b"" at its end."""
        if not self.chunked:
            return bytes(self.file.readline()) if not self._done else b""
        buffer = getattr(self, "_buffer", b"")
        while b"\n" not in buffer and not self._done:
            buffer += self._next_chunk()
        line, sep, rest = buffer.partition(b"\n")
        self._buffer = rest
        return line + sep


def _answer(response: _Response, raw: bytes) -> dict[str, Any]:
    try:
        payload: Any = json.loads(raw) if raw else {}
    except ValueError:
        payload = {"message": raw.decode(errors="replace").strip()[:300]}
    if response.status >= 300:
        payload = payload if isinstance(payload, dict) else {}
        raise ApiError(
            response.status,
            str(payload.get("reason") or response.reason),
            str(payload.get("message") or ""),
        )
    return payload if isinstance(payload, dict) else {}


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in words (never a Python class name)."""
    if isinstance(exc, _Closed):
        return "the server closed the connection"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    text = str(exc).strip()
    return text or "the connection failed"
