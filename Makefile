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
# Evaluation API processes in `make run`: one per core this machine gives us (docs/ARCHITECTURE.md).
export API_WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
export RUN_DIR ?= $(CURDIR)/var

.PHONY: help setup lock system-deps model import serve-model serve-candidate serve-api run test lint bench report bento clean
.PHONY: podman-deps podman-check images images-clean images-present stack stack-down stack-gateway test-images bench-stack

# Images and the containerised stack (docs/DEPLOY.md): podman, no Docker engine or registry needed.
# podman reads deploy/images/containers.conf (runc, lower rlimits) instead of anything under /etc.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/images/containers.conf
IMAGE_TAG ?= dev
# The base images. These defaults are made from Debian's packages by deploy/images/bases.sh when
# missing; set them to registry images (e.g. python:3.11-slim-bookworm) where a registry is reachable.
export PYTHON_IMAGE ?= localhost/credit-eligibility/python:3.11-bookworm
export NGINX_IMAGE ?= localhost/credit-eligibility/nginx-unprivileged:bookworm
export POSTGRES_IMAGE ?= localhost/credit-eligibility/postgres:15-bookworm
# The Bento's base (bentofile docker.base_image); empty: BentoML's default, python:3.11-slim.
export BENTO_BASE_IMAGE ?= $(PYTHON_IMAGE)
# What `make images` builds and `make stack` runs.
export MODEL_SERVICE_IMAGE ?= localhost/credit-eligibility/model-service:$(IMAGE_TAG)
export API_IMAGE ?= localhost/credit-eligibility/evaluation-api:$(IMAGE_TAG)
export PORTFOLIO_WORKER_IMAGE ?= localhost/credit-eligibility/portfolio-worker:$(IMAGE_TAG)
export GATEWAY_IMAGE ?= localhost/credit-eligibility/gateway:$(IMAGE_TAG)
export GATEWAY_PORT ?= 8080

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/lock/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements/lock/dev.txt
	touch $@

setup: $(VENV)/.installed ## Build .venv with the pinned dependencies (hash-checked)

# requirements/*.txt name what each program needs; constraints.txt pins every package of the tree.
# `make lock` resolves them into requirements/lock/*.txt with every file's sha256, and everything
# installs from a lock with --require-hashes: a package changed on the index is refused.
LOCKED := dev evaluation-api model-service portfolio-worker
lock: ## Regenerate requirements/lock/*.txt (with hashes) after changing requirements/ (needs PyPI)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	for f in $(LOCKED); do \
		$(VENV)/bin/uv pip compile requirements/$$f.txt -c requirements/constraints.txt --generate-hashes \
			--universal --python-version 3.11 --no-header --no-annotate -q -o requirements/lock/$$f.txt || exit 1; \
	done

system-deps: ## Debian packages the tests and benchmarks need: chromium (browser test), nginx (gateway), wrk (load), promtool (alert rules)
	@if ! command -v chromium >/dev/null || ! command -v nginx >/dev/null || ! command -v wrk >/dev/null \
		|| ! command -v promtool >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium nginx-light wrk prometheus; \
	fi

# `make model` makes a candidate, never the live model (models/candidate.py): var/candidates/<version>/
# gets the pickle, its card and the comparison with the live model, and the store gets the version.
# RECORDS_DB (a DATABASE_URL) adds the comparison with the newest evaluations. Maintainers regenerate
# the committed model with `$(PY) -m models.train --data ... --out-dir models/` (README, "Model service").
CANDIDATES_DIR ?= $(RUN_DIR)/candidates
MODEL_CANDIDATE_PORT ?= 3001
model: setup ## Train a candidate from DATA into var/candidates/<version>/, compare it with the live model, import it [RECORDS_DB=url]
	$(PY) -m models.train --data $(DATA) --candidates-dir $(CANDIDATES_DIR) $(if $(RECORDS_DB),--records-db "$(RECORDS_DB)")

import: setup ## Import the committed pickle into the BentoML model store (idempotent)
	$(PY) -m models.import_model

serve-model: import ## Serve the model with BentoML on 127.0.0.1:3000
	$(VENV)/bin/bentoml serve service:CreditCardSegmentation --host 127.0.0.1 --port $(MODEL_SERVICE_PORT)

serve-candidate: setup ## Serve a candidate beside the live model: VERSION=<version> [MODEL_CANDIDATE_PORT=3001]
	@if [ -z "$(VERSION)" ]; then echo "usage: make serve-candidate VERSION=<version> [MODEL_CANDIDATE_PORT=3001] (versions: ls $(CANDIDATES_DIR))"; exit 2; fi
	@test -f $(CANDIDATES_DIR)/$(VERSION)/model_card.json || { echo "no candidate $(VERSION) in $(CANDIDATES_DIR)/ (make model DATA=...)"; exit 2; }
	$(PY) -m models.import_model --pickle $(CANDIDATES_DIR)/$(VERSION)/modelo_cluster_cartao_credito.pkl --card $(CANDIDATES_DIR)/$(VERSION)/model_card.json
	MODEL_TAG=credit_card_segmentation:$(VERSION) MODEL_CARD_PATH=$(CANDIDATES_DIR)/$(VERSION)/model_card.json \
		$(VENV)/bin/bentoml serve service:CreditCardSegmentation --host 127.0.0.1 --port $(MODEL_CANDIDATE_PORT)

