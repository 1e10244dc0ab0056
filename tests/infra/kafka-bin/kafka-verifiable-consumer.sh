#!/usr/bin/env bash
# kafka-verifiable-consumer.sh ARGS... — runs org.apache.kafka.tools.VerifiableConsumer.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.VerifiableConsumer "$@"
