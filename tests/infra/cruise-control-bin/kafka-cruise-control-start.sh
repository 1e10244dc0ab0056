#!/usr/bin/env bash
# kafka-cruise-control-start.sh cruisecontrol.properties [port]
# Cruise Control's launcher, as the image layout /opt/cruise-control has it: libs/ holds
# the server, its core, the metrics reporter and their runtime dependencies. It reads
# the variables Cruise Control's own scripts read: KAFKA_HEAP_OPTS,
# KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS and KAFKA_OPTS (e.g. a -javaagent).
set -eu
if [ $# -lt 1 ]; then
    echo "USAGE: $0 cruisecontrol.properties [port]" >&2
    exit 1
fi
base="$(cd "$(dirname "$0")/.." && pwd)"
heap="${KAFKA_HEAP_OPTS:--Xms128m -Xmx256m}"
log4j="${KAFKA_LOG4J_OPTS:--Dlog4j.configurationFile=file:$base/config/log4j2.properties}"
jvm="${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}"
opts="${KAFKA_OPTS:-}"
# shellcheck disable=SC2086 # options are word lists
exec java $heap $jvm $log4j $opts -cp "$base/libs/*" com.linkedin.kafka.cruisecontrol.KafkaCruiseControlMain "$@"
