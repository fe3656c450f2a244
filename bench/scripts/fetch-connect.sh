#!/usr/bin/env bash
# Fetches Apache Kafka Connect (connect-runtime + connect-file, the broker's version) and an
# slf4j binding from Maven Central into a cache dir outside the repository, for the
# `kafka-connect-file` variant of `sluice-bench kafka-sinks`. Idempotent.
#   bench/scripts/fetch-connect.sh            -> ~/.cache/sluice/connect-4.1.2/lib
#   SLUICE_CONNECT_VERSION / SLUICE_CONNECT_LIB override the version and the target dir.
set -euo pipefail
version="${SLUICE_CONNECT_VERSION:-4.1.2}"
lib="${SLUICE_CONNECT_LIB:-$HOME/.cache/sluice/connect-$version/lib}"
if [ -f "$lib/connect-runtime-$version.jar" ] && [ -f "$lib/connect-file-$version.jar" ]; then
  echo "fetch-connect: $lib already holds connect-runtime and connect-file $version"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sluice.bench</groupId>
  <artifactId>connect-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-file</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
mkdir -p "$lib"
mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
  -DoutputDirectory="$lib" -DincludeScope=runtime
echo "fetch-connect: $(ls "$lib" | wc -l) jars in $lib"
