# Builds the three Murima services into one image; compose.yaml picks the binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p murima-command-api -p murima-projector -p murima-query-api

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/command-api /src/target/release/projector /src/target/release/query-api /usr/local/bin/
# The migrations are built into the binaries.
ENV MURIMA_HOST=0.0.0.0
USER nobody
