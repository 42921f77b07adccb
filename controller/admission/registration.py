"""Registering the validating webhook with the API server when the controller runs outside
the cluster (``make demo``, the tests): a loopback serving certificate and a
ValidatingWebhookConfiguration that points at ``https://127.0.0.1:<port>/validate``.

In a cluster the Helm chart registers the same rules (``charts/blockflow/templates/
admission.yaml``; a test keeps the two equal) against the controller's Service.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from controller.api.kinds import GROUP
from controller.pki import make_ca, make_serving_cert

WEBHOOK_NAME = "validate.blockflow.dev"
API_PATH = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

#: Creates and updates of every Blockflow kind (a WorkflowRun's spec too: its input must be
#: an object Blockflow can read); never status (the controller writes it), never deletes (a
#: dead controller must not keep objects forever).
RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [GROUP],
        "apiVersions": ["*"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["apps", "blocks", "workflows", "workflowruns"],
        "scope": "Namespaced",
    }
]


def ensure_loopback_cert(directory: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 in ``directory`` (made once, then reused);
    returns the CA certificate (PEM) the API server must trust."""
    ca, cert, key = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    if not (ca.is_file() and cert.is_file() and key.is_file()):
        make_ca(directory, "blockflow-admission-local-ca")
        made_cert, made_key = make_serving_cert(
            directory, "serving", "blockflow-admission", ["IP:127.0.0.1", "DNS:localhost"]
        )
        made_cert.replace(cert)
        made_key.replace(key)
    return ca.read_bytes()


def webhook_configuration(
    name: str,
    url: str,
    ca_bundle: bytes,
    *,
    failure_policy: str = "Ignore",
    namespace_labels: dict[str, str] | None = None,
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration for a webhook served at ``url``.

    ``namespace_labels`` limits it to namespaces carrying them (the tests scope theirs to
    their own namespace, so a stopped test controller cannot block anyone else)."""
    if failure_policy not in ("Ignore", "Fail"):
        raise ValueError(f"failure_policy must be Ignore or Fail, not {failure_policy!r}")
    webhook: dict[str, Any] = {
        "name": WEBHOOK_NAME,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "matchPolicy": "Equivalent",
        "timeoutSeconds": timeout_seconds,
        "rules": RULES,
        "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_bundle).decode()},
    }
    if namespace_labels:
        webhook["namespaceSelector"] = {"matchLabels": dict(namespace_labels)}
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "blockflow"}},
        "webhooks": [webhook],
    }
