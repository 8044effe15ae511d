#!/bin/sh
# Compose one-shot service `db-roles`: creates (or updates) the login role the services connect
# as, `taskflow_service`, with the generated password, as a member of `taskflow_app`, the group
# role that holds the services' grants (migrations/20261122000005_least_privilege.sql creates
# it too, and grants it its rights). Idempotent: runs on every `docker compose up`.
set -eu
DIR="${DIR:-/run/taskflow-secrets}"
export PGPASSFILE="$DIR/owner.pgpass"
psql -v ON_ERROR_STOP=1 -h postgres -U postgres -d taskflow \
     -v service_password="$(cat "$DIR/service-password")" <<'SQL'
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'taskflow_app') AS create_group \gset
\if :create_group
CREATE ROLE taskflow_app NOLOGIN;
\endif
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'taskflow_service') AS create_login \gset
\if :create_login
CREATE ROLE taskflow_service LOGIN;
\endif
ALTER ROLE taskflow_service WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'service_password';
GRANT taskflow_app TO taskflow_service;
SQL
echo "taskflow_service is ready"
