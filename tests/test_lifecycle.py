"""The onSync / onDrain lifecycle end to end: real controller process, real API server.

The `demo` handler shows the user-facing flow; the `scripted` handler replies what a
Block's config says and counts its syncs in the signal `syncCount`, so each test can
see exactly when the handler ran.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import EXAMPLES_DIR, ControllerProcess, Kubectl, blockflow, eventually

Controller = Callable[..., ControllerProcess]


def scripted(name: str, **config: Any) -> dict[str, Any]:
    return blockflow("Block", name, {"app": "scripted", "type": "scripted", "config": config})


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result = kubectl.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def status(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(get(kubectl, namespace, kind, name).get("status") or {})


def lifecycle(kubectl: Kubectl, namespace: str, name: str, kind: str = "block") -> dict[str, Any]:
    return dict(status(kubectl, namespace, kind, name).get("lifecycle") or {})


def condition(kubectl: Kubectl, namespace: str, name: str, type_: str) -> dict[str, Any]:
    for item in status(kubectl, namespace, "block", name).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    return {}


def stalled_condition(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    """Wait until the Block is Stalled=True; its Stalled condition."""
    return dict(
        eventually(
            lambda: (
                condition(kubectl, namespace, name, "Stalled").get("status") == "True"
                and condition(kubectl, namespace, name, "Stalled")
            ),
            what=f"{name} stalled",
        )
    )


def sync_count(kubectl: Kubectl, namespace: str, name: str) -> int:
    return int((status(kubectl, namespace, "block", name).get("signals") or {}).get("syncCount", 0))


def wait_ready(kubectl: Kubectl, namespace: str, *refs: str, timeout: int = 60) -> None:
    kubectl.run(
        "wait",
        "--for=condition=Ready",
        *refs,
        "-n",
        namespace,
        f"--timeout={timeout}s",
        timeout=timeout + 10,
    )


def when(value: str) -> datetime:
    """A status timestamp (RFC 3339; the fraction is omitted when zero, so never compare text)."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def events(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    return list(kubectl.json("get", "events", "-n", namespace)["items"])


@pytest.fixture
def controller(
    kubectl: Kubectl, namespace: str, run_controller: Controller
) -> Iterator[ControllerProcess]:
    """The controller watching the test namespace, with a `scripted` App ready."""
    kubectl.apply(namespace, blockflow("App", "scripted", {"handler": {"python": "scripted"}}))
    process = run_controller("--namespace", namespace)
    wait_ready(kubectl, namespace, "app/scripted")
    yield process


# -- the demo: in_progress → ready, signals flowing, secrets kept secret ------------------------


def test_demo_blocks_progress_wait_for_signals_and_become_ready(
    kubectl: Kubectl, namespace: str, run_controller: Controller
) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(EXAMPLES_DIR / "demo"))
    process = run_controller("--namespace", namespace)
    creating = eventually(
        lambda: (
            lifecycle(kubectl, namespace, "assets").get("status") == "in_progress"
            and lifecycle(kubectl, namespace, "assets")
        ),
        what="assets in_progress",
    )
    assert creating["description"] == "Still creating…"
    waiting = eventually(
        lambda: (
            condition(kubectl, namespace, "consumer", "Ready").get("reason") == "DependencyNotReady"
            and condition(kubectl, namespace, "consumer", "Ready")
        ),
        what="consumer waiting for the bucket",
    )
    assert waiting["status"] == "False"
    assert waiting["message"] == "Waiting for signal bucketId of Block assets"
    wait_ready(kubectl, namespace, "block/assets", "block/consumer")

    assets = status(kubectl, namespace, "block", "assets")
    bucket_id = assets["signals"]["bucketId"]
    assert status(kubectl, namespace, "block", "consumer")["signals"]["seen"]["bucket"] == bucket_id
    assert [c["type"] for c in assets["conditions"]] == ["Ready", "Reconciling", "Stalled"]
    assert {c["status"] for c in assets["conditions"][1:]} == {"False"}
    assert all(c["observedGeneration"] == 1 for c in assets["conditions"])
    assert assets["lifecycle"]["handlerVersion"]

    # The sensitive signal lives only in the Block's own Secret.
    sensitive = assets["sensitiveSignals"]
    assert sensitive["names"] == ["accessKey"]
    secret = kubectl.json("get", "secret", sensitive["secretName"], "-n", namespace)
    assert set(secret["data"]) == {"accessKey"}
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Block", "assets", True)
    import base64

    access_key = base64.b64decode(secret["data"]["accessKey"]).decode()
    everything = (
        kubectl.run("get", "blockflow", "-n", namespace, "-o", "json").stdout
        + json.dumps(events(kubectl, namespace))
        + "\n".join(process.lines)
    )
    assert access_key not in everything

    reasons = {(e["involvedObject"]["name"], e["reason"]) for e in events(kubectl, namespace)}
    assert {("assets", "Progressing"), ("assets", "Ready"), ("consumer", "Ready")} <= reasons


