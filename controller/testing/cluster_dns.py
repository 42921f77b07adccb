"""Cluster DNS for the local test node: Service names to ClusterIPs, standard library only.

Pods on the local control plane's node expect what CoreDNS gives them in a real cluster:
``<service>.<namespace>.svc.<domain>`` answers with the Service's ClusterIP, and the shorter
forms (``<service>.<namespace>.svc``, ``<service>.<namespace>``, ``<service>``) work through
the Pod's search list (:func:`resolv_conf`). There is no CoreDNS on these machines and this runs
before any virtualenv exists, so this is a deliberately small server for a test bed only:

* ``A`` (or ``ANY``) for a Service with an IPv4 ClusterIP: NOERROR, one A record, TTL 5 s.
* ``AAAA`` or any other type for such a name: NOERROR with no answers (glibc does not wait).
* Any other name inside the cluster domain: NXDOMAIN, authoritative. That includes headless
  Services (clusterIP ``None``), ExternalName Services, Pod names and SRV-style names, which are
  left unresolved on purpose.
* Names outside the cluster domain: NXDOMAIN at once. There is no upstream network here, so
  nothing is ever forwarded.
* Replies stay under 512 bytes; TC is set if one would not fit (there is no TCP listener).
  No SOA goes with negative answers, so nothing caches them: a new Service resolves at once.
* Until the first LIST of Services has succeeded, names in the domain get SERVFAIL (retry).
  RA is set: for a Pod this is the whole DNS, and its answers are final.

``python -m controller.testing.cluster_dns --kubeconfig PATH --listen 10.244.0.1:53`` (or
``--server URL --token-file F --ca F``) runs it in the foreground; see :func:`main`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import json
import signal
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

DEFAULT_DOMAIN = "cluster.local"
TTL = 5
MAX_UDP_PAYLOAD = 512
TYPE_A, TYPE_AAAA, TYPE_ANY = 1, 28, 255
CLASS_IN, CLASS_ANY = 1, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
_QR, _AA, _TC, _RD, _RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080

# A lookup gets a lowercase name inside the cluster domain, without the trailing dot
# ("web.default.svc.cluster.local"), and returns its IPv4 addresses: empty when the name does
# not exist, None when the answer is not known yet (SERVFAIL, so the client tries again).
Lookup: TypeAlias = Callable[[str], Sequence[str] | None]


class MalformedPacket(ValueError):
    """The bytes are not a DNS query this server can read."""


@dataclass(frozen=True)
class Query:
    id: int
    flags: int
    labels: tuple[bytes, ...]  # as sent (case kept, so the reply echoes it exactly)
    qtype: int
    qclass: int


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the name at ``offset`` and the offset just after it. Pointers must go
    strictly backwards of all read so far (no loops); bad labels raise MalformedPacket."""
    labels: list[bytes] = []
    end: int | None = None
    limit = offset  # a pointer must land before every position visited so far
    pos, total = offset, 1
    while True:
        if pos >= len(data):
            raise MalformedPacket("name runs past the end of the packet")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise MalformedPacket("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if target >= limit:
                raise MalformedPacket("compression pointer does not point backwards")
            if end is None:
                end = pos + 2
            pos = limit = target
            continue
        if length & 0xC0:
            raise MalformedPacket(f"reserved label type {length:#x}")
        if length == 0:
            return tuple(labels), end if end is not None else pos + 1
        total += length + 1
        if total > 255 or pos + 1 + length > len(data):
            raise MalformedPacket("label too long for the packet or the name")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


def parse_query(data: bytes) -> Query:
    """Header and the single question of a query; anything after it (EDNS OPT) is ignored."""
    if len(data) < 12:
        raise MalformedPacket("shorter than a DNS header")
    ident, flags, qdcount = struct.unpack_from("!HHH", data)
    if flags & _QR:
        raise MalformedPacket("a response, not a query")
    if qdcount != 1:
        raise MalformedPacket(f"{qdcount} questions, expected 1")
    labels, pos = read_name(data, 12)
    if pos + 4 > len(data):
        raise MalformedPacket("question ends before its type and class")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    return Query(ident, flags, labels, qtype, qclass)


def _header(ident: int, flags: int, rcode: int, qd: int, an: int) -> bytes:
    return struct.pack("!6H", ident, flags | rcode, qd, an, 0, 0)


def build_reply(data: bytes, lookup: Lookup, domain: str = DEFAULT_DOMAIN) -> bytes | None:
    """The reply to one query packet, or None when nothing should be sent (not even a header,
    or a response looping back). Never raises for any input."""
    if len(data) < 12 or data[2] & 0x80:
        return None
    try:
        query = parse_query(data)
    except MalformedPacket:
        ident, flags = struct.unpack_from("!HH", data)
        return _header(ident, _QR | (flags & (0x7800 | _RD)), FORMERR, 0, 0)
    flags = _QR | _RA | (query.flags & (0x7800 | _RD))
    name_bytes = b"".join(bytes([len(label)]) + label for label in query.labels) + b"\0"
    question = name_bytes + struct.pack("!HH", query.qtype, query.qclass)

    def reply(rcode: int, addresses: Sequence[bytes] = (), extra: int = 0) -> bytes:
        fits = (MAX_UDP_PAYLOAD - 12 - len(question)) // 16  # a compressed A record: 16 bytes
        answers = [
            struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + packed
            for packed in addresses[:fits]
        ]
        tc = _TC if len(addresses) > fits else 0
        head = _header(query.id, flags | extra | tc, rcode, 1, len(answers))
        return head + question + b"".join(answers)

    if query.flags & 0x7800:  # an opcode other than QUERY
        return reply(NOTIMP)
    if query.qclass not in (CLASS_IN, CLASS_ANY):
        return reply(REFUSED)
    lowered = tuple(label.lower() for label in query.labels)
    zone = tuple(label.encode() for label in domain.lower().strip(".").split("."))
    if lowered[-len(zone) :] != zone:
        return reply(NXDOMAIN)
    try:
        name = ".".join(label.decode("ascii") for label in lowered)
        # A dot inside a label cannot be a Service name, and must not alias one.
        found = [] if any(b"." in label for label in lowered) else lookup(name)
    except UnicodeDecodeError:
        found = []
    except Exception:  # a broken lookup must not take the server down
        return reply(SERVFAIL)
    if found is None:
        return reply(SERVFAIL)
    packed = [_pack_ipv4(address) for address in found]
    known = [p for p in packed if p is not None]
    if not known:
        return reply(NXDOMAIN, extra=_AA)
    return reply(NOERROR, known if query.qtype in (TYPE_A, TYPE_ANY) else (), extra=_AA)


def _pack_ipv4(address: str) -> bytes | None:
    with contextlib.suppress(ValueError):
        return ipaddress.IPv4Address(address).packed
    return None


def service_key(name: str, domain: str = DEFAULT_DOMAIN) -> tuple[str, str] | None:
    """``(namespace, service)`` for ``<service>.<namespace>.svc.<domain>``, else None."""
    suffix = f".svc.{domain.lower().strip('.')}"
    name = name.lower().rstrip(".")
    if not name.endswith(suffix):
        return None
    parts = name[: -len(suffix)].split(".")
    return (parts[1], parts[0]) if len(parts) == 2 and all(parts) else None


def resolv_conf(nameserver: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """/etc/resolv.conf for a Pod in ``namespace`` that uses this server (the kubelet's)."""
    search = f"{namespace}.svc.{domain} svc.{domain} {domain}"
    return f"nameserver {nameserver}\nsearch {search}\noptions ndots:5\n"


# -- the Services, from the API server --------------------------------------------------------


class ServiceSource:
    """``{(namespace, name): clusterIP}`` kept current by LIST + WATCH of /api/v1/services.

    Re-lists on 410 Gone or any error, after a short backoff; serves the last table meanwhile.
    Only IPv4 ClusterIPs are kept (headless and ExternalName Services have none).
    """

    WATCH_SECONDS = 60
    BACKOFF = (0.5, 5.0)

    def __init__(
        self,
        server: str,
        token: str,
        ca_file: str | Path | None,
        *,
        ca_data: str | None = None,
        domain: str = DEFAULT_DOMAIN,
    ) -> None:
        if ca_file is None and ca_data is None:
            raise ValueError("the API server's CA is required (ca_file or ca_data)")
        self.server = server.rstrip("/")
        self.domain = domain
        self._token = token
        self._ssl = ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None, cadata=ca_data
        )
        self._services: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.synced = threading.Event()  # set once the first LIST has been applied

    @classmethod
    def from_kubeconfig(cls, path: str | Path, *, domain: str = DEFAULT_DOMAIN) -> ServiceSource:
        """From a JSON kubeconfig with token auth (what the local control plane writes)."""
        try:
            config = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: only JSON kubeconfigs are supported ({exc})") from None
        context = _named(config, "contexts", config.get("current-context"))["context"]
        cluster = _named(config, "clusters", context.get("cluster"))["cluster"]
        user = _named(config, "users", context.get("user"))["user"]
        token = user.get("token")
        if not token:
            raise ValueError(f"{path}: the user has no bearer token")
        data = cluster.get("certificate-authority-data")
        ca_data = base64.b64decode(data).decode() if data else None
        ca_file = cluster.get("certificate-authority")
        return cls(cluster["server"], token, ca_file, ca_data=ca_data, domain=domain)

    def lookup(self, name: str) -> list[str] | None:
        if not self.synced.is_set():
            return None
        key = service_key(name, self.domain)
        with self._lock:
            address = self._services.get(key) if key else None
            known = len(self._services)
        if key and not address:
            _log(f"no Service {key[0]}/{key[1]} ({known} known)")
        return [address] if address else []

    def start(self) -> ServiceSource:
        threading.Thread(target=self._run, name="cluster-dns-services", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop after the current watch request (at most WATCH_SECONDS); the thread is a daemon."""
        self._stopping.set()

    def _get(self, query: dict[str, str], timeout: float) -> Any:
        request = urllib.request.Request(
            f"{self.server}/api/v1/services?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        )
        return urllib.request.urlopen(request, timeout=timeout, context=self._ssl)

    def _run(self) -> None:
        delay = self.BACKOFF[0]
        while not self._stopping.is_set():
            try:
                version = self._list()
                delay = self.BACKOFF[0]
                self._watch(version)
            except Exception as exc:  # network, TLS, HTTP, JSON: all mean "list again"
                _log(f"watching services failed, re-listing in {delay:.1f}s: {exc}")
                self._stopping.wait(delay)
                delay = min(delay * 2, self.BACKOFF[1])

    def _list(self) -> str:
        with self._get({}, timeout=30) as response:
            body = json.load(response)
        table = {}
        for item in body.get("items", []):
            address = cluster_ipv4(item)
            if address:
                table[_key(item)] = address
        with self._lock:
            self._services = table
        self.synced.set()
        return str(body["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        """Follow changes from ``version``; returns when a re-list is needed (410 Gone)."""
        while not self._stopping.is_set():
            query = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": version}
            query["timeoutSeconds"] = str(self.WATCH_SECONDS)
            # A too-old version comes back as an ERROR event with code 410, not an HTTP error.
            with self._get(query, timeout=self.WATCH_SECONDS + 30) as response:
                for line in response:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, item = event["type"], event["object"]
                    if kind == "ERROR":
                        if item.get("code") == 410:
                            return
                        raise RuntimeError(f"watch error: {item.get('message', item)}")
                    version = item["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    address = cluster_ipv4(item) if kind != "DELETED" else None
                    with self._lock:
                        if address:
                            self._services[_key(item)] = address
                        else:
                            self._services.pop(_key(item), None)


def _log(message: str) -> None:
    print(f"[cluster-dns] {message}", file=sys.stderr, flush=True)


def cluster_ipv4(service: dict[str, Any]) -> str | None:
    """The Service's IPv4 ClusterIP; None for headless ("None") and ExternalName Services."""
    spec = service.get("spec") or {}
    for address in spec.get("clusterIPs") or [spec.get("clusterIP")]:
        if isinstance(address, str) and _pack_ipv4(address):
            return address
    return None


def _key(service: dict[str, Any]) -> tuple[str, str]:
    meta = service["metadata"]
    return str(meta.get("namespace", "default")).lower(), str(meta["name"]).lower()


def _named(config: dict[str, Any], section: str, name: object) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry)
    raise ValueError(f"kubeconfig: no entry {name!r} in {section}")


# -- the UDP server ---------------------------------------------------------------------------


class _Handler(socketserver.BaseRequestHandler):
    server: DnsServer

    def handle(self) -> None:
        data, sock = self.request
        started = time.monotonic()
        answer = build_reply(data, self.server.lookup, self.server.domain)
        if answer is None:
            return
        sock.sendto(answer, self.client_address)
        # What a client cannot tell apart from a missing name (glibc goes on down its search
        # list after a SERVFAIL) is logged, and so is a slow answer.
        took = time.monotonic() - started
        if (len(answer) > 3 and answer[3] & 0x0F == SERVFAIL) or took > 0.5:
            _log(f"answered {self.client_address[0]} rcode {answer[3] & 0x0F} in {took:.2f}s")


class DnsServer(socketserver.UDPServer):
    """UDP DNS on ``(host, port)``; port 0 picks a free one (see ``address``)."""

    def __init__(
        self, host: str, port: int, lookup: Lookup, *, domain: str = DEFAULT_DOMAIN
    ) -> None:
        self.lookup = lookup
        self.domain = domain
        super().__init__((host, port), _Handler)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> DnsServer:
        """Serve in a daemon thread; ``stop()`` ends it."""
        threading.Thread(target=self.serve_forever, name="cluster-dns", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m controller.testing.cluster_dns",
        description="Cluster DNS (Service names to ClusterIPs) for the local test node.",
    )
    parser.add_argument("--server", help="API server URL")
    parser.add_argument("--token-file", type=Path, help="file with the bearer token")
    parser.add_argument("--ca", type=Path, help="the API server's CA certificate (PEM)")
    parser.add_argument("--kubeconfig", type=Path, help="instead of --server/--token-file/--ca")
    parser.add_argument("--listen", default="127.0.0.1:53", help="HOST:PORT (default: %(default)s)")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN, help="default: %(default)s")
    args = parser.parse_args(argv)
    direct = (args.server, args.token_file, args.ca)
    if args.kubeconfig and any(direct):
        parser.error("--kubeconfig excludes --server, --token-file and --ca")
    if not args.kubeconfig and not all(direct):
        parser.error("give --kubeconfig, or all of --server, --token-file and --ca")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen wants HOST:PORT, got {args.listen!r}")
    try:
        if args.kubeconfig:
            source = ServiceSource.from_kubeconfig(args.kubeconfig, domain=args.domain)
        else:
            token = args.token_file.read_text().strip()
            source = ServiceSource(args.server, token, args.ca, domain=args.domain)
        server = DnsServer(host, int(port), source.lookup, domain=args.domain)
    except (OSError, ValueError, KeyError, ssl.SSLError) as exc:
        _log(f"ERROR: {exc}")
        return 1
    source.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM: KeyboardInterrupt
    _log("serving {} on {}:{}".format(args.domain, *server.address))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        source.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
