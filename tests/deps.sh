#!/bin/sh
# Install whatever Debian packages kubemend's build, tests, demo and bench need and are missing.
# Idempotent and quiet: when everything is present it only runs a few quick checks.
# Extra packages may be requested with KM_EXTRA_PKGS (e.g. gnuplot-nox for `make bench`).
set -u
missing=""
need() { # need <debian-package> <check command...>
    pkg=$1; shift
    "$@" >/dev/null 2>&1 || missing="$missing $pkg"
}
need pkg-config command -v pkg-config
need build-essential command -v cc
need libcurl4-openssl-dev pkg-config --exists libcurl
need libssl-dev pkg-config --exists openssl
need libcjson-dev pkg-config --exists libcjson
need libwebsockets-dev pkg-config --exists libwebsockets
need libyaml-dev pkg-config --exists yaml-0.1
need libcmocka-dev pkg-config --exists cmocka
need libgmp-dev pkg-config --exists gmp
need clang command -v clang  # the libFuzzer targets (tests/fuzz, make fuzz / test-fuzz)
need openssl command -v openssl
need time test -x /usr/bin/time
need python3 test -x /usr/bin/python3
need python3-yaml /usr/bin/python3 -c 'import yaml'
need python3-pytest /usr/bin/python3 -c 'import pytest'
need python3-pytest-xdist /usr/bin/python3 -c 'import xdist'
need nghttp2-server sh -c "command -v nghttpd || test -x /usr/sbin/nghttpd"
need kubernetes-client sh -c 'command -v kubectl || test -x /usr/bin/kubectl'
need etcd-server sh -c 'command -v etcd || test -x /usr/bin/etcd'
# Optional: the container image (`make image`, tests/image) - only with KM_IMAGE_DEPS=1, which
# `make image` sets; without these tools the image tests are skipped.
if [ "${KM_IMAGE_DEPS:-0}" = 1 ]; then
    need podman command -v podman
    need runc sh -c 'command -v runc || test -x /usr/sbin/runc'
    need mmdebstrap command -v mmdebstrap
fi
for p in ${KM_EXTRA_PKGS:-}; do need "$p" dpkg -s "$p"; done
[ -z "$missing" ] && exit 0

echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || { echo "deps: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    { echo "deps: apt-get install$missing failed" >&2; exit 1; }
