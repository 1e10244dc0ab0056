#!/usr/bin/env bash
# kafka-verifiable-producer.sh ARGS... — runs org.apache.kafka.tools.VerifiableProducer.
exec "$(dirname "$0")/kafka-run-class.sh" org.apache.kafka.tools.VerifiableProducer "$@"
