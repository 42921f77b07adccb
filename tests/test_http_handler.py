"""Apps whose handler is HTTP, end to end: the real controller process, the real API server and
the example handler service (``examples/http-handler/server.py``) on 127.0.0.1.

Everything is asserted the way a user sees it (``kubectl get -o json``, ``kubectl wait``,
``kubectl get events``), plus what the handler service received. The HMAC key reaches the
controller through a Secret referenced by ``spec.handler.http.secretRef``.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest
import yaml

from controller.handlers.http_transport import SIGNATURE_HEADER, sign
from controller.runtime.handlers import INFO_TTL
from tests.conftest import EXAMPLES_DIR, ControllerProcess, Kubectl, blockflow, eventually
from tests.support.http_fixtures import HandlerServer, Watch, example, free_port

StartController = Callable[..., ControllerProcess]
StartHandler = Callable[..., HandlerServer]

HMAC_SECRET = "storage-hmac"
APP = "storage"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def key() -> str:
    """The HMAC key the handler service checks signatures with."""
    return secrets.token_urlsafe(32)


@pytest.fixture
def start_handler() -> Iterator[StartHandler]:
    """Start the example service (``start_handler(key, port=0)``); stopped after the test."""
    servers: list[HandlerServer] = []

    def start(key: bytes, port: int = 0) -> HandlerServer:
        server = HandlerServer(key, port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def handler(start_handler: StartHandler, key: str) -> HandlerServer:
    return start_handler(key.encode())


# -- manifests -------------------------------------------------------------------------------


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def http_app(url: str, *, timeout: int = 1, **spec: Any) -> dict[str, Any]:
    """The App `storage`, served over HTTP, signed with the key in the Secret `storage-hmac`."""
    http = {"url": url, "timeoutSeconds": timeout, "secretRef": {"name": HMAC_SECRET}}
    return blockflow("App", APP, {"handler": {"http": http}, **spec})


def block(name: str, type_: str = "bucket", **spec: Any) -> dict[str, Any]:
    config = {"name": name} if type_ == "bucket" else {"alias": name}
    return blockflow("Block", name, {"app": APP, "type": type_, "config": config, **spec})


def install(kubectl: Kubectl, namespace: str, key: str, *documents: dict[str, Any]) -> None:
    kubectl.apply(namespace, secret(HMAC_SECRET, {"key": key}), *documents)


# -- reading what a user sees ----------------------------------------------------------------


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl.json("get", kind.lower(), name, "-n", namespace)
    return obj


def lifecycle(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("lifecycle") or {})


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")


def wait_for(
    kubectl: Kubectl,
    namespace: str,
    kind: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 30,
    what: str = "",
) -> dict[str, Any]:
    """Poll ``kubectl get -o json`` until the predicate holds; fail with the last status."""
    deadline = time.monotonic() + timeout
    while True:
        obj = get(kubectl, namespace, kind, name)
        if predicate(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{kind} {name}: not {what or 'as expected'} within {timeout:g}s; status:\n"
                + json.dumps(obj.get("status"), indent=2)
            )
        time.sleep(0.2)


def in_state(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: lifecycle(obj).get("status") == state


def kubectl_wait_ready(kubectl: Kubectl, namespace: str, *refs: str, timeout: int = 60) -> None:
    kubectl.run(
        "wait", "--for=condition=Ready", *refs, "-n", namespace, f"--timeout={timeout}s",
        timeout=timeout + 10,
    )  # fmt: skip


def events(kubectl: Kubectl, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """``kubectl get events [--field-selector involvedObject.name=<name>]``."""
    selector = ["--field-selector", f"involvedObject.name={name}"] if name else []
    items: list[dict[str, Any]] = kubectl.json("get", "events", "-n", namespace, *selector)["items"]
    return items


def wait_for_warning(
    kubectl: Kubectl, namespace: str, name: str, reason: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            e
            for e in events(kubectl, namespace, name)
            if e["type"] == "Warning" and e["reason"] == reason
        ]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            seen = [(e["type"], e["reason"], e["message"]) for e in events(kubectl, namespace)]
            raise AssertionError(f"no Warning {reason} event for {name} within {timeout}s: {seen}")
        time.sleep(0.2)


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- the happy path --------------------------------------------------------------------------


def test_a_bucket_goes_in_progress_then_ready_through_the_signed_http_handler(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """What `kubectl get blocks --watch` shows, what the Block ends with, what the handler saw."""
    watch = Watch(kubectl, namespace, "blocks")
    try:
        install(kubectl, namespace, key, http_app(handler.url), block("assets"))
        run_controller("--namespace", namespace)
        kubectl_wait_ready(kubectl, namespace, "app/storage", "block/assets")
        ready = get(kubectl, namespace, "Block", "assets")
        # Wait until the watch has delivered the Ready version too (it lags `get` slightly).
        deadline = time.monotonic() + 10
        while not any(in_state("ready")(v) for v in watch.versions("assets")):
            assert time.monotonic() < deadline, "kubectl get --watch never showed ready"
            time.sleep(0.1)
    finally:
        watch.close()

    # What `kubectl get blocks --watch` showed: in_progress ("Creating bucket…"), then ready.
    shown = [
        (lifecycle(v).get("status"), lifecycle(v).get("description"))
        for v in watch.versions("assets")
        if lifecycle(v)
    ]
    assert ("in_progress", "Creating bucket…") in shown, shown
    first_ready = next(i for i, (state, _) in enumerate(shown) if state == "ready")
    assert shown.index(("in_progress", "Creating bucket…")) < first_ready, shown

    uid = ready["metadata"]["uid"]
    assert ready["status"]["signals"] == {"bucketId": f"bkt-{uid[:8]}"}
    assert lifecycle(ready)["handlerVersion"] == "1.0.0"
    assert lifecycle(ready)["description"] == f"Bucket bkt-{uid[:8]} is ready"
    assert condition(ready, "Ready")["status"] == "True"
    assert condition(ready, "Stalled")["status"] == "False"
    app = get(kubectl, namespace, "App", APP)
    assert lifecycle(app)["status"] == "ready" and lifecycle(app)["handlerVersion"] == "1.0.0"

    # The handler saw signed requests only: the App's sync, the bucket's syncs (state kept).
    posts = [r for r in handler.received() if r.method == "POST"]
    assert posts and all(r.signature_valid and r.status == 200 for r in posts), [
        (r.path, r.entity.get("name"), r.signature_valid, r.status) for r in posts
    ]
    assert handler.received("sync", kind="App", name=APP)
    bucket_syncs = handler.received("sync", kind="Block", name="assets")
    assert len(bucket_syncs) >= 2
    assert bucket_syncs[0].body is not None and bucket_syncs[0].body["state"] == {}
    assert bucket_syncs[-1].body is not None and bucket_syncs[-1].body["state"] == {
        "creating": True
    }
    assert handler.received("info"), "the controller never asked GET / for the handler info"

    reasons = [(e["type"], e["reason"], e["message"]) for e in events(kubectl, namespace, "assets")]
    assert ("Normal", "Progressing", "Creating bucket…") in reasons
    assert ("Normal", "Ready", f"Bucket bkt-{uid[:8]} is ready") in reasons


def test_the_storage_example_resolves_the_kms_key_signal_for_the_bucket(
    kubectl: Kubectl, namespace: str, run_controller: StartController, start_handler: StartHandler
) -> None:
    """examples/http-handler/storage.yaml as shipped, pointed at the example server."""
    documents = list(
        yaml.safe_load_all((EXAMPLES_DIR / "http-handler" / "storage.yaml").read_text())
    )
    hmac_secret = next(d for d in documents if d["kind"] == "Secret")
    handler = start_handler(hmac_secret["stringData"]["key"].encode())
    app = next(d for d in documents if d["kind"] == "App")
    app["spec"]["handler"]["http"]["url"] = handler.url
    kubectl.apply(namespace, *documents)
    run_controller("--namespace", namespace)

    kubectl_wait_ready(kubectl, namespace, "app/storage", "block/key", "block/assets-bucket")

    key_block = get(kubectl, namespace, "Block", "key")
    key_id = key_block["status"]["signals"]["keyId"]
    assert key_id == f"key-{key_block['metadata']['uid'][:8]}"
    assert lifecycle(key_block)["description"] == f"Key {key_id} is ready"
    bucket = get(kubectl, namespace, "Block", "assets-bucket")
    assert bucket["status"]["signals"]["bucketId"].startswith("bkt-")
    # The signalRef was resolved: the handler received the key's id, not the reference.
    last_sync = handler.received("sync", kind="Block", name="assets-bucket")[-1]
    assert last_sync.entity["config"] == {"name": "assets", "kmsKey": key_id}
    assert last_sync.body is not None and last_sync.body["app"]["config"] == {"region": "eu-west-1"}
    assert all(r.signature_valid for r in handler.received() if r.method == "POST")


# -- failures --------------------------------------------------------------------------------


def test_a_wrong_signing_key_fails_with_401_and_retries_until_the_secret_is_fixed(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    install(kubectl, namespace, "not-the-handlers-key", http_app(handler.url), block("assets"))
    run_controller("--namespace", namespace)

    failed = wait_for(kubectl, namespace, "Block", "assets", in_state("failed"), what="failed")
    assert "401" in lifecycle(failed)["lastError"], lifecycle(failed)
    stalled = condition(failed, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "HandlerHTTPError"
    assert condition(failed, "Ready")["status"] == "False"
    warning = wait_for_warning(kubectl, namespace, "assets", "HandlerHTTPError")
    assert "401" in warning["message"]

    # It retries with backoff (first retry after ~5 s): attempts grow, the handler sees more.
    retried = wait_for(
        kubectl,
        namespace,
        "Block",
        "assets",
        lambda o: (lifecycle(o).get("attempts") or 0) >= 2,
        timeout=15,
        what="retried",
    )
    assert lifecycle(retried)["status"] == "failed"
    refused = handler.received("sync", kind="Block", name="assets")
    assert len(refused) >= 2
    assert all(not r.signature_valid and r.status == 401 for r in refused)

    # Fix the Secret: the next retry (~10 s later) is signed right and the bucket gets ready.
    kubectl.apply(namespace, secret(HMAC_SECRET, {"key": key}))
    kubectl_wait_ready(kubectl, namespace, "block/assets", timeout=40)
    ready = get(kubectl, namespace, "Block", "assets")
    assert lifecycle(ready)["attempts"] == 0 and not lifecycle(ready).get("lastError")
    assert condition(ready, "Stalled")["status"] == "False"
    accepted = [r for r in handler.received("sync", kind="Block", name="assets") if r.status == 200]
    assert accepted and all(r.signature_valid for r in accepted)


#: fault → (condition and event reason, what lastError says).
FAULTS: dict[str, tuple[dict[str, Any], str, str]] = {
    "timeout": ({"delay_seconds": 3}, "HandlerTimeout", "gave no reply to sync within 1s"),
    "server error": ({"status": 500}, "HandlerHTTPError", "answered sync with HTTP 500"),
    "invalid json": ({"invalid_json": True}, "InvalidReply", "reply to sync from"),
}


@pytest.mark.parametrize(("fault", "reason", "says"), FAULTS.values(), ids=FAULTS.keys())
def test_a_faulty_handler_reply_fails_the_block_with_the_reason(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
    fault: dict[str, Any],
    reason: str,
    says: str,
) -> None:
    """The App (timeoutSeconds: 1) is ready first; then the handler misbehaves on the bucket."""
    install(kubectl, namespace, key, http_app(handler.url, timeout=1))
    run_controller("--namespace", namespace)
    kubectl_wait_ready(kubectl, namespace, "app/storage", timeout=30)
    handler.controls.faults = example.Faults(**fault)
    kubectl.apply(namespace, block("assets"))

    failed = wait_for(kubectl, namespace, "Block", "assets", in_state("failed"), what="failed")
    state = lifecycle(failed)
    assert says in state["lastError"], state
    if reason == "InvalidReply":
        assert "not JSON" in state["lastError"]
    assert state["description"].startswith("Sync failed: ")
    assert state["attempts"] == 1
    # A retry is scheduled (backoff starts at 5 s ± 20 %).
    delay = (timestamp(state["nextSyncTime"]) - timestamp(state["lastSyncTime"])).total_seconds()
    assert 3.9 <= delay <= 6.1, state
    stalled = condition(failed, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == reason
    warning = wait_for_warning(kubectl, namespace, "assets", reason)
    assert says in warning["message"]


def test_an_app_whose_handler_is_not_up_yet_gets_ready_once_it_answers(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    start_handler: StartHandler,
    key: str,
) -> None:
    """Applied together (GitOps): the App and its Block before the handler's Deployment is up.
    The first call (GET / for the handler info) is refused. Once the handler answers, the
    App (whose info is asked again at least every INFO_TTL) and then its Block get ready
    on their own, without anyone editing them."""
    port = free_port()
    install(kubectl, namespace, key, http_app(f"http://127.0.0.1:{port}"), block("assets"))
    run_controller("--namespace", namespace)
    failed = wait_for(kubectl, namespace, "App", APP, in_state("failed"), what="failed")
    assert "cannot reach handler" in lifecycle(failed)["lastError"], lifecycle(failed)
    assert condition(failed, "Stalled")["reason"] == "HandlerUnavailable"
    wait_for_warning(kubectl, namespace, APP, "HandlerUnavailable")

    handler = start_handler(key.encode(), port)
    up = time.monotonic()
    for kind, name in (("App", APP), ("Block", "assets")):
        try:
            wait_for(
                kubectl,
                namespace,
                kind,
                name,
                in_state("ready"),
                timeout=max(1.0, up + INFO_TTL + 10 - time.monotonic()),
                what="ready",
            )
        except AssertionError as exc:
            app, blk = (
                lifecycle(get(kubectl, namespace, k, n))
                for k, n in (("App", APP), ("Block", "assets"))
            )
            raise AssertionError(
                f"{exc}\n-- the handler has been up for {time.monotonic() - up:.0f}s and received "
                f"{[(r.path, r.entity.get('name')) for r in handler.received()]}; App: "
                f"status={app.get('status')!r} attempts={app.get('attempts')!r} "
                f"nextSyncTime={app.get('nextSyncTime')!r}; Block: status={blk.get('status')!r} "
                f"attempts={blk.get('attempts')!r} nextSyncTime={blk.get('nextSyncTime')!r}"
            ) from None


def test_429_is_retried_after_retry_after_not_the_default_backoff(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """The App is answered (and rate limited) first; then its Block is created."""
    handler.controls.faults = example.Faults(status=429, retry_after="2")
    install(kubectl, namespace, key, http_app(handler.url))
    run_controller("--namespace", namespace)
    wait_for(kubectl, namespace, "App", APP, in_state("failed"), what="failed")
    kubectl.apply(namespace, block("assets"))

    failed = wait_for(kubectl, namespace, "Block", "assets", in_state("failed"), what="failed")
    state = lifecycle(failed)
    assert "HTTP 429" in state["lastError"] and "retry after 2s" in state["lastError"], state
    assert condition(failed, "Stalled")["reason"] == "RateLimited"
    delay = (timestamp(state["nextSyncTime"]) - timestamp(state["lastSyncTime"])).total_seconds()
    assert 1.9 <= delay <= 2.1, state  # exactly Retry-After; the backoff would be 4 to 6 s
    wait_for_warning(kubectl, namespace, "assets", "RateLimited")

    # Retries ~2 s apart (the default backoff would wait 4 to 6 s, then 8 to 12 s).
    limited = handler.wait_for(3, "sync", name="assets", timeout=15)
    gaps = [later.at - earlier.at for earlier, later in pairwise(limited[:3])]
    assert all(1.8 <= gap <= 3.5 for gap in gaps), gaps
    assert all(r.status == 429 for r in limited)

    handler.controls.faults = example.Faults()
    switched = time.monotonic()
    wait_for(kubectl, namespace, "Block", "assets", in_state("ready"), timeout=15, what="ready")
    first_ok = next(
        r for r in handler.received("sync", kind="Block", name="assets") if r.status == 200
    )
    assert first_ok.at - switched <= 3.5


def test_a_block_applied_together_with_its_app_waits_for_retry_after_too(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """`kubectl apply` of the App and its Block at once (as examples/http-handler/storage.yaml):
    after the Block's first 429 the controller must not call it again before Retry-After."""
    handler.controls.faults = example.Faults(status=429, retry_after="2")
    install(kubectl, namespace, key, http_app(handler.url), block("assets"))
    run_controller("--namespace", namespace)
    first, second = handler.wait_for(2, "sync", name="assets", timeout=15)[:2]
    assert first.status == 429
    assert second.at - first.at >= 1.8, (
        f"the Block's sync was sent again {second.at - first.at:.3f}s after a 429 with "
        f"Retry-After: 2"
    )


