"""Cluster DNS for the local test node: the packet code (queries built and replies decoded here,
independently of the module), the search-list forms, malformed packets, and a real UDP round
trip on 127.0.0.1 against a lookup table."""

from __future__ import annotations

import io
import json
import random
import socket
import struct
import urllib.error
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.pki import make_ca
from controller.testing.cluster_dns import (
    DnsServer,
    Lookup,
    ServiceSource,
    cluster_ipv4,
    main,
    read_name,
    resolv_conf,
    service_key,
)
from controller.testing.cluster_dns import build_reply as reply_to

A, AAAA, TXT, SRV, ANY, IN = 1, 28, 16, 33, 255, 1
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
QR, AA, TC, RD, RA = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080

TABLE = {
    "web.default.svc.cluster.local": ["10.0.0.10"],
    "api.team-a.svc.cluster.local": ["10.0.0.11"],
    "wide.default.svc.cluster.local": [f"10.1.{i // 250}.{i % 250}" for i in range(100)],
}


def table_lookup(name: str) -> list[str]:
    return TABLE.get(name, [])


# -- a small DNS client, written against RFC 1035 rather than the module ---------------------


def encode(name: str) -> bytes:
    labels = [label.encode() for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def query(name: str, qtype: int = A, *, ident: int = 0x1234, flags: int = RD) -> bytes:
    return (
        struct.pack("!6H", ident, flags, 1, 0, 0, 0) + encode(name) + struct.pack("!HH", qtype, IN)
    )


@dataclass
class Reply:
    ident: int
    flags: int
    rcode: int
    question: tuple[str, int, int]
    answers: list[tuple[str, int, int, str]]  # name, type, TTL, address


def name_at(data: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end = 0
    while data[pos]:
        if data[pos] >= 0xC0:
            end = end or pos + 2
            pos = ((data[pos] & 0x3F) << 8) | data[pos + 1]
            continue
        labels.append(data[pos + 1 : pos + 1 + data[pos]].decode("latin-1"))
        pos += 1 + data[pos]
    return ".".join(labels), end or pos + 1


def decode(data: bytes) -> Reply:
    ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", data)
    assert (qd, ns, ar) == (1, 0, 0)
    qname, pos = name_at(data, 12)
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    pos += 4
    answers = []
    for _ in range(an):
        name, pos = name_at(data, pos)
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", data, pos)
        pos += 10
        assert (rtype, rclass, length) == (A, IN, 4)
        answers.append((name, rtype, ttl, socket.inet_ntoa(data[pos : pos + length])))
        pos += length
    assert pos == len(data), "trailing bytes in the reply"
    return Reply(ident, flags, flags & 0xF, (qname, qtype, qclass), answers)


def ask(packet: bytes, lookup: Lookup = table_lookup, domain: str = "cluster.local") -> Reply:
    raw = reply_to(packet, lookup, domain)
    assert raw is not None
    assert len(raw) <= 512
    return decode(raw)


def udp_ask(address: tuple[str, int], name: str, qtype: int = A) -> tuple[int, list[str]]:
    """One query over a real UDP socket: (rcode, addresses)."""
    ident = random.randrange(1 << 16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(query(name, qtype, ident=ident), address)
        data, _ = sock.recvfrom(4096)
    reply = decode(data)
    assert reply.ident == ident
    return reply.rcode, [answer[3] for answer in reply.answers]


# -- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "qtype", "rcode", "addresses", "authoritative"),
    [
        ("web.default.svc.cluster.local", A, NOERROR, ["10.0.0.10"], True),
        ("web.default.svc.cluster.local.", A, NOERROR, ["10.0.0.10"], True),
        ("WEB.Default.SVC.Cluster.LOCAL", A, NOERROR, ["10.0.0.10"], True),
        ("web.default.svc.cluster.local", ANY, NOERROR, ["10.0.0.10"], True),
        ("web.default.svc.cluster.local", AAAA, NOERROR, [], True),
        ("web.default.svc.cluster.local", TXT, NOERROR, [], True),
        ("web.default.svc.cluster.local", SRV, NOERROR, [], True),
        ("missing.default.svc.cluster.local", A, NXDOMAIN, [], True),
        ("missing.default.svc.cluster.local", AAAA, NXDOMAIN, [], True),
        ("web.team-a.svc.cluster.local", A, NXDOMAIN, [], True),
        ("web.default.svc.default.svc.cluster.local", A, NXDOMAIN, [], True),
        ("default.svc.cluster.local", A, NXDOMAIN, [], True),
        ("cluster.local", A, NXDOMAIN, [], True),
        ("example.com", A, NXDOMAIN, [], False),
        ("example.com", AAAA, NXDOMAIN, [], False),
        ("web.default.svc", A, NXDOMAIN, [], False),
        ("web.default.svc.cluster.local.example.com", A, NXDOMAIN, [], False),
        ("local", A, NXDOMAIN, [], False),
        ("10.0.0.10.in-addr.arpa", A, NXDOMAIN, [], False),
    ],
)
def test_answers(
    name: str, qtype: int, rcode: int, addresses: list[str], authoritative: bool
) -> None:
    reply = ask(query(name, qtype, ident=0xBEEF))
    assert reply.ident == 0xBEEF
    assert reply.rcode == rcode
    assert reply.flags & QR and reply.flags & RD and reply.flags & RA
    assert not reply.flags & TC
    assert bool(reply.flags & AA) == authoritative
    assert [a[3] for a in reply.answers] == addresses
    # The question is echoed exactly (case included); answers point at it with TTL 5.
    assert reply.question == (name.rstrip("."), qtype, IN)
    assert all(a[0] == name.rstrip(".") and a[2] == 5 for a in reply.answers)


def test_another_cluster_domain() -> None:
    def lookup(name: str) -> list[str]:
        return ["10.0.0.7"] if name == "web.default.svc.corp.test" else []

    assert ask(query("web.default.svc.corp.test"), lookup, "corp.test").answers[0][3] == "10.0.0.7"
    assert ask(query("web.default.svc.cluster.local"), lookup, "corp.test").rcode == NXDOMAIN


def test_too_many_addresses_set_tc_and_stay_under_512_bytes() -> None:
    raw = reply_to(query("wide.default.svc.cluster.local"), table_lookup)
    assert raw is not None and len(raw) <= 512
    reply = decode(raw)
    assert reply.flags & TC
    assert 0 < len(reply.answers) < 100
    assert [a[3] for a in reply.answers] == TABLE["wide.default.svc.cluster.local"][
        : len(reply.answers)
    ]


def test_unknown_yet_or_broken_lookup_is_servfail() -> None:
    def broken(name: str) -> list[str]:
        raise RuntimeError("boom")

    assert ask(query("web.default.svc.cluster.local"), lambda name: None).rcode == SERVFAIL
    assert ask(query("web.default.svc.cluster.local"), broken).rcode == SERVFAIL
    # Outside the domain the lookup is never asked.
    assert ask(query("example.com"), broken).rcode == NXDOMAIN


def test_opcode_class_and_edns() -> None:
    assert ask(query("web.default.svc.cluster.local", flags=2 << 11)).rcode == NOTIMP
    chaos = query("web.default.svc.cluster.local")[:-2] + struct.pack("!H", 3)
    assert ask(chaos).rcode == REFUSED
    # dig and others add an EDNS OPT record in the additional section; it is ignored.
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    edns = bytearray(query("web.default.svc.cluster.local") + opt)
    edns[11] = 1  # ARCOUNT
    reply = ask(bytes(edns))
    assert (reply.rcode, reply.answers[0][3]) == (NOERROR, "10.0.0.10")


def test_label_tricks_cannot_alias_a_service() -> None:
    header = struct.pack("!6H", 7, RD, 1, 0, 0, 0)
    dotted = b"\x0bweb.default" + encode("svc.cluster.local")
    assert ask(header + dotted + struct.pack("!HH", A, IN)).rcode == NXDOMAIN
    binary = b"\x03w\xffb" + encode("default.svc.cluster.local")
    assert ask(header + binary + struct.pack("!HH", A, IN)).rcode == NXDOMAIN


# -- search-list forms -----------------------------------------------------------------------


def resolve_like_glibc(name: str, conf: str) -> list[str] | None:
    """What a Pod's stub resolver does with resolv.conf: names with fewer dots than ndots try
    the search list first, then the name as given; the first NOERROR answer wins."""
    lines = dict(line.split(None, 1) for line in conf.splitlines())
    search = lines["search"].split()
    ndots = int(lines["options"].removeprefix("ndots:"))
    if name.endswith("."):
        candidates = [name]
    else:
        suffixed = [f"{name}.{suffix}" for suffix in search]
        candidates = [*suffixed, name] if name.count(".") < ndots else [name, *suffixed]
    for candidate in candidates:
        reply = ask(query(candidate))
        if reply.rcode == NOERROR:
            return [a[3] for a in reply.answers]
        assert reply.rcode == NXDOMAIN
    return None


@pytest.mark.parametrize(
    ("pod_namespace", "name", "expected"),
    [
        ("default", "web", ["10.0.0.10"]),
        ("default", "web.default", ["10.0.0.10"]),
        ("default", "web.default.svc", ["10.0.0.10"]),
        ("default", "web.default.svc.cluster.local", ["10.0.0.10"]),
        ("default", "web.default.svc.cluster.local.", ["10.0.0.10"]),
        ("team-a", "web.default", ["10.0.0.10"]),
        ("team-a", "api", ["10.0.0.11"]),
        ("team-a", "web", None),
        ("default", "api", None),
        ("default", "example.com", None),
    ],
)
def test_search_list_forms(pod_namespace: str, name: str, expected: list[str] | None) -> None:
    conf = resolv_conf("10.244.0.1", pod_namespace)
    assert conf.splitlines()[0] == "nameserver 10.244.0.1"
    assert resolve_like_glibc(name, conf) == expected


def test_resolv_conf() -> None:
    assert resolv_conf("10.244.0.1", "team-a", "corp.test").splitlines() == [
        "nameserver 10.244.0.1",
        "search team-a.svc.corp.test svc.corp.test corp.test",
        "options ndots:5",
    ]


# -- malformed packets -----------------------------------------------------------------------

HEADER = struct.pack("!6H", 0x4242, RD, 1, 0, 0, 0)
TAIL = struct.pack("!HH", A, IN)


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(HEADER, id="header-only"),
        pytest.param(struct.pack("!6H", 0x4242, RD, 0, 0, 0, 0), id="no-question"),
        pytest.param(struct.pack("!6H", 0x4242, RD, 2, 0, 0, 0) + encode("a") + TAIL * 2, id="2q"),
        pytest.param(HEADER + b"\x05ab", id="label-overrun"),
        pytest.param(HEADER + encode("web.default.svc.cluster.local"), id="no-type-class"),
        pytest.param(HEADER + encode("web.default.svc.cluster.local") + b"\0", id="short-tail"),
        pytest.param(HEADER + b"\xc0\x0c" + TAIL, id="pointer-to-itself"),
        pytest.param(HEADER + b"\x01a\xc0\x0c" + TAIL, id="pointer-loop"),
        pytest.param(HEADER + b"\xc0\x20" + TAIL + b"\0" * 32, id="forward-pointer"),
        pytest.param(HEADER + b"\xc0", id="truncated-pointer"),
        pytest.param(HEADER + b"\x41abc\0" + TAIL, id="reserved-label-type"),
        pytest.param(HEADER + (b"\x3f" + b"a" * 63) * 5 + b"\0" + TAIL, id="name-over-255"),
    ],
)
def test_malformed_packets_get_formerr(packet: bytes) -> None:
    raw = reply_to(packet, table_lookup)
    assert raw is not None
    ident, flags, qd, an, ns, ar = struct.unpack("!6H", raw)
    assert (ident, flags & 0xF, qd, an, ns, ar) == (0x4242, FORMERR, 0, 0, 0, 0)
    assert flags & QR


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x12", HEADER[:11], struct.pack("!6H", 1, QR, 1, 0, 0, 0) + encode("a") + TAIL],
    ids=["empty", "one-byte", "short-header", "a-response"],
)
def test_packets_not_worth_a_reply(packet: bytes) -> None:
    assert reply_to(packet, table_lookup) is None


