# The ringmq broker as a container image (docs/CONTAINERS.md).
#
#   docker build -t ringmq .
#   docker run --rm --security-opt seccomp=unconfined \
#     -p 9400-9402:9400-9402 -p 9092:9092 -v ringmq-data:/var/lib/ringmq ringmq
#
# io_uring: Docker 25+ and containerd block its system calls in their default
# seccomp profiles; docs/CONTAINERS.md shows a profile that allows just them.
# Native clients connect to every shard's own port (9401, 9402, ... after
# --listen's): publish them under the same numbers.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The broker binary only; the debug info the release profile keeps is split
# off, so the image stays small.
RUN cargo build --release --locked --bin ringmq \
    && objcopy --strip-debug target/release/ringmq /ringmq

FROM debian:bookworm-slim
# ca-certificates: the CLI's --tls without --tls-ca checks against them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/ringmq --shell /usr/sbin/nologin ringmq \
    && install -d -o ringmq -g ringmq /var/lib/ringmq
COPY --from=build /ringmq /usr/local/bin/ringmq
USER ringmq
VOLUME /var/lib/ringmq
# Every setting is also an environment variable (ringmq serve --help).
# Kafka clients are told to reach the broker at RINGMQ_KAFKA_ADVERTISE: the
# default suits `-p 9092:9092` and clients on the Docker host; set it to the
# name clients elsewhere use.
ENV RINGMQ_LISTEN=0.0.0.0:9400 \
    RINGMQ_KAFKA_LISTEN=0.0.0.0:9092 \
    RINGMQ_KAFKA_ADVERTISE=localhost:9092 \
    RINGMQ_DATA_DIR=/var/lib/ringmq
EXPOSE 9400 9092
# SIGTERM (docker stop) shuts down cleanly: connections drain, partitions sync.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ringmq"]
CMD ["serve"]
