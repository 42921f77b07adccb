"""Which documents' commands the docs test runs, in which order, and the rules for the commands
that cannot run exactly as written here (tests/support/doc_commands.py says what a rule does).

The documents run one after another against one `make demo`, as a reader going from the README
through the docs would: a document may rely on what an earlier one did (the README's approved
run started a run of `welcome`). Every rule says why it exists; a skipped command says where it
is tested instead.
"""

from __future__ import annotations

from tests.support.doc_commands import Rule

# The order a reader follows: the README, the concepts, then the rest.
DOCUMENTS = (
    "README.md",
    "docs/concepts.md",
    "docs/workflows.md",
    "docs/handlers.md",
    "docs/development.md",
    "docs/operations.md",
    "docs/gitops/README.md",
    "examples/onboarding/README.md",
    "examples/orders/README.md",
    "examples/oauth/README.md",
    "examples/http-handler/README.md",
)

# What the shell of every document has besides `eval "$(hack/control-plane.sh env)"`: helpers
# the rules' `before` use (never the docs' own commands).
HELPERS = """\
__waiting() {  # the one run of workflow $1 that waits (at its approval step), once there is one
  local name deadline=$((SECONDS + 90))
  until name=$(kubectl get wfr -n blockflow-demo -l "blockflow.dev/workflow=$1" \\
      -o jsonpath='{.items[?(@.status.state=="waiting")].metadata.name}') \\
      && [[ -n $name && $name != *" "* ]]; do
    (( SECONDS < deadline )) || { echo "no single waiting run of $1: '$name'" >&2; return 1; }
    sleep 0.3
  done
  printf '%s\\n' "$name"
}
__deal() {  # a won deal $1 (Deal.won): a run of onboarding that waits for its approval
  local phase deadline=$((SECONDS + 60))  # once onboarding takes events (just re-activated?)
  until phase=$(kubectl get workflows.blockflow.dev onboarding -n blockflow-demo \
      -o jsonpath='{.status.phase}') && [[ $phase == Activated || $phase == Triggered ]]; do
    (( SECONDS < deadline )) || { echo "onboarding is $phase, not active" >&2; return 1; }
    sleep 0.3
  done
  command curl -sf http://127.0.0.1:8080/events/blockflow-demo \\
    -H 'Authorization: Bearer demo-events-token' \\
    -H 'Content-Type: application/cloudevents+json' \\
    -d "{\\"specversion\\":\\"1.0\\",\\"id\\":\\"deal-$1\\",\\"source\\":\\"crm.example/deals\\",\
\\"type\\":\\"Deal.won\\",\\"data\\":{\\"dealId\\":$1,\\"company\\":\\"Deal $1\\"}}" && echo
}
"""

_RUN_REACHES_APPROVAL = (
    "a reader is slower than a script: the run must first reach its approval step "
    "(created by the controller a moment after the event's 202)"
)
_NO_HELM = (
    "no Docker engine, registry, kind or helm binary on these machines: .ci/run builds the "
    "image with buildah (`make node-images`, the same Dockerfile) and tests/node/test_chart.py "
    "installs this chart with these values through the Helm library on a node that runs Pods"
)
_CHART_ONLY = (
    "needs the chart installed on a node: tests/node/test_chart.py runs it against its release "
    "`blockflow` (CHART_RULES)"
)
_RECURSIVE = "runs the test suite this test is part of"
_PORT = "the controller of `make demo` already listens on 8080: this one gets a free port"

