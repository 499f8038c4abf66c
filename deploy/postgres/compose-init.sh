#!/usr/bin/env bash
# docker-compose.yml's PostgreSQL first-start hook (the postgres image runs
# /docker-entrypoint-initdb.d/*.sh once, as the superuser, on an empty data
# directory): creates the replicator's roles with deploy/postgres/roles.sql
# and sets their passwords from the Docker secrets. The grants on the
# tables come from running roles.sql again after `cdc migrate` (the
# compose service pg-grants).
set -euo pipefail
psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB")
"${psql[@]}" -f /cdc/roles.sql
# The password is a psql variable, quoted by psql (:'pw'), so no character
# of it can break the statement.
for role in cdc_owner:pg_owner_password cdc_sink:pg_sink_password; do
  printf "ALTER ROLE %s PASSWORD :'pw';\n" "${role%%:*}" |
    "${psql[@]}" -v pw="$(cat "/run/secrets/${role#*:}")"
done
