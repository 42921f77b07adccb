"""The local node's pure parts: when a node counts as ready, the Pod sandbox image archive, the
runc wrapper's edit of a bundle, and iptables-save words turned back into arguments."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from controller.testing.node import _is_node_process, node_ready
from controller.testing.node_files import PAUSE_IMAGE, RUNC_WRAPPER, pause_archive
from controller.testing.node_network import _unquote

READY = {"type": "Ready", "status": "True"}
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("node", "ready"),
    [
        ({}, False),  # not registered yet (404)
        ({"metadata": {"name": "node1"}}, False),  # registered, no status
        ({"spec": {}, "status": {"conditions": [READY]}}, True),
        ({"spec": {"taints": [NOT_READY_TAINT]}, "status": {"conditions": [READY]}}, False),
        ({"spec": {}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}, False),
        (
            {
                "spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]},
                "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, READY]},
            },
            True,
        ),
    ],
)
def test_a_node_is_ready_when_its_condition_says_so_and_it_is_not_tainted(
    node: dict[str, Any], ready: bool
) -> None:
    assert node_ready(lambda method, path: node) is ready


def test_a_node_is_not_ready_while_the_api_server_does_not_answer() -> None:
    def down(method: str, path: str) -> object:
        raise OSError("connection refused")

    assert node_ready(down) is False


def test_the_pause_archive_is_a_docker_archive_with_one_layer_holding_pause(
    tmp_path: Path,
) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF not really")
    with tarfile.open(fileobj=io.BytesIO(pause_archive(binary))) as archive:
        (manifest,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest["RepoTags"] == [PAUSE_IMAGE]
        config = json.load(archive.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        (layer_name,) = manifest["Layers"]
        layer_bytes = archive.extractfile(layer_name).read()  # type: ignore[union-attr]
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["rootfs"]["diff_ids"] == [f"sha256:{hashlib.sha256(layer_bytes).hexdigest()}"]
    with tarfile.open(fileobj=io.BytesIO(layer_bytes)) as layer:
        (member,) = layer.getmembers()
        assert (member.name, member.mode, member.uid) == ("pause", 0o755, 0)
        assert layer.extractfile(member).read() == binary.read_bytes()  # type: ignore[union-attr]


def test_the_runc_wrapper_drops_rlimits_and_a_negative_oom_score_then_runs_runc(
    tmp_path: Path,
) -> None:
    fake_runc = tmp_path / "runc"
    fake_runc.write_text(f"#!{sys.executable}\nimport sys; print(' '.join(sys.argv[1:]))\n")
    fake_runc.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(RUNC_WRAPPER.format(python=sys.executable, runc=fake_runc))
    wrapper.chmod(0o755)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {
        "process": {
            "args": ["/pause"],
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}],
            "oomScoreAdj": -998,
        }
    }
    (bundle / "config.json").write_text(json.dumps(spec))
    args = ["--root", "/r", "create", "--bundle", str(bundle), "box"]
    ran = subprocess.run([str(wrapper), *args], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == args
    assert json.loads((bundle / "config.json").read_text()) == {"process": {"args": ["/pause"]}}

    spec["process"] = {"args": ["/app"], "oomScoreAdj": 500}  # raising is allowed: kept
    (bundle / "config.json").write_text(json.dumps(spec))
    subprocess.run([str(wrapper), *args], capture_output=True, check=True)
    assert json.loads((bundle / "config.json").read_text())["process"]["oomScoreAdj"] == 500

    # Other verbs go straight through, the bundle untouched.
    ran = subprocess.run([str(wrapper), "state", "box"], capture_output=True, text=True, check=True)
    assert ran.stdout.split() == ["state", "box"]


@pytest.mark.parametrize(
    ("words", "argv"),
    [
        (["INPUT", "-j", "KUBE-FIREWALL"], ["INPUT", "-j", "KUBE-FIREWALL"]),
        (
            [
                "KUBE-FIREWALL",
                "-m",
                "comment",
                "--comment",
                '"kubernetes',
                "firewall",
                'rules"',
                "-j",
                "DROP",
            ],
            [
                "KUBE-FIREWALL",
                "-m",
                "comment",
                "--comment",
                "kubernetes firewall rules",
                "-j",
                "DROP",
            ],
        ),
        (["X", "--comment", '"one"', "-j", "Y"], ["X", "--comment", "one", "-j", "Y"]),
    ],
)
def test_iptables_save_words_become_the_arguments_of_a_delete(
    words: list[str], argv: list[str]
) -> None:
    assert _unquote(words) == argv


@pytest.mark.parametrize(
    ("cmd", "live"),
    [
        ("/x/kubelet --root-dir=/run/blockflow-node-0a1b2c3d4e/kubelet --v=1", True),
        ("containerd --config /w/.local/node-plane/node/containerd/config.toml", True),
        ("/x/kube-proxy --kubeconfig=/k --hostname-override=node1 --proxy-mode=iptables", True),
        # Shims outlive a killed containerd: they do not make a node alive.
        ("/usr/bin/containerd-shim-runc-v2 -address /run/blockflow-node-0a1b2c3d4e/c.sock", False),
        ("containerd --config /etc/containerd/config.toml", False),  # the machine's own
        ("/x/kube-proxy --hostname-override=worker-7", False),
    ],
)
def test_a_bridge_is_in_use_only_while_a_node_process_runs(cmd: str, live: bool) -> None:
    assert _is_node_process(cmd) is live
