# syntax=docker/dockerfile:1
# The evaluation API's image. Build from the repository root (the context), e.g.:
#   docker build -f deploy/evaluation-api.Dockerfile -t credit-eligibility/evaluation-api:1.0.0 .
# deploy/evaluation-api.Dockerfile.dockerignore keeps the context to what the image needs.
# The same image runs the migrations: `python -m evaluation_api.migrate` (a one-shot Compose
# service, a Kubernetes init container); the API containers then run with AUTO_MIGRATE=false.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with the pinned runtime packages -------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements/lock/evaluation-api.txt /tmp/requirements/
# Wheels only: every pinned package has one for CPython 3.11 on Linux, so no compiler is needed
# and none is installed; a package that would need one fails the build here instead.
RUN /opt/venv/bin/pip install --only-binary=:all: \
        --require-hashes -r /tmp/requirements/evaluation-api.txt

# --- runtime: the virtualenv and the package, run by an unprivileged user ---------------------
FROM ${PYTHON_IMAGE}
# numba caches the explanation's compiled search (decisioning/counterfactual.py) in a directory it can
# write: /tmp here (an emptyDir in Kubernetes, whose root filesystem is read-only). Each container
# compiles it once as it starts, before it reports ready.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The figures and segments (contract/) and the API itself; nothing of training (models/).
COPY contract/ contract/
COPY decisioning/ decisioning/
COPY evaluation_api/ evaluation_api/
# Portfolio uploads and results (personal data), shared with the portfolio worker's containers as a
# volume mounted here; made here so that a new volume starts owned by the unprivileged user.
ENV PORTFOLIO_RUN_DIR=/var/lib/portfolio-runs
RUN mkdir -p /var/lib/portfolio-runs && chown 10001:10001 /var/lib/portfolio-runs && chmod 0700 /var/lib/portfolio-runs
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8000
# Liveness only (the process answers); Compose's healthcheck asks /readyz instead, to order startup.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# One process per container; scale with replicas. The gateway logs every request, so uvicorn doesn't.
CMD ["uvicorn", "evaluation_api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--timeout-graceful-shutdown", "20"]
