#!/bin/sh
# Runs once, when the official postgres image initialises its data directory
# (/docker-entrypoint-initdb.d). The image admits `all` databases from any
# address, which does not cover replication connections: cdc's logical
# replication would be refused. Admit them with the same method as the rest.
# Used by compose/compose.yaml (mounted) and the testcontainers runtime
# (services/runtime/src/containers.rs, copied in).
set -eu
printf 'host replication all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
