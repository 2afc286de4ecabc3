# syntax=docker/dockerfile:1

# Dependencies build in a layer of their own: cargo-chef's recipe holds only the manifests and the
# lock file, so a change to the gateway's code rebuilds the gateway, not its dependencies.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# protoc comes from a crate, so no system protobuf is needed.
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --no-default-features --recipe-path recipe.json --bin ecs-gateway
COPY . .
RUN cargo build --release --locked --no-default-features --bin ecs-gateway

# Runtime: a slim Debian with CA certificates for HTTPS to ECS and STS, running as a non-root user.
FROM debian:bookworm-slim
# ca-certificates is left unpinned on purpose: Debian replaces a revision when it updates it, so a
# pin breaks the build, and the newest trust store is the one to have.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=builder /src/target/release/ecs-gateway /usr/local/bin/ecs-gateway
USER 10001:10001
# Inside Alibaba Cloud without internet egress, add ECS_GATEWAY_NETWORK=vpc (VPC endpoints).
# No AccessKey needs to be baked in or passed: on ACK the RRSA variables, on an ECS instance its RAM
# role, are found as Alibaba's SDKs find them (README, "Credentials").
# Secure by default: mutual TLS from a mounted Secret (cert-manager's file names). Behind a mesh
# sidecar, clear these and set ECS_GATEWAY_AUTH_TOKENS_FILE instead (see README, "Who may call").
ENV ECS_GATEWAY_LISTEN=0.0.0.0:50051 \
    ECS_GATEWAY_METRICS_LISTEN=0.0.0.0:9464 \
    ECS_GATEWAY_HEALTH_LISTEN=0.0.0.0:8081 \
    ECS_GATEWAY_LOG_FORMAT=json \
    ECS_GATEWAY_TLS_CERT=/etc/ecs-gateway/tls/tls.crt \
    ECS_GATEWAY_TLS_KEY=/etc/ecs-gateway/tls/tls.key \
    ECS_GATEWAY_TLS_CLIENT_CA=/etc/ecs-gateway/tls/ca.crt
# 50051: gRPC (the API, health, reflection), TLS per the variables above.
# 9464: Prometheus metrics, plain HTTP, GET /metrics (no secrets, no caller data); restrict who
#       reaches it with a NetworkPolicy.
# 8081: grpc.health.v1 alone, plaintext, for the kubelet's gRPC probes (they speak no TLS).
EXPOSE 50051/tcp 9464/tcp 8081/tcp
ENTRYPOINT ["/usr/local/bin/ecs-gateway"]