def test_secret_config_never_leaks_into_status_events_or_logs(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """The handler answers 422 quoting the request's config (the App's includes configFrom)."""
    password = f"pw-{secrets.token_hex(12)}"
    token = f'tok "{secrets.token_hex(6)}" \\ é'  # escaped once or twice when quoted in JSON
    handler.controls.faults = example.Faults(status=422, echo_request=True)
    install(
        kubectl,
        namespace,
        key,
        secret("storage-creds", {"password": password, "token": token}),
        http_app(
            handler.url,
            config={"region": "eu-west-1"},
            configFrom=[{"secretRef": {"name": "storage-creds"}}],
        ),
        block("assets"),
    )
    controller = run_controller("--namespace", namespace)

    for kind, name in (("App", APP), ("Block", "assets")):
        wait_for(kubectl, namespace, kind, name, in_state("failed"), what="failed")
        wait_for_warning(kubectl, namespace, name, "HandlerHTTPError")
    # The handler did quote the secrets back to the controller …
    app_replies = [r.reply for r in handler.received("sync", kind="App", name=APP)]
    assert any(password in reply for reply in app_replies), app_replies
    # … and the controller redacted them where a user can read the error.
    app = get(kubectl, namespace, "App", APP)
    assert "HTTP 422" in lifecycle(app)["lastError"]
    assert '"password": "***"' in lifecycle(app)["lastError"], lifecycle(app)
    assert controller.stop() == 0  # every log line written

    token_parts = [token.split('"')[1]]  # the random part, however it is escaped
    readable = {
        "App status": json.dumps(app),
        "Block status": json.dumps(get(kubectl, namespace, "Block", "assets")),
        "App and Block lists": kubectl.run(
            "get", "blockflow", "-n", namespace, "-o", "yaml"
        ).stdout,
        "events": json.dumps(events(kubectl, namespace)),
        "describe": kubectl.run("describe", "app,block", "-n", namespace).stdout,
        "controller log": "\n".join(controller.lines),
    }
    for where, text in readable.items():
        for value in (password, *token_parts, key):
            assert value not in text, f"a secret value appears in the {where}"


# -- handler version -------------------------------------------------------------------------


def test_a_new_handler_version_resyncs_the_app_and_every_block(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """The handler is redeployed with a new version and nobody touches the resources. The
    controller asks HTTP handlers for their info again every INFO_TTL, so within that (plus
    a margin) the App re-syncs at the new version, and then every Block of the App does."""
    names = ["assets", "logs", "key"]
    install(
        kubectl,
        namespace,
        key,
        http_app(handler.url),
        block("assets"),
        block("logs"),
        block("key", "kms-key"),
    )
    run_controller("--namespace", namespace)
    kubectl_wait_ready(kubectl, namespace, "app/storage", *(f"block/{n}" for n in names))
    for name in names:
        assert lifecycle(get(kubectl, namespace, "Block", name))["handlerVersion"] == "1.0.0"

    handler.controls.version = "1.1.0"
    changed = time.monotonic()
    syncs_before = {n: len(handler.received("sync", kind="Block", name=n)) for n in names}
    wait_for(
        kubectl,
        namespace,
        "App",
        APP,
        lambda o: lifecycle(o).get("handlerVersion") == "1.1.0",
        timeout=INFO_TTL + 10,
        what="re-synced at handler version 1.1.0",
    )
    app_noticed = time.monotonic() - changed
    for name in names:
        try:
            wait_for(
                kubectl,
                namespace,
                "Block",
                name,
                lambda o: lifecycle(o).get("handlerVersion") == "1.1.0",
                timeout=10,
                what="re-synced at handler version 1.1.0",
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n-- the App re-synced at 1.1.0 {app_noticed:.0f}s after the change; "
                f"sync requests the handler received for the Blocks since the change: "
                + str(
                    {
                        n: len(handler.received("sync", kind="Block", name=n)) - syncs_before[n]
                        for n in names
                    }
                )
            ) from None
        # Re-synced means the handler was called again, not just a relabelled status.
        assert len(handler.received("sync", kind="Block", name=name)) > syncs_before[name]
    kubectl_wait_ready(kubectl, namespace, *(f"block/{n}" for n in names), timeout=15)


# -- deletion --------------------------------------------------------------------------------


def test_deleting_a_block_drains_it_unless_its_policy_is_orphan(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    install(
        kubectl,
        namespace,
        key,
        http_app(handler.url),
        block("assets"),
        block("kept", "kms-key", deletionPolicy="Orphan"),
    )
    run_controller("--namespace", namespace)
    kubectl_wait_ready(kubectl, namespace, "block/assets", "block/kept")
    assert not handler.received("drain")

    # `kubectl delete` waits until the object is gone (the finalizer released).
    kubectl.run("delete", "block", "assets", "-n", namespace, "--timeout=30s", timeout=40)
    drains = handler.received("drain", kind="Block", name="assets")
    assert len(drains) == 1, drains
    assert drains[0].signature_valid and drains[0].status == 200
    assert drains[0].entity["type"] == "bucket"
    gone = kubectl.run("get", "block", "assets", "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    kubectl.run("delete", "block", "kept", "-n", namespace, "--timeout=30s", timeout=40)
    assert handler.received("drain", kind="Block", name="kept") == []
    names = kubectl.run("get", "blocks", "-n", namespace, "-o", "name").stdout.split()
    assert names == []


def test_an_http_handler_asks_for_a_sync_over_the_controllers_entity_endpoint(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    """The HTTP form of lifecycle.sync(): a signed POST to /entities/<ns>/<kind>/<name>/sync."""
    install(kubectl, namespace, key, http_app(handler.url), block("assets"))
    controller = run_controller("--namespace", namespace)
    kubectl_wait_ready(kubectl, namespace, "app/storage", "block/assets")
    syncs = len(handler.received("sync", kind="Block", name="assets"))
    url = f"http://127.0.0.1:{controller.port}/entities/{namespace}/blocks/assets/sync"
    body = b'{"reason": "the bucket changed outside"}'

    def post(signature: str | None) -> int:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def answered() -> int | None:
        try:
            return post(None)
        except urllib.error.URLError:
            return None  # the server is not listening yet

    assert eventually(answered, what="the HTTP server") == 401
    assert post(sign(body, b"not the key")) == 401
    assert len(handler.received("sync", kind="Block", name="assets")) == syncs
    assert post(sign(body, key.encode())) == 202
    handler.wait_for(syncs + 1, "sync", name="assets")


def _call(method: str, url: str, *, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed: (status, headers, body)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_the_apps_http_endpoint_reaches_an_http_handler_with_state_prompts_and_timers(
    kubectl: Kubectl,
    namespace: str,
    run_controller: StartController,
    handler: HandlerServer,
    key: str,
) -> None:
    install(kubectl, namespace, key, http_app(handler.url))
    controller = run_controller("--namespace", namespace)
    kubectl_wait_ready(kubectl, namespace, "app/storage")
    base = f"http://127.0.0.1:{controller.port}/apps/{namespace}/storage/http"

    # KV state survives between requests; the handler sees the path after /http.
    for visit in (1, 2):
        status, headers, body = _call("GET", f"{base}/hello?name=ada")
        assert status == 200, body
        assert json.loads(body) == {"hello": "ada", "visits": visit}
    (seen,) = [r.body or {} for r in handler.received("http")][-1:]
    assert seen["request"]["path"] == "/hello"
    assert seen["entity"]["http"]["url"] == base
    assert seen["entity"]["installationUrl"].endswith(f"/ui/namespaces/{namespace}/apps/storage")

    status, _, body = _call("GET", f"{base}/nowhere")
    assert (status, body) == (404, b"no route GET /nowhere")
    status, _, body = _call(
        "GET", f"http://127.0.0.1:{controller.port}/apps/{namespace}/nope/http/x"
    )
    assert status == 404 and b"App nope not found" in body

    # A prompt and a timer tied to it: both in status; when the timer fires, the prompt goes.
    status, headers, _ = _call("POST", f"{base}/remind?seconds=1.5")
    assert status == 303 and headers["Location"].endswith("/apps/storage")
    app = get(kubectl, namespace, "app", "storage")
    assert [p["key"] for p in app["status"]["prompts"]] == ["reminder"]
    assert [t["key"] for t in app["status"]["timers"]] == ["remind"]
    done = wait_for(
        kubectl,
        namespace,
        "app",
        "storage",
        lambda obj: lifecycle(obj).get("description") == "Reminded",
        what="reminded",
    )
    assert done["status"]["prompts"] == [] and done["status"]["timers"] == []
    (fired,) = [r.body or {} for r in handler.received("timer")]
    assert fired["timer"]["prompt"]["key"] == "reminder"
    assert fired["timer"]["payload"] == {"note": "done"}
