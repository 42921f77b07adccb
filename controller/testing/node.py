"""A node that runs Pods, added to the local control plane (``hack/control-plane.sh up --node``).

Why it exists: the controller, its image and its Helm chart are used in clusters where they run
as Pods, and a control plane without nodes never runs one. This room starts, beside the API
server, what a kubeadm node runs — containerd with runc and a CNI bridge, kubelet,
kube-scheduler, kube-proxy (iptables) — plus a small cluster DNS (``cluster_dns``), all from
Debian's packages and the Kubernetes tree that ``hack/build-control-plane.sh --node`` builds.

Two things this kind of VM refuses even to root — raising an rlimit above the hard limit and
lowering ``oom_score_adj`` — make runc fail ("can't get final child's PID from pipe"), so the
CRI runtime's binary is a wrapper (``runc_wrapper``) that drops ``process.rlimits`` and a
negative ``process.oomScoreAdj`` from the bundle before exec'ing runc.

The network is one bridge (``blockflow0``, 10.244.0.0/24, the host is 10.244.0.1). Guard chains
keep it local: Pods reach each other, Services and the host, nothing beyond; the API server,
kubelet and DNS answer only on loopback and the bridge. ``stop`` takes everything down again:
Pods, processes, mounts, the bridge, iptables chains and the sysctls it changed, and reports
anything it could not remove. Standard library only, like ``control_plane``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

NODE_NAME = "node1"
BRIDGE = "blockflow0"
POD_CIDR = "10.244.0.0/24"
GATEWAY = "10.244.0.1"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "localhost/pause:3.4"
CNI_NETWORK = "blockflow"
GUARD_IN, GUARD_FWD = "BLOCKFLOW-NODE-IN", "BLOCKFLOW-NODE-FWD"
SYSCTLS = {"net/ipv4/ip_forward": "1"}
# kube-proxy (iptables mode) sets this one itself; it is put back on stop.
RESTORED_SYSCTLS = (*SYSCTLS, "net/ipv4/conf/all/route_localnet")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
NODE_CONTROLLERS = (
    "garbagecollector,namespace,serviceaccount,serviceaccount-token,job,deployment,replicaset,"
    "endpoint,endpointslice,disruption,podgc,statefulset,daemonset,ttl,nodelifecycle"
)
STOP_ORDER = ("kubelet", "kube-proxy", "kube-scheduler", "cluster-dns", "containerd")


class NodeError(RuntimeError):
    """The node cannot be started or stopped cleanly; the message says what to do."""


RUNC_WRAPPER = '''#!{python}
"""runc for the local node: drops what this VM refuses (see controller/testing/node.py)."""
import json, os, sys

args = sys.argv[1:]
if "create" in args and "--bundle" in args:
    config = os.path.join(args[args.index("--bundle") + 1], "config.json")
    with open(config) as fh:
        spec = json.load(fh)
    process = spec.get("process") or {{}}
    process.pop("rlimits", None)
    if (process.get("oomScoreAdj") or 0) < 0:
        process.pop("oomScoreAdj")
    with open(config, "w") as fh:
        json.dump(spec, fh)
os.execv("{runc}", ["runc", *args])
'''


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout}")
    return result


def _require(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise NodeError(
            f"{', '.join(missing)} not found: run `hack/install-deps.sh --node` as root "
            "(Debian/Ubuntu: containerd runc containernetworking-plugins iptables conntrack)."
        )


def cni_bin_dir() -> str:
    for folder in CNI_BIN_DIRS:
        if Path(folder, "bridge").is_file():
            return folder
    raise NodeError("the CNI bridge plugin is missing: install containernetworking-plugins.")


def pause_archive(pause_binary: Path) -> bytes:
    """A docker-archive of the Pod sandbox image: one layer holding the static ``/pause``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode = 0o755
        with open(pause_binary, "rb") as fh:
            tar.addfile(info, fh)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for name, data in (
            (f"{diff_id}/layer.tar", layer_bytes),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


class Node:
    """The node's processes and files, under ``<plane state dir>/node``."""

    def __init__(self, plane_dir: Path) -> None:
        self.dir = plane_dir / "node"
        self.logs = plane_dir / "logs"
        # Sockets live under a short path (a unix socket's path has at most 107 bytes, and a
        # checkout may be deep): containerd's socket and state, and kubelet's root directory.
        tag = hashlib.sha256(str(plane_dir.resolve()).encode()).hexdigest()[:10]
        self.run_dir = Path("/run") / f"blockflow-node-{tag}"
        self._pod_uids: list[str] = []

    # -- paths --------------------------------------------------------------------------------

    @property
    def socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def kubelet_dir(self) -> Path:
        return self.run_dir / "kubelet"

    @property
    def _saved_sysctls(self) -> Path:
        return self.dir / "sysctls.json"

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.socket), "-n", "k8s.io", *args, check=check)

    # -- network ------------------------------------------------------------------------------

    def prepare_network(self, api_port: int) -> None:
        """The bridge with the host's address, the guard chains and the sysctls a node needs."""
        if os.geteuid() != 0:
            raise NodeError(
                "a node needs root (containerd, kubelet and kube-proxy set up mounts, network "
                "namespaces and iptables): run as root, e.g. `sudo make test`."
            )
        _require("ip", "iptables", "containerd", "runc", "ctr", "conntrack")
        if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            if _pids_matching(_is_node_process):
                raise NodeError(
                    f"the bridge {BRIDGE} is in use: another local node runs on this machine; "
                    "stop it with `hack/control-plane.sh down` in its checkout."
                )
            self._clear_stale()
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = {key: Path("/proc/sys", key).read_text().strip() for key in RESTORED_SYSCTLS}
        self._saved_sysctls.write_text(json.dumps(saved))
        for key, value in SYSCTLS.items():
            Path("/proc/sys", key).write_text(value)
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
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
            _run("iptables", "-w", *rule)

    # -- start --------------------------------------------------------------------------------

    def write_configs(self, binaries: dict[str, str], kubelet_port: int) -> None:
        containerd_dir = self.dir / "containerd"
        cni_conf = self.dir / "cni" / "net.d"
        for folder in (containerd_dir, cni_conf, self.kubelet_dir, self.dir / "cni" / "ipam"):
            folder.mkdir(parents=True, exist_ok=True)
        runc = shutil.which("runc") or "/usr/sbin/runc"
        wrapper = self.dir / "runc-wrapper"
        wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable, runc=runc))
        wrapper.chmod(0o755)
        conflist = {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "subnet": POD_CIDR,
                        "rangeStart": "10.244.0.10",
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (cni_conf / "10-blockflow.conflist").write_text(json.dumps(conflist, indent=2))
        (containerd_dir / "config.toml").write_text(
            f"""version = 2
root = "{containerd_dir / "root"}"
state = "{self.run_dir / "containerd-state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{wrapper}"
"""
        )
        kubelet_config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": kubelet_port,
            "readOnlyPort": 0,
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": True},
                "webhook": {"enabled": False},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "clusterDNS": [GATEWAY],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "/etc/resolv.conf",
            "volumePluginDir": str(self.kubelet_dir / "volume-plugins"),
            # Images are made here and cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
            # Report readiness soon after start (the default waits up to 10 s).
            "nodeStatusUpdateFrequency": "2s",
        }
        (self.dir / "kubelet-config.json").write_text(json.dumps(kubelet_config, indent=2))

    def start_containerd(self, spawn: Callable[[str, list[str]], int]) -> int:
        config = self.dir / "containerd" / "config.toml"
        pid = spawn("containerd", ["containerd", "--config", str(config)])
        _wait(lambda: self.ctr("version", check=False).returncode == 0, "containerd", self.logs)
        return pid

    def import_pause(self, pause_binary: Path) -> None:
        archive = self.dir / "pause.tar"
        archive.write_bytes(pause_archive(pause_binary))
        self.ctr("images", "import", "--no-unpack", str(archive))
        archive.unlink()

    def load_image(self, archive: Path) -> None:
        """Import a docker-archive or oci-archive into the node's containerd (k8s.io)."""
        self.ctr("images", "import", str(archive))

    def commands(self, binaries: dict[str, str], kubeconfig: Path) -> dict[str, list[str]]:
        """The argv of every node process but containerd, keyed by name."""
        python = sys.executable
        return {
            "cluster-dns": [
                python,
                "-m",
                "controller.testing.cluster_dns",
                "--kubeconfig",
                str(kubeconfig),
                "--listen",
                f"{GATEWAY}:53",
                "--domain",
                CLUSTER_DOMAIN,
            ],
            "kube-scheduler": [
                binaries["kube-scheduler"],
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--v=1",
            ],
            "kube-proxy": [
                binaries["kube-proxy"],
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                "--masquerade-all",
                f"--bind-address={GATEWAY}",
                f"--healthz-bind-address=127.0.0.1:{free_port()}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--v=1",
            ],
            "kubelet": [
                binaries["kubelet"],
                f"--config={self.dir / 'kubelet-config.json'}",
                f"--kubeconfig={kubeconfig}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{self.socket}",
                f"--root-dir={self.kubelet_dir}",
                f"--cert-dir={self.dir / 'kubelet-pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={GATEWAY}",
                f"--pod-infra-container-image={PAUSE_IMAGE}",
                "--v=1",
            ],
        }

    # -- stop ---------------------------------------------------------------------------------

    def stop(
        self,
        pids: dict[str, int],
        stop_process: Callable[[int], bool],
        api: Callable[[str, str], object] | None,
        kube_proxy: str | None,
    ) -> list[str]:
        """Take the node down; return what could not be removed (empty when clean)."""
        if api is not None and pids.get("kubelet"):
            self._delete_pods(api)
        for name in STOP_ORDER:
            if name == "containerd":
                self._kill_tasks()
            pid = pids.get(name)
            if pid:
                stop_process(pid)
        self._kill_shims()
        if kube_proxy and Path(kube_proxy).is_file():
            _run(kube_proxy, "--cleanup", "--proxy-mode=iptables", check=False)
        self._unmount_all()
        made_network = self._saved_sysctls.exists()  # not when the bridge was another node's
        if made_network:
            _remove_kube_chains()
            self._remove_guards()
            _run("ip", "link", "del", BRIDGE, check=False)
            self._restore_sysctls()
        for cached in Path("/var/lib/cni/results").glob(f"{CNI_NETWORK}-*"):
            cached.unlink(missing_ok=True)
        self._remove_pod_logs()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return leftovers(self.dir, self.run_dir, network=made_network)

    def _delete_pods(self, api: Callable[[str, str], object]) -> None:
        """Every Pod deleted at once, then wait for kubelet to stop their sandboxes (CNI DEL)."""
        try:
            listed = api("GET", "/api/v1/pods")
        except OSError:
            return
        assert isinstance(listed, dict)
        for pod in listed.get("items", []):
            meta = pod["metadata"]
            self._pod_uids.append(meta["uid"])
            with contextlib.suppress(OSError):
                api(
                    "DELETE",
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
                    "?gracePeriodSeconds=0",
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.5)

    def _clear_stale(self) -> None:
        """What a node whose processes were all killed left (the machine's session ended before
        `down`): its shims, mounts, run folders, the bridge and its iptables chains."""
        print(f"[node] removing what a stopped node left ({BRIDGE}, its chains)", file=sys.stderr)
        shims = _pids_matching(lambda cmd: "containerd-shim" in cmd and "/blockflow-node-" in cmd)
        for pid in shims + _container_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        for folder in Path("/run").glob("blockflow-node-*"):
            for target in sorted(_mounts_under(folder), key=len, reverse=True):
                _run("umount", "-l", target, check=False)
            shutil.rmtree(folder, ignore_errors=True)
        time.sleep(0.5)  # the killed processes leave their cgroups
        for cgroup in Path("/sys/fs/cgroup").glob("*/k8s.io/*"):
            if cgroup.is_dir():
                with contextlib.suppress(OSError):
                    cgroup.rmdir()  # only empty ones go
        _remove_kube_chains()
        self._remove_guards()
        _run("ip", "link", "del", BRIDGE, check=False)

    def _remove_pod_logs(self) -> None:
        """kubelet keeps Pod logs in /var/log/pods (a fixed place) until it collects the Pod."""
        for uid in self._pod_uids:
            for folder in Path("/var/log/pods").glob(f"*_{uid}"):
                shutil.rmtree(folder, ignore_errors=True)
        links = Path("/var/log/containers")
        for link in links.glob("*.log") if links.is_dir() else ():
            if link.is_symlink() and not link.exists():
                link.unlink()

    def _running_tasks(self) -> list[str]:
        if not self.socket.exists():
            return []
        listed = self.ctr("tasks", "ls", "-q", check=False)
        return [line for line in listed.stdout.split() if line] if listed.returncode == 0 else []

    def _kill_tasks(self) -> None:
        for task in self._running_tasks():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self._running_tasks():
            time.sleep(0.3)

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design; those of this node's socket go too."""
        address = str(self.socket)
        for pid in _pids_matching(lambda cmd: "containerd-shim" in cmd and address in cmd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def _remove_guards(self) -> None:
        for parent, chain in (("INPUT", GUARD_IN), ("FORWARD", GUARD_FWD)):
            while _run("iptables", "-w", "-D", parent, "-j", chain, check=False).returncode == 0:
                pass
            _run("iptables", "-w", "-F", chain, check=False)
            _run("iptables", "-w", "-X", chain, check=False)

    def _unmount_all(self) -> None:
        targets = _mounts_under(self.dir) + _mounts_under(self.run_dir)
        for target in sorted(targets, key=len, reverse=True):
            if _run("umount", target, check=False).returncode != 0:
                _run("umount", "-l", target, check=False)

    def _restore_sysctls(self) -> None:
        try:
            saved = json.loads(self._saved_sysctls.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return
        for key, value in saved.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)


# -- what a node leaves behind ---------------------------------------------------------------


def _remove_kube_chains() -> None:
    """kubelet's own chains (KUBE-FIREWALL, KUBE-MARK-*, canaries), which kube-proxy's cleanup
    leaves: first every rule that jumps to one, then the chains."""
    for table in ("mangle", "filter", "nat"):
        dump = _run("iptables-save", "-t", table, check=False).stdout.splitlines()
        for line in dump:
            if line.startswith("-A ") and re.search(r"-j KUBE-\S+", line):
                rule = line.split()[1:]
                # iptables-save quotes comments; the rule is matched on its other parts.
                _run("iptables", "-w", "-t", table, "-D", *_unquote(rule), check=False)
        for line in dump:
            if line.startswith(":KUBE-"):
                chain = line[1:].split()[0]
                _run("iptables", "-w", "-t", table, "-F", chain, check=False)
        for line in dump:
            if line.startswith(":KUBE-"):
                chain = line[1:].split()[0]
                _run("iptables", "-w", "-t", table, "-X", chain, check=False)


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


def leftovers(node_dir: Path, run_dir: Path, *, network: bool = True) -> list[str]:
    """Anything of a node still on the machine: processes, mounts, its folders and, when it
    made the network, the bridge and iptables rules."""
    found: list[str] = []
    markers = (str(node_dir), str(run_dir))
    for pid in _pids_matching(lambda cmd: any(m in cmd for m in markers)):
        found.append(f"process {pid}")
    found += [f"container process {pid}" for pid in _container_pids()]
    for folder in (node_dir, run_dir):
        found += [f"mount {m}" for m in _mounts_under(folder)]
    if network and _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    if network and shutil.which("iptables-save"):
        for table in ("filter", "nat"):
            rules = _run("iptables-save", "-t", table, check=False).stdout
            for line in rules.splitlines():
                if re.search(r"KUBE-|BLOCKFLOW-NODE|CNI-", line) and not line.startswith("#"):
                    found.append(f"iptables ({table}) {line}")
                    break
    found += [f"directory {folder}" for folder in (node_dir, run_dir) if folder.exists()]
    return found


CONTAINER_CGROUPS = Path("/sys/fs/cgroup/pids/k8s.io")  # containerd's namespace, cgroupfs


def _container_pids() -> list[int]:
    """Processes of containers (Pods' and their sandboxes'), which outlive killed shims."""
    found = []
    for procs in CONTAINER_CGROUPS.glob("*/cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(line) for line in procs.read_text().split()]
    return found


def _is_node_process(cmd: str) -> bool:
    """kubelet, containerd or kube-proxy of a local node (any checkout's); not the shims, which
    outlive a killed containerd."""
    if "containerd-shim" in cmd:
        return False
    return (
        "/run/blockflow-node-" in cmd
        or "/node/containerd/config.toml" in cmd
        or ("kube-proxy" in cmd and f"--hostname-override={NODE_NAME}" in cmd)
    )


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    targets = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            target = fields[4].replace("\\040", " ")
            if target.startswith(prefix) or target == prefix.rstrip("/"):
                targets.append(target)
    return targets


def _pids_matching(match: Callable[[str], bool]) -> list[int]:
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd and match(cmd):
            found.append(int(entry.name))
    return found


def _wait(check: Callable[[], bool], what: str, logs: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise NodeError(f"{what} was not ready after {timeout:.0f}s; see {logs}/{what}.log")


def api_client(server: str, token: str, ca: Path) -> Callable[[str, str], object]:
    """A tiny JSON client of the API server (urllib), for the node's own bookkeeping."""
    context = ssl.create_default_context(cafile=str(ca))

    def call(method: str, path: str) -> object:
        request = urllib.request.Request(
            server + path, method=method, headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {}
            raise OSError(f"{method} {path}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, ssl.SSLError) as exc:
            raise OSError(str(exc)) from exc

    return call


def node_ready(call: Callable[[str, str], object]) -> bool:
    try:
        node = call("GET", f"/api/v1/nodes/{NODE_NAME}")
    except OSError:
        return False
    assert isinstance(node, dict)
    taints = (node.get("spec") or {}).get("taints") or []
    if any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints):
        return False  # Ready, but Pods are not scheduled to it until the taint goes
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False
