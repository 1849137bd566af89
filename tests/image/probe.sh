#!/bin/sh
# Can podman run a container on this machine (user namespaces, cgroups, rlimits, OCI runtime)?
# Runs /usr/bin/true in a container whose root is a temporary directory holding just that binary
# and its libraries, so no image or registry is needed.  Takes about a second.
# Exit 0: yes.  Exit 3: no, and one line on stderr says why.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v podman >/dev/null 2>&1 || {
    echo "podman is not installed (\`make image\` installs podman, runc and mmdebstrap)" >&2
    exit 3
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/root"
for f in /usr/bin/true $(ldd /usr/bin/true 2>/dev/null | grep -o '/[^ ]*'); do
    cp --parents "$f" "$tmp/root/" 2>/dev/null
done
if ! "$ROOT/tests/image/podman.sh" run --rm --network host --rootfs "$tmp/root" /usr/bin/true \
    >"$tmp/out" 2>&1; then
    echo "podman cannot run a container here: $(grep -m1 . "$tmp/out")" >&2
    exit 3
fi
