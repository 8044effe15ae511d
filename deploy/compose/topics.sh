#!/bin/bash
# Compose one-shot service `topics`: creates Taskflow's topics with explicit retention (see
# docs/operations.md, "Retention") and sets the registry's compatibility level. Any failure
# but "the topic already exists" stops `docker compose up` (the API and the workers wait for
# this service to complete successfully). An existing topic gets its retention set again, so
# changing a value here and re-running applies it.
set -euo pipefail
BROKERS="${BROKERS:-redpanda:9092}"
REGISTRY="${REGISTRY:-http://redpanda:8081}"

# Task events are the replay source of every consumer (an audit rebuild, a new worker): kept
# forever. Reminders are transient; their durable record is the audit log: 30 days. Dead
# letters are kept until an operator has handled them: forever.
FOREVER=-1
THIRTY_DAYS=$((30 * 24 * 3600 * 1000))

# ensure_topic NAME PARTITIONS RETENTION_MS
ensure_topic() {
  local name="$1" partitions="$2" retention="$3" out rc
  out="$(rpk topic create "$name" -p "$partitions" -r 1 \
           -c cleanup.policy=delete -c retention.ms="$retention" -c retention.bytes=-1 \
           -X brokers="$BROKERS" 2>&1)" && rc=0 || rc=$?
  printf '%s\n' "$out"
  if grep -q 'TOPIC_ALREADY_EXISTS' <<<"$out"; then
    rpk topic alter-config "$name" --set cleanup.policy=delete --set retention.ms="$retention" \
      --set retention.bytes=-1 -X brokers="$BROKERS"
  elif [ "$rc" -ne 0 ] || grep -qiE 'error|invalid|fail' <<<"$out"; then
    echo "creating topic $name failed (exit $rc)" >&2
    exit 1
  fi
}

ensure_topic taskflow.task-events 6 "$FOREVER"
ensure_topic taskflow.reminders 6 "$THIRTY_DAYS"
for group in taskflow-audit taskflow-recurrence taskflow-reminders taskflow-notifier; do
  ensure_topic "taskflow.dlq.$group" 1 "$FOREVER"
done

# Every earlier schema version must stay readable, not just the previous one. Not fatal: the
# codec also sets it on each subject before registering.
rpk registry compatibility-level set --global --level BACKWARD_TRANSITIVE \
    -X registry.hosts="${REGISTRY#http://}" \
  || curl -sf -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
       --data '{"compatibility":"BACKWARD_TRANSITIVE"}' "$REGISTRY/config" \
  || echo "could not set the global compatibility level; subjects get it on registration"
