"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager.

Used by ``hack/control-plane.sh`` (``up|down|env|status``) and by the test
fixtures.  Standard library only, so it runs before the project's virtualenv
exists.  Everything listens on 127.0.0.1 on free ports; all state (certs,
tokens, kubeconfig, logs, pids) lives in one directory, so two checkouts on one
machine get two independent control planes.

Binaries come from, in order: ``$KUBEBUILDER_ASSETS``, ``$PATH``, the cached
build (``~/.cache/blockflow/control-plane/<version>/bin``), or a fresh build
from Debian's source package (``hack/build-control-plane.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from controller.pki import PkiError, make_ca, make_serving_cert, openssl

K8S_VERSION = os.environ.get("BLOCKFLOW_K8S_VERSION", "1.20.2")
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".local" / "control-plane"
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-control-plane.sh"
DEFAULT_CONTROLLERS = "garbagecollector,namespace,serviceaccount"
ADMIN_USER = "blockflow-admin"
NON_ADMIN_USER = "blockflow-user"
READY_TIMEOUT = float(os.environ.get("BLOCKFLOW_CONTROL_PLANE_TIMEOUT", "90"))


class ControlPlaneError(RuntimeError):
    """The control plane cannot be started; the message says what to do."""


def cache_root() -> Path:
    explicit = os.environ.get("BLOCKFLOW_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "blockflow"


def cached_bin_dir() -> Path:
    return cache_root() / "control-plane" / K8S_VERSION / "bin"


def _find_binary(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / name).is_file():
        return Path(assets) / name
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    cached = cached_bin_dir() / name
    return cached if cached.is_file() else None


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path


def resolve_binaries(*, build: bool = True) -> Binaries:
    """Find the four binaries, building the Kubernetes ones from source when needed."""
    etcd = _find_binary("etcd")
    if etcd is None:
        raise ControlPlaneError(
            "etcd not found. Install it (Debian/Ubuntu: `apt-get install etcd-server`, or run "
            "`hack/install-deps.sh` as root), or set KUBEBUILDER_ASSETS to envtest's binaries."
        )
    wanted = ("kube-apiserver", "kube-controller-manager")
    found = {name: _find_binary(name) for name in wanted}
    if any(path is None for path in found.values()):
        if not build:
            missing = ", ".join(n for n, p in found.items() if p is None)
            raise ControlPlaneError(f"{missing} not found and building is disabled.")
        _build_from_source()
        found = {name: _find_binary(name) for name in wanted}
    apiserver, kcm = found["kube-apiserver"], found["kube-controller-manager"]
    if apiserver is None or kcm is None:
        raise ControlPlaneError(
            f"kube-apiserver or kube-controller-manager still missing after the build; "
            f"look in {cached_bin_dir()}."
        )
    # Prefer the kubectl built beside the API server: same version, no skew surprises.
    kubectl = apiserver.parent / "kubectl"
    if not kubectl.is_file():
        kubectl = Path(shutil.which("kubectl") or cached_bin_dir() / "kubectl")
    return Binaries(etcd, apiserver, kcm, kubectl)


def _build_from_source() -> None:
    print(
        f"[control-plane] no kube-apiserver/kube-controller-manager found; building them into "
        f"{cached_bin_dir()} (one-off, ~6 minutes)",
        file=sys.stderr,
    )
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], check=False)
    if result.returncode != 0:
        raise ControlPlaneError(
            "building the control plane failed (see the output above). Either install envtest's "
            "binaries and set KUBEBUILDER_ASSETS, or install the build prerequisites with "
            "`sudo hack/install-deps.sh` and run `hack/control-plane.sh up` again."
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def up(self) -> tuple[State, bool]:
        """Start the control plane, or reuse a running one. Returns (state, started_now)."""
        state = self.load_state()
        if state is not None and self.is_running(state):
            return state, False
        self.down(quiet=True)
        binaries = resolve_binaries()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        try:
            state = self._start(binaries)
        except BaseException:
            self.down(quiet=True)
            raise
        return state, True

    def down(self, *, quiet: bool = False) -> bool:
        """Stop every process and delete all state. Returns whether anything was running."""
        state = self.load_state()
        stopped = False
        if state is not None:
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
        return stopped

    # -- start ------------------------------------------------------------------------------

    def _start(self, binaries: Binaries) -> State:
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
            binaries={k: str(v) for k, v in asdict(binaries).items()},
        )
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
        state.pids["kube-apiserver"] = self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.pki}",
                f"--tls-cert-file={self.pki / 'apiserver.crt'}",
                f"--tls-private-key-file={self.pki / 'apiserver.key'}",
                f"--client-ca-file={self.pki / 'ca.crt'}",
                f"--secure-port={api_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--insecure-port=0",
                "--endpoint-reconciler-type=none",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=RBAC",
                f"--token-auth-file={self.pki / 'tokens.csv'}",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={self.pki / 'sa.key'}",
                f"--service-account-signing-key-file={self.pki / 'sa.key'}",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        self._save(state)
        _wait_for(lambda: self._ready(state), "kube-apiserver", self.logs / "kube-apiserver.log")
        controllers = os.environ.get("BLOCKFLOW_CONTROLLERS", DEFAULT_CONTROLLERS)
        state.pids["kube-controller-manager"] = self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={controllers}",
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
        return state

    def _save(self, state: State) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)

    def _spawn(self, name: str, argv: list[str]) -> int:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        with log:
            proc = subprocess.Popen(
                argv,
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


# -- process helpers -------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (only when we are its parent) counts as dead.
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _stop_process(pid: int, timeout: float = 15.0) -> bool:
    if not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait_for(check: object, what: str, log: Path) -> None:
    assert callable(check)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise ControlPlaneError(
        f"{what} was not ready after {READY_TIMEOUT:.0f}s; last log lines:\n{_tail(log)}"
    )


# -- command line ----------------------------------------------------------------------------


def _usage_hint(plane: ControlPlane) -> str:
    return (
        f"kubeconfig: {plane.kubeconfig}\n"
        f'  eval "$(hack/control-plane.sh env)"   # then: kubectl get blockflow -A\n'
        f"  hack/control-plane.sh status | down"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/control-plane.sh",
        description="Local Kubernetes control plane (etcd + kube-apiserver + controller manager).",
    )
    parser.add_argument("verb", choices=["up", "down", "env", "status", "token"])
    parser.add_argument("--dir", type=Path, default=None, help="state directory")
    parser.add_argument(
        "--user",
        action="store_true",
        help=f"token: the non-admin user's ({NON_ADMIN_USER}) instead of the admin's",
    )
    args = parser.parse_args(argv)
    plane = ControlPlane(args.dir)
    try:
        if args.verb == "up":
            started = time.monotonic()
            started_state, fresh = plane.up()
            verb = f"started in {time.monotonic() - started:.1f}s" if fresh else "already running"
            print(f"control plane {verb}: {started_state.server}", file=sys.stderr)
            print(_usage_hint(plane), file=sys.stderr)
            return 0
        if args.verb == "down":
            stopped = plane.down()
            print(
                "control plane stopped" if stopped else "control plane was not running",
                file=sys.stderr,
            )
            return 0
        if args.verb == "env":
            if not plane.is_running():
                print("# control plane is not running: hack/control-plane.sh up", file=sys.stderr)
                return 1
            print(f"export KUBECONFIG={plane.kubeconfig}")
            state = plane.load_state()
            kubectl = Path(state.binaries.get("kubectl", "")) if state else None
            if kubectl and kubectl.is_file():
                # The kubectl built beside the API server: same version, no skew warnings.
                print(f'export PATH="{kubectl.parent}:$PATH"')
            return 0
        state = plane.load_state()
        if args.verb == "token":
            # A bearer token for the controller's web page (or curl): the admin's by default.
            if state is None or not plane.is_running(state):
                print("# control plane is not running: hack/control-plane.sh up", file=sys.stderr)
                return 1
            print(state.user_token if args.user else state.admin_token)
            return 0
        if state is None or not plane.is_running(state):
            print("control plane: stopped")
            return 3
        print(f"control plane: running at {state.server}")
        for name, pid in state.pids.items():
            print(f"  {name}: pid {pid}")
        print(_usage_hint(plane))
        return 0
    except ControlPlaneError as exc:
        print(f"[control-plane] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