def test_no_input_makes_it_raise() -> None:
    rng = random.Random(1035)
    valid = query("web.default.svc.cluster.local")
    packets = [valid[:n] for n in range(len(valid))]
    packets += [bytes(rng.randrange(256) for _ in range(rng.randrange(40))) for _ in range(3000)]
    for _ in range(3000):
        mutated = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        packets.append(bytes(mutated))
    for packet in packets:
        raw = reply_to(packet, table_lookup)
        assert raw is None or 12 <= len(raw) <= 512


def test_read_name_follows_backward_pointers() -> None:
    data = encode("default.svc.cluster.local") + b"\x03web\xc0\x00" + b"tail"
    start = len(encode("default.svc.cluster.local"))
    labels, end = read_name(data, start)
    assert labels == (b"web", b"default", b"svc", b"cluster", b"local")
    assert data[end:] == b"tail"


# -- Services ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("web.default.svc.cluster.local", ("default", "web")),
        ("WEB.Default.svc.cluster.local.", ("default", "web")),
        ("a.b.c.svc.cluster.local", None),
        ("default.svc.cluster.local", None),
        (".default.svc.cluster.local", None),
        ("web.default.svc.other.local", None),
        ("web.default.pod.cluster.local", None),
    ],
)
def test_service_key(name: str, key: tuple[str, str] | None) -> None:
    assert service_key(name) == key


