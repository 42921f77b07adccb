"""The Helm chart, linted and rendered with Helm's own Go library (helm-python-sdk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from controller.admission.registration import RULES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "blockflow"


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values or {}, name="bf", namespace="blockflow-system")
    return [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_chart_lints_without_errors() -> None:
    report = helm.lint(str(CHART))
    assert report["errors"] == []
    warnings = [m for m in report["messages"] if m["severity"] > 1]
    # The one warning: the PodDisruptionBudget's fallback for API servers before 1.21 (the
    # local control plane's 1.20 among them); lint does not know the target's APIs.
    assert all("policy/v1beta1 PodDisruptionBudget" in m["error"] for m in warnings), warnings


def test_the_charts_crds_are_the_generated_ones() -> None:
    for generated in sorted((REPO / "crds").glob("*.yaml")):
        shipped = CHART / "crds" / generated.name
        assert shipped.read_text() == generated.read_text(), (
            f"{shipped} is stale: cp crds/*.yaml charts/blockflow/crds/"
        )


def test_the_controller_runs_locked_down_with_probes_and_limits() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"]
    assert container["resources"]["requests"]["cpu"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BLOCKFLOW_PUBLIC_URL"] == "http://bf-blockflow.blockflow-system.svc:8080"
    assert container["image"].endswith(":0.1.0")
    assert deployment["spec"]["replicas"] == 2  # one leads, one stands by
    assert env["BLOCKFLOW_LEADER_ELECTION"] == "true"


def test_rbac_names_every_resource_and_verb_and_never_lists_secrets() -> None:
    docs = render()
    rules = [
        r for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role") for r in role["rules"]
    ]
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
    secrets = {v for r in rules if "secrets" in r["resources"] for v in r["verbs"]}
    assert secrets == {"get", "create", "patch"}
    # Events are posted, and read for the web page's run pages (never watched).
    events = {v for r in rules if "events" in r["resources"] for v in r["verbs"]}
    assert events == {"create", "list"}
    reviews = {
        (r["apiGroups"][0], r["resources"][0]): r["verbs"]
        for r in rules
        if r["resources"] in (["tokenreviews"], ["subjectaccessreviews"])
    }
    assert reviews == {
        ("authentication.k8s.io", "tokenreviews"): ["create"],
        ("authorization.k8s.io", "subjectaccessreviews"): ["create"],
    }
    bindings = of_kind(docs, "ClusterRoleBinding")
    assert [b["roleRef"]["name"] for b in bindings] == ["bf-blockflow"]
    assert not any(b["roleRef"]["name"] in ("cluster-admin", "admin", "edit") for b in bindings)


def test_watched_namespaces_get_roles_and_only_the_reviews_cluster_wide() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    assert of_kind(docs, "ClusterRole") == []
    # The web page's TokenReviews and SubjectAccessReviews are cluster-scoped: the built-in
    # role that allows exactly those creates, and nothing else.
    (binding,) = of_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "system:auth-delegator"
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(docs, "Role")}
    assert roles == {
        ("team-a", "bf-blockflow"),
        ("team-b", "bf-blockflow"),
        ("blockflow-system", "bf-blockflow-self"),
    }
    (deployment,) = of_kind(docs, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["BLOCKFLOW_NAMESPACES"] == "team-a,team-b"


def test_optional_objects_appear_only_when_enabled() -> None:
    kinds = {d["kind"] for d in render()}
    assert {"Ingress", "NetworkPolicy", "ServiceMonitor"}.isdisjoint(kinds)
    assert "PodDisruptionBudget" in kinds
    enabled = render(
        {
            "ingress": {"enabled": True, "host": "bf.example.com"},
            "networkPolicy": {"enabled": True},
            "serviceMonitor": {"enabled": True},
        }
    )
    (ingress,) = of_kind(enabled, "Ingress")
    paths = [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]
    assert paths == ["/callbacks/", "/triggers/", "/hooks/", "/events", "/apps/"]  # no /metrics
    (with_ui,) = of_kind(render({"ingress": {"enabled": True, "ui": True}}), "Ingress")
    assert with_ui["spec"]["rules"][0]["http"]["paths"][-1]["path"] == "/ui/"
    assert of_kind(enabled, "NetworkPolicy") and of_kind(enabled, "ServiceMonitor")


def test_the_admission_webhook_is_registered_with_the_controllers_rules_and_a_trusted_cert() -> (
    None
):
    import base64
    import contextlib
    import ssl
    import tempfile

    docs = render()
    (config,) = of_kind(docs, "ValidatingWebhookConfiguration")
    (hook,) = config["webhooks"]
    assert hook["rules"] == RULES, "the chart and controller/admission/registration.py disagree"
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"] == {
        "name": "bf-blockflow",
        "namespace": "blockflow-system",
        "path": "/validate",
        "port": 443,
    }
    assert "namespaceSelector" not in hook  # the whole cluster, as the controller watches
    (secret,) = [
        d for d in of_kind(docs, "Secret") if d["metadata"]["name"] == "bf-blockflow-admission"
    ]
    assert secret["data"]["ca.crt"] == hook["clientConfig"]["caBundle"]
    # The serving certificate verifies against the CA for the Service's DNS name.
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: Path(tmp, name) for name in ("ca.crt", "tls.crt", "tls.key")}
        for name, path in files.items():
            path.write_bytes(base64.b64decode(secret["data"][name]))
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(files["tls.crt"], files["tls.key"])
        client = ssl.create_default_context(cafile=str(files["ca.crt"]))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        back_in, back_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        c = client.wrap_bio(incoming, outgoing, server_hostname="bf-blockflow.blockflow-system.svc")
        srv = server.wrap_bio(back_in, back_out, server_side=True)
        for _ in range(6):  # a handshake in memory: raises if the name or the chain is wrong
            for side in (c, srv):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
            back_in.write(outgoing.read())
            incoming.write(back_out.read())
        assert c.version() is not None

    (deployment,) = of_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BLOCKFLOW_ADMISSION_PORT"] == "8443"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["admission-cert"] == env["BLOCKFLOW_ADMISSION_CERT_DIR"]

    sharded = render({"watchNamespaces": ["team-a"], "admission": {"failurePolicy": "Ignore"}})
    (hook,) = of_kind(sharded, "ValidatingWebhookConfiguration")[0]["webhooks"]
    assert hook["namespaceSelector"]["matchExpressions"][0]["values"] == ["team-a"]
    assert hook["failurePolicy"] == "Ignore"
    off = render({"admission": {"enabled": False}})
    assert not of_kind(off, "ValidatingWebhookConfiguration")
    (deployment,) = of_kind(off, "Deployment")
    names = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "BLOCKFLOW_ADMISSION_PORT" not in names


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": 0}, "replicas"),
        ({"leaseSeconds": 0}, "leaseSeconds"),
        ({"logLevel": "LOUD"}, "logLevel"),
        ({"imgae": {}}, "imgae"),
        ({"admission": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as refused:
        chart.validate_schema(values)
    assert field in str(refused.value)
