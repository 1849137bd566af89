#!/bin/sh
# podman with the project's settings, for build.sh and the image tests:
#   CONTAINERS_CONF  default: tests/image/containers.conf (see there why)
#   KM_PODMAN_RUNTIME  the OCI runtime; default runc when installed (crun fails on cgroup v1
#                      hosts such as the development machine), else podman's own choice
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/tests/image/containers.conf}
export CONTAINERS_CONF
if [ -z "${KM_PODMAN_RUNTIME:-}" ] && { command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ]; }; then
    KM_PODMAN_RUNTIME=runc
fi
exec podman ${KM_PODMAN_RUNTIME:+--runtime "$KM_PODMAN_RUNTIME"} "$@"