# -- when sync runs ----------------------------------------------------------------------------


def test_scheduled_resyncs_run_at_ready_status(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("drift", sync={"newStatus": "ready", "nextScheduleDelay": 1}))
    eventually(lambda: sync_count(kubectl, namespace, "drift") >= 3, what="three syncs")
    current = lifecycle(kubectl, namespace, "drift")
    assert current["status"] == "ready" and current["nextSyncTime"]


def test_requested_sync_annotation_runs_a_sync_and_is_echoed(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("poke"))
    wait_ready(kubectl, namespace, "block/poke")
    assert sync_count(kubectl, namespace, "poke") == 1
    kubectl.run(
        "annotate",
        "block",
        "poke",
        "-n",
        namespace,
        "blockflow.dev/requested-sync-at=2026-11-21T10:00:00Z",
        "--overwrite",
    )
    eventually(lambda: sync_count(kubectl, namespace, "poke") == 2, what="a second sync")
    assert lifecycle(kubectl, namespace, "poke")["lastHandledSyncAt"] == "2026-11-21T10:00:00Z"


def test_a_python_handler_can_ask_for_a_sync(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("selfish", requestSyncAfter=0.5))
    eventually(lambda: sync_count(kubectl, namespace, "selfish") == 2, what="handler-asked sync")
    assert "nextSyncTime" not in lifecycle(kubectl, namespace, "selfish")


def test_spec_change_resyncs_and_updates_observed_generation(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("edit", signals={"color": "red"}))
    wait_ready(kubectl, namespace, "block/edit")
    kubectl.apply(namespace, scripted("edit", signals={"color": "blue"}))
    eventually(
        lambda: status(kubectl, namespace, "block", "edit").get("observedGeneration") == 2,
        what="generation 2 observed",
    )
    assert status(kubectl, namespace, "block", "edit")["signals"]["color"] == "blue"


# -- signals and dependencies ------------------------------------------------------------------


