"""Admission checks (pure): what `kubectl apply` of a Blockflow object must be refused for.

Given the object, the object it replaces (on update) and what the App handlers offer, return
the reasons to refuse, each naming the field and the fix. The webhook server (an adapter)
only turns an AdmissionReview into these arguments and the reasons into its response.

- App, Block: malformed or cross-namespace ``signalRef``; a Block type its (known) App does
  not offer; a change of a config field the type declares ``fixed``.
- Workflow: everything that would refuse its activation (when ``spec.state`` is Active): a
  missing trigger or steps, unknown block types of known Apps, CEL that does not compile,
  bad cron expressions and time zones; and leaving ``Archived``.
- Every kind, WorkflowRuns included: nothing nested deeper than the controller can read
  (the field is named).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from controller.api.workflow import WorkflowPhase, WorkflowSpec, WorkflowState
from controller.handlers.protocol import BlockTypeSpec
from controller.kube.decoding import ADMITTED_DEPTH, field_path, too_deep
from controller.kube.objects import Body, spec_of
from controller.lifecycle.signals import SignalRefError, find_refs
from controller.workflows.activation import activation_errors, state_change_error

#: App name → the block types its handler offers; None when the App is unknown (not there,
#: or its handler cannot be asked now): checks that need it are skipped, not failed.
Offered = Callable[[str], dict[str, BlockTypeSpec] | None]


def refusals(body: Body, old: Body | None, offered: Offered) -> list[str]:
    """Why this create/update must be refused (empty: allowed).

    An update that leaves ``spec`` alone (finalizers, labels, annotations) is always allowed:
    an object admitted before a rule existed must still be deletable and labelable."""
    if old is not None and old.get("spec") == body.get("spec"):
        return []
    deep = too_deep(body, ADMITTED_DEPTH)
    if deep is not None:
        return [
            f"{field_path(deep)}: nested deeper than {ADMITTED_DEPTH} levels; Blockflow reads "
            "objects only up to that depth: flatten it (e.g. pass deep data as a JSON string)"
        ]
    kind = body.get("kind")
    namespace = (body.get("metadata") or {}).get("namespace") or ""
    spec = spec_of(body)
    if kind == "App":
        return _ref_errors(spec.get("config"), namespace)
    if kind == "Block":
        return _block_errors(spec, (old or {}).get("spec"), namespace, offered)
    if kind == "Workflow":
        return _workflow_errors(body, old, offered)
    return []


def referenced_apps(body: Body) -> set[str]:
    """The App names whose block types :func:`refusals` may ask ``offered`` about."""
    spec = spec_of(body)
    if body.get("kind") == "Block":
        return {str(spec["app"])} if spec.get("app") else set()
    if body.get("kind") != "Workflow":
        return set()
    apps = set()
    for step in [*(spec.get("steps") or []), *(spec.get("fallback") or [])]:
        uses = step.get("uses") if isinstance(step, dict) else None
        if isinstance(uses, dict) and uses.get("app"):
            apps.add(str(uses["app"]))
    block = (spec.get("trigger") or {}).get("block")
    if isinstance(block, dict) and block.get("app"):
        apps.add(str(block["app"]))
    return apps


def _ref_errors(config: Any, namespace: str) -> list[str]:
    try:
        find_refs(config or {}, namespace)
    except SignalRefError as exc:
        return [str(exc)]
    return []


def _block_errors(spec: Body, old_spec: Body | None, namespace: str, offered: Offered) -> list[str]:
    errors = _ref_errors(spec.get("config"), namespace)
    types = offered(str(spec.get("app") or ""))
    if types is None:
        return errors
    block_type = types.get(str(spec.get("type") or ""))
    if block_type is None or block_type.kind != "lifecycle":
        names = ", ".join(sorted(n for n, t in types.items() if t.kind == "lifecycle")) or "none"
        errors.append(
            f"spec.type: App {spec.get('app')} offers no block type {spec.get('type')!r} "
            f"(offered: {names})"
        )
        return errors
    if old_spec is not None:
        before, after = old_spec.get("config") or {}, spec.get("config") or {}
        for field in block_type.fixed:
            if field in before and before.get(field) != after.get(field):
                errors.append(
                    f"spec.config.{field} is fixed: it was {before.get(field)!r} and cannot "
                    f"change; change it back, or delete and recreate the Block"
                )
    return errors


def _workflow_errors(body: Body, old: Body | None, offered: Offered) -> list[str]:
    try:
        spec = WorkflowSpec.model_validate(spec_of(body))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return [f"spec.{where}: {first['msg']}"]
    errors: list[str] = []
    old_phase = ((old or {}).get("status") or {}).get("phase")
    if old_phase:
        refused = state_change_error(WorkflowPhase(old_phase), spec.state)
        if refused:
            errors.append(refused)
    if spec.state is WorkflowState.ACTIVE:
        known = _known_apps(spec, offered)
        errors += [
            e
            for e in activation_errors(spec, lambda app: known.get(app))
            if not _about_unknown_app(e)
        ]
    return errors


def _known_apps(spec: WorkflowSpec, offered: Offered) -> dict[str, dict[str, BlockTypeSpec]]:
    apps = {s.uses.app for s in [*spec.steps, *spec.fallback] if s.uses.app}
    if spec.trigger is not None and spec.trigger.block is not None:
        apps.add(spec.trigger.block.app)
    known = {}
    for app in apps:
        types = offered(app)
        if types is not None:
            known[app] = types
    return known


def _about_unknown_app(message: str) -> bool:
    """An App not known to admission may simply not exist yet (applied in the same batch):
    that is the controller's to report, not a reason to refuse the apply."""
    return "not found in this namespace" in message
