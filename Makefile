# The project's commands. `make run` starts the whole system; `make test` runs every test.
# Everything runs from .venv, which `make setup` builds from pinned requirements.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data/cc_general.csv

# Keep BentoML's state inside the checkout and never phone home.
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
export PYTHONDONTWRITEBYTECODE := 1
# Where `make run` serves (127.0.0.1 only).
export MODEL_SERVICE_PORT ?= 3000
export API_PORT ?= 8000
export RUN_DIR ?= $(CURDIR)/var

.PHONY: help setup system-deps model import serve-model serve-api run test lint bench bento clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/*.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/dev.txt -c requirements/constraints.txt
	touch $@

setup: $(VENV)/.installed ## Build .venv with the pinned dependencies

system-deps: ## Debian packages the tests and benchmarks need: chromium (browser test), nginx (gateway), wrk (load), promtool (alert rules)
	@if ! command -v chromium >/dev/null || ! command -v nginx >/dev/null || ! command -v wrk >/dev/null \
		|| ! command -v promtool >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium nginx-light wrk prometheus; \
	fi

model: setup ## Train the model from DATA (default ../shared/data/cc_general.csv)
	$(PY) -m models.train --data $(DATA)

import: setup ## Import the committed pickle into the BentoML model store (idempotent)
	$(PY) -m models.import_model

serve-model: import ## Serve the model with BentoML on 127.0.0.1:3000
	$(VENV)/bin/bentoml serve service:CreditCardSegmentation --host 127.0.0.1 --port $(MODEL_SERVICE_PORT)

serve-api: setup ## Serve the evaluation API (and the form) on 127.0.0.1:8000
	$(VENV)/bin/uvicorn evaluation_api.main:create_app --factory --host 127.0.0.1 --port $(API_PORT)

run: import ## Set up and run the whole system: model service, evaluation API and the form (Ctrl-C stops it)
	@mkdir -p $(RUN_DIR)/log
	@echo ""
	@echo "  Starting the model service (127.0.0.1:$(MODEL_SERVICE_PORT)) and the evaluation API."
	@echo "  Open http://127.0.0.1:$(API_PORT)/  -  Ctrl-C stops everything."
	@echo ""
	@# First start only: an `admin` account with a random password, printed once (docs/API.md, "Sign in").
	@$(PY) -m evaluation_api.accounts ensure-admin --api-url http://127.0.0.1:$(API_PORT)
	export AUTH_SIGNING_KEY_FILE="$${AUTH_SIGNING_KEY_FILE:-$(RUN_DIR)/signing.key}"; exec $(VENV)/bin/supervisord -c local/supervisord.conf

bento: import ## Build the Bento (the model service's deployable artifact)
	$(VENV)/bin/bentoml build -f bentofile.yaml

.PHONY: score
ENGINE ?= local
score: setup ## Score a portfolio: INPUT=f.csv|.parquet OUTPUT=f.csv|.parquet [POLICY_B=y.yaml] [ENGINE=local|spark] [SPARK_MASTER=local[2]]
	@if [ -z "$(INPUT)" ] || [ -z "$(OUTPUT)" ]; then \
		echo "usage: make score INPUT=customers.csv OUTPUT=decisions.parquet [POLICY_B=candidate.yaml] [ENGINE=local|spark] [SPARK_MASTER=local[2]]"; \
		exit 2; \
	fi
	$(PY) -m portfolio.score --input "$(INPUT)" --output "$(OUTPUT)" --engine "$(ENGINE)" \
		$(if $(POLICY_B),--policy-b "$(POLICY_B)") $(if $(SPARK_MASTER),--spark-master "$(SPARK_MASTER)")

test: setup system-deps import ## Set up and run every test
	$(PY) -m pytest

lint: setup ## Static checks: ruff (lint and format) and mypy --strict (pyproject.toml says over what)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup system-deps import ## Run the benchmarks and regenerate docs/results/ (a few minutes)
	$(PY) -m benchmarks.run

clean: ## Remove the environment and local state (not the committed model)
	rm -rf $(VENV) .bentoml var tests/artifacts
