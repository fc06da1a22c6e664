# respublica — every target creates what it needs first; `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup kafka kafka-stop kafka-status demo demo-stop bench bench-policies bench-fold test test-unit test-integration soak lint format clean

help: ## list the targets with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "respublica needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv with respublica installed editable, with dev tools

kafka: $(STAMP) ## start the local Kafka broker (fetches its jars once from Maven Central)
	$(BIN)/respublica kafka start

kafka-stop: $(STAMP) ## stop the local Kafka broker
	$(BIN)/respublica kafka stop

kafka-status: $(STAMP) ## say whether the local Kafka broker runs
	-$(BIN)/respublica kafka status

demo: $(STAMP) ## the whole story end to end: broker, contracts, gateway, worker, a simulated day, out/ (KEEP=1: leave it running)
	$(BIN)/respublica demo --out out $(if $(KEEP),--keep)

demo-stop: $(STAMP) ## stop what `make demo KEEP=1` left running
	$(BIN)/respublica demo --stop --out out

bench: $(STAMP) ## respublica bench: B1, B2, P, F, P2, PA side by side (EVENTS=100000 ROUNDS=3)
	$(BIN)/respublica bench --events $(or $(EVENTS),100000) --rounds $(or $(ROUNDS),3) \
		--variants b1,b2,p,f,p2,pa --json out/bench.json

bench-policies: $(STAMP) ## micro-benchmark of the pure policy core (250k and 2M events)
	$(BIN)/python -m broker.bench.policies --events 250000 --events 2000000 --memory

bench-fold: $(STAMP) ## micro-benchmark of the raw loop's decode and fold, no Kafka (EVENTS=100000)
	$(BIN)/python -m broker.bench.fold --events $(or $(EVENTS),100000)

test: $(STAMP) ## run every test (unit and integration); starts and stops its own broker
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-unit: $(STAMP) ## run the pure unit tests only (no broker)
	$(BIN)/pytest -q -m unit $(PYTEST_ARGS)

test-integration: $(STAMP) ## run the integration tests against a real broker
	$(BIN)/pytest -q -m integration $(PYTEST_ARGS)

soak: $(STAMP) ## fault suite with a 90 s broker outage, ROUNDS=3 seeded rounds; figures in out/faults-N.json
	@mkdir -p out
	@for round in $$(seq 1 $(or $(ROUNDS),3)); do \
		echo "soak round $$round"; \
		RESPUBLICA_OUTAGE_S=$(or $(OUTAGE_S),90) RESPUBLICA_FAULT_REPORT=out/faults-$$round.json \
			$(BIN)/pytest -q -p no:cacheprovider -s tests/faults $(PYTEST_ARGS) || exit 1; \
	done

lint: $(STAMP) ## ruff check, ruff format --check, mypy and the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(STAMP) ## format the tree with ruff (what `make lint` checks)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove the venv, caches and outputs (not the downloaded Kafka jars)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache out build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
