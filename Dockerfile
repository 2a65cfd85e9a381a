# syntax=docker/dockerfile:1
# The boxoffice image: one binary, every role a subcommand (serve, consume, migrate,
# seed, openapi, config, health), running as an unprivileged user.
#
#   docker build -t boxoffice .
#   docker run --rm -p 8080:8080 -e BOXOFFICE_DATABASE_URL=... -e BOXOFFICE_REDIS_URL=... boxoffice
#
# docker-compose.yml builds it for the whole stack; deploy/ runs it on Kubernetes.

# ---------------------------------------------------------------- build
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys (make, a C/C++ compiler: in this
# image already) and links zlib.
COPY . .
# The registry and target directory are cache mounts: rebuilding after a code change
# compiles boxoffice, not its 400 dependencies. Symbols are stripped: a small image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked -p boxoffice \
    && install -m 0755 target/release/boxoffice /usr/local/bin/boxoffice

# ---------------------------------------------------------------- run
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 boxoffice \
    && useradd --system --uid 10001 --gid boxoffice --no-create-home --shell /usr/sbin/nologin boxoffice
COPY --from=build /usr/local/bin/boxoffice /usr/local/bin/boxoffice
USER 10001:10001
# In a container the API listens on every interface; everything else comes from
# BOXOFFICE_* variables (see the README's configuration table), never from the image.
ENV BOXOFFICE_LISTEN=0.0.0.0:8080 \
    BOXOFFICE_LOG_JSON=true
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 CMD ["boxoffice", "health"]
ENTRYPOINT ["boxoffice"]
CMD ["serve"]
