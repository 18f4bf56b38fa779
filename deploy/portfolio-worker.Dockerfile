# syntax=docker/dockerfile:1
# The portfolio worker's image: the evaluation API's image (deploy/evaluation-api.Dockerfile) plus
# the local engine (portfolio/), its numeric packages and the committed model with its card. Build it
# after the API's image, from the repository root (the context):
#   podman build --build-arg API_IMAGE=credit-eligibility/evaluation-api:dev \
#     -f deploy/portfolio-worker.Dockerfile -t credit-eligibility/portfolio-worker:dev .
# It runs `python -m portfolio.worker` with the API's settings and database, on the API's run
# directory (PORTFOLIO_RUN_DIR, a volume both mount), and `python -m portfolio.worker purge` for the
# retention of the uploads. The API's own image has only numpy and numba of it (tests/deploy).

ARG API_IMAGE=credit-eligibility/evaluation-api:dev

FROM ${API_IMAGE}
USER root
COPY requirements/lock/portfolio-worker.txt /tmp/requirements/
# The API's pinned packages are already in /opt/venv; this adds the engine's (wheels only, hash-checked).
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        --require-hashes -r /tmp/requirements/portfolio-worker.txt \
    && rm -r /tmp/requirements
# The engine, and the model it reads: the pickle is checked against its card before it is unpickled.
COPY portfolio/ portfolio/
COPY models/__init__.py models/integrity.py models/import_model.py models/model_card.json \
     models/modelo_cluster_cartao_credito.pkl models/
USER 10001:10001
# No HTTP port: the API image's healthcheck does not apply. Kubernetes and Compose watch the process.
HEALTHCHECK NONE
CMD ["python", "-m", "portfolio.worker"]
