#!/usr/bin/env bash
# Builds helm from the Go module proxy into $STOKER_CACHE/bin, to lint and render the
# coordinator's chart in tests.
source "$(dirname "$0")/../lib.sh"

HELM_VERSION="${HELM_VERSION:-3.19.5}"
BIN="$STOKER_CACHE/bin"
export GOPATH="${GOPATH:-$STOKER_CACHE/go}" GOCACHE="${GOCACHE:-$STOKER_CACHE/go-build}" CGO_ENABLED=0

build_helm() {
    if stamp_ok "$BIN/.helm.stamp" "$HELM_VERSION" && [ -x "$BIN/helm" ]; then
        log "helm v$HELM_VERSION already built"; return 0
    fi
    mkdir -p "$BIN"
    GOBIN="$BIN/.helm-tmp" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" \
        || die "helm: build" "go install helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" \
               "check that the Go module proxy serves this version (go list -m -versions helm.sh/helm/v3)"
    mv "$BIN/.helm-tmp/helm" "$BIN/helm" && rmdir "$BIN/.helm-tmp"
    "$BIN/helm" version --short
    echo "$HELM_VERSION" > "$BIN/.helm.stamp"
}

step "helm v$HELM_VERSION" build_helm
