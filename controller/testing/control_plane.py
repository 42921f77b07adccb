"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

Used by ``hack/control-plane.sh`` (``up|down|env|status``, see :mod:`.control_plane_cli`) and
by the test fixtures. Standard library only, so it runs before the project's virtualenv
exists. Everything listens on 127.0.0.1 on free ports; all state (certs, tokens,
kubeconfig, logs, pids) lives in one directory, so two checkouts on one machine get two
independent control planes. Binaries: :mod:`.toolchain`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.pki import PkiError, make_ca, make_serving_cert, openssl
from controller.testing.node import (
    CLUSTER_DOMAIN,
    NODE_CONTROLLERS,
    NODE_NAME,
    STOP_ORDER,
    Node,
    api_client,
    node_ready,
)
from controller.testing.node_network import GATEWAY, NodeError, free_port
from controller.testing.processes import _http_ok, _pid_alive, _stop_process, _tail, _wait_for
from controller.testing.toolchain import (
    ADMIN_USER,
    DEFAULT_CONTROLLERS,
    DEFAULT_STATE_DIR,
    NON_ADMIN_USER,
    REPO_ROOT,
    SERVICE_CIDR,
    SERVICE_IP,
    Binaries,
    ControlPlaneError,
    resolve_binaries,
    resolve_node_binaries,
)


def _env_port(name: str) -> int:
    value = os.environ.get(name)
    return int(value) if value else free_port()


@dataclass
class State:
    """What `up` wrote, read back by `status`, `env`, `down` and the test fixtures."""

    server: str
    etcd_url: str
    admin_token: str
    user_token: str
    kubeconfig: str
    user_kubeconfig: str
    pids: dict[str, int] = field(default_factory=dict)
    binaries: dict[str, str] = field(default_factory=dict)
    node: bool = False


