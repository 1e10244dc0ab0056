#!/usr/bin/env bash
# The Prometheus Operator's CustomResourceDefinitions (PodMonitor, ServiceMonitor,
# PrometheusRule), from its Go module through the Go module proxy, so the tests can
# check that deploy/monitoring/ objects are accepted by the real schemas. Idempotent.
source "$(dirname "$0")/../lib.sh"

PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-0.85.0}"
DEST="$STOKER_CACHE/monitoring-crds"
export GOPATH="${GOPATH:-$STOKER_CACHE/go}" GOFLAGS=-mod=mod

fetch_crds() {
    if stamp_ok "$DEST/.stamp" "$PROMETHEUS_OPERATOR_VERSION"; then
        log "Prometheus Operator CRDs v$PROMETHEUS_OPERATOR_VERSION already in $DEST"; return 0
    fi
    local work dir
    work="$(mktemp -d)"
    dir="$(cd "$work" && go mod download -json "github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION" \
        | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
    rm -rf "$work"
    [ -n "$dir" ] && [ -d "$dir/example/prometheus-operator-crd" ] \
        || die "monitoring CRDs: fetch" "go mod download github.com/prometheus-operator/prometheus-operator@v$PROMETHEUS_OPERATOR_VERSION" \
               "check that the Go module proxy serves this version (go list -m -versions github.com/prometheus-operator/prometheus-operator)"
    mkdir -p "$DEST"
    for kind in podmonitors servicemonitors prometheusrules; do
        cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$DEST/"
    done
    chmod u+w "$DEST"/*.yaml
    echo "$PROMETHEUS_OPERATOR_VERSION" > "$DEST/.stamp"
}

step "prometheus-operator CRDs v$PROMETHEUS_OPERATOR_VERSION" fetch_crds
