"""The chart's Deployment, rendered with Helm's Go library (helm-python-sdk), gives the controller
an environment its settings accept: the rendered env of the default and of edited values starts
the real controller, which becomes ready. Numbers from values are float64 in Helm templates, so a
bare `quote` once rendered maxBodyBytes as "1.048576e+06" and the Pod exited at start.

Also what a running Pod would trip over (the admission key readable by the non-root user, probes
and ports that match what the controller listens on), and values the schema must refuse."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from controller.pki import make_ca, make_serving_cert
from controller.settings import Settings
from tests.conftest import ControllerProcess, Kubectl, eventually, free_port
from tests.support.workflow_helpers import http, readyz

CHART = Path(__file__).resolve().parents[1] / "charts" / "blockflow"
UID = 10001

EDITED: dict[str, Any] = {
    "maxBodyBytes": 10485760,
    "leaseSeconds": 30,
    "logLevel": "DEBUG",
    "watchNamespaces": ["a", "b"],
    "publicUrl": "https://blockflow.example.com",
    "tokenKey": {"existingSecret": "chart-env-token"},
}


def render(
    values: dict[str, Any], *, name: str = "bf", namespace: str = "blockflow-system"
) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name=name, namespace=namespace)
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == "Deployment"]
    return found


def controller_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = deployment(docs)["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "controller"]
    found: dict[str, Any] = container
    return found


POD = "blockflow-0"


def resolve_env(
    container: dict[str, Any], namespace: str, secret: Callable[[str, str], str] | None = None
) -> dict[str, str]:
    """The environment the kubelet would give the container: values as rendered, the Pod's
    namespace and name (POD) for `fieldRef`, Secret keys from `secret` (else left out)."""
    env: dict[str, str] = {}
    for item in container["env"]:
        name = item["name"]
        if "value" in item:
            assert isinstance(item["value"], str), f"{name}: {item['value']!r} is not a string"
            env[name] = item["value"]
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            fields = {"metadata.namespace": namespace, "metadata.name": POD}
            assert source["fieldRef"]["fieldPath"] in fields, item
            env[name] = fields[source["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in source:
            if secret is not None:
                ref = source["secretKeyRef"]
                env[name] = secret(ref["name"], ref["key"])
        else:
            raise AssertionError(f"{name}: a value source the test does not know: {source}")
    return env


def forget_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the rendered env decides: no BLOCKFLOW_* setting of the test's own environment."""
    for name in list(os.environ):
        if name.startswith("BLOCKFLOW_") and name[10:].lower() in Settings.model_fields:
            monkeypatch.delenv(name)


CASES = {
    "defaults": {},
    "edited": EDITED,
    "no-admission": {"admission": {"enabled": False}, "replicas": 1},
}


# -- rendering, no cluster ---------------------------------------------------------------------


