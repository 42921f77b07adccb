"""The local node's network: one bridge, the guard chains that keep it local, and their removal.

The node's Pods live on the bridge ``blockflow0`` (10.244.0.0/24; the host is 10.244.0.1).
Guard chains keep all of it on this machine: Pods reach each other, Services and the host,
nothing beyond; the API server (which listens on every interface once Pods must reach it),
kubelet and DNS answer only on loopback and the bridge. Taking the network down removes the
bridge, the guards, the chains kubelet and kube-proxy made, and puts back the sysctls it
changed. Standard library only, like the rest of ``controller.testing``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

BRIDGE = "blockflow0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
GUARD_IN, GUARD_FWD = "BLOCKFLOW-NODE-IN", "BLOCKFLOW-NODE-FWD"
SYSCTLS = {"net/ipv4/ip_forward": "1"}
# kube-proxy (iptables mode) sets this one itself; it is put back too.
RESTORED_SYSCTLS = (*SYSCTLS, "net/ipv4/conf/all/route_localnet")


class NodeError(RuntimeError):
    """The node cannot be started or stopped cleanly; the message says what to do."""


def free_port() -> int:
    """A free TCP port on loopback (for the plane's and the node's own listeners)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout}")
    return result


def bridge_exists() -> bool:
    return run("ip", "link", "show", BRIDGE, check=False).returncode == 0


def make_network(api_port: int, saved_sysctls: Path) -> None:
    """The bridge with the host's address, the guard chains and the sysctls a node needs; the
    sysctls' values before go to ``saved_sysctls`` (which also marks the network as this
    node's)."""
    saved = {key: Path("/proc/sys", key).read_text().strip() for key in RESTORED_SYSCTLS}
    saved_sysctls.write_text(json.dumps(saved))
    for key, value in SYSCTLS.items():
        Path("/proc/sys", key).write_text(value)
    run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    run("ip", "link", "set", BRIDGE, "up")
    rules = [
        ("-N", GUARD_IN),
        ("-A", GUARD_IN, "-i", "lo", "-j", "RETURN"),
        ("-A", GUARD_IN, "-i", BRIDGE, "-j", "RETURN"),
        ("-A", GUARD_IN, "-p", "tcp", "--dport", str(api_port), "-j", "DROP"),
        ("-A", GUARD_IN, "-d", POD_CIDR, "-j", "DROP"),
        ("-I", "INPUT", "1", "-j", GUARD_IN),
        ("-N", GUARD_FWD),
        ("-A", GUARD_FWD, "-i", BRIDGE, "-o", BRIDGE, "-j", "RETURN"),
        ("-A", GUARD_FWD, "-i", BRIDGE, "-j", "DROP"),
        ("-A", GUARD_FWD, "-o", BRIDGE, "-j", "DROP"),
        ("-I", "FORWARD", "1", "-j", GUARD_FWD),
    ]
    for rule in rules:
        run("iptables", "-w", *rule)


def remove_network(saved_sysctls: Path | None) -> None:
    """kubelet's and kube-proxy's chains, the guards, the bridge; the sysctls as they were
    (when known)."""
    remove_kube_chains()
    remove_guards()
    run("ip", "link", "del", BRIDGE, check=False)
    if saved_sysctls is not None:
        restore_sysctls(saved_sysctls)


def remove_guards() -> None:
    for parent, chain in (("INPUT", GUARD_IN), ("FORWARD", GUARD_FWD)):
        while run("iptables", "-w", "-D", parent, "-j", chain, check=False).returncode == 0:
            pass
        run("iptables", "-w", "-F", chain, check=False)
        run("iptables", "-w", "-X", chain, check=False)


def restore_sysctls(saved_sysctls: Path) -> None:
    try:
        saved = json.loads(saved_sysctls.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    for key, value in saved.items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)


def network_leftovers() -> list[str]:
    """The bridge and any KUBE-, CNI- or guard rule still there."""
    found = [f"bridge {BRIDGE}"] if bridge_exists() else []
    if shutil.which("iptables-save"):
        for table in ("filter", "nat"):
            rules = run("iptables-save", "-t", table, check=False).stdout
            for line in rules.splitlines():
                if re.search(r"KUBE-|BLOCKFLOW-NODE|CNI-", line) and not line.startswith("#"):
                    found.append(f"iptables ({table}) {line}")
                    break
    return found


def remove_kube_chains() -> None:
    """kubelet's own chains (KUBE-FIREWALL, KUBE-MARK-*, canaries), which kube-proxy's cleanup
    leaves: first every rule that jumps to one, then the chains."""
    for table in ("mangle", "filter", "nat"):
        dump = run("iptables-save", "-t", table, check=False).stdout.splitlines()
        for line in dump:
            if line.startswith("-A ") and re.search(r"-j KUBE-\S+", line):
                rule = line.split()[1:]
                # iptables-save quotes comments; the rule is matched on its other parts.
                run("iptables", "-w", "-t", table, "-D", *_unquote(rule), check=False)
        for line in dump:
            if line.startswith(":KUBE-"):
                chain = line[1:].split()[0]
                run("iptables", "-w", "-t", table, "-F", chain, check=False)
        for line in dump:
            if line.startswith(":KUBE-"):
                chain = line[1:].split()[0]
                run("iptables", "-w", "-t", table, "-X", chain, check=False)


def _unquote(words: list[str]) -> list[str]:
    """iptables-save's words back into argv: a quoted comment becomes one argument."""
    out: list[str] = []
    quoted: list[str] | None = None
    for word in words:
        if quoted is not None:
            quoted.append(word)
            if word.endswith('"'):
                out.append(" ".join(quoted)[1:-1])
                quoted = None
        elif word.startswith('"') and not (word.endswith('"') and len(word) > 1):
            quoted = [word]
        else:
            out.append(word.strip('"') if word.startswith('"') else word)
    return out
