# syntax=docker/dockerfile:1

# Build stage: the release binary. protoc comes from a crate, so no system protobuf is needed.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin ecs-gateway

# Runtime stage: a slim Debian with CA certificates for HTTPS to ECS, running as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=builder /src/target/release/ecs-gateway /usr/local/bin/ecs-gateway
USER 10001
# Inside Alibaba Cloud without internet egress, add ECS_GATEWAY_NETWORK=vpc (VPC endpoints).
# No AccessKey needs to be baked in or passed: on ACK the RRSA variables, on an ECS instance its RAM
# role, are found as Alibaba's SDKs find them (README, "Credentials").
# Secure by default: mutual TLS from a mounted Secret (cert-manager's file names). Behind a mesh
# sidecar, clear these and set ECS_GATEWAY_AUTH_TOKENS_FILE instead (see README, "Who may call").
# Prometheus metrics (plain HTTP, no secrets, no caller data) on 9464; restrict who reaches it with
# a NetworkPolicy.
ENV ECS_GATEWAY_LISTEN=0.0.0.0:50051 \
    ECS_GATEWAY_METRICS_LISTEN=0.0.0.0:9464 \
    ECS_GATEWAY_TLS_CERT=/etc/ecs-gateway/tls/tls.crt \
    ECS_GATEWAY_TLS_KEY=/etc/ecs-gateway/tls/tls.key \
    ECS_GATEWAY_TLS_CLIENT_CA=/etc/ecs-gateway/tls/ca.crt
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/ecs-gateway"]
