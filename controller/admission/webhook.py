"""The validating admission webhook (an adapter): AdmissionReview in, allowed or refused out.

The API server POSTs an ``admission.k8s.io/v1`` AdmissionReview to ``/validate`` over HTTPS
for every create and update of an App, Block, Workflow or WorkflowRun (never their status).
This module asks the running controller which block types the referenced Apps offer, hands
the object to the pure :func:`controller.admission.validate.refusals` and answers with the
reasons, which kubectl prints as
``admission webhook "validate.blockflow.dev" denied the request: ...``.

An App handler that cannot be asked in time does not block the apply: its checks are skipped
(the controller reports the same problem in the object's status once it reconciles).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from controller import metrics
from controller.admission.validate import referenced_apps, refusals
from controller.handlers.protocol import BlockTypeSpec
from controller.kube.decoding import loads
from controller.logs import get_logger

log = get_logger(__name__)

#: (namespace, App name) → the block types its handler offers, or None for an unknown App.
BlockTypes = Callable[[str, str], Awaitable[dict[str, BlockTypeSpec] | None]]

REVIEW_API_VERSION = "admission.k8s.io/v1"
#: How long one App handler may take to say what it offers before its checks are skipped.
LOOKUP_SECONDS = 3.0
#: The API server's own limit on a webhook request is 10 s at most; stay well inside it.
MAX_BODY_BYTES = 3 * 1024 * 1024


async def review(request_review: dict[str, Any], block_types: BlockTypes) -> dict[str, Any]:
    """The AdmissionReview answer to one AdmissionReview request."""
    request = request_review.get("request")
    if not isinstance(request, dict) or not request.get("uid"):
        raise ValueError("not an AdmissionReview request: request.uid is missing")
    body = request.get("object") or {}
    old = request.get("oldObject") if request.get("operation") == "UPDATE" else None
    namespace = str(request.get("namespace") or (body.get("metadata") or {}).get("namespace"))
    offered = await _offered(namespace, referenced_apps(body), block_types)
    reasons = refusals(body, old, offered.get) if isinstance(body, dict) else []
    response: dict[str, Any] = {"uid": request["uid"], "allowed": not reasons}
    if reasons:
        # No code or reason: the API server answers 400 with "admission webhook ... denied
        # the request: <message>", which kubectl prints whole (a 422 "Invalid" without
        # field causes would print only "The request is invalid").
        response["status"] = {"message": "; ".join(reasons)}
    kind = str(body.get("kind") or "unknown")
    metrics.ADMISSION_REVIEWS.labels(kind=kind, allowed="true" if not reasons else "false").inc()
    if reasons:
        log.info(
            "admission refused",
            kind=kind,
            namespace=namespace,
            name=(body.get("metadata") or {}).get("name"),
            reasons=reasons,
        )
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


async def _offered(
    namespace: str, apps: set[str], block_types: BlockTypes
) -> dict[str, dict[str, BlockTypeSpec]]:
    """Ask for every referenced App at once, each within :data:`LOOKUP_SECONDS`."""

    async def one(app: str) -> dict[str, BlockTypeSpec] | None:
        try:
            return await asyncio.wait_for(block_types(namespace, app), LOOKUP_SECONDS)
        except Exception as exc:  # unknown now is not invalid: the controller reports it later
            log.info("admission: App not asked", app=app, namespace=namespace, error=str(exc))
            return None

    names = sorted(apps)
    found = await asyncio.gather(*(one(app) for app in names))
    return {app: types for app, types in zip(names, found, strict=True) if types is not None}


def build_admission_app(block_types: BlockTypes) -> web.Application:
    """``POST /validate`` (AdmissionReview v1) and ``GET /healthz``."""

    async def validate(request: web.Request) -> web.Response:
        try:
            payload = loads(await request.read())  # bounded: a deep object is refused
            if not isinstance(payload, dict):
                raise ValueError("the body is not a JSON object")
            answer = await review(payload, block_types)
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(answer)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/validate", validate)
    app.router.add_get("/healthz", healthz)
    return app


def tls_context(cert_dir: Path) -> ssl.SSLContext:
    """The serving context from ``tls.crt`` and ``tls.key`` (the layout of a TLS Secret)."""
    cert, key = cert_dir / "tls.crt", cert_dir / "tls.key"
    for path in (cert, key):
        if not path.is_file():
            raise FileNotFoundError(
                f"admission_cert_dir: {path} not found; mount a TLS Secret there "
                f"(tls.crt, tls.key) or run `blockflow admission local` to make one"
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
