#!/usr/bin/env bash
# `make stack` / `make stack-down`: deploy/compose.yaml run by podman-compose on the images of
# `make images`, with only the gateway published (127.0.0.1:$GATEWAY_PORT).
#
# podman 4.3 (Debian 12) runs healthchecks from systemd timers, and without systemd (as here) it
# never runs them: podman-compose then ignores `condition: service_healthy`. So this script starts
# the services in compose.yaml's order itself, each once what it depends on passes its compose
# healthcheck (run here with `podman healthcheck run`), and the migrations once, to completion.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${MODEL_SERVICE_IMAGE:?}" "${API_IMAGE:?}" "${PORTFOLIO_WORKER_IMAGE:?}" "${GATEWAY_IMAGE:?}" "${POSTGRES_IMAGE:?}"
export GATEWAY_PORT=${GATEWAY_PORT:-8080} GATEWAY_BIND=127.0.0.1
ENV_FILE=deploy/.env
PROJECT=credit-eligibility

compose() {
  .venv/bin/podman-compose --project-name "$PROJECT" --in-pod false -f deploy/compose.yaml --env-file "$ENV_FILE" "$@"
}
container() { echo "${PROJECT}_$1_1"; }

# wait_healthy SERVICE SECONDS: run the service's healthcheck until it passes.
wait_healthy() {
  local name deadline=$((SECONDS + $2))
  name=$(container "$1")
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ] || ((SECONDS > deadline)); then
      echo "stack: $1 is not healthy after $2 s; its last log lines:" >&2
      podman logs --tail 30 "$name" >&2
      return 1
    fi
    sleep 1
  done
  echo "stack: $1 is healthy ($SECONDS s)"
}

# warm_model_service SECONDS: predictions until ten in a row answer within a second. /readyz passes
# before the first predictions are fast (BentoML's batching starts cold); evaluations sent then timed
# out and opened the API's breaker for a while (seen in CI right after `make stack`).
warm_model_service() {
  local name
  name=$(container model-service)
  if podman exec "$name" python -c "
import json, sys, time, urllib.request
body = json.dumps({'customers': [{'balance': 900.0, 'purchases': 350.0, 'cash_advance': 60.0,
                                  'credit_limit': 3000.0, 'payments': 850.0}]}).encode()
deadline, fast = time.monotonic() + $1, 0
while fast < 10 and time.monotonic() < deadline:
    request = urllib.request.Request('http://127.0.0.1:3000/predict', data=body,
                                     headers={'Content-Type': 'application/json'})
    try:
        urllib.request.urlopen(request, timeout=1).read()
        fast += 1
    except Exception:
        fast = 0
        time.sleep(0.5)
sys.exit(0 if fast >= 10 else 1)
"; then
    echo "stack: model-service answers predictions ($SECONDS s)"
  else
    echo "stack: model-service does not answer predictions within $1 s; its last log lines:" >&2
    podman logs --tail 30 "$name" >&2
    return 1
  fi
}

# has-images: whether podman has every image the stack runs (names each one it lacks).
has_images() {
  local image missing=0
  for image in "$MODEL_SERVICE_IMAGE" "$API_IMAGE" "$PORTFOLIO_WORKER_IMAGE" "$GATEWAY_IMAGE" "$POSTGRES_IMAGE"; do
    podman image exists "$image" 2>/dev/null || { echo "stack: no image $image" >&2; missing=1; }
  done
  return $missing
}

up() {
  if ! python3 -c "import socket; socket.socket().bind(('127.0.0.1', $GATEWAY_PORT))" 2>/dev/null; then
    echo "stack: 127.0.0.1:$GATEWAY_PORT is in use (a stack already up? make stack-down); free it or set GATEWAY_PORT" >&2
    exit 1
  fi
  # The secrets compose.yaml reads (the database password; the key that signs the API's tokens):
  # each made here once, kept in deploy/.env (git-ignored, readable by root only), never printed.
  (umask 077 && touch "$ENV_FILE")
  for secret in POSTGRES_PASSWORD AUTH_SIGNING_KEY; do
    grep -q "^$secret=" "$ENV_FILE" || echo "$secret=$(python3 -c 'import secrets; print(secrets.token_hex(24))')" >> "$ENV_FILE"
  done
  # The data keys (customer names are stored encrypted): a key file's content, on one line.
  grep -q "^DATA_KEYS=" "$ENV_FILE" \
    || echo "DATA_KEYS=$(.venv/bin/python -m evaluation_api.privacy.key_rotation generate | tr -d '\n ')" >> "$ENV_FILE"
  has_images || { echo "stack: run make images first" >&2; exit 1; }
  # The images, named as compose.yaml names them.
  export MODEL_SERVICE_IMAGE POSTGRES_IMAGE
  export APP_VERSION=stack
  podman tag "$API_IMAGE" "credit-eligibility/evaluation-api:$APP_VERSION"
  podman tag "$PORTFOLIO_WORKER_IMAGE" "credit-eligibility/portfolio-worker:$APP_VERSION"
  podman tag "$GATEWAY_IMAGE" "credit-eligibility/gateway:$APP_VERSION"

  compose up -d --no-deps postgres model-service
  wait_healthy postgres 60
  compose up -d --no-deps migrate
  code=$(podman wait "$(container migrate)")
  if [ "$code" != 0 ]; then
    echo "stack: the migrations failed (exit $code):" >&2
    podman logs --tail 30 "$(container migrate)" >&2
    exit 1
  fi
  echo "stack: migrations applied ($SECONDS s)"
  wait_healthy model-service 120
  warm_model_service 60
  compose up -d --no-deps evaluation-api
  wait_healthy evaluation-api 60
  # No healthcheck (no HTTP port): started once the migrations are done; it logs when it consumes.
  compose up -d --no-deps portfolio-worker
  compose up -d --no-deps gateway
  wait_healthy gateway 30
  echo "stack: up in $SECONDS s: http://127.0.0.1:$GATEWAY_PORT/ (make stack-down stops it)"
}

# `make stack-gateway`: the gateway alone started again, with the per-client limits of the
# environment (GATEWAY_RATE_LIMIT_RPS, GATEWAY_RATE_LIMIT_BURST, GATEWAY_CONN_LIMIT; unset: gateway.conf's),
# the other services left running.
gateway() {
  export APP_VERSION=stack
  compose up -d --no-deps --force-recreate gateway
  wait_healthy gateway 30
}

down() {
  # Containers, networks and the database's volume: the next `make stack` starts from nothing.
  # compose.yaml requires the password to be set, even to stop: any value does for that.
  [ -s "$ENV_FILE" ] || export POSTGRES_PASSWORD=unused
  compose down --volumes --timeout 10
}

case ${1:-} in
  up | down | gateway) "$1" ;;
  has-images) has_images ;;
  *) echo "usage: $0 up|down|gateway|has-images" >&2; exit 2 ;;
esac
