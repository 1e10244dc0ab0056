#!/usr/bin/env bash
# Lays out Apache Kafka (KRaft) from Maven Central jars like the apache/kafka image's
# /opt/kafka: bin/ (our own launch scripts), libs/, config/, plus the Prometheus JMX
# exporter javaagent and its Kafka rules. Idempotent; builds into a temp folder and
# renames it into place only when complete, so a failed run never poisons the cache.
source "$(dirname "$0")/../lib.sh"

DEST="$STOKER_CACHE/kafka-$KAFKA_VERSION"
M2="$STOKER_CACHE/m2"
POM="$STOKER_ROOT/tests/infra/kafka-runtime.pom"
JARS_KEY="$KAFKA_VERSION+$(sha256sum < "$POM" | cut -c1-12)"
# The JMX exporter rules are the ones the coordinator ships to broker Pods.
JMX_RULES="$STOKER_ROOT/coordinator/assets/kafka-jmx-exporter.yml"
STAMP="$JARS_KEY+jmx$JMX_EXPORTER_VERSION+$(cat "$STOKER_ROOT"/tests/infra/kafka-bin/* "$STOKER_ROOT"/tests/infra/kafka-config/* "$JMX_RULES" | sha256sum | cut -c1-12)"

provision_kafka() {
    if stamp_ok "$DEST/.stamp" "$STAMP"; then
        log "kafka $KAFKA_VERSION already laid out at $DEST"; return 0
    fi
    local tmp="$DEST.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp/libs" "$tmp/agents" "$tmp/config" "$tmp/bin"
    if [ -d "$DEST/libs" ] && [ -f "$DEST/.jars" ] && [ "$(cat "$DEST/.jars")" = "$JARS_KEY" ]; then
        cp -a "$DEST/libs/." "$tmp/libs/"
    else
        mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2" -f "$POM" \
            -Dkafka.version="$KAFKA_VERSION" \
            "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
            || die "kafka: fetch jars" "mvn copy-dependencies org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
                   "check that Maven Central is reachable (mvn -v; ~/.m2/settings.xml) and that $KAFKA_VERSION is served"
    fi
    mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2" "$MAVEN_DEPENDENCY_PLUGIN:copy" \
        -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" -DoutputDirectory="$tmp/agents" \
        || die "kafka: fetch JMX exporter" "mvn copy io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" \
               "check that Maven Central is reachable"
    ls "$tmp"/libs/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka: verify jars" "ls libs/kafka_2.13-*.jar" "delete $M2 and retry"
    # (no `grep -q` in a pipe: with pipefail, its early exit fails the listing command)
    jar tf "$tmp"/libs/kafka_2.13-*.jar | grep -c '^kafka/tools/StorageTool.class$' >/dev/null \
        || die "kafka: verify StorageTool" "jar tf kafka_2.13.jar" "this Kafka version moved kafka.tools.StorageTool; adjust tests/infra/kafka-bin/kafka-storage.sh"
    ls "$tmp"/libs/log4j-core-*.jar >/dev/null 2>&1 || die "kafka: verify logging backend" "ls libs/log4j-core-*.jar" \
        "add org.apache.logging.log4j:log4j-core to tests/infra/kafka-runtime.pom"
    cp "$STOKER_ROOT"/tests/infra/kafka-bin/* "$tmp/bin/" && chmod +x "$tmp"/bin/*.sh
    cp "$STOKER_ROOT"/tests/infra/kafka-config/* "$tmp/config/"
    cp "$JMX_RULES" "$tmp/config/kafka-metrics.yml"
    ln -s "jmx_prometheus_javaagent-$JMX_EXPORTER_VERSION.jar" "$tmp/agents/jmx_prometheus_javaagent.jar"
    echo "$JARS_KEY" > "$tmp/.jars"
    echo "$STAMP" > "$tmp/.stamp"
    rm -rf "$DEST.old"; [ -d "$DEST" ] && mv "$DEST" "$DEST.old"
    mv "$tmp" "$DEST"; rm -rf "$DEST.old"
    ln -sfn "$DEST" "$STOKER_CACHE/kafka"
}

step "kafka $KAFKA_VERSION" provision_kafka
