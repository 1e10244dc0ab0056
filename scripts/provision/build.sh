#!/usr/bin/env bash
# Debian packages the Rust build links against: OpenSSL (librdkafka's SASL/SCRAM and TLS
# in the coordinator and the test clients), found through pkg-config; make and perl for
# librdkafka's own build.
source "$(dirname "$0")/../lib.sh"

PKGS=(libssl-dev pkg-config make perl)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_build_deps() {
    local missing=()
    for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        log "build packages already installed: ${PKGS[*]}"; return 0
    fi
    [ "$(id -u)" = 0 ] || die "build deps: install" "apt-get install ${missing[*]}" "run as root, or install the packages by hand"
    apt-get update -qq || die "build deps: apt-get update" "apt-get update" "check that Debian's package mirror is reachable"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "build deps: install" "apt-get install ${missing[*]}" "run 'apt-get update' and retry"
}

step "build packages (${PKGS[*]})" install_build_deps
