# Blockflow — the two front-door commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_NAMESPACE ?= blockflow-demo
BLOCKFLOW_HTTP_PORT ?= 8080
BLOCKFLOW_ADMISSION_PORT ?= 8443
DEMO_CRM_PORT ?= 8090
DEMO_OAUTH_PORT ?= 8091
KUBECTL := hack/kubectl
# Where hack/control-plane.sh keeps the local control plane (its kubeconfig among it).
CONTROL_PLANE_DIR := $(or $(BLOCKFLOW_CONTROL_PLANE_DIR),$(CURDIR)/.local/control-plane)
PYTEST_ARGS ?=
BENCH_ARGS ?=
# Images: `make image` builds the Dockerfile with buildah (docker build works the same).
IMAGE ?= localhost/blockflow:dev
HANDLER_IMAGE ?= localhost/storage-handler:dev
BASE_IMAGE ?= python:3.11-slim
LOCAL_BASE_IMAGE := localhost/blockflow-base:bookworm
IMAGE_DIR := .local/images
# The host's CA bundle, mounted into image builds (a TLS proxy in front of PyPI signs with it).
HOST_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
BUILDAH_BUD = buildah bud --quiet --layers --network=host \
	$(if $(wildcard $(HOST_CA_BUNDLE)),--volume $(HOST_CA_BUNDLE):/run/host-ca.crt:ro --build-arg CA_BUNDLE=/run/host-ca.crt)

.PHONY: deps-node demo test test-fast lint crds protocol docs deps venv control-plane down clean help \
	bench-lifecycle bench-workflows image image-handler base-image node node-images

help:
	@echo "make demo    control plane up, CRDs and examples applied, controller running"
	@echo "make test    the whole test suite against the local control plane"
	@echo "make test-fast | lint | crds | protocol | docs | control-plane | down | clean"
	@echo "make bench-lifecycle | bench-workflows   (BENCH_ARGS=\"--help\" for options)"
	@echo "make image [BASE_IMAGE=...] | image-handler | node | node-images"

deps:
	@hack/install-deps.sh

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

control-plane: deps venv
	@hack/control-plane.sh up

