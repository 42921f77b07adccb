"""`kubernetes.job`: create a Job from `template` (named after the run, the step and the
execution, owned by the run), then poll it every `pollSeconds` until it completes or fails.
"""

from __future__ import annotations

import re
from datetime import timedelta

from controller.handlers.protocol import ErrorReply, OutcomeReply
from controller.kube.rest import KubeApiError
from controller.workflows.steps.base import BuiltinReply, StepCall, StepTools, Wait, bad


async def run(call: StepCall, tools: StepTools) -> BuiltinReply:
    template = call.with_.get("template")
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        return bad(call, "template", "set a Job template: {metadata?, spec: {template: …}}")
    poll = float(call.with_.get("pollSeconds", 5))
    name = job_name(call.run_name, call.step.name, call.execution_id)
    path = f"/apis/batch/v1/namespaces/{call.namespace}/jobs"
    meta = dict(template.get("metadata") or {})
    labels = {
        **(meta.get("labels") or {}),
        "app.kubernetes.io/managed-by": "blockflow",
        "blockflow.dev/execution-id": call.execution_id,
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **meta,
            "name": name,
            "namespace": call.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "blockflow.dev/v1alpha1",
                    "kind": "WorkflowRun",
                    "name": call.run_name,
                    "uid": call.run_uid,
                }
            ],
        },
        "spec": template["spec"],
    }
    try:
        found = await tools.kube.request("GET", f"{path}/{name}")
    except KubeApiError as exc:
        if exc.code != 404:
            return ErrorReply(message=f"reading Job {name}: {exc.message}", retryable=True)
        try:
            found = await tools.kube.request("POST", path, body=job)
        except KubeApiError as create_error:
            retryable = create_error.code >= 500 or create_error.code == 409
            return ErrorReply(
                message=f"step {call.step.name}: creating Job {name}: {create_error.message}",
                retryable=retryable,
            )
    status = found.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return OutcomeReply(
                id="succeeded", data={"job": name, "succeeded": status.get("succeeded", 0)}
            )
        if condition.get("type") == "Failed":
            reason = condition.get("message") or condition.get("reason") or "failed"
            return ErrorReply(
                message=f"step {call.step.name}: Job {name} failed: {reason}", retryable=False
            )
    return Wait(at=call.now + timedelta(seconds=max(0.2, poll)))


def job_name(run: str, step: str, execution_id: str) -> str:
    base = re.sub(r"[^a-z0-9-]", "-", f"{run[:40]}-{step[:12]}".lower()).strip("-")
    return f"{base}-{execution_id[:8]}"
