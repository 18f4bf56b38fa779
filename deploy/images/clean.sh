#!/usr/bin/env bash
# `make images-clean`: remove the images this project built (localhost/credit-eligibility/*, the
# base images and their rootfs included, and the python:3.11-slim tag when it is the stand-in), so
# that the next `make images` builds everything from nothing. The stack must be down.
set -euo pipefail
stand_in=$(podman image inspect --format '{{.Id}}' "${PYTHON_IMAGE:-}" 2>/dev/null || true)
if [ -n "$stand_in" ] && [ "$(podman image inspect --format '{{.Id}}' docker.io/library/python:3.11-slim 2>/dev/null)" = "$stand_in" ]; then
  podman untag "$stand_in" docker.io/library/python:3.11-slim
fi
podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/credit-eligibility/' | xargs -r podman rmi --force
# The layer cache the builds left (untagged images).
podman image prune --force >/dev/null