RULES: tuple[Rule, ...] = (
    # -- README.md ----------------------------------------------------------------------------
    Rule(
        "README.md",
        r"^make demo\b",
        "the environment every command here runs in: the test starts `make demo` as written "
        "(in the background) and waits until its controller is ready",
        skip=True,
    ),
    Rule("README.md", r"^make test\b", _RECURSIVE, skip=True),
    Rule(
        "README.md",
        r"--watch",
        "a watch runs until interrupted: it is stopped once both Blocks are ready",
        until=(r"^assets +demo +bucket +ready", r"^consumer +demo +consumer +ready"),
    ),
    Rule(
        "README.md",
        r"/hooks/deal:42",
        _RUN_REACHES_APPROVAL,
        expect=r"HTTP/1.1 200",
        eventually=60,
    ),
    Rule("README.md", r"^docker build", _NO_HELM, skip=True),
    Rule("README.md", r"^kind load", _NO_HELM, skip=True),
    Rule("README.md", r"^helm install", _NO_HELM, skip=True),
    # -- docs/concepts.md ---------------------------------------------------------------------
    Rule(
        "docs/concepts.md",
        r"^blockflow approve RUN",
        "RUN is a placeholder: a run of onboarding that waits for its approval is made first",
        before="__deal 44 && RUN=$(__waiting onboarding)",
        replace=(("RUN", '"$RUN"'),),
    ),
    # -- docs/workflows.md --------------------------------------------------------------------
    Rule(
        "docs/workflows.md",
        r"^blockflow run pause RUN",
        "RUN is a placeholder: a run of onboarding that waits for its approval is made first",
        before="__deal 45 && RUN=$(__waiting onboarding)",
        replace=(("RUN", '"$RUN"'),),
    ),
    *(
        Rule(
            "docs/workflows.md",
            pattern,
            "RUN is a placeholder: the run paused above",
            replace=(("RUN", '"$RUN"'),),
        )
        for pattern in (
            r"^blockflow run resume RUN",
            r"^blockflow run stop RUN",
            r"^kubectl patch workflowruns\.blockflow\.dev RUN .*paused",
            r"^kubectl annotate workflowruns\.blockflow\.dev RUN",
            r"^kubectl patch workflowruns\.blockflow\.dev RUN .*retry",
        )
    ),
    Rule(
        "docs/workflows.md",
        r"^blockflow run retry RUN",
        "RUN is a placeholder: the run stopped above; a reader is slower than a script: the "
        "controller must first have cancelled it (a run that has not ended is not retried)",
        replace=(("RUN", '"$RUN"'),),
        expect=r"retry 1 requested",
        eventually=60,
    ),
    # -- docs/handlers.md ---------------------------------------------------------------------
    Rule(
        "docs/handlers.md",
        r"examples/http-handler/server\.py --port 8081",
        "a server: it runs until it listens, and is stopped when the document ends",
        server=8081,
    ),
    # -- docs/development.md ------------------------------------------------------------------
    Rule(
        "docs/development.md",
        r"^make lint\b",
        ".ci/run runs it (its step lint) before the tests",
        skip=True,
    ),
    Rule("docs/development.md", r"^make test-fast\b", _RECURSIVE, skip=True),
    Rule("docs/development.md", r"^make test PYTEST_ARGS", _RECURSIVE, skip=True),
    Rule(
        "docs/development.md",
        r"^blockflow controller +# whole cluster",
        f"{_PORT}; it runs until stopped: stopped once it serves",
        replace=(("blockflow controller", "BLOCKFLOW_HTTP_PORT=0 blockflow controller"),),
        until=(r"http server listening",),
    ),
    Rule(
        "docs/development.md",
        r"^blockflow controller -n team-a",
        f"{_PORT}; it runs until stopped: stopped once it serves",
        replace=(("blockflow controller", "BLOCKFLOW_HTTP_PORT=0 blockflow controller"),),
        until=(r"http server listening",),
    ),
    # -- docs/operations.md -------------------------------------------------------------------
    Rule("docs/operations.md", r"^docker (build|push)", _NO_HELM, skip=True),
    Rule("docs/operations.md", r"^helm (install|upgrade)", _NO_HELM, skip=True),
    Rule("docs/operations.md", r"^kubectl .*-n blockflow-system", _CHART_ONLY, skip=True),
    Rule("docs/operations.md", r"validatingwebhookconfiguration", _CHART_ONLY, skip=True),
    Rule(
        "docs/operations.md",
        r"^kubectl create token my-user -n my-namespace",
        "the local control plane is Kubernetes 1.20 (Debian's package), whose kubectl has no "
        "`create token` (1.24): tests/support/ui_stage.py asks the TokenRequest API it calls "
        "for the ServiceAccount tokens the page tests sign in with",
        skip=True,
    ),
    # -- docs/gitops/README.md ----------------------------------------------------------------
    Rule(
        "docs/gitops/README.md",
        r"--for=condition=Stalled",
        "RUN is a placeholder: a run that fails (its input refused by its workflow's "
        "inputSchema) is made first",
        before=(
            "RUN=docs-failed-run && kubectl create -n blockflow-demo -f - <<<"
            '\'{"apiVersion": "blockflow.dev/v1alpha1", "kind": "WorkflowRun", '
            '"metadata": {"name": "docs-failed-run"}, '
            '"spec": {"workflowRef": {"name": "send-invoice"}, "input": {}}}\''
        ),
        replace=(("wfr/RUN", 'wfr/"$RUN"'),),
    ),
    Rule(
        "docs/gitops/README.md",
        r"^kubectl -n argocd patch configmap argocd-cm",
        "Argo CD is not installed here: its namespace and (empty) argocd-cm are made first, "
        "and the patch is checked to carry the health checks",
        before="kubectl create namespace argocd && kubectl create configmap argocd-cm -n argocd",
    ),
    # -- examples/onboarding/README.md --------------------------------------------------------
    Rule(
        "examples/onboarding/README.md",
        r"^kubectl blockflow approve",
        _RUN_REACHES_APPROVAL,
        eventually=60,
    ),
    # -- examples/orders/README.md ------------------------------------------------------------
    Rule(
        "examples/orders/README.md",
        r"/records/shipments",
        "the run ships a moment after the payment's 202",
        expect=r'"orderId": ?7',
        eventually=60,
    ),
    Rule(
        "examples/orders/README.md",
        r"/records/notifications",
        "the finally step reports a moment after the run ships",
        expect=r"completed",
        eventually=60,
    ),
    Rule(
        "examples/orders/README.md",
        r"reason=InputRefused",
        "the Warning Event is posted a moment after the 202",
        expect=r"InputRefused",
        eventually=60,
    ),
    # -- examples/oauth/README.md -------------------------------------------------------------
    Rule(
        "examples/oauth/README.md",
        r"examples/oauth/provider\.py --port 8091",
        "`make demo` runs this very command (on 8091, the port the App's URL names)",
        skip=True,
    ),
    Rule(
        "examples/oauth/README.md",
        r"\.status\.prompts",
        "the App asks for authorization a moment after it is applied",
        expect=r"authorize",
        eventually=60,
    ),
    # -- examples/http-handler/README.md ------------------------------------------------------
    Rule(
        "examples/http-handler/README.md",
        r"server\.py --port 8081 --key-file hmac\.key",
        "a server: it runs until it listens, and is stopped when the document ends",
        server=8081,
    ),
    Rule(
        "examples/http-handler/README.md",
        r"^make image image-handler",
        ".ci/run builds both images (its step images: `make node-images`)",
        skip=True,
    ),
    *(
        Rule(
            "examples/http-handler/README.md",
            pattern,
            "the handler runs as a Pod: tests/node/test_chart.py runs it on a node against the "
            "chart's controller (CHART_RULES)",
            skip=True,
        )
        for pattern in (
            r"^kubectl create namespace tools",
            r"^kubectl apply -n tools",
            r"^kubectl wait .* -n tools",
        )
    ),
)


