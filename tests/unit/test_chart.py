"""The Helm chart, linted and rendered with Helm's own Go library (helm-python-sdk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

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
    bindings = of_kind(docs, "ClusterRoleBinding")
    assert [b["roleRef"]["name"] for b in bindings] == ["bf-blockflow"]
    assert not any(b["roleRef"]["name"] in ("cluster-admin", "admin", "edit") for b in bindings)


def test_watched_namespaces_get_roles_and_nothing_cluster_wide() -> None:
    docs = render({"watchNamespaces": ["team-a", "team-b"]})
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
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
    assert paths == ["/callbacks/", "/triggers/", "/hooks/", "/events"]  # never /metrics
    assert of_kind(enabled, "NetworkPolicy") and of_kind(enabled, "ServiceMonitor")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": 0}, "replicas"),
        ({"leaseSeconds": 0}, "leaseSeconds"),
        ({"logLevel": "LOUD"}, "logLevel"),
        ({"imgae": {}}, "imgae"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as refused:
        chart.validate_schema(values)
    assert field in str(refused.value)
