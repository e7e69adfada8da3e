# syntax=docker/dockerfile:1
# gpusvc: image generation and the model routes for one GPU, plus the audio
# and video job workers. It runs ffmpeg/ffprobe for audio and video, so the
# runtime is Debian slim with the ffmpeg package instead of distroless; the
# Go binary itself is static and runs as an unprivileged user, uid 65532
# like the distroless images, so a shared volume has one owner.
# Build from the repository root:
#   docker build -f deploy/docker/gpusvc.Dockerfile -t nounsai/gpusvc .
# Run one container per GPU (docker run --gpus device=N, or nvidia.com/gpu: 1
# on Kubernetes), each registered in api_hosts under its own address.

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
COPY gpusvc/ gpusvc/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags="-s -w" -o /out/app/gpusvc ./gpusvc/cmd/gpusvc

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 nounsai \
    && useradd --system --uid 65532 --gid nounsai --home-dir /var/lib/nounsai --shell /usr/sbin/nologin nounsai \
    && mkdir -p /var/lib/nounsai \
    && chown nounsai:nounsai /var/lib/nounsai
COPY --from=build /out/app/gpusvc /app/gpusvc
USER 65532:65532
WORKDIR /var/lib/nounsai
# NVIDIA container runtime: expose the GPU chosen with --gpus / the device
# plugin, with the compute and video (NVENC/NVDEC) driver libraries.
ENV HTTP_ADDR=0.0.0.0:8091 \
    LOG_FORMAT=json \
    STORAGE_DIR=/var/lib/nounsai/storage \
    OUTBOX_DIR=/var/lib/nounsai/outbox \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
EXPOSE 8091
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/gpusvc", "healthcheck"]
# SIGTERM drains (api_hosts.draining=true when REGISTER_HOST=true) and then
# waits for in-flight generation: stop with a long timeout, e.g.
# docker stop -t 300.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/gpusvc"]
