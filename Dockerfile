# One image with every Taskflow binary; docker-compose picks the command.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && for b in taskflow-api taskflow-admin taskflow-audit taskflow-audit-replay taskflow-recurrence taskflow-reminders taskflow-notifier taskflow-mcp; do cp "target/release/$b" /out/; done

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 taskflow
COPY --from=build /out/ /usr/local/bin/
USER taskflow
ENV TASKFLOW_LOG_FORMAT=json