crds: venv
	$(PY) -m controller crds crds
	cp crds/*.yaml charts/blockflow/crds/

protocol: venv
	$(PY) -m controller.handlers.schema_export docs/protocol

docs: venv
	$(PY) -m controller.api.docgen docs/reference

deps-node:
	@hack/install-deps.sh --node

# The whole suite: tests/node/ brings up its own plane with a node (root) and builds the images.
test: deps-node venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: deps venv
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-lifecycle bench-workflows: bench-%: control-plane
	@$(KUBECTL) apply -f crds/ >/dev/null
	@$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
	$(PY) bench/$*.py $(BENCH_ARGS)

demo: control-plane
	@$(KUBECTL) apply -f crds/ >/dev/null
	@$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
	@$(KUBECTL) create namespace $(DEMO_NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null
	@$(KUBECTL) apply -n $(DEMO_NAMESPACE) -f examples/demo/
	@sed 's/127\.0\.0\.1:8090/127.0.0.1:$(DEMO_CRM_PORT)/' examples/onboarding/workflow.yaml | $(KUBECTL) apply -n $(DEMO_NAMESPACE) -f -
	@sed 's/127\.0\.0\.1:8090/127.0.0.1:$(DEMO_CRM_PORT)/' examples/orders/workflow.yaml | $(KUBECTL) apply -n $(DEMO_NAMESPACE) -f -
	@# The validating webhook, served by the controller below (Ignore: once it stops, applies
	@# in this local plane go through unchecked instead of failing).
	@KUBECONFIG=$(CONTROL_PLANE_DIR)/kubeconfig $(VENV)/bin/blockflow admission local \
	  --port $(BLOCKFLOW_ADMISSION_PORT) --dir .local/admission >/dev/null
	@sed 's/127\.0\.0\.1:8091/127.0.0.1:$(DEMO_OAUTH_PORT)/' examples/oauth/app.yaml | $(KUBECTL) apply -n $(DEMO_NAMESPACE) -f -
	@# The example CRM and OAuth provider run in the background as long as the controller does.
	@pids=; trap 'kill $$pids 2>/dev/null' EXIT; trap 'exit 130' INT TERM; \
	serve() { port=$$1; what=$$2; shift 2; \
	  if (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null; then \
	    echo "port $$port of $$what is in use (another make demo?); see the Makefile's DEMO_*_PORT" >&2; exit 1; \
	  fi; \
	  "$$@" --port $$port >/dev/null 2>&1 & pid=$$!; pids="$$pids $$pid"; \
	  for _ in $$(seq 50); do \
	    kill -0 $$pid 2>/dev/null || { echo "$$what did not start" >&2; exit 1; }; \
	    (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null && return 0; sleep 0.2; \
	  done; echo "$$what did not start listening on $$port" >&2; exit 1; }; \
	serve $(DEMO_CRM_PORT) "the example CRM" $(PY) examples/onboarding/crm.py; \
	serve $(DEMO_OAUTH_PORT) "the example OAuth provider" $(PY) examples/oauth/provider.py; \
	api=http://127.0.0.1:$(BLOCKFLOW_HTTP_PORT); \
	echo; \
	echo "Blockflow is starting against the local control plane. In another terminal:"; \
	echo "  eval \"\$$(hack/control-plane.sh env)\""; \
	echo "  kubectl get blockflow -n $(DEMO_NAMESPACE)"; \
	echo "  kubectl get blocks -n $(DEMO_NAMESPACE) --watch"; \
	echo "  kubectl describe block consumer -n $(DEMO_NAMESPACE)"; \
	echo "(no kubectl? hack/kubectl works the same.) Ctrl-C stops the controller; make down stops the control plane."; \
	echo; \
	echo "Workflows (examples/onboarding/README.md; the example CRM is on 127.0.0.1:$(DEMO_CRM_PORT)):"; \
	echo "  curl -si $$api/events/$(DEMO_NAMESPACE) -H 'Authorization: Bearer demo-events-token' -H 'Content-Type: application/cloudevents+json' -d '{\"specversion\":\"1.0\",\"id\":\"deal-42\",\"source\":\"crm.example/deals\",\"type\":\"Deal.won\",\"data\":{\"dealId\":42,\"company\":\"ACME\"}}'"; \
	echo "  kubectl get wfr -n $(DEMO_NAMESPACE)    # or: kubectl blockflow run list -n $(DEMO_NAMESPACE)"; \
	echo "  HOOK_KEY=\$$(kubectl get secret onboarding-workflow-signals -n $(DEMO_NAMESPACE) -o jsonpath='{.data.hookKey}' | base64 -d)"; \
	echo "  curl -si $$api/hooks/deal:42 -H \"Authorization: Bearer \$$HOOK_KEY\" -H 'Content-Type: application/json' -d '{\"decision\":\"approve\",\"by\":\"ada\"}'"; \
	echo "  curl -s http://127.0.0.1:$(DEMO_CRM_PORT)/customers"; \
	echo; \
	echo "Branches, a fan-out, a sub-workflow, a wait for a payment and a finally step (examples/orders/README.md):"; \
	echo "  curl -s $$api/events/$(DEMO_NAMESPACE) -H 'Authorization: Bearer demo-events-token' -H 'Content-Type: application/cloudevents+json' -d '{\"specversion\":\"1.0\",\"id\":\"o-7\",\"source\":\"shop.example\",\"type\":\"Order.placed\",\"data\":{\"orderId\":7,\"customer\":\"acme\",\"items\":[\"sku-1\",\"sku-2\",\"sku-3\"]}}'"; \
	echo "  curl -s $$api/events/$(DEMO_NAMESPACE) -H 'Authorization: Bearer demo-events-token' -H 'Content-Type: application/cloudevents+json' -d '{\"specversion\":\"1.0\",\"id\":\"p-7\",\"source\":\"psp.example\",\"type\":\"Payment.succeeded\",\"data\":{\"orderId\":7}}'"; \
	echo "  kubectl get wfr.blockflow.dev -n $(DEMO_NAMESPACE); curl -s http://127.0.0.1:$(DEMO_CRM_PORT)/records/shipments"; \
	echo; \
	echo "The web page: open $$api/ui/ and sign in with this token (the local admin's):"; \
	echo "  $$(hack/control-plane.sh token)"; \
	echo "  The App example-oauth waits there for you to authorize it (examples/oauth/README.md)."; \
	echo; \
	echo "Admission: an invalid workflow is refused at apply time, e.g."; \
	echo "  kubectl patch workflows.blockflow.dev onboarding -n $(DEMO_NAMESPACE) --type=merge -p '{\"spec\":{\"trigger\":{\"event\":null,\"schedule\":{\"cron\":\"0 25 * * *\"}}}}'"; \
	echo; \
	run="KUBECONFIG=$(CONTROL_PLANE_DIR)/kubeconfig BLOCKFLOW_HTTP_PORT=$(BLOCKFLOW_HTTP_PORT) BLOCKFLOW_ADMISSION_PORT=$(BLOCKFLOW_ADMISSION_PORT) BLOCKFLOW_ADMISSION_CERT_DIR=$(CURDIR)/.local/admission $(VENV)/bin/blockflow controller"; \
	echo "$$run"; eval "$$run"

down:
	@hack/control-plane.sh down

# The controller's image, built with buildah from the Dockerfile (BASE_IMAGE: its Python base).
image:
	@command -v buildah >/dev/null || { echo "buildah is missing: hack/install-deps.sh --node (or: docker build -t $(IMAGE) .)" >&2; exit 1; }
	$(BUILDAH_BUD) --build-arg BASE=$(BASE_IMAGE) -t $(IMAGE) .

# The example HTTP handler's image, FROM the controller's.
image-handler:
	$(BUILDAH_BUD) --build-arg BLOCKFLOW_IMAGE=$(IMAGE) -t $(HANDLER_IMAGE) examples/http-handler

# A Python base made here from Debian's packages, for machines that reach no image registry.
base-image:
	@hack/base-image.sh

# The local control plane with a node that runs Pods (root).
node: venv
	@hack/install-deps.sh --node
	@hack/control-plane.sh up --node

# Both images built from this checkout on the local base, loaded into the node's containerd.
node-images: base-image
	@$(MAKE) --no-print-directory image image-handler BASE_IMAGE=$(LOCAL_BASE_IMAGE)
	@mkdir -p $(IMAGE_DIR)
	@for ref in $(IMAGE) $(HANDLER_IMAGE); do \
	  archive=$(IMAGE_DIR)/$$(basename $${ref%%:*}).tar; rm -f $$archive; \
	  buildah push --quiet $$ref docker-archive:$$archive:$$ref && \
	  hack/control-plane.sh load-image $$archive && rm -f $$archive || exit 1; \
	done

clean: down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
