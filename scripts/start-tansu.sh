#!/usr/bin/env bash
# Starts a tansu broker (Kafka-compatible, in-memory storage) on 127.0.0.1:${TANSU_PORT:-19092}
# unless something already listens there, then waits until it answers Kafka requests.
# Idempotent: safe to call from every test run. Log: ${TANSU_LOG:-/tmp/tansu.log}.
set -euo pipefail

port="${TANSU_PORT:-19092}"
log="${TANSU_LOG:-/tmp/tansu.log}"
bin="${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
url="tcp://127.0.0.1:${port}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; }

# A broker answers when `topic list` works (a metadata round trip, not just an open port).
answers() { "$bin" topic list --broker "$url" >/dev/null 2>&1; }

if ! port_open; then
  if [ ! -x "$bin" ]; then
    echo "start-tansu: no tansu binary at $bin" \
      "(cargo install tansu --version 0.6.0 --features dynostore --locked)" >&2
    exit 1
  fi
  echo "start-tansu: starting $bin on $url (log $log)" >&2
  nohup "$bin" broker \
    --listener-url "$url" \
    --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ \
    >>"$log" 2>&1 </dev/null &
  echo $! >"${TANSU_PIDFILE:-/tmp/tansu.pid}"
fi

for _ in $(seq 1 100); do
  if port_open && answers; then
    echo "start-tansu: broker answers on 127.0.0.1:${port}" >&2
    exit 0
  fi
  sleep 0.2
done
echo "start-tansu: broker on 127.0.0.1:${port} did not answer within 20 s; see $log" >&2
exit 1
