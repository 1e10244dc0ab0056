#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module proxy
# into $STOKER_CACHE/bin, through wrapper modules (the staging k8s.io/* modules are
# pinned to the published v0.MINOR.PATCH that matches Kubernetes v1.MINOR.PATCH).
# Idempotent: a stamp file records what was built.
source "$(dirname "$0")/../lib.sh"

BIN="$STOKER_CACHE/bin"
WORK="$STOKER_CACHE/build"
mkdir -p "$BIN" "$WORK"
export GOFLAGS=-mod=mod CGO_ENABLED=0
export GOPATH="${GOPATH:-$STOKER_CACHE/go}"
export GOCACHE="${GOCACHE:-$STOKER_CACHE/go-build}"

build_etcd() {
    local stamp="$BIN/.etcd.stamp"
    if stamp_ok "$stamp" "$ETCD_VERSION" && [ -x "$BIN/etcd" ]; then
        log "etcd v$ETCD_VERSION already built"; return 0
    fi
    local dir="$WORK/etcd-$ETCD_VERSION"
    mkdir -p "$dir" && cd "$dir"
    [ -f go.mod ] || go mod init local.stoker/etcdbin >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" \
        || die "etcd: fetch module" "go get go.etcd.io/etcd/server/v3@v$ETCD_VERSION" \
               "check that the Go module proxy serves this version (go list -m -versions go.etcd.io/etcd/server/v3)"
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 \
        || die "etcd: build" "go build go.etcd.io/etcd/server/v3" "delete $dir and retry"
    mv "$BIN/etcd.tmp" "$BIN/etcd"
    echo "$ETCD_VERSION" > "$stamp"
}

build_kube() {
    local stamp="$BIN/.kube.stamp"
    if stamp_ok "$stamp" "$K8S_VERSION" && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]; then
        log "kube-apiserver and kube-controller-manager v$K8S_VERSION already built"; return 0
    fi
    local minor staging dir gomod mods
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    staging="v0.${K8S_VERSION#1.}"
    dir="$WORK/kube-$K8S_VERSION"
    mkdir -p "$dir" && cd "$dir"
    [ -f go.mod ] || go mod init local.stoker/kubebins >/dev/null 2>&1
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [ -n "$gomod" ] || die "kube: resolve k8s.io/kubernetes" "go mod download -json k8s.io/kubernetes@v$K8S_VERSION" \
        "check that the Go module proxy serves this version, or set K8S_VERSION to one it does"
    # Every staging module is required at v0.0.0 upstream; pin it to the published release
    # before anything pulls k8s.io/kubernetes in, or Go fails on "unknown revision v0.0.0".
    mods="$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)"
    for m in $mods; do go mod edit -replace="$m=$m@$staging"; done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
GO
    go get "k8s.io/kubernetes@v$K8S_VERSION" \
        || die "kube: fetch modules" "go get k8s.io/kubernetes@v$K8S_VERSION" "retry; a proxy time-out leaves nothing half-written"
    go mod tidy >/dev/null 2>&1 || true
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
    for cmd in kube-apiserver kube-controller-manager; do
        go build -trimpath -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" \
            || die "kube: build $cmd" "go build k8s.io/kubernetes/cmd/$cmd" "delete $dir and retry"
        mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    done
    "$BIN/kube-apiserver" --version
    echo "$K8S_VERSION" > "$stamp"
}

build_kubectl() {
    local stamp="$BIN/.kubectl.stamp"
    if stamp_ok "$stamp" "$K8S_VERSION" && [ -x "$BIN/kubectl" ]; then
        log "kubectl v$K8S_VERSION already built"; return 0
    fi
    local minor dir
    minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
    dir="$WORK/kube-$K8S_VERSION"
    [ -f "$dir/go.mod" ] || die "kubectl: build" "build_kube" "build kube-apiserver first (scripts/provision/kube.sh kube)"
    cd "$dir"
    # kubectl's own staging modules join the wrapper module's requirements.
    grep -q 'cmd/kubectl"' tools.go || sed -i 's|^)$|	_ "k8s.io/kubernetes/cmd/kubectl"\n)|' tools.go
    go mod tidy >/dev/null 2>&1 || true
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
-X k8s.io/component-base/version.gitTreeState=clean"
    go build -trimpath -ldflags "$ld" -o "$BIN/kubectl.tmp" "k8s.io/kubernetes/cmd/kubectl" \
        || die "kubectl: build" "go build k8s.io/kubernetes/cmd/kubectl" "delete $dir and retry"
    mv "$BIN/kubectl.tmp" "$BIN/kubectl"
    "$BIN/kubectl" version --client
    echo "$K8S_VERSION" > "$stamp"
}

case "${1:-all}" in
    etcd) step "etcd v$ETCD_VERSION" build_etcd ;;
    kube) step "kube v$K8S_VERSION" build_kube ;;
    kubectl) step "kubectl v$K8S_VERSION" build_kubectl ;;
    # What the tests need: the control plane (kubectl is the demo's).
    servers)
        step "etcd v$ETCD_VERSION" build_etcd
        step "kube v$K8S_VERSION" build_kube
        ;;
    all)
        step "etcd v$ETCD_VERSION" build_etcd
        step "kube v$K8S_VERSION" build_kube
        step "kubectl v$K8S_VERSION" build_kubectl
        ;;
esac
