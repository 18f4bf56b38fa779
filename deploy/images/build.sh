#!/usr/bin/env bash
# `make images`: the four images of docs/DEPLOY.md, built with podman from this checkout.
#   $MODEL_SERVICE_IMAGE  the Bento's (bentoml build, then bentoml containerize --backend podman),
#                         on $BENTO_BASE_IMAGE (BentoML's own python:3.11-slim when empty)
#   $API_IMAGE            deploy/evaluation-api.Dockerfile on $PYTHON_IMAGE
#   $PORTFOLIO_WORKER_IMAGE  deploy/portfolio-worker.Dockerfile on $API_IMAGE
#   $GATEWAY_IMAGE        deploy/gateway.Dockerfile on $NGINX_IMAGE
# with the base images first (deploy/images/bases.sh: reused when present). podman's layer cache
# makes a second run quick; the Bento is rebuilt each time (bentoml build is a few seconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL_SERVICE_IMAGE:?}" "${API_IMAGE:?}" "${PORTFOLIO_WORKER_IMAGE:?}" "${GATEWAY_IMAGE:?}" "${PYTHON_IMAGE:?}" "${NGINX_IMAGE:?}"
BENTOML=.venv/bin/bentoml

step() { echo "== $1 ($SECONDS s)"; }

step "base images"
deploy/images/bases.sh

step "the Bento, then $MODEL_SERVICE_IMAGE"
# BentoML's Dockerfile starts from python:3.11-slim unless the bentofile names another base image:
# with $BENTO_BASE_IMAGE set, the Bento is built from a copy of bentofile.yaml that does.
bentofile=bentofile.yaml
if [ -n "${BENTO_BASE_IMAGE:-}" ]; then
  bentofile=var/images/bentofile.yaml
  mkdir -p var/images
  .venv/bin/python -c 'import sys, yaml
spec = yaml.safe_load(open("bentofile.yaml"))
spec["docker"]["base_image"] = sys.argv[1]
yaml.safe_dump(spec, sys.stdout, sort_keys=False)' "$BENTO_BASE_IMAGE" > "$bentofile"
fi
bento=$("$BENTOML" build -f "$bentofile" --output tag . | sed -n 's/^__tag__://p')
"$BENTOML" containerize "$bento" --backend podman --opt network=host --image-tag "$MODEL_SERVICE_IMAGE"

step "$API_IMAGE"
podman build --format docker --network host --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" \
  -f deploy/evaluation-api.Dockerfile --ignorefile deploy/evaluation-api.Dockerfile.dockerignore -t "$API_IMAGE" .

step "$PORTFOLIO_WORKER_IMAGE"
podman build --format docker --network host --build-arg "API_IMAGE=$API_IMAGE" \
  -f deploy/portfolio-worker.Dockerfile --ignorefile deploy/portfolio-worker.Dockerfile.dockerignore \
  -t "$PORTFOLIO_WORKER_IMAGE" .

step "$GATEWAY_IMAGE"
podman build --format docker --network host --build-arg "NGINX_IMAGE=$NGINX_IMAGE" \
  -f deploy/gateway.Dockerfile --ignorefile deploy/gateway.Dockerfile.dockerignore -t "$GATEWAY_IMAGE" .

step "done"
podman images --filter reference="$MODEL_SERVICE_IMAGE" --filter reference="$API_IMAGE" \
  --filter reference="$PORTFOLIO_WORKER_IMAGE" --filter reference="$GATEWAY_IMAGE"
