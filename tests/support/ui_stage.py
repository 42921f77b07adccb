"""The stage the web page's browser tests share: a controller watching two namespaces, people
(ServiceAccount tokens, with Roles made here), what each namespace holds, and Debian's
Chromium driven by Playwright. Each test module that imports the fixtures gets its own stage.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import (
    Cluster,
    ControllerProcess,
    Kubectl,
    blockflow,
    eventually,
    release_finalizers,
    start_controller,
)
from tests.support.workflow_helpers import get_run, readyz, wait_phase, wait_run, workflow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = os.environ.get("BLOCKFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Waits for the controller (a run resuming, a view refreshing) — far above what they take.
SLOW_MS = 30_000
PROMPT_URL = "https://auth.example.com/authorize?client_id=crm&scope=mail"
SECRET_VALUE = "s3cr3t-value-never-on-the-page"
UPDATE_SCREENSHOT = os.environ.get("BLOCKFLOW_UPDATE_SCREENSHOT") == "1"
#: The onboarding approval's question (rendered for each run).
APPROVAL_MESSAGE = "Onboard the customer of run ${{ run.name }}?"
#: Why the workflow `broken` is not activated.
REFUSAL = "spec.steps[0].uses.app: App 'nope' not found"

#: What a person needs on Blockflow's kinds to see them, and to decide approvals.
READ = {
    "apiGroups": ["blockflow.dev"],
    "resources": ["apps", "blocks", "workflows", "workflowruns"],
    "verbs": ["get", "list", "watch"],
}
DECIDE = {"apiGroups": ["blockflow.dev"], "resources": ["workflowruns"], "verbs": ["update"]}
#: What the page's other actions need (trigger, stop, activate / pause, sync), and Events.
OPERATE = [
    {
        "apiGroups": ["blockflow.dev"],
        "resources": ["workflowruns"],
        "verbs": ["create", "patch", "delete"],
    },
    {
        "apiGroups": ["blockflow.dev"],
        "resources": ["workflows", "apps", "blocks"],
        "verbs": ["patch"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
]


# -- the stage: two namespaces, a controller, people --------------------------------------------


@dataclass
class Person:
    username: str
    token: str


@dataclass
class Stage:
    base: str
    a: str  # the namespace most tests look at
    b: str  # another team's namespace
    controller: ControllerProcess
    approver: Person  # reads, decides and operates in a and b
    viewer: Person  # reads a, may not decide
    team_a: Person  # reads and decides in a only
    nobody: Person  # a valid token without any Blockflow rights

    def url(self, path: str) -> str:
        return self.base + path

    def ns(self, namespace: str, *rest: str) -> str:
        return self.url(f"/ui/namespaces/{namespace}/" + "/".join(rest))


def _role(name: str, namespace: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding(role: str, namespace: str, account: str, account_ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"{role}-{account}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_ns}],
    }


def _person(kubectl: Kubectl, namespace: str, account: str) -> Person:
    """A ServiceAccount and a token for it (TokenRequest API: kubectl 1.20 has no
    `create token`)."""
    kubectl.run("create", "serviceaccount", account, "-n", namespace)
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = kubectl.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        "-f",
        "-",
        input=json.dumps(request),
    )
    token = json.loads(answer.stdout)["status"]["token"]
    return Person(f"system:serviceaccount:{namespace}:{account}", token)


def _run(name: str, workflow_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "blockflow.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow_name}},
    }


def _onboarding() -> dict[str, Any]:
    return workflow(
        "onboarding",
        {
            "trigger": {"webhook": {}},
            "steps": [
                {"name": "welcome", "uses": {"type": "sleep"}, "with": {"seconds": 1}},
                {
                    "name": "review",
                    "uses": {"type": "approval"},
                    "with": {"message": APPROVAL_MESSAGE},
                },
                {
                    "name": "announce",
                    "uses": {"type": "emit"},
                    "with": {"type": "Customer.onboarded"},
                },
            ],
        },
    )


def _waiting(kubectl: Kubectl, namespace: str, run: str, approval: str = "review") -> None:
    def waiting() -> bool:
        records = (get_run(kubectl, namespace, run).get("status") or {}).get("steps") or []
        return any(r["name"] == approval and r["state"] == "waiting" for r in records)

    eventually(waiting, timeout=60, what=f"run {run} waiting for its approval {approval}")


def _start_controller(cluster: Cluster, *namespaces: str) -> ControllerProcess:
    controller = start_controller(cluster, *(a for ns in namespaces for a in ("--namespace", ns)))
    eventually(lambda: readyz(controller) == 200, timeout=60, what="the controller ready")
    return controller


@pytest.fixture(scope="module")
def stage(cluster: Cluster, kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[Stage]:
    suffix = secrets.token_hex(3)
    a, b = f"t-ui-crm-{suffix}", f"t-ui-other-{suffix}"
    if UPDATE_SCREENSHOT:  # the README's picture: names a reader can relate to
        a, b = "acme-crm", "acme-payroll"
    for namespace in (a, b):
        kubectl.run("create", "namespace", namespace)
    controller = _start_controller(cluster, a, b)
    try:
        base = f"http://127.0.0.1:{controller.port}"
        approver = _person(kubectl, a, "approver")
        viewer = _person(kubectl, a, "viewer")
        team_a = _person(kubectl, a, "team-a")
        nobody = _person(kubectl, a, "nobody")
        for namespace in (a, b):
            kubectl.apply(
                namespace,
                _role("bf-decide", namespace, [READ, DECIDE]),
                _binding("bf-decide", namespace, "approver", a),
                _role("bf-operate", namespace, OPERATE),
                _binding("bf-operate", namespace, "approver", a),
            )
        kubectl.apply(
            a,
            _role("bf-read", a, [READ]),
            _binding("bf-read", a, "viewer", a),
            _binding("bf-decide", a, "team-a", a),
        )

        # Namespace a: the demo integration, an App whose Block asks for a person (a prompt)
        # and has a sensitive signal, a workflow with an approval, and one that fails.
        demo = (REPO / "examples" / "demo").glob("*.yaml")
        for manifest in sorted(demo):
            kubectl.run("apply", "-n", a, "-f", str(manifest))
        kubectl.apply(
            a,
            blockflow("App", "crm", {"handler": {"python": "scripted"}}),
            blockflow(
                "Block",
                "mailbox",
                {
                    "app": "crm",
                    "type": "scripted",
                    "config": {
                        "secret": SECRET_VALUE,
                        "signals": {"address": "sales@crm.example"},
                        "sync": {
                            "newStatus": "in_progress",
                            "customStatusDescription": "Waiting for the mailbox to be connected",
                            "prompts": [
                                {
                                    "key": "connect",
                                    "description": "Connect the sales mailbox",
                                    "redirect": {"url": PROMPT_URL, "method": "GET"},
                                }
                            ],
                        },
                    },
                },
            ),
            _onboarding(),
            workflow(
                "welcome",
                {
                    "trigger": {"event": "Customer.onboarded"},
                    "steps": [
                        {
                            "name": "greet",
                            "uses": {"type": "emit"},
                            "with": {"type": "Customer.welcomed", "data": {"api_key": "k-123"}},
                        }
                    ],
                },
            ),
            workflow(
                "broken",
                {
                    "trigger": {"event": "Deal.won"},
                    "steps": [{"name": "a", "uses": {"app": "nope", "type": "x"}}],
                },
            ),
            workflow(
                "ledger-sync",
                {
                    "trigger": {"webhook": {}},
                    "steps": [
                        {
                            "name": "fetch",
                            "uses": {"type": "http"},
                            "with": {"url": f"{base}/ledger/export"},
                        }
                    ],
                },
            ),
        )
        # Namespace b: another team's things, with names that must never show up for team a.
        kubectl.apply(
            b,
            blockflow("App", "payroll", {"handler": {"python": "demo"}}),
            workflow(
                "salaries",
                {
                    "trigger": {"webhook": {}},
                    "steps": [{"name": "signoff", "uses": {"type": "approval"}}],
                },
            ),
        )
        for namespace, name in (
            (a, "onboarding"),
            (a, "ledger-sync"),
            (a, "welcome"),
            (b, "salaries"),
        ):
            wait_phase(kubectl, namespace, name, "Activated")
        kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("onboard-1", "onboarding")))
        kubectl.run("create", "-n", a, "-f", "-", input=json.dumps(_run("ledger-1", "ledger-sync")))
        kubectl.run("create", "-n", b, "-f", "-", input=json.dumps(_run("salaries-1", "salaries")))
        _waiting(kubectl, a, "onboard-1")
        _waiting(kubectl, b, "salaries-1", "signoff")
        wait_run(kubectl, a, "ledger-1", "failed", timeout=60)
        kubectl.run("wait", "--for=condition=Ready", "--timeout=60s", "block/consumer", "-n", a)
        yield Stage(base, a, b, controller, approver, viewer, team_a, nobody)
    finally:
        controller.stop(timeout=20)
        failed = request.session.testsfailed
        if failed:
            print(f"\n----- controller log (pid {controller.proc.pid}) -----")
            print("\n".join(controller.lines[-200:]))
        for namespace in (a, b):
            release_finalizers(kubectl, namespace)
            kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: hack/install-deps.sh installs Debian's chromium")
    expect.set_options(timeout=SLOW_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (cookies) per test."""
    fresh = browser.new_context(viewport={"width": 1280, "height": 800})
    yield fresh
    fresh.close()


def sign_in(context: BrowserContext, stage: Stage, person: Person, path: str) -> Page:
    """Open ``path`` with ``?token=`` once: the page keeps the token in a cookie and drops it
    from the address."""
    page = context.new_page()
    page.goto(stage.url(path) + f"?token={person.token}")
    expect(page).to_have_url(stage.url(path))
    return page


def until_live(page: Page) -> None:
    """The page's event stream is connected (changes from now on show without reload)."""
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    """Still the document until_live marked: nothing reloaded or navigated."""
    return bool(page.evaluate("window.__sameDocument === true"))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def raw_get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(65536).decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def csrf_of(page: Page) -> str:
    """The session's CSRF token, from the sign-out form every page carries."""
    value = page.locator('header form input[name="csrf"]').get_attribute("value")
    assert value
    return value
