#!/bin/sh
# Builds the kubemend container image with podman: kubemend:<VERSION> and kubemend:latest from the
# repository's Dockerfile (`make image`).  Elsewhere `docker build` works on the same Dockerfile.
#
#   tests/image/build.sh [VERSION]      VERSION defaults to `git describe --always --dirty`
#
# 1. tests/image/probe.sh: can a container run here at all (user namespaces, cgroups, rlimits)?
# 2. Base images: when debian:bookworm / debian:bookworm-slim are not in podman's store and
#    mmdebstrap is installed, they are made locally once (no registry needed; apt inside the
#    build still needs a Debian mirror), the way Debian's official images are made: a minbase
#    bookworm with merged /usr, Docker's apt cache settings and the "slim" dpkg path excludes,
#    tagged as both names.  They stay in podman's store, so later builds reuse them.  Without
#    mmdebstrap, podman pulls them from the registry as usual.
# 3. podman build (layer cache on: an unchanged tree rebuilds nothing).
#
# podman runs through tests/image/podman.sh (the project's containers.conf, runc).
# Environment: KM_IMAGE (image name, default kubemend), and podman.sh's.
# Exit codes: 0 built; 1 the build failed; 3 this machine cannot build images (podman missing,
# base image not made, containers cannot run) - the last line on stderr says why.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VERSION=${1:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 0.1.0)}
IMAGE=${KM_IMAGE:-kubemend}
PODMAN=$ROOT/tests/image/podman.sh

cannot() {
    echo "image: cannot build here: $*" >&2
    exit 3
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- 1. can containers run here? -------------------------------------------------------------
"$ROOT/tests/image/probe.sh" 2>"$tmp/probe" || cannot "$(cat "$tmp/probe")"

# ---- 2. base images --------------------------------------------------------------------------
missing=""
for tag in debian:bookworm debian:bookworm-slim; do
    "$PODMAN" image exists "$tag" || missing="$missing $tag"
done
if [ -n "$missing" ] && command -v mmdebstrap >/dev/null 2>&1; then
    echo "image: making the base image locally with mmdebstrap (once):$missing" >&2
    start=$(date +%s)
    clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
    # --aptopt and --dpkgopt stay in /etc/apt/apt.conf.d and /etc/dpkg/dpkg.cfg.d, so packages
    # installed later in the build are treated the same way (as in the official images).
    if ! mmdebstrap --quiet --variant=minbase \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --aptopt="DPkg::Post-Invoke { $clean };" \
        --aptopt="APT::Update::Post-Invoke { $clean };" \
        --aptopt='Dir::Cache::pkgcache "";' --aptopt='Dir::Cache::srcpkgcache "";' \
        --aptopt='Acquire::Languages "none";' --aptopt='Acquire::GzipIndexes "true";' \
        --aptopt='APT::AutoRemove::SuggestsImportant "false";' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/linda/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/overrides/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        bookworm "$tmp/base.tar" >"$tmp/log" 2>&1; then
        tail -n 20 "$tmp/log" >&2
        cannot "mmdebstrap failed (is a Debian mirror reachable?)"
    fi
    id=$("$PODMAN" import --quiet --change 'CMD ["bash"]' "$tmp/base.tar") ||
        cannot "podman import of the base image failed"
    rm -f "$tmp/base.tar"
    for tag in $missing; do "$PODMAN" tag "$id" "$tag"; done
    echo "image: base image made in $(($(date +%s) - start)) s" >&2
fi

# ---- 3. the image ----------------------------------------------------------------------------
start=$(date +%s)
"$PODMAN" build --network host --layers \
    --build-arg VERSION="$VERSION" -t "$IMAGE:$VERSION" -t "$IMAGE:latest" \
    -f "$ROOT/Dockerfile" "$ROOT" || exit 1
size=$("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE:$VERSION")
echo "image: $IMAGE:$VERSION (and :latest) built in $(($(date +%s) - start)) s, $((size / 1000000)) MB"
