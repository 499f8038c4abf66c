#!/usr/bin/env bash
# Creates the Docker secrets docker-compose.yml reads, once: random
# passwords and the connection strings built from them, in ./data/secrets
# (git-ignored; `docker compose down -v` does not delete it, `rm -rf
# data/secrets` with the volumes does). Existing files are kept, so the
# stack's stored users keep matching. For a laptop: production
# credentials come from your secret store (docs/runbook.md).
#
#   bash deploy/compose-secrets.sh && docker compose up --build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# CDC_SECRETS_DIR: another directory (the tests write theirs to a
# temporary one); docker-compose.yml reads ./data/secrets.
dir=${CDC_SECRETS_DIR:-data/secrets}
mkdir -p "$dir"
chmod 0700 "$dir"

# hex: no character needs escaping in a URL or a config file.
gen() { [[ -s $dir/$1 ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/$1"; }
put() { [[ -s $dir/$1 ]] || printf '%s' "$2" >"$dir/$1"; }

gen mongo_root_password
gen mongo_cdc_password
gen nats_password
gen pg_superuser_password
gen pg_owner_password
gen pg_sink_password
# The replica set's internal authentication key (required with auth).
[[ -s $dir/mongo_keyfile ]] || head -c 756 /dev/urandom | base64 -w0 >"$dir/mongo_keyfile"

put mongo_uri "mongodb://cdc:$(cat "$dir/mongo_cdc_password")@mongo:27017/?replicaSet=rs0&authSource=admin"
# The compose network is private to this host; TLS for PostgreSQL in
# production: docs/tls-auth.md (sslmode=verify-full).
put pg_owner_url "postgres://cdc_owner:$(cat "$dir/pg_owner_password")@postgres:5432/escrow?sslmode=disable"
put pg_sink_url "postgres://cdc_sink:$(cat "$dir/pg_sink_password")@postgres:5432/escrow?sslmode=disable"

# Docker secrets from files keep the files' modes; the services read them
# as non-root users (cdc 65532, mongodb 999, postgres 999).
chmod 0644 "$dir"/*
echo "docker secrets in $dir: $(ls "$dir" | tr '\n' ' ')"
