"""``hack/control-plane.sh``: up, down, env, status, token, load-image."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from controller.testing.control_plane import ControlPlane
from controller.testing.node_network import NodeError
from controller.testing.toolchain import NON_ADMIN_USER, REPO_ROOT, ControlPlaneError

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
    parser.add_argument("verb", choices=["up", "down", "env", "status", "token", "load-image"])
    parser.add_argument("archive", nargs="?", type=Path, help="load-image: an image archive")
    parser.add_argument("--dir", type=Path, default=None, help="state directory")
    parser.add_argument(
        "--node",
        action="store_true",
        help="up: also a node that runs Pods (containerd, kubelet, scheduler, kube-proxy, DNS)",
    )
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
            started_state, fresh = plane.up(node=args.node)
            verb = f"started in {time.monotonic() - started:.1f}s" if fresh else "already running"
            print(f"control plane {verb}: {started_state.server}", file=sys.stderr)
            print(_usage_hint(plane), file=sys.stderr)
            return 0
        if args.verb == "load-image":
            if args.archive is None:
                parser.error("load-image needs the path of an image archive")
            plane.load_image(args.archive)
            print(f"loaded {args.archive} into the node", file=sys.stderr)
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
            # `blockflow ...` and `kubectl blockflow ...`: the checkout's CLI (hack/plugins/).
            path = [str(REPO_ROOT / "hack" / "plugins")]
            if kubectl and kubectl.is_file():
                # The kubectl built beside the API server: same version, no skew warnings.
                path.insert(0, str(kubectl.parent))
            print(f'export PATH="{":".join(path)}:$PATH"')
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
        print(f"control plane: running at {state.server}" + (" with a node" if state.node else ""))
        for name, pid in state.pids.items():
            print(f"  {name}: pid {pid}")
        print(_usage_hint(plane))
        return 0
    except (ControlPlaneError, NodeError) as exc:
        print(f"[control-plane] ERROR: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
