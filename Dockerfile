FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p sluice

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/sluice /usr/local/bin/sluice
WORKDIR /var/lib/sluice
ENTRYPOINT ["sluice"]
