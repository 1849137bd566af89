# kubemend container image.
#
#   make image                     # podman, see tests/image/build.sh (also makes the base image)
#   docker build -t kubemend:latest --build-arg VERSION=$(git describe --always --dirty) .
#
# Stage 1 builds with the repository's own Makefile (`make all`) on Debian bookworm, the same
# -dev packages as a developer machine.  Stage 2 collects the runtime files from Debian packages;
# stage 3, the image, is only those files and the binary (no shell, no package manager), running
# as the unprivileged UID/GID 65532 that deploy/deployment.yaml also sets.

FROM debian:bookworm AS build
ARG VERSION=0.1.0
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential \
      pkg-config \
      libcurl4-openssl-dev \
      libssl-dev \
      libcjson-dev \
      libyaml-dev \
      libgmp-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `-o deps` skips tests/deps.sh: it would also install the test-only tools (cmocka, pytest,
# kubectl); the build needs only the packages above.  .git is not copied, so VERSION is passed.
RUN make -o deps VERSION="${VERSION}" all \
 && make -o deps VERSION="${VERSION}" install DESTDIR=/out PREFIX=/usr/local \
 && strip /out/usr/local/bin/kubemend \
 && /out/usr/local/bin/kubemend version

# Stage 2 assembles the runtime root file system in /rootfs: apt installs the shared libraries the
# binary links, then every file of those packages and of their dependency closure (libc6
# included) is copied as dpkg installed it, with base-files (os-release, licence texts) and each
# package's dpkg record in /var/lib/dpkg/status.d/ (as distroless images keep them, so image
# scanners see the packages); the CA bundle ca-certificates generated; passwd/group entries for
# 65532; /tmp.  No shell, apt, dpkg or perl: nothing the operator does not run.
FROM debian:bookworm-slim AS rootfs
ENV DEBIAN_FRONTEND=noninteractive
# The Debian packages of the shared libraries the binary links (libc6 comes with them).
ARG RUNTIME_LIBS="libcurl4 libssl3 libcjson1 libyaml-0-2"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${RUNTIME_LIBS} ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN set -eu; \
    mkdir -p /rootfs/usr/bin /rootfs/usr/lib /rootfs/usr/lib64 /rootfs/usr/sbin /rootfs/tmp \
             /rootfs/etc/ssl/certs /rootfs/var/lib/dpkg/status.d; \
    for d in bin lib lib64 sbin; do ln -s "usr/$d" "/rootfs/$d"; done; \
    chmod 1777 /rootfs/tmp; \
    pkgs=$(apt-cache depends --recurse --installed --no-recommends --no-suggests --no-conflicts \
             --no-breaks --no-replaces --no-enhances \
             base-files ${RUNTIME_LIBS} | grep -v '^ ' | sort -u); \
    for p in $pkgs; do \
      dpkg-query -s "$p" >"/rootfs/var/lib/dpkg/status.d/$p"; \
      dpkg-query -L "$p" | while read -r f; do \
        if [ -L "$f" ] || [ -f "$f" ]; then printf '%s\n' "${f#/}"; fi; \
      done; \
    done | tar -C / -cf - --no-recursion -T - | tar -C /rootfs -xf - --keep-directory-symlink; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/; \
    cp --parents /usr/share/doc/ca-certificates/copyright /etc/ld.so.conf /rootfs/; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' \
      >/rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group; \
    printf 'hosts: files dns\n' >/rootfs/etc/nsswitch.conf; \
    ldconfig -r /rootfs; \
    echo "runtime packages:" $pkgs

# Stage 3: the runtime image, that file system plus the binary.
FROM scratch
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/usr/local/ /usr/local/
LABEL org.opencontainers.image.title="kubemend" \
      org.opencontainers.image.description="Finishes a Kubernetes cluster's repair after a control-plane PKI rebuild"
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kubemend"]
CMD ["operator", "--leader-elect", "--metrics-bind-address=:8080"]
