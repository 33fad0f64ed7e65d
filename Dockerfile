# The cairn image for users: build from source in a Go image, run the static
# binary as a non-root user in a minimal runtime image.
#
#   docker build -t cairn .
#   docker run -p 7700:7700 -p 7702:7702 -v cairn-data:/var/lib/cairn cairn
#
# Not built or tested by cairn's CI: its machines cannot pull images (no
# registry), so neither golang:1.26 nor the distroless base is available
# there. What CI does build and run is deploy/Dockerfile.scratch (make image,
# make docker-test), which runs the same binary with the same CAIRN_*
# settings. See docs/DEPLOY.md.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo), so it runs without a libc; -trimpath keeps the builder's
# paths out of the binary.
RUN CGO_ENABLED=0 go build -trimpath -o /out/cairn ./cmd/cairn
# The data directory, owned by the runtime user: a named volume mounted there
# starts with this owner, and the runtime image has no shell to chown it.
RUN mkdir -p /out/data && chown 65532:65532 /out/data

# distroless/static: CA certificates (for s3:// backups over TLS), tzdata and
# an /etc/passwd with the "nonroot" user (65532); no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cairn /usr/local/bin/cairn
COPY --from=build --chown=65532:65532 /out/data /var/lib/cairn
USER 65532:65532
# Listen on every interface of the container; a cluster also sets
# CAIRN_NAME, CAIRN_ADVERTISE_CLIENT, CAIRN_ADVERTISE_PEER,
# CAIRN_ADVERTISE_RESP and CAIRN_INITIAL_CLUSTER (deploy/compose.yaml).
ENV CAIRN_DATA_DIR=/var/lib/cairn \
    CAIRN_LISTEN_CLIENT=0.0.0.0:7700 \
    CAIRN_LISTEN_PEER=0.0.0.0:7701 \
    CAIRN_LISTEN_RESP=0.0.0.0:7702
VOLUME /var/lib/cairn
# 7700 HTTP API, /metrics, /healthz, /readyz; 7701 Raft and peer RPC;
# 7702 Redis protocol.
EXPOSE 7700 7701 7702
ENTRYPOINT ["/usr/local/bin/cairn"]
CMD ["serve"]
