#!/usr/bin/env bash
# kafka-producer-perf-test.sh ARGS... — runs org.apache.kafka.tools.ProducerPerformance.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.ProducerPerformance "$@"
