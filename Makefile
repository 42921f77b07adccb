# Blockflow — the two front-door commands are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_NAMESPACE ?= blockflow-demo
KUBECTL := hack/kubectl
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint crds protocol deps venv control-plane down clean help

help:
	@echo "make demo    control plane up, CRDs and examples applied, controller running"
	@echo "make test    the whole test suite against the local control plane"
	@echo "make test-fast | lint | crds | protocol | control-plane | down | clean"

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

protocol: venv
	$(PY) -m controller.handlers.schema_export docs/protocol

test: deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: deps venv
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: control-plane
	@$(KUBECTL) apply -f crds/ >/dev/null
	@$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
	@$(KUBECTL) create namespace $(DEMO_NAMESPACE) --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null
	@$(KUBECTL) apply -n $(DEMO_NAMESPACE) -f examples/demo/
	@echo
	@echo "Blockflow is starting against the local control plane. In another terminal:"
	@echo "  eval \"\$$(hack/control-plane.sh env)\""
	@echo "  kubectl get blockflow -n $(DEMO_NAMESPACE)"
	@echo "  kubectl get blocks -n $(DEMO_NAMESPACE) --watch"
	@echo "  kubectl describe block consumer -n $(DEMO_NAMESPACE)"
	@echo "(no kubectl? hack/kubectl works the same.) Ctrl-C stops the controller; make down stops the control plane."
	@echo
	KUBECONFIG=$(CURDIR)/.local/control-plane/kubeconfig $(VENV)/bin/blockflow run

down:
	@hack/control-plane.sh down

clean: down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