@pytest.mark.parametrize(
    ("spec", "address"),
    [
        ({"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5"]}, "10.0.0.5"),
        ({"clusterIP": "10.0.0.5"}, "10.0.0.5"),
        ({"clusterIP": "None", "clusterIPs": ["None"]}, None),
        ({"type": "ExternalName", "externalName": "example.com"}, None),
        ({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5", "10.0.0.6"]}, "10.0.0.6"),
        ({"clusterIP": ""}, None),
    ],
)
def test_cluster_ipv4(spec: dict[str, object], address: str | None) -> None:
    assert cluster_ipv4({"metadata": {"name": "s"}, "spec": spec}) == address


def svc(name: str, version: int, cluster_ip: str = "None") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "resourceVersion": str(version)}
    return {"metadata": meta, "spec": {"clusterIP": cluster_ip}}


def events(*pairs: tuple[str, dict[str, Any]]) -> bytes:
    return b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in pairs)


def test_service_source_lists_watches_and_relists(tmp_path: Path) -> None:
    """The LIST/WATCH loop against a scripted API: events update the table, an ERROR 410 event
    and a failed request both lead to a fresh LIST, and nothing is known before the first."""
    gone = {"kind": "Status", "code": 410, "message": "too old resource version"}
    script: list[bytes | Exception] = [
        json.dumps(
            {"metadata": {"resourceVersion": "10"}, "items": [svc("a", 5, "10.0.0.1")]}
        ).encode(),
        events(
            ("ADDED", svc("b", 11, "10.0.0.2")),
            ("ADDED", svc("headless", 12)),
            ("MODIFIED", svc("a", 13, "10.0.0.9")),
            ("BOOKMARK", {"metadata": {"resourceVersion": "14"}}),
            ("DELETED", svc("b", 15, "10.0.0.2")),
            ("ERROR", gone),
        ),
        json.dumps(
            {"metadata": {"resourceVersion": "20"}, "items": [svc("c", 19, "10.0.0.3")]}
        ).encode(),
        urllib.error.URLError("connection refused"),
        json.dumps({"metadata": {"resourceVersion": "30"}, "items": []}).encode(),
    ]
    source = ServiceSource("https://127.0.0.1:1", "token", make_ca(tmp_path, "test-ca"))
    source.BACKOFF = (0.01, 0.02)
    assert source.lookup("a.ns.svc.cluster.local") is None  # not listed yet: SERVFAIL
    seen: list[tuple[dict[str, str], dict[tuple[str, str], str]]] = []

    def fake_get(query: dict[str, str], timeout: float) -> io.BytesIO:
        seen.append((query, dict(source._services)))
        if not script:
            source.stop()
            raise OSError("end of script")
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return io.BytesIO(step)

    source._get = fake_get  # type: ignore[method-assign]
    source._run()  # in this thread; returns once the script is used up
    queries = [query.get("resourceVersion", "LIST") for query, _ in seen]
    assert queries == ["LIST", "10", "LIST", "20", "LIST", "30"]
    after_events = seen[2][1]
    assert after_events == {("ns", "a"): "10.0.0.9"}
    assert seen[3][1] == {("ns", "c"): "10.0.0.3"}
    assert source.lookup("a.ns.svc.cluster.local") == []  # the last LIST was empty
    assert all(q.get("watch") == "true" for q, _ in seen if "resourceVersion" in q)


