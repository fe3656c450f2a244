#!/usr/bin/env bash
# Starts a single-node Apache Kafka broker for the tests, on SLUICE_TEST_KAFKA
# (default 127.0.0.1:19092), and waits until it answers Kafka requests.
#
#   scripts/start-kafka.sh          start (or reuse a broker already answering there)
#   scripts/start-kafka.sh stop     stop the broker this script started (its pid file)
#
# What it does, and why:
#   1. The broker's jars come from Maven Central through Maven (the only place this machine
#      and CI can fetch from), once, into a cache outside the repo: SLUICE_KAFKA_HOME
#      (default ~/.cache/sluice/kafka-<version>). A generated pom lists the broker, the
#      admin tools (used below to check that it answers) and a log4j2 binding for slf4j.
#   2. One KRaft node that is broker and controller at once (no ZooKeeper in Kafka 4), its
#      log directory in SLUICE_KAFKA_DATA (default ~/.cache/sluice/kafka-data), formatted
#      with the StorageTool only the first time; topics persist between runs.
#   3. `java -cp '<lib>/*' kafka.Kafka server.properties` in the background; its log is
#      <data>/server.log, its pid <data>/broker.pid. Topics are not auto-created: tests
#      create the topics they use, as production does.
# Idempotent: a broker already answering on the port is reused, whoever started it.
# Needs java (17+) and mvn on PATH.
set -euo pipefail

KAFKA_VERSION=4.1.2  # newest 4.x release that resolves on Maven Central here
LOG4J_VERSION=2.25.3 # the log4j-core version kafka 4.1.2 itself depends on

addr="${SLUICE_TEST_KAFKA:-127.0.0.1:19092}"
host="${addr%:*}"
port="${addr##*:}"
controller_port="${SLUICE_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
home="${SLUICE_KAFKA_HOME:-$HOME/.cache/sluice/kafka-$KAFKA_VERSION}"
data="${SLUICE_KAFKA_DATA:-$HOME/.cache/sluice/kafka-data}"
lib="$home/lib"
pidfile="$data/broker.pid"
log="$data/server.log"
java="${JAVA:-java}"

say() { echo "start-kafka: $*" >&2; }
die() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

# The admin tools log only warnings, to stderr (not into the broker's log).
tools_java() {
  "$java" -Xmx256m -Dlog4j2.configurationFile="$data/tools-log4j2.properties" -cp "$lib/*" "$@"
}

tools_config() {
  mkdir -p "$data"
  cat >"$data/tools-log4j2.properties" <<EOF
# The admin tools that this script runs: warnings only, to stderr.
appender.err.type=Console
appender.err.name=err
appender.err.target=SYSTEM_ERR
appender.err.layout.type=PatternLayout
appender.err.layout.pattern=%p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.err.ref=err
EOF
  # ... and give up on a port that does not speak Kafka after seconds, not a minute.
  cat >"$data/tools-admin.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# A broker answers when a metadata round trip works (listing topics), not just an open port.
answers() {
  port_open && tools_java org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$addr" --command-config "$data/tools-admin.properties" \
    --list >/dev/null 2>&1
}

# The pid from the pid file if that process is still this broker: a pid can be reused after
# a reboot or a kill, and a dead broker not yet reaped (a zombie) has an empty command line.
is_broker() {
  tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "kafka.Kafka $data/server.properties"
}
# Whether a process is still running (not gone, not a zombie). The start-up wait uses this,
# not is_broker: until the forked shell has exec'd java, its command line is this script's.
alive() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) } # the state follows the command name in parentheses
  [ "${stat:0:1}" != Z ]
}
broker_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  is_broker "$pid" && echo "$pid"
}