serve-api: setup ## Serve the evaluation API (and the form) on 127.0.0.1:8000
	$(VENV)/bin/uvicorn evaluation_api.main:create_app --factory --host 127.0.0.1 --port $(API_PORT)

run: import ## Set up and run the whole system: model service, evaluation API and the form (Ctrl-C stops it)
	@mkdir -p $(RUN_DIR)/log
	@echo ""
	@echo "  Starting the model service (127.0.0.1:$(MODEL_SERVICE_PORT)) and the evaluation API."
	@echo "  Open http://127.0.0.1:$(API_PORT)/  -  Ctrl-C stops everything."
	@echo ""
	@# First start only: an `admin` account with a random password, printed once (docs/API.md, "Sign in").
	@# It also brings the records' schema to head, once, before the API's processes start.
	@$(PY) -m evaluation_api.identity.accounts ensure-admin --api-url http://127.0.0.1:$(API_PORT)
	export AUTH_SIGNING_KEY_FILE="$${AUTH_SIGNING_KEY_FILE:-$(RUN_DIR)/signing.key}"; exec $(VENV)/bin/supervisord -c local/supervisord.conf

bento: import ## Build the Bento (the model service's deployable artifact)
	$(VENV)/bin/bentoml build -f bentofile.yaml

.PHONY: score
ENGINE ?= local
score: setup ## Score a portfolio: INPUT=f.csv|.parquet OUTPUT=f.csv|.parquet [POLICY_B=y.yaml] [ENGINE=local|spark] [SPARK_MASTER=local[2]] [EXPLAIN=1]
	@if [ -z "$(INPUT)" ] || [ -z "$(OUTPUT)" ]; then \
		echo "usage: make score INPUT=customers.csv OUTPUT=decisions.parquet [POLICY_B=candidate.yaml] [ENGINE=local|spark] [SPARK_MASTER=local[2]] [EXPLAIN=1]"; \
		exit 2; \
	fi
	$(PY) -m portfolio.score --input "$(INPUT)" --output "$(OUTPUT)" --engine "$(ENGINE)" \
		$(if $(POLICY_B),--policy-b "$(POLICY_B)") $(if $(SPARK_MASTER),--spark-master "$(SPARK_MASTER)") \
		$(if $(filter 1,$(EXPLAIN)),--explain)

test: setup system-deps import ## Set up and run every test
	$(PY) -m pytest

lint: setup ## Static checks: ruff (lint and format) and mypy --strict (pyproject.toml says over what)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup system-deps import ## Run the benchmarks (3 rounds, about 15 minutes) and regenerate docs/results/; BENCH_ARGS="--only portfolio" for one section
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-stack: setup system-deps import podman-deps ## /avaliar through make stack's gateway (PostgreSQL) against the monolith, in alternating rounds; builds the images if missing, stops the stack at the end
	$(PY) -m benchmarks.run --only stack $(BENCH_ARGS)

report: setup ## Render docs/RELATORIO.md (pt-BR) from docs/results/*.json and build docs/RELATORIO.pdf (fpdf2, offline)
	$(PY) -m benchmarks.docs --pdf

podman-deps: ## Debian packages for the images: podman, runc, mmdebstrap (and netavark, aardvark-dns, catatonit)
	@if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null \
		|| ! command -v catatonit >/dev/null || ! test -x /usr/lib/podman/aardvark-dns; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends \
			podman runc mmdebstrap netavark aardvark-dns catatonit iptables; \
	fi

podman-check: podman-deps ## Whether podman can build and run containers here (says why not)
	@deploy/images/probe.sh

images: podman-deps import ## Build the four images with podman (and the base images, from Debian's packages, once)
	deploy/images/build.sh

images-clean: ## Remove the images `make images` built, base images included (the next build starts from nothing)
	deploy/images/clean.sh

stack: setup podman-deps ## Run the images of `make images`: PostgreSQL, migrations, model service, API, portfolio worker, gateway on 127.0.0.1:8080
	deploy/images/stack.sh up

stack-down: setup ## Stop and remove the stack: containers, networks, the database and portfolio volumes
	deploy/images/stack.sh down

stack-gateway: setup ## Start the running stack's gateway again with the environment's per-client limits (GATEWAY_RATE_LIMIT_RPS, GATEWAY_RATE_LIMIT_BURST, GATEWAY_CONN_LIMIT)
	deploy/images/stack.sh gateway

images-present: ## Whether podman has every image `make stack` runs (names the missing ones)
	@deploy/images/stack.sh has-images

test-images: setup ## Test the running stack through its gateway (after `make images stack`)
	IMAGES_STACK=1 $(PY) -m pytest -m images tests/images

clean: ## Remove the environment and local state (not the committed model)
	rm -rf $(VENV) .bentoml var tests/artifacts
