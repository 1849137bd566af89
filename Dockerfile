# kubemend container image.
#
#   docker build -t kubemend:latest --build-arg VERSION=$(git describe --always --dirty) .
#
# Stage 1 builds with the repository's own Makefile (`make all`) on Debian bookworm, the same
# -dev packages as a developer machine.  Stage 2 is bookworm-slim with only the shared libraries
# the binary links (plus CA certificates), running as the unprivileged UID/GID 65532 that
# deploy/deployment.yaml also sets.

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
      libwebsockets-dev \
      libyaml-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `-o deps` skips tests/deps.sh: it would also install the test-only tools (cmocka, pytest,
# kubectl); the build needs only the packages above.  .git is not copied, so VERSION is passed.
RUN make -o deps VERSION="${VERSION}" all \
 && make -o deps VERSION="${VERSION}" install DESTDIR=/out PREFIX=/usr/local \
 && strip /out/usr/local/bin/kubemend \
 && /out/usr/local/bin/kubemend version

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libcurl4 \
      libssl3 \
      libcjson1 \
      libwebsockets17 \
      libyaml-0-2 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/ /usr/local/
LABEL org.opencontainers.image.title="kubemend" \
      org.opencontainers.image.description="Finishes a Kubernetes cluster's repair after a control-plane PKI rebuild"
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/kubemend"]
CMD ["operator", "--leader-elect", "--metrics-bind-address=:8080"]
