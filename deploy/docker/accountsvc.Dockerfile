# syntax=docker/dockerfile:1
# accountsvc: accounts, credits and the user's library. It runs
# ffprobe/ffmpeg on uploaded videos (duration, first and last frames), so the
# runtime is Debian slim with the ffmpeg package instead of distroless; the
# Go binary itself is static and runs as an unprivileged user, uid 65532
# like the distroless images, so a shared volume has one owner.
# Build from the repository root:
#   docker build -f deploy/docker/accountsvc.Dockerfile -t nounsai/accountsvc .

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
WORKDIR /src
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
COPY accountsvc/ accountsvc/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/app/accountsvc ./accountsvc/cmd/accountsvc

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 nounsai \
    && useradd --system --uid 65532 --gid nounsai --home-dir /var/lib/nounsai --shell /usr/sbin/nologin nounsai \
    && mkdir -p /var/lib/nounsai \
    && chown nounsai:nounsai /var/lib/nounsai
COPY --from=build /out/app/accountsvc /app/accountsvc
USER 65532:65532
WORKDIR /var/lib/nounsai
# METRICS_ADDR: /metrics on its own port, reachable on the container network
# for Prometheus; never publish it (docs/security.md, "What listens where").
ENV HTTP_ADDR=0.0.0.0:8081 \
    METRICS_ADDR=0.0.0.0:9081 \
    LOG_FORMAT=json \
    STORAGE_DIR=/var/lib/nounsai/storage \
    OUTBOX_DIR=/var/lib/nounsai/outbox
EXPOSE 8081 9081
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/app/accountsvc", "healthcheck"]
ENTRYPOINT ["/app/accountsvc"]