def test_dependents_resync_promptly_when_a_signal_changes(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(
        namespace,
        scripted("source", signals={"color": "red"}),
        scripted("reader", signals={"seen": {"signalRef": {"block": "source", "signal": "color"}}}),
    )
    wait_ready(kubectl, namespace, "block/source", "block/reader")
    kubectl.apply(namespace, scripted("source", signals={"color": "green"}))
    eventually(
        lambda: status(kubectl, namespace, "block", "reader")["signals"].get("seen") == "green",
        timeout=15,
        what="the reader to see the new colour",
    )


def test_a_reference_to_a_sensitive_signal_resolves_from_the_secret(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(
        namespace,
        scripted("vault", secret="hunter2-very-secret"),
        scripted("user", signals={"got": {"signalRef": {"block": "vault", "signal": "secret"}}}),
    )
    wait_ready(kubectl, namespace, "block/vault", "block/user")
    # The reader received the value (it echoes it as a plain signal, by its own choice).
    assert status(kubectl, namespace, "block", "user")["signals"]["got"] == "hunter2-very-secret"
    vault = status(kubectl, namespace, "block", "vault")
    assert "hunter2-very-secret" not in json.dumps(vault)
    assert vault["sensitiveSignals"]["names"] == ["secret"]


def test_dependency_cycles_fail_with_the_path(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(
        namespace,
        scripted("a", signals={"x": {"signalRef": {"block": "b", "signal": "syncCount"}}}),
        scripted("b", signals={"x": {"signalRef": {"block": "a", "signal": "syncCount"}}}),
    )
    stalled = stalled_condition(kubectl, namespace, "a")
    assert stalled["reason"] == "DependencyCycle"
    assert stalled["message"] == "Dependency cycle: Block a -> Block b -> Block a"
    assert lifecycle(kubectl, namespace, "a")["status"] == "failed"


def test_a_malformed_reference_names_the_field(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("bad", signals={"x": {"signalRef": {"block": "y"}}}))
    stalled = stalled_condition(kubectl, namespace, "bad")
    assert "spec.config.signals.x.signalRef.signal: required" in stalled["message"]


def test_changing_a_fixed_field_stalls_without_calling_the_handler(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("fixed", fixedName="one"))
    wait_ready(kubectl, namespace, "block/fixed")
    kubectl.apply(namespace, scripted("fixed", fixedName="two"))
    stalled = stalled_condition(kubectl, namespace, "fixed")
    assert stalled["reason"] == "FixedFieldChanged"
    assert "spec.config.fixedName is fixed: it was 'one'" in stalled["message"]
    assert stalled["observedGeneration"] == 2
    assert sync_count(kubectl, namespace, "fixed") == 1
    # Changing it back heals it.
    kubectl.apply(namespace, scripted("fixed", fixedName="one"))
    wait_ready(kubectl, namespace, "block/fixed")


def test_an_unknown_block_type_is_a_clear_failure(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, blockflow("Block", "odd", {"app": "scripted", "type": "bucket"}))
    stalled = stalled_condition(kubectl, namespace, "odd")
    assert "spec.type: block type 'bucket' is not offered" in stalled["message"]
    assert "(offered: scripted)" in stalled["message"]


# -- drain -------------------------------------------------------------------------------------


def test_deleting_drains_behind_the_finalizer(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("stuck", drain={"newStatus": "draining_failed"}))
    wait_ready(kubectl, namespace, "block/stuck")
    assert (
        "blockflow.dev/lifecycle"
        in get(kubectl, namespace, "block", "stuck")["metadata"]["finalizers"]
    )
    kubectl.run("delete", "block", "stuck", "-n", namespace, "--wait=false")
    eventually(
        lambda: lifecycle(kubectl, namespace, "stuck").get("status") == "draining_failed",
        what="draining_failed",
    )
    assert condition(kubectl, namespace, "stuck", "Stalled")["status"] == "True"
    warnings = [
        e
        for e in events(kubectl, namespace)
        if e["involvedObject"]["name"] == "stuck" and e["type"] == "Warning"
    ]
    assert warnings and warnings[0]["reason"] == "DrainFailed"
    # Nothing is orphaned: the object stays until the handler drains it.
    assert get(kubectl, namespace, "block", "stuck")
    kubectl.run(
        "patch",
        "block",
        "stuck",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"config": {"drain": {"newStatus": "drained"}}}}),
    )
    eventually(lambda: not get(kubectl, namespace, "block", "stuck"), timeout=60, what="gone")


def test_draining_reruns_drain_until_drained(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(
        namespace, scripted("slow", drain={"newStatus": "draining", "nextScheduleDelay": 1})
    )
    wait_ready(kubectl, namespace, "block/slow")
    kubectl.run("delete", "block", "slow", "-n", namespace, "--wait=false")
    first = eventually(
        lambda: (
            lifecycle(kubectl, namespace, "slow").get("status") == "draining"
            and lifecycle(kubectl, namespace, "slow")
        ),
        what="draining",
    )
    assert condition(kubectl, namespace, "slow", "Reconciling")["status"] == "True"
    eventually(
        lambda: (
            when(lifecycle(kubectl, namespace, "slow")["lastSyncTime"])
            > when(first["lastSyncTime"])
        ),
        what="drain to run again",
    )
    kubectl.run(
        "patch",
        "block",
        "slow",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"config": {"drain": {"newStatus": "drained"}}}}),
    )
    eventually(lambda: not get(kubectl, namespace, "block", "slow"), what="gone")