@pytest.mark.parametrize(
    "argv",
    [[], ["--server", "https://127.0.0.1:1"], ["--kubeconfig", "k", "--ca", "c"]],
    ids=["nothing", "server-only", "kubeconfig-and-ca"],
)
def test_cli_needs_a_complete_way_to_the_api_server(argv: Sequence[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2


# -- over a real socket ------------------------------------------------------------------------


def test_udp_round_trip() -> None:
    server = DnsServer("127.0.0.1", 0, table_lookup).start()
    try:
        address = server.address
        assert udp_ask(address, "web.default.svc.cluster.local") == (NOERROR, ["10.0.0.10"])
        assert udp_ask(address, "Api.Team-A.svc.cluster.local") == (NOERROR, ["10.0.0.11"])
        assert udp_ask(address, "web.default.svc.cluster.local", AAAA) == (NOERROR, [])
        assert udp_ask(address, "nope.default.svc.cluster.local") == (NXDOMAIN, [])
        assert udp_ask(address, "example.com") == (NXDOMAIN, [])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(HEADER + b"\xc0\x0c" + TAIL, address)  # malformed: FORMERR, not a crash
            data, _ = sock.recvfrom(4096)
            assert struct.unpack_from("!HH", data) == (0x4242, QR | RD | FORMERR)
            sock.sendto(b"\x00", address)  # garbage: silently dropped
        # Still serving afterwards.
        assert udp_ask(address, "web.default.svc.cluster.local") == (NOERROR, ["10.0.0.10"])
    finally:
        server.stop()
