"""Names and labels of the objects the workflow engine creates (one place, shared by the
controller, the triggers and the CLI).

- A WorkflowRun is called ``<workflow>-<UTC yyyymmdd-hhmmss><ms>-<suffix>`` so that
  ``kubectl get wfr`` lists a workflow's runs in the order they started.
- Runs carry ``blockflow.dev/workflow`` (the workflow's name), ``blockflow.dev/trigger``
  (what started them: event, webhook, schedule, block, workflow or manual) and, when an
  event started them, ``blockflow.dev/event-key`` (a hash of the event's source and id:
  the dedupe key).
- A workflow's sensitive signals (``triggerCallbackUrl``, ``hookKey``) live in the
  Secret ``<workflow>-workflow-signals``.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from datetime import datetime
from typing import Any

WORKFLOW_LABEL = "blockflow.dev/workflow"
EVENT_KEY_LABEL = "blockflow.dev/event-key"
TRIGGER_LABEL = "blockflow.dev/trigger"
MANAGED_BY = {"app.kubernetes.io/managed-by": "blockflow"}
TRIGGER_URL_SIGNAL = "triggerCallbackUrl"
HOOK_KEY_SIGNAL = "hookKey"
WORKFLOW_SIGNALS = (TRIGGER_URL_SIGNAL, HOOK_KEY_SIGNAL)

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
_MAX_NAME = 253


def workflow_secret_name(workflow: str) -> str:
    """The Secret holding a workflow's sensitive signals (same rule as for Apps and Blocks)."""
    name = f"{workflow}-workflow-signals"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: _MAX_NAME - 11]}-{digest}"


#: The label (and annotation, with the full name) on a run a `workflow` step started.
PARENT_LABEL = "blockflow.dev/parent-run"


def run_name(workflow: str, when: datetime, suffix: str | None = None) -> str:
    """A run name that sorts by start time within its workflow."""
    stamp = when.strftime("%Y%m%d-%H%M%S") + f"{when.microsecond // 1000:03d}"
    tail = suffix or "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
    room = _MAX_NAME - len(stamp) - len(tail) - 2
    return f"{workflow[:room]}-{stamp}-{tail}"


def label_value(value: str) -> str:
    """A label value (≤ 63 characters): the value itself, or a stable digest of it."""
    if len(value) <= 63:
        return value
    return value[:52] + "-" + hashlib.sha256(value.encode()).hexdigest()[:10]


def run_labels(
    workflow: str, event_key: str | None = None, trigger: str | None = None
) -> dict[str, str]:
    labels = {**MANAGED_BY, WORKFLOW_LABEL: label_value(workflow)}
    if trigger:
        labels[TRIGGER_LABEL] = trigger
    if event_key:
        labels[EVENT_KEY_LABEL] = event_key
    return labels


def event_key(source: str, event_id: str) -> str:
    """The dedupe key of an event: at most one run per workflow per (source, id)."""
    return hashlib.sha256(f"{source}\n{event_id}".encode()).hexdigest()[:40]


def new_run_body(
    namespace: str,
    workflow: str,
    workflow_uid: str,
    when: datetime,
    *,
    input_: object = None,
    workflow_version: int | None = None,
    event_key_: str | None = None,
    suffix: str | None = None,
    name: str | None = None,
    trigger: str | None = None,
) -> dict[str, Any]:
    """The WorkflowRun to create for one execution, owned by its Workflow (GC on delete)."""
    spec: dict[str, Any] = {"workflowRef": {"name": workflow}, "input": input_}
    if workflow_version is not None:
        spec["workflowVersion"] = workflow_version
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": name or run_name(workflow, when, suffix),
            "namespace": namespace,
            "labels": run_labels(workflow, event_key_, trigger),
            "ownerReferences": [
                {
                    "apiVersion": "blockflow.dev/v1alpha1",
                    "kind": "Workflow",
                    "name": workflow,
                    "uid": workflow_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }
