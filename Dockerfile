# The workers' image for the kubernetes provider: lab-mapreduce and lab-scheduler as static
# binaries on a minimal base. Build from the repository's root:
#
#   docker build -t ghcr.io/labctl/workers:0.1.0 .
#   kind load docker-image ghcr.io/labctl/workers:0.1.0    # or push to your registry
#
# and set `image` under [provider.kubernetes] if you tag it differently.
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p labctl-mapreduce -p labctl-scheduler

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/lab-mapreduce /src/target/x86_64-unknown-linux-musl/release/lab-scheduler /usr/local/bin/
USER nonroot
ENTRYPOINT []
