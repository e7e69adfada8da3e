# syntax=docker/dockerfile:1
# proxy: the public entry: balances generation across api_hosts, forwards the rest to accountsvc.
# Build from the repository root (the build context must hold go.work):
#   docker build -f deploy/docker/proxy.Dockerfile -t nounsai/proxy .
# The binary is static (CGO off) and runs as the distroless "nonroot" user
# (65532) on an image that has CA certificates and tzdata and no shell.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
WORKDIR /src
# Every module of go.work must be present for workspace mode; only their
# go.mod/go.sum first, so the download layer is cached across source edits.
COPY go.work go.work.sum ./
COPY shared/go.mod shared/go.sum shared/
COPY proxy/go.mod proxy/go.sum proxy/
COPY accountsvc/go.mod accountsvc/go.sum accountsvc/
COPY gpusvc/go.mod gpusvc/go.sum gpusvc/
COPY bench/go.mod bench/go.sum bench/
COPY e2e/go.mod e2e/go.sum e2e/
COPY deploy/go.mod deploy/go.sum deploy/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY shared/ shared/
COPY proxy/ proxy/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/app/proxy ./proxy/cmd/proxy
# An empty data directory owned by the runtime user, for STORAGE_DIR and
# OUTBOX_DIR when the local backends are used (docker copies its ownership
# into a fresh named volume mounted there).
RUN mkdir -p /out/var/lib/nounsai

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app/proxy /app/proxy
COPY --from=build --chown=65532:65532 /out/var/lib/nounsai /var/lib/nounsai
USER 65532:65532
WORKDIR /var/lib/nounsai
# METRICS_ADDR: /metrics on its own port, reachable on the container network
# for Prometheus; never publish it (docs/security.md, "What listens where").
ENV HTTP_ADDR=0.0.0.0:8080 \
    METRICS_ADDR=0.0.0.0:9080 \
    LOG_FORMAT=json \
    STORAGE_DIR=/var/lib/nounsai/storage \
    OUTBOX_DIR=/var/lib/nounsai/outbox
EXPOSE 8080 9080
# The image has no curl: "proxy healthcheck" GETs http://127.0.0.1:<HTTP_ADDR
# port>/health and exits 0 on 200, 1 otherwise.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/proxy", "healthcheck"]
ENTRYPOINT ["/app/proxy"]
