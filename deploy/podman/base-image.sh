#!/usr/bin/env bash
# Makes the Debian bookworm base image locally, for hosts that cannot pull from a registry:
# debootstrap a minbase rootfs once (tarball cached), then `podman import` it under the name the
# Dockerfile's FROM uses. Idempotent: does nothing when the image already exists.
#   deploy/podman/base-image.sh [IMAGE_NAME]    (default debian:bookworm-slim)
set -euo pipefail
# debootstrap lives in /usr/sbin, which a non-login PATH may lack.
export PATH="${PATH}:/usr/sbin:/sbin"
image="${1:-debian:bookworm-slim}"
cache="${DISTILSERVE_CI_CACHE:-${HOME}/.cache/distilserve-ci}"
tarball="${cache}/debian-bookworm-minbase.tar"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if podman image exists "${image}"; then
  exit 0
fi
mkdir -p "${cache}"
if [ ! -s "${tarball}" ]; then
  rootfs="$(mktemp -d "${cache}/rootfs.XXXXXX")"
  trap 'rm -rf "${rootfs}"' EXIT
  debootstrap --variant=minbase bookworm "${rootfs}" "${mirror}" >"${cache}/debootstrap.log" 2>&1 \
    || { tail -n 20 "${cache}/debootstrap.log" >&2; exit 1; }
  # What debian:bookworm-slim has and minbase lacks: no apt caches, no docs.
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/*
  tar -C "${rootfs}" -cf "${tarball}.tmp" .
  mv "${tarball}.tmp" "${tarball}"
fi
podman import --quiet --change 'CMD ["bash"]' "${tarball}" "${image}" >/dev/null
