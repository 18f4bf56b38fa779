#!/usr/bin/env bash
# The base images, made from Debian's packages where no image registry is reachable: a rootfs
# from mmdebstrap, imported into podman, then a short Containerfile that makes it a stand-in for
# the image the project's Dockerfiles name. An image that already exists is reused as it is
# (`make images-clean` removes them). Tags made here:
#   $PYTHON_IMAGE (and docker.io/library/python:3.11-slim, which BentoML's Dockerfile names,
#                  when no such image is present)
#   $NGINX_IMAGE     nginx as nginx-unprivileged runs it: uid 101, port 8080, pid and temp in /tmp
#   $POSTGRES_IMAGE  PostgreSQL with the official image's interface (POSTGRES_USER/_DB/_PASSWORD)
set -euo pipefail
cd "$(dirname "$0")"
: "${PYTHON_IMAGE:?}" "${NGINX_IMAGE:?}" "${POSTGRES_IMAGE:?}"
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# rootfs NAME PACKAGES: a minimal Debian with PACKAGES (and the suite's security updates), imported
# as localhost/credit-eligibility/NAME-rootfs:SUITE unless that image exists.
rootfs() {
  local image="localhost/credit-eligibility/$1-rootfs:$SUITE"
  if ! podman image exists "$image"; then
    echo "== $image: mmdebstrap $SUITE with $2" >&2
    mmdebstrap --quiet --variant=minbase --include="$2" --format=tar "$SUITE" "$WORK/$1.tar" \
      "deb $MIRROR/debian $SUITE main" "deb $MIRROR/debian $SUITE-updates main" \
      "deb $MIRROR/debian-security $SUITE-security main"
    podman import --quiet "$WORK/$1.tar" "$image" >/dev/null
    rm -f "$WORK/$1.tar"
  fi
  echo "$image"
}

# stand_in NAME PACKAGES TAG: the Containerfile NAME.Containerfile on that rootfs, tagged TAG.
stand_in() {
  local name=$1 packages=$2 tag=$3
  if podman image exists "$tag"; then
    echo "== $tag: present, reused"
    return
  fi
  # Only localhost/ names are made here; any other is a registry's image, pulled.
  if [[ $tag != localhost/* ]]; then
    echo "== $tag: pulling"
    podman pull --quiet "$tag" >/dev/null
    return
  fi
  local from
  from=$(rootfs "$name" "$packages")
  mkdir -p "$WORK/$name"
  cp "$name".* "$WORK/$name/"
  # The machine's CA bundle: where TLS goes through a local CA, pip in the image needs it too.
  cp /etc/ssl/certs/ca-certificates.crt "$WORK/$name/host-ca-certificates.crt"
  echo "== $tag: from $from" >&2
  podman build --quiet --network host --build-arg "ROOTFS=$from" -f "$WORK/$name/$name.Containerfile" \
    -t "$tag" "$WORK/$name" >/dev/null
}

stand_in python python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd "$PYTHON_IMAGE"
if [[ $PYTHON_IMAGE == localhost/* ]] && ! podman image exists docker.io/library/python:3.11-slim; then
  podman tag "$PYTHON_IMAGE" docker.io/library/python:3.11-slim
fi
stand_in nginx nginx-light,wget,ca-certificates,passwd "$NGINX_IMAGE"
stand_in postgres postgresql,ca-certificates,passwd "$POSTGRES_IMAGE"
