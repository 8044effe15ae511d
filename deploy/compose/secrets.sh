#!/bin/sh
# Compose one-shot service `secrets`: on first start, generates the PostgreSQL passwords into
# the `secrets` volume (mounted at $DIR); later starts keep them. Nothing secret is ever in the
# repository. Each file is readable only by the user of the container that reads it:
#   postgres-password  uid 999 (the postgres image): the superuser/owner's password
#   owner.pgpass       root (db-roles): libpq password file for the owner
#   service-password   root (db-roles): the password db-roles sets on taskflow_service
#   api.pgpass         uid 10001 (the Taskflow image): owner (migrations) + taskflow_service
#   service.pgpass     uid 10001: taskflow_service only (the workers)
#   jwt-secret         uid 10001: the API's JWT signing secret (TASKFLOW_JWT_SECRET_FILE)
# Passwords are hex, so they need no escaping in a URL or a pgpass line.
set -eu
DIR="${DIR:-/run/taskflow-secrets}"
umask 077

new_password() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

if [ ! -s "$DIR/postgres-password" ]; then
  new_password > "$DIR/postgres-password"
  echo "generated the PostgreSQL owner password"
fi
if [ ! -s "$DIR/service-password" ]; then
  new_password > "$DIR/service-password"
  echo "generated the taskflow_service password"
fi
if [ ! -s "$DIR/jwt-secret" ]; then
  # 48 random bytes as hex: the API refuses a secret under 32 bytes.
  od -An -tx1 -N48 /dev/urandom | tr -d ' \n' > "$DIR/jwt-secret"
  echo "generated the API's JWT signing secret"
fi
owner="$(cat "$DIR/postgres-password")"
service="$(cat "$DIR/service-password")"
printf 'postgres:5432:*:postgres:%s\n' "$owner" > "$DIR/owner.pgpass"
printf 'postgres:5432:*:taskflow_service:%s\n' "$service" > "$DIR/service.pgpass"
cat "$DIR/owner.pgpass" "$DIR/service.pgpass" > "$DIR/api.pgpass"

chown 999:999 "$DIR/postgres-password"
chown 10001:10001 "$DIR/api.pgpass" "$DIR/service.pgpass" "$DIR/jwt-secret"
chmod 600 "$DIR"/*
chmod 755 "$DIR"
