# syntax=docker/dockerfile:1
# Outrigger, the sidecar image. One image serves both pod roles:
#   the proxy:      ENTRYPOINT outrigger, CMD run --config /etc/outrigger/outrigger.yaml (UID 1337)
#   the init step:  command outrigger-iptables (runs as root with NET_ADMIN, NET_RAW)
# Build:  docker build -t outrigger:0.1.0 .
# Lint:   scripts/lint-deploy.sh

# The toolchain build/symbol-order.txt was made with (its symbol names
# change with the compiler version; see build.rs): bump both together.
FROM rust:1.95-slim-bookworm AS build
# protoc: the etcd client crate generates its gRPC code at build time.
# Versions come with the pinned Debian release (bookworm); pinning each
# package too would break the build at every Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and the target dir between builds, so a
# source change does not rebuild every dependency.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin outrigger \
 && install -D -m 0755 target/release/outrigger /out/outrigger

FROM debian:bookworm-slim
# iptables for the init step (Debian's default backend is nf_tables);
# ca-certificates for TLS to upstreams and registries. Same pinning note
# as above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates iptables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 outrigger \
 && useradd --system --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin outrigger
COPY --from=build /out/outrigger /usr/local/bin/outrigger
COPY --chmod=0755 deploy/iptables.sh /usr/local/bin/outrigger-iptables
# A default config so `docker run` works; in Kubernetes a ConfigMap is
# mounted over /etc/outrigger.
COPY config/examples/sidecar.yaml /etc/outrigger/outrigger.yaml
ENV RUST_LOG=info
# UID 1337: the iptables rules exempt this UID, so the proxy's own
# upstream connections are not redirected back into itself.
USER 1337:1337
# 15001 outbound listener, 15006 inbound listener, 9901 admin (/ready, /live, /metrics)
EXPOSE 15001 15006 9901
ENTRYPOINT ["outrigger"]
CMD ["run", "--config", "/etc/outrigger/outrigger.yaml"]