@pytest.mark.parametrize("values", list(CASES.values()), ids=list(CASES))
def test_every_rendered_setting_is_one_the_controller_has_and_parses(
    values: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = resolve_env(controller_container(render(values)), "blockflow-system", lambda n, k: "k")
    fields = set(Settings.model_fields)
    unknown = [n for n in env if n.removeprefix("BLOCKFLOW_").lower() not in fields]
    assert unknown == [], f"the chart sets settings controller/settings.py does not have: {unknown}"
    assert all(n.startswith("BLOCKFLOW_") for n in env), env

    forget_settings_in_the_environment(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # raises as the Pod would at start on a value it cannot parse
    merged = {"maxBodyBytes": 1048576, "leaseSeconds": 15, "logLevel": "INFO", **values}
    assert settings.max_body_bytes == merged["maxBodyBytes"]
    assert settings.lease_seconds == merged["leaseSeconds"]
    assert settings.log_level == merged["logLevel"]
    assert settings.namespaces == merged.get("watchNamespaces", [])
    assert settings.leader_election is True
    assert settings.controller_namespace == "blockflow-system"
    default_url = "http://bf-blockflow.blockflow-system.svc:8080"
    assert settings.public_url == values.get("publicUrl", default_url)


def test_large_numbers_are_rendered_as_integers_not_in_scientific_notation() -> None:
    # Values reach templates as float64 (from values.yaml, or JSON as here): %v of 1048576.0
    # is 1.048576e+06.
    env = resolve_env(controller_container(render({})), "ns")
    assert env["BLOCKFLOW_MAX_BODY_BYTES"] == "1048576"
    assert env["BLOCKFLOW_LEASE_SECONDS"] == "15"
    env = resolve_env(controller_container(render({"maxBodyBytes": 1073741824})), "ns")
    assert env["BLOCKFLOW_MAX_BODY_BYTES"] == "1073741824"
    docs = render({"replicas": 3, "admission": {"timeoutSeconds": 10}, "service": {"port": 9090}})
    assert deployment(docs)["spec"]["replicas"] == 3
    (hook,) = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"]
    assert hook["timeoutSeconds"] == 10
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["ports"][0]["port"] == 9090
    for min_available in (1, "50%"):
        values = {"podDisruptionBudget": {"minAvailable": min_available}}
        (pdb,) = [d for d in render(values) if d["kind"] == "PodDisruptionBudget"]
        assert pdb["spec"]["minAvailable"] == min_available


def test_the_non_root_controller_can_read_its_certificate_and_write_tmp() -> None:
    pod = deployment(render({}))["spec"]["template"]["spec"]
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (UID, UID)
    # Secret files are owned by root: the process reads them through the pod's fsGroup.
    assert security["fsGroup"] == UID
    volumes = {v["name"]: v for v in pod["volumes"]}
    mode = volumes["admission-cert"]["secret"]["defaultMode"]
    assert mode & 0o040, f"defaultMode {mode:o}: the group cannot read tls.key"
    assert not mode & 0o007, f"defaultMode {mode:o}: anyone may read tls.key"
    assert "emptyDir" in volumes["tmp"]  # kubelet makes it 0777, and fsGroup-owned
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp" and not mounts["tmp"].get("readOnly")
    assert mounts["admission-cert"]["readOnly"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("values", list(CASES.values()), ids=list(CASES))
def test_probes_and_ports_are_where_the_controller_listens(values: dict[str, Any]) -> None:
    docs = render(values)
    container = controller_container(docs)
    env = resolve_env(container, "ns")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert env["BLOCKFLOW_HTTP_HOST"] == "0.0.0.0"  # reachable from the kubelet and the Service
    assert ports["http"] == int(env["BLOCKFLOW_HTTP_PORT"])
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http")
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    if "BLOCKFLOW_ADMISSION_PORT" in env:
        assert ports["admission"] == int(env["BLOCKFLOW_ADMISSION_PORT"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert env["BLOCKFLOW_ADMISSION_CERT_DIR"] in mounts
    else:
        assert "admission" not in ports
    assert container["args"][0] == "controller"  # the image's entrypoint is `blockflow`


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("maxBodyBytes=abc", "maxBodyBytes"),
        ("maxBodyBytes=512", "maxBodyBytes"),
        ("maxBodyBytes=1.5e6", "maxBodyBytes"),
        ("replicas=-1", "replicas"),
        ("replicas=two", "replicas"),
        ("leaseSeconds=0", "leaseSeconds"),
        ("leaseSeconds=2.5", "leaseSeconds"),
        ("service.port=70000", "port"),
        ("admission.timeoutSeconds=60", "timeoutSeconds"),
        ("admission.enabled=maybe", "enabled"),
        ("podDisruptionBudget.minAvailable=-1", "minAvailable"),
        ("podDisruptionBudget.minAvailable=half", "minAvailable"),
        ("serviceMonitor.interval=30", "interval"),
    ],
)
def test_set_values_of_the_wrong_type_are_refused_naming_the_field(
    expression: str, field: str
) -> None:
    values = helm.parse_set_string(expression)  # as `helm install --set` parses it
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as refused:
        chart.validate_schema(values)
    assert field in str(refused.value)


def test_set_values_of_the_right_type_are_accepted() -> None:
    values = helm.parse_set_string(
        "maxBodyBytes=10485760,leaseSeconds=30,replicas=3,podDisruptionBudget.minAvailable=50%"
    )
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
    env = resolve_env(controller_container(render(values)), "ns")
    assert (env["BLOCKFLOW_MAX_BODY_BYTES"], env["BLOCKFLOW_LEASE_SECONDS"]) == ("10485760", "30")


# -- the rendered environment starts the real controller ---------------------------------------


@pytest.mark.parametrize("values", [CASES["defaults"], CASES["edited"]], ids=["defaults", "edited"])
def test_the_rendered_environment_starts_the_controller_and_it_becomes_ready(
    values: dict[str, Any],
    kubectl: Kubectl,
    namespace: str,
    run_controller: Callable[..., ControllerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = "bf-" + namespace[-6:]
    container = controller_container(render(values, name=release, namespace=namespace))
    if values.get("tokenKey"):
        secret_name = values["tokenKey"]["existingSecret"]
        kubectl.run(
            "create", "secret", "generic", secret_name, "-n", namespace,
            f"--from-literal=key={secrets.token_hex(32)}",
        )  # fmt: skip

    def secret(name: str, key: str) -> str:
        data = kubectl.json("get", "secret", name, "-n", namespace)["data"]
        return base64.b64decode(data[key]).decode()

    env = resolve_env(container, namespace, secret)
    # What only works inside the Pod: the address (0.0.0.0:8080, 8443 are the Pod's own) and the
    # mounted certificate. Everything else is used as rendered.
    port, admission_port = free_port(), free_port()
    env["BLOCKFLOW_HTTP_HOST"] = "127.0.0.1"
    env["BLOCKFLOW_HTTP_PORT"] = str(port)
    assert env["BLOCKFLOW_ADMISSION_CERT_DIR"] == "/etc/blockflow/admission"
    certs = tmp_path / "admission"
    make_ca(certs, "chart-env-test-ca")
    make_serving_cert(certs, "tls", "localhost", ["IP:127.0.0.1", "DNS:localhost"])
    env["BLOCKFLOW_ADMISSION_PORT"] = str(admission_port)
    env["BLOCKFLOW_ADMISSION_CERT_DIR"] = str(certs)
    forget_settings_in_the_environment(monkeypatch)
    # The Pod the controller runs in (it labels its own Pod when it leads); this plane has no
    # node, so it is only an object.
    kubectl.apply(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "labels": {"blockflow.dev/leader": "stale"}},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "controller", "image": container["image"]}],
            },
        },
    )

    assert container["args"][0] == "controller"
    controller = run_controller(*container["args"][1:], env=env, port=port)

    def ready() -> bool:
        exited = controller.proc.poll()
        assert exited is None, f"the controller exited ({exited}):\n" + "\n".join(
            controller.lines[-20:]
        )
        return readyz(controller) == 200

    eventually(ready, timeout=60, what="the controller ready")

    # The rendered values are the ones the controller runs with.
    merged = {"maxBodyBytes": 1048576, "leaseSeconds": 15, **values}
    lease = kubectl.json("get", "lease", env["BLOCKFLOW_LEASE_NAME"], "-n", namespace)
    assert lease["spec"]["leaseDurationSeconds"] == merged["leaseSeconds"]
    assert lease["spec"]["holderIdentity"].endswith(f"-{controller.proc.pid}")
    status, api = http("GET", f"http://127.0.0.1:{port}/openapi.json")
    assert status == 200
    assert f"{merged['maxBodyBytes']} bytes" in str(api)
    pod = kubectl.json("get", "pod", POD, "-n", namespace)
    assert pod["metadata"]["labels"]["blockflow.dev/leader"] == "true"  # the Service's selector
    listening = controller.wait_for_log(lambda r: r.get("event") == "http server listening")
    assert listening["url"] == env["BLOCKFLOW_PUBLIC_URL"]
    controller.wait_for_log(lambda r: r.get("event") == "admission webhook listening")