_TOKEN = next(r for r in RULES if r.file == "docs/operations.md" and "create token" in r.match)

_LOCAL = "runs on this machine, not in the cluster: tests/test_docs_commands.py runs it"

# docs/operations.md and the http-handler example against the chart installed on a node
# (tests/node/test_chart.py: the release `blockflow`, its namespace put for `blockflow-system`).
CHART_DOCUMENTS = ("docs/operations.md", "examples/http-handler/README.md")
CHART_RULES: tuple[Rule, ...] = (
    Rule("examples/http-handler/README.md", r"^head -c 32", _LOCAL, skip=True),
    Rule("examples/http-handler/README.md", r"server\.py --port 8081", _LOCAL, skip=True),
    Rule("examples/http-handler/README.md", r"^curl -s http://127", _LOCAL, skip=True),
    Rule(
        "examples/http-handler/README.md",
        r"^make image image-handler",
        ".ci/run builds both images and loads them into the node (its step images)",
        skip=True,
    ),
    Rule("docs/operations.md", r"^docker (build|push)", _NO_HELM, skip=True),
    Rule("docs/operations.md", r"^helm (install|upgrade)", _NO_HELM, skip=True),
    Rule(
        "docs/operations.md",
        r"^kubectl get pods",
        "the release's two replicas run",
        expect=r"blockflow-\S+ +1/1 +Running",
    ),
    Rule(
        "docs/operations.md",
        r"^kubectl describe pods",
        "what it is read for: probes",
        expect=r"Readiness: +http-get",
    ),
    Rule(
        "docs/operations.md",
        r"^kubectl logs",
        "what it is read for: how the replica started (the leader's or a standby's)",
        expect=r"http server listening",
    ),
    Rule(
        "docs/operations.md",
        r"^kubectl get validatingwebhookconfigurations",
        "the release's registration is listed",
        expect=r"^blockflow-\S*blockflow-system",
    ),
    Rule(
        "docs/operations.md",
        r"^kubectl delete validatingwebhookconfiguration",
        "it removes the registration the release's later tests rely on; the uninstall test "
        "checks that nothing cluster-scoped is left",
        skip=True,
    ),
    Rule(
        "docs/operations.md",
        r"^kubectl port-forward",
        "it runs until stopped: stopped once it forwards (from a free local port: 8080 may be "
        "taken on this machine)",
        replace=(("8080:8080", "0:8080"),),
        until=(r"Forwarding from 127\.0\.0\.1",),
    ),
    _TOKEN,
)
