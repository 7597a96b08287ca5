# Build: the release binary (a plain build; this image does not cache dependencies apart).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY bench ./bench
# The playground is embedded in the binary: its page, stylesheet and built script.
COPY web/playground/index.html web/playground/playground.css ./web/playground/
COPY web/playground/dist ./web/playground/dist
RUN cargo build --release --locked --bin session-relay

# Run: a small image with just the binary, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 relay
COPY --from=build /src/target/release/session-relay /usr/local/bin/session-relay
USER relay
ENV SESSION_RELAY_LISTEN=0.0.0.0:8080 \
    SESSION_RELAY_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["/usr/local/bin/session-relay"]