def test_orphan_policy_skips_the_drain(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    block = scripted("keep", drain={"newStatus": "draining_failed"})
    block["spec"]["deletionPolicy"] = "Orphan"
    kubectl.apply(namespace, block)
    wait_ready(kubectl, namespace, "block/keep")
    kubectl.run("delete", "block", "keep", "-n", namespace, "--timeout=30s")
    assert not get(kubectl, namespace, "block", "keep")


def test_requested_drain_drains_without_deleting_and_sync_brings_it_back(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("pause"))
    wait_ready(kubectl, namespace, "block/pause")
    kubectl.run(
        "annotate", "block", "pause", "-n", namespace, "blockflow.dev/requested-drain-at=d1"
    )
    eventually(
        lambda: lifecycle(kubectl, namespace, "pause").get("status") == "drained", what="drained"
    )
    assert lifecycle(kubectl, namespace, "pause")["lastHandledDrainAt"] == "d1"
    # Settled, offline on purpose: Ready with the reason Drained (kstatus: Current).
    ready = condition(kubectl, namespace, "pause", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Drained")
    assert get(kubectl, namespace, "block", "pause")  # still there
    kubectl.run("annotate", "block", "pause", "-n", namespace, "blockflow.dev/requested-sync-at=s1")
    wait_ready(kubectl, namespace, "block/pause")


def test_a_referenced_block_drains_only_after_its_dependents_are_gone(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(
        namespace,
        scripted("base"),
        scripted("top", signals={"b": {"signalRef": {"block": "base", "signal": "syncCount"}}}),
    )
    wait_ready(kubectl, namespace, "block/base", "block/top")
    kubectl.run("delete", "block", "base", "-n", namespace, "--wait=false")
    waiting = eventually(
        lambda: (
            "Waiting for dependents" in lifecycle(kubectl, namespace, "base").get("description", "")
            and lifecycle(kubectl, namespace, "base")
        ),
        what="base waiting for top",
    )
    assert waiting["description"] == "Waiting for dependents to go: Block top"
    kubectl.run("delete", "block", "top", "-n", namespace, "--wait=false")
    eventually(lambda: not get(kubectl, namespace, "block", "base"), what="base gone")


def test_an_app_drains_only_after_its_blocks_are_gone(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    kubectl.apply(namespace, scripted("child"))
    wait_ready(kubectl, namespace, "block/child")
    kubectl.run("delete", "app", "scripted", "-n", namespace, "--wait=false")
    eventually(
        lambda: (
            lifecycle(kubectl, namespace, "scripted", "app").get("description")
            == "Waiting for dependents to go: Block child"
        ),
        what="app waiting",
    )
    kubectl.run("delete", "block", "child", "-n", namespace, "--wait=false")
    eventually(lambda: not get(kubectl, namespace, "app", "scripted"), what="app gone")


# -- durability --------------------------------------------------------------------------------


def test_scheduled_syncs_survive_a_controller_restart(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess, run_controller: Controller
) -> None:
    kubectl.apply(namespace, scripted("later", sync={"newStatus": "ready", "nextScheduleDelay": 4}))
    wait_ready(kubectl, namespace, "block/later")
    assert controller.stop(signal.SIGTERM) == 0
    before = sync_count(kubectl, namespace, "later")
    due = lifecycle(kubectl, namespace, "later")["nextSyncTime"]
    run_controller("--namespace", namespace)
    eventually(
        lambda: sync_count(kubectl, namespace, "later") > before,
        timeout=60,
        what="sync after restart",
    )
    assert when(lifecycle(kubectl, namespace, "later")["lastSyncTime"]) >= when(due)


def test_prompts_go_to_status_and_state_is_kept_in_an_owned_secret(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    prompt = {
        "key": "oauth",
        "description": "Authorize access",
        "redirect": {"url": "https://x/auth"},
    }
    reply = {"newStatus": "in_progress", "prompts": [prompt], "state": {"cursor": 7}}
    kubectl.apply(namespace, scripted("asker", sync=reply))
    current = eventually(
        lambda: (
            status(kubectl, namespace, "block", "asker").get("prompts")
            and status(kubectl, namespace, "block", "asker")
        ),
        what="prompts in status",
    )
    assert current["prompts"] == [
        {**prompt, "redirect": {"url": "https://x/auth", "method": "GET"}}
    ]
    secret = kubectl.json("get", "secret", current["stateSecretName"], "-n", namespace)
    import base64

    assert json.loads(base64.b64decode(secret["data"]["state.json"])) == {"cursor": 7}
    assert secret["metadata"]["ownerReferences"][0]["name"] == "asker"


def test_config_that_breaks_the_types_schema_is_refused_naming_the_field(
    kubectl: Kubectl, namespace: str, run_controller: Controller
) -> None:
    kubectl.apply(
        namespace,
        blockflow("App", "demo", {"handler": {"python": "demo"}}),
        blockflow(
            "Block",
            "neg",
            {"app": "demo", "type": "bucket", "config": {"name": "x", "provisionSeconds": -1}},
        ),
    )
    run_controller("--namespace", namespace)
    stalled = stalled_condition(kubectl, namespace, "neg")
    assert stalled["reason"] == "InvalidConfig"
    assert stalled["message"] == "spec.config.provisionSeconds: must be >= 0"
    kubectl.run(
        "patch",
        "block",
        "neg",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"config": {"provisionSeconds": 0}}}),
    )
    wait_ready(kubectl, namespace, "block/neg")


def test_a_drain_waits_for_a_missing_secret_but_a_deleted_namespace_does_not_hang(
    kubectl: Kubectl, namespace: str, controller: ControllerProcess
) -> None:
    """A drain whose configFrom Secret is gone fails and is retried — the Secret can be made
    again — unless the namespace itself is being deleted: then nothing can be created in it
    any more, so its entities go without their drain instead of keeping it Terminating."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}}
    kubectl.apply(namespace, {**secret, "stringData": {"region": "eu"}})
    vault = {"handler": {"python": "scripted"}, "configFrom": [{"secretRef": {"name": "creds"}}]}
    kubectl.apply(namespace, blockflow("App", "vault", vault))
    kubectl.apply(namespace, blockflow("Block", "b1", {"app": "vault", "type": "scripted"}))
    kubectl.apply(namespace, blockflow("Block", "b2", {"app": "vault", "type": "scripted"}))
    wait_ready(kubectl, namespace, "app/vault", "block/b1", "block/b2")

    # The Secret deleted by mistake: the drain says what to create, and waits for it.
    kubectl.run("delete", "secret", "creds", "-n", namespace)
    kubectl.run("delete", "block", "b1", "-n", namespace, "--wait=false")
    eventually(
        lambda: lifecycle(kubectl, namespace, "b1").get("status") == "draining_failed",
        what="b1 draining_failed",
    )
    assert "Secret creds not found" in lifecycle(kubectl, namespace, "b1")["description"]
    kubectl.apply(namespace, {**secret, "stringData": {"region": "eu"}})
    eventually(lambda: not get(kubectl, namespace, "block", "b1"), timeout=60, what="b1 gone")

    # The namespace deleted: its Secret may go first; the rest goes anyway.
    kubectl.run("delete", "secret", "creds", "-n", namespace)
    kubectl.run("delete", "namespace", namespace, "--wait=false")
    kubectl.run("wait", "--for=delete", f"namespace/{namespace}", "--timeout=90s", timeout=100)
    released = [line for line in controller.lines if "released without drain" in line]
    assert {json.loads(line)["entity"].split(" ")[0] for line in released} == {"Block", "App"}
    assert all("creds" in json.loads(line)["missing"] for line in released)