stop() {
  local pid
  if ! pid=$(broker_pid); then
    rm -f "$pidfile"
    if port_open; then die "something listens on $addr but not from $pidfile; not stopping it"; fi
    say "no broker running"
    return
  fi
  say "stopping broker (pid $pid)"
  kill -TERM "$pid"
  # A controlled shutdown takes a few seconds; after 60 s it is killed.
  for _ in $(seq 1 300); do
    is_broker "$pid" || { rm -f "$pidfile"; say "stopped"; return; }
    sleep 0.2
  done
  say "broker did not stop within 60 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# 1. The jars, downloaded once. A marker written last means a half-done download is retried.
fetch_jars() {
  [ -f "$home/.complete" ] && return
  command -v mvn >/dev/null || die "mvn is needed to fetch Kafka from Maven Central"
  say "fetching Apache Kafka $KAFKA_VERSION from Maven Central into $home (first run only)"
  mkdir -p "$home"
  cat >"$home/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.sluice</groupId>
  <artifactId>test-kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- the broker (kafka.Kafka, kafka.tools.StorageTool) and what it needs at run time -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- the admin tools (TopicCommand), without Kafka Connect's runtime that it drags in -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <!-- kafka logs through slf4j 1.7; this binds it to log4j2 (log4j-core comes with kafka) -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$lib"
  if ! mvn -B -f "$home/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >"$home/maven.log" 2>&1; then
    tail -n 40 "$home/maven.log" >&2
    die "maven could not fetch Kafka $KAFKA_VERSION (log $home/maven.log)"
  fi
  touch "$home/.complete"
}

# 2. The configuration, written on every start (so a changed port takes effect), and the log
#    directory, formatted once.
configure() {
  mkdir -p "$data/logs"
  cat >"$data/server.properties" <<EOF
# Written by scripts/start-kafka.sh on every start; edits here are lost.
# One KRaft node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://$host:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$data/logs
# Tests create the topics they use, as in production.
auto.create.topics.enable=false
num.partitions=1
# A single node can hold only one replica of the internal topics.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
  cat >"$data/log4j2.properties" <<EOF
# The broker's log: everything at INFO into $log.
appender.file.type=File
appender.file.name=file
appender.file.fileName=$log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
EOF
  # meta.properties marks a formatted log directory; formatting again would fail on it.
  if [ ! -f "$data/logs/meta.properties" ]; then
    say "formatting KRaft log directory $data/logs"
    tools_java kafka.tools.StorageTool format \
      --config "$data/server.properties" \
      --cluster-id "$(tools_java kafka.tools.StorageTool random-uuid)" >&2
  fi
}

# 3. The broker in the background, detached from this shell, then wait until it answers.
start() {
  command -v "$java" >/dev/null || die "java (17 or newer) is needed to run Kafka"
  fetch_jars # the check below uses the same jars
  tools_config
  if answers; then
    say "reusing the broker that answers on $addr"
    return
  fi
  # One start at a time: two test runs starting at once would launch two brokers.
  exec 9>"$data/.start.lock"
  flock 9
  local started=""
  if ! broker_pid >/dev/null; then
    if port_open; then
      say "something listens on $addr but does not answer yet; waiting for it"
    else
      configure
      say "starting Kafka $KAFKA_VERSION on $addr (log $log)"
      # Each start has a log of its own; the previous one is kept beside it.
      [ -f "$log" ] && mv -f "$log" "$log.1"
      nohup "$java" -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$data/log4j2.properties" \
        -cp "$lib/*" kafka.Kafka "$data/server.properties" \
        >"$data/broker.out" 2>&1 </dev/null 9>&- & # 9>&-: the broker must not hold the lock
      started=$!
      echo "$started" >"$pidfile"
    fi
  fi
  local deadline=$((SECONDS + 120))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if answers; then
      say "broker answers on $addr"
      return
    fi
    if [ -n "$started" ] && ! alive "$started"; then
      rm -f "$pidfile"
      grep -hE ' (ERROR|FATAL) ' "$log" 2>/dev/null | tail -n 10 >&2 || true
      tail -n 10 "$data/broker.out" >&2 2>/dev/null || true
      die "the broker exited during start-up; see $log and $data/broker.out"
    fi
    sleep 0.5
  done
  die "the broker on $addr did not answer within 2 minutes; see $log"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