class ControlPlane:
    """One local control plane, rooted at ``state_dir``."""

    def __init__(self, state_dir: Path | None = None) -> None:
        env_dir = os.environ.get("BLOCKFLOW_CONTROL_PLANE_DIR")
        self.state_dir = Path(state_dir or env_dir or DEFAULT_STATE_DIR).resolve()

    # -- paths ------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def user_kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig-user"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def _etcd_data_dir(self) -> Path:
        # tmpfs makes etcd's fsyncs free; a test cluster needs no durability across reboots.
        explicit = os.environ.get("BLOCKFLOW_ETCD_DATA_DIR")
        if explicit:
            return Path(explicit)
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            return shm / f"blockflow-etcd-{tag}"
        return self.state_dir / "etcd"

    # -- state ------------------------------------------------------------------------------

    def load_state(self) -> State | None:
        try:
            return State(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def is_running(self, state: State | None = None) -> bool:
        state = state or self.load_state()
        if state is None:
            return False
        if not all(_pid_alive(pid) for pid in state.pids.values()):
            return False
        return self._ready(state)

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def _ready(self, state: State) -> bool:
        request = urllib.request.Request(
            f"{state.server}/readyz", headers={"Authorization": f"Bearer {state.admin_token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=3, context=self._ssl_context()) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    # -- verbs ------------------------------------------------------------------------------

    def up(self, *, node: bool = False) -> tuple[State, bool]:
        """Start the control plane (with a node that runs Pods when asked), or reuse a running
        one. A running plane without a node gets one: its API server restarts so that Pods can
        reach it, etcd and everything stored stay. Returns (state, started_now)."""
        state = self.load_state()
        if state is not None and self.is_running(state):
            if not node or state.node:
                return state, False
            self._add_node(state)
            return state, True
        self.down(quiet=True)
        binaries = resolve_binaries()
        node_binaries = resolve_node_binaries() if node else {}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        try:
            state = self._start(binaries, node_binaries)
        except BaseException as exc:
            kept = self._keep_logs()
            try:
                self.down(quiet=True)
            except ControlPlaneError as left:
                print(f"[control-plane] {left}", file=sys.stderr)
            if isinstance(exc, ControlPlaneError | NodeError):
                raise ControlPlaneError(f"{exc}\n(logs kept in {kept})") from exc
            raise
        return state, True

    def _keep_logs(self) -> Path:
        """A failed start's logs, kept beside the state directory that `down` deletes."""
        kept = self.state_dir.with_name(self.state_dir.name + "-failed-logs")
        shutil.rmtree(kept, ignore_errors=True)
        if self.logs.exists():
            shutil.copytree(self.logs, kept)
        return kept

    def down(self, *, quiet: bool = False) -> bool:
        """Stop every process and delete all state. Returns whether anything was running.
        Raises ControlPlaneError naming what a node left behind, if anything."""
        state = self.load_state()
        stopped = False
        left: list[str] = []
        if state is not None:
            if state.node or (self.state_dir / "node").exists():
                left = self._stop_node(state)
                stopped = True
            # Stop in reverse start order: controller manager, API server, then etcd.
            for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
                pid = state.pids.get(name)
                if pid is not None and _stop_process(pid):
                    stopped = True
                    if not quiet:
                        print(f"stopped {name} (pid {pid})", file=sys.stderr)
        shutil.rmtree(self._etcd_data_dir(), ignore_errors=True)
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if left:
            raise ControlPlaneError("the node left behind:\n  " + "\n  ".join(left))
        return stopped

    def restart_apiserver(self) -> None:
        """Stop the API server and start it again, as an upgrade or a crash would: every
        client's connections and watches break, etcd keeps the objects."""
        state = self.load_state()
        if state is None or not self.is_running(state):
            raise ControlPlaneError("the control plane is not running")
        pid = state.pids.pop("kube-apiserver", None)
        if pid is not None:
            _stop_process(pid)
        binaries = _plane_binaries(state)
        self._start_apiserver(state, binaries, self._api_port(state), node=state.node)

    # -- the node -----------------------------------------------------------------------------

    def _api(self, state: State) -> Callable[[str, str], object]:
        return api_client(state.server, state.admin_token, self.pki / "ca.crt")

    def _add_node(self, state: State) -> None:
        """Restart the API server and controller manager for a node, then start the node."""
        state.binaries.update(resolve_node_binaries())
        state.node = True
        self._save(state)
        Node(self.state_dir).prepare_network(self._api_port(state))
        for name in ("kube-controller-manager", "kube-apiserver"):
            pid = state.pids.pop(name, None)
            if pid is not None:
                _stop_process(pid)
        binaries = _plane_binaries(state)
        self._start_apiserver(state, binaries, self._api_port(state), node=True)
        self._start_controller_manager(state, binaries, node=True)
        self._start_node(state)

    @staticmethod
    def _api_port(state: State) -> int:
        return int(state.server.rsplit(":", 1)[1])

    def _start_node(self, state: State) -> None:
        """containerd, the Pod sandbox image, DNS, scheduler, kube-proxy and kubelet; then wait
        for the node to be Ready."""
        node = Node(self.state_dir)
        node.write_configs(state.binaries, free_port())
        state.pids["containerd"] = node.start_containerd(self._spawn)
        self._save(state)
        node.import_pause(Path(state.binaries["pause"]))
        commands = node.commands(state.binaries, self.kubeconfig)
        for name, argv in commands.items():
            state.pids[name] = self._spawn(name, argv)
            self._save(state)
        api = self._api(state)
        _wait_for(lambda: node_ready(api), f"the node {NODE_NAME}", self.logs / "kubelet.log")
        for name in commands:
            if not _pid_alive(state.pids[name]):
                log = _tail(self.logs / f"{name}.log")
                raise ControlPlaneError(f"{name} exited at start:\n{log}")

    def _stop_node(self, state: State) -> list[str]:
        api = self._api(state) if self._ready(state) else None
        node_pids = {name: state.pids.pop(name) for name in list(state.pids) if name in STOP_ORDER}
        return Node(self.state_dir).stop(
            node_pids, _stop_process, api, state.binaries.get("kube-proxy")
        )

    def load_image(self, archive: Path) -> None:
        """Import an image archive (docker-archive or oci-archive) into the node's containerd."""
        state = self.load_state()
        if state is None or not state.node or not self.is_running(state):
            raise ControlPlaneError("no node is running: hack/control-plane.sh up --node")
        Node(self.state_dir).load_image(archive)

    # -- start ------------------------------------------------------------------------------

    def _start(self, binaries: Binaries, node_binaries: dict[str, str]) -> State:
        """etcd, the API server and the controller manager; with node binaries, the node too."""
        etcd_port = _env_port("BLOCKFLOW_ETCD_PORT")
        peer_port = _env_port("BLOCKFLOW_ETCD_PEER_PORT")
        api_port = _env_port("BLOCKFLOW_APISERVER_PORT")
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        server = f"https://127.0.0.1:{api_port}"
        self._make_pki()
        admin_token, user_token = secrets.token_hex(24), secrets.token_hex(24)
        (self.pki / "tokens.csv").write_text(
            f'{admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
            f"{user_token},{NON_ADMIN_USER},{NON_ADMIN_USER}\n"
        )
        os.chmod(self.pki / "tokens.csv", 0o600)
        self._write_kubeconfig(self.kubeconfig, server, ADMIN_USER, admin_token)
        self._write_kubeconfig(self.user_kubeconfig, server, NON_ADMIN_USER, user_token)
        state = State(
            server=server,
            etcd_url=etcd_url,
            admin_token=admin_token,
            user_token=user_token,
            kubeconfig=str(self.kubeconfig),
            user_kubeconfig=str(self.user_kubeconfig),
            binaries={k: str(v) for k, v in asdict(binaries).items()} | node_binaries,
            node=bool(node_binaries),
        )
        if state.node:
            self.state_dir.joinpath("node").mkdir(parents=True, exist_ok=True)
            self._save(state)
            Node(self.state_dir).prepare_network(api_port)
        data_dir = self._etcd_data_dir()
        shutil.rmtree(data_dir, ignore_errors=True)
        state.pids["etcd"] = self._spawn(
            "etcd",
            [
                str(binaries.etcd),
                "--name=blockflow",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=blockflow=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
        )
        self._save(state)
        _wait_for(lambda: _http_ok(f"{etcd_url}/health"), "etcd", self.logs / "etcd.log")
        self._start_apiserver(state, binaries, api_port, node=state.node)
        self._start_controller_manager(state, binaries, node=state.node)
        if state.node:
            self._start_node(state)
        return state

    def _start_apiserver(self, state: State, binaries: Binaries, port: int, *, node: bool) -> None:
        # Without a node it listens on loopback only and publishes no endpoint for the
        # `kubernetes` Service; with one, Pods reach it at the bridge's address (the node's
        # guard chain drops it on every other interface).
        if node:
            where = ["--bind-address=0.0.0.0", f"--advertise-address={GATEWAY}"]
            where.append("--kubelet-preferred-address-types=InternalIP")
        else:
            where = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"]
            where.append("--endpoint-reconciler-type=none")
        state.pids["kube-apiserver"] = self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={state.etcd_url}",
                f"--cert-dir={self.pki}",
                f"--tls-cert-file={self.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={self.pki / 'apiserver.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}",
                f"--secure-port={port}",
                *where,
                "--insecure-port=0",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={self.pki / 'tokens.csv'}",
                f"--service-account-issuer={state.server}",
                f"--service-account-key-file={self.pki / 'sa.key'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        self._save(state)
        _wait_for(lambda: self._ready(state), "kube-apiserver", self.logs / "kube-apiserver.log")

    def _start_controller_manager(self, state: State, binaries: Binaries, *, node: bool) -> None:
        # Without a node the Job controller stays off, so tests can set a Job's status
        # themselves; with one, Deployments, Services and Jobs are carried out for real.
        default = NODE_CONTROLLERS if node else DEFAULT_CONTROLLERS
        controllers = os.environ.get("BLOCKFLOW_CONTROLLERS", default)
        state.pids["kube-controller-manager"] = self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={controllers}",
                f"--service-account-private-key-file={self.pki / 'sa.key'}",
                f"--root-ca-file={self.pki / 'ca.crt'}",
                *(["--node-monitor-period=1s"] if node else []),
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--port=0",
                "--v=1",
            ],
        )
        self._save(state)
        time.sleep(0.5)
        if not _pid_alive(state.pids["kube-controller-manager"]):
            raise ControlPlaneError(
                "kube-controller-manager exited at start:\n"
                + _tail(self.logs / "kube-controller-manager.log")
            )

    def _save(self, state: State) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _spawn(self, name: str, argv: list[str]) -> int:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        with log:
            env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `hack/control-plane.sh up`
            )
        return proc.pid

    def _make_pki(self) -> None:
        """A CA, a serving cert for 127.0.0.1/localhost and a service-account key."""
        pki = self.pki
        try:
            make_ca(pki, "blockflow-local-ca")
            make_serving_cert(
                pki,
                "apiserver",
                "kube-apiserver",
                [
                    "IP:127.0.0.1",
                    "DNS:localhost",
                    "DNS:kubernetes",
                    "DNS:kubernetes.default",
                    "DNS:kubernetes.default.svc",
                    f"DNS:kubernetes.default.svc.{CLUSTER_DOMAIN}",
                    f"IP:{GATEWAY}",
                    f"IP:{SERVICE_IP}",
                ],
            )
            openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        except PkiError as exc:
            raise ControlPlaneError(str(exc)) from exc
        os.chmod(pki / "sa.key", 0o600)

    def _write_kubeconfig(self, path: Path, server: str, user: str, token: str) -> None:
        import base64

        ca_data = base64.b64encode((self.pki / "ca.crt").read_bytes()).decode()
        # JSON is valid YAML: no dependency on PyYAML here.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "blockflow-local",
                    "cluster": {"server": server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": f"{user}@blockflow-local",
                    "context": {"cluster": "blockflow-local", "user": user, "namespace": "default"},
                }
            ],
            "current-context": f"{user}@blockflow-local",
            "preferences": {},
        }
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".kubeconfig-")
        with os.fdopen(fd, "w") as fh:
            json.dump(config, fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)


if __name__ == "__main__":
    from controller.testing.control_plane_cli import main

    raise SystemExit(main())


def _plane_binaries(state: State) -> Binaries:
    """The control plane's binaries, as recorded when it came up."""
    return Binaries(
        Path(state.binaries["etcd"]),
        Path(state.binaries["kube_apiserver"]),
        Path(state.binaries["kube_controller_manager"]),
        Path(state.binaries["kubectl"]),
    )
