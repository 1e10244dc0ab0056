#!/usr/bin/env bash
# kafka-cruise-control-start.sh cruisecontrol.properties [port]
# Cruise Control's launcher, as the image layout /opt/cruise-control has it: libs/ holds
# the server, its core, the metrics reporter and their runtime dependencies.
set -eu
if [ $# -lt 1 ]; then
    echo "USAGE: $0 cruisecontrol.properties [port]" >&2
    exit 1
fi
base="$(cd "$(dirname "$0")/.." && pwd)"
heap="${CRUISE_CONTROL_HEAP_OPTS:--Xms128m -Xmx256m}"
log4j="${CRUISE_CONTROL_LOG4J_OPTS:--Dlog4j.configurationFile=file:$base/config/log4j2.properties}"
jvm="${CRUISE_CONTROL_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}"
# shellcheck disable=SC2086 # options are word lists
exec java $heap $jvm $log4j -cp "$base/libs/*" com.linkedin.kafka.cruisecontrol.KafkaCruiseControlMain "$@"
