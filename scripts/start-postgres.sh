#!/usr/bin/env bash
# Installs Debian's PostgreSQL where it is missing, starts it on the loopback, and makes a role and a
# database for the job service's tests (test/serveJobs.test.ts: runners sharing PostgreSQL). Prints the
# URL to export as DISENDIFF_TEST_DATABASE_URL. Safe to run again.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  bash "$(dirname "$0")/apt-install.sh" postgresql
fi
version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
  $sudo pg_createcluster "$version" main >&2
fi
# the loopback only (Debian's default listen_addresses is localhost)
$sudo pg_ctlcluster "$version" main start >&2 2>/dev/null || true
for _ in $(seq 1 30); do
  if $sudo runuser -u postgres -- pg_isready -q; then break; fi
  sleep 1
done
$sudo runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL' >&2
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'disendiff') THEN
    CREATE ROLE disendiff LOGIN PASSWORD 'disendiff' CREATEDB;
  END IF;
END$$;
SQL
if ! $sudo runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'disendiff'" | grep -q 1; then
  $sudo runuser -u postgres -- createdb -O disendiff disendiff >&2
fi
port="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $3 }')"
echo "postgres://disendiff:disendiff@127.0.0.1:${port}/disendiff"
