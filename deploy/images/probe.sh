#!/usr/bin/env bash
# Whether this machine can build and run the images: podman, runc and mmdebstrap installed
# (`make podman-deps`), and podman able to run a container (catatonit, a static binary, as the
# container's whole filesystem, so no image is needed). Prints why not, and fails, if it cannot.
set -uo pipefail
for tool in podman runc mmdebstrap catatonit; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (make podman-deps installs it)"; exit 1; }
done
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
cp "$(command -v catatonit)" "$rootfs/"
if ! out=$(timeout 60 podman run --rm --network none --rootfs "$rootfs" /catatonit --version 2>&1); then
  echo "podman cannot run a container here: ${out: -500}"
  exit 1
fi
echo "podman runs containers here ($(podman --version))"
