#!/bin/sh
# The gateway image's entrypoint (deploy/gateway.Dockerfile): nginx with gateway.conf, whose
# per-client limits on the API's paths may be set when the container starts. nginx reads no
# environment in limit_req_zone, so the values are written into a copy of the configuration:
#
#   GATEWAY_RATE_LIMIT_RPS    requests per second per client address (gateway.conf: 10)
#   GATEWAY_RATE_LIMIT_BURST  requests above that rate let through at once (gateway.conf: 20)
#   GATEWAY_CONN_LIMIT        requests in progress at once per client address (gateway.conf: 32)
#
# None set (or all empty): nginx runs the configuration the image was built with, unchanged. Any
# set: conf.d/ and nginx.conf are copied into $GATEWAY_RUN_DIR (/tmp/gateway: writable under a
# read-only root filesystem, as in Kubernetes) with those values, and nginx runs the copy. A value
# that is not a whole number from 1 up stops the container, naming the variable.
# Signing in keeps its own, stricter zone. GATEWAY_NGINX_DIR (default /etc/nginx) is for the tests,
# which run this script with Debian's nginx (tests/deploy/test_gateway.py).
set -eu

nginx_dir=${GATEWAY_NGINX_DIR:-/etc/nginx}
run_dir=${GATEWAY_RUN_DIR:-/tmp/gateway}
rate=${GATEWAY_RATE_LIMIT_RPS:-}
burst=${GATEWAY_RATE_LIMIT_BURST:-}
conns=${GATEWAY_CONN_LIMIT:-}

fail() {
  echo "gateway: $*" >&2
  exit 64
}

# whole NAME VALUE MIN: VALUE is a whole number of at most 9 digits, at least MIN.
whole() {
  case $2 in
    '' | *[!0-9]* | ??????????*) fail "$1 must be a whole number (got '$2')" ;;
  esac
  [ "$2" -ge "$3" ] || fail "$1 must be at least $3 (got '$2')"
}

if [ -z "$rate$burst$conns" ]; then
  exec "$@"
fi

[ -z "$rate" ] || whole GATEWAY_RATE_LIMIT_RPS "$rate" 1
[ -z "$burst" ] || whole GATEWAY_RATE_LIMIT_BURST "$burst" 1
[ -z "$conns" ] || whole GATEWAY_CONN_LIMIT "$conns" 1

site=$nginx_dir/conf.d/default.conf
[ -f "$site" ] || fail "no $site"
# Each directive the values go into must be there as gateway.conf writes it: a setting that would
# not apply fails the start instead of running with the default.
grep -q 'limit_req_zone .* zone=api_per_client:[0-9]*[kKmM]* rate=[0-9]*r/s;' "$site" \
  || fail "$site has no api_per_client rate"
grep -q 'limit_req zone=api_per_client burst=[0-9]*' "$site" || fail "$site has no api_per_client burst"
grep -q 'limit_conn conn_per_client [0-9]*;' "$site" || fail "$site has no conn_per_client limit"
grep -q "include $nginx_dir/conf.d/\*.conf;" "$nginx_dir/nginx.conf" \
  || fail "$nginx_dir/nginx.conf does not include $nginx_dir/conf.d/*.conf"

rm -rf "$run_dir"
mkdir -p "$run_dir/conf.d"
for f in "$nginx_dir"/conf.d/*.conf; do
  cp "$f" "$run_dir/conf.d/"
done
script=''
[ -z "$rate" ] || script="$script s#\(zone=api_per_client:[0-9]*[kKmM]*\) rate=[0-9]*r/s;#\1 rate=${rate}r/s;#;"
[ -z "$burst" ] || script="$script s#limit_req zone=api_per_client burst=[0-9]*#limit_req zone=api_per_client burst=${burst}#;"
[ -z "$conns" ] || script="$script s#limit_conn conn_per_client [0-9]*;#limit_conn conn_per_client ${conns};#;"
sed -e "$script" "$site" > "$run_dir/conf.d/default.conf"
sed -e "s#include $nginx_dir/conf.d/\*.conf;#include $run_dir/conf.d/*.conf;#" "$nginx_dir/nginx.conf" > "$run_dir/nginx.conf"
echo "gateway: per client: ${rate:-default} r/s, burst ${burst:-default}, ${conns:-default} requests at once" >&2

case ${1:-} in
  nginx | */nginx)
    nginx=$1
    shift
    exec "$nginx" -c "$run_dir/nginx.conf" "$@"
    ;;
esac
exec "$@"
