#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs and starts what the tests need
# (PostgreSQL and Redis from Debian's packages if they are not running, a pinned Apache Kafka
# broker whose jars Maven fetches from Maven Central, see scripts/start-kafka.sh), then fmt,
# clippy and every test. Service tests never skip: a service that cannot be started fails the
# run here.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
export SLUICE_TEST_KAFKA="${SLUICE_TEST_KAFKA:-127.0.0.1:19092}"
export SLUICE_TEST_POSTGRES="${SLUICE_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
export SLUICE_TEST_REDIS="${SLUICE_TEST_REDIS:-redis://127.0.0.1:6379}"

log() { printf '==> %s\n' "$*"; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
wait_until() { # seconds, description, command...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "error: $what did not come up within ${secs}s" >&2; return 1
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return; fi
  log "starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  local ver; ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$ver/main/pg_hba.conf"
  # The tests connect as postgres over TCP without a password (trust on loopback only).
  if ! grep -q '^host all postgres 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  wait_until 60 "PostgreSQL" pg_isready -h 127.0.0.1 -p 5432 -q
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then return; fi
  log "starting Redis"
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_until 30 "Redis" sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

ensure_kafka() {
  # The broker runs on the JVM; its jars come from Maven Central through Maven.
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  scripts/start-kafka.sh
}

# Tools the tests call: openssl makes the admin listener's test certificate; mount and
# umount put the file DLQ on a full or read-only tmpfs.
ensure_tools() {
  command -v openssl >/dev/null || apt_install openssl
  command -v mount >/dev/null || apt_install mount
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

ensure_tools
ensure_postgres
ensure_redis
ensure_kafka

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# nextest, not cargo test: some tests build plugin crates with cargo, which would wait forever
# on the build lock that `cargo test` holds while its tests run.
if ! command -v cargo-nextest >/dev/null; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi
log "tests"
cargo nextest run --workspace --no-fail-fast
