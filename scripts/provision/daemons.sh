#!/usr/bin/env bash
# Installs the daemons the tests run — Prometheus, Alertmanager and HAProxy (the external
# listeners' single-load-balancer proxy) — from Debian's packages without starting their
# system services (a policy-rc.d that refuses every start is in place during the install).
# Tests start their own instances on free loopback ports.
source "$(dirname "$0")/../lib.sh"

PKGS=(prometheus prometheus-alertmanager haproxy)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

install_daemons() {
    local missing=()
    for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        log "prometheus, alertmanager and haproxy already installed: $(prometheus --version 2>&1 | head -1); $(haproxy -v 2>&1 | head -1)"; return 0
    fi
    [ "$(id -u)" = 0 ] || die "daemons: install" "apt-get install ${missing[*]}" "run as root, or install the packages by hand"
    local policy=/usr/sbin/policy-rc.d had_policy=0
    [ -e "$policy" ] && had_policy=1
    if [ $had_policy = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' RETURN
    fi
    apt-get update -qq || die "daemons: apt-get update" "apt-get update" "check that Debian's package mirror is reachable"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "daemons: install" "apt-get install ${missing[*]}" "run 'apt-get update' and retry"
    # Some package versions start the daemons regardless; the tests use their own ports,
    # but a stray system instance only wastes memory.
    pkill -x prometheus 2>/dev/null || true
    pkill -x prometheus-alertmanager 2>/dev/null || true
    pkill -x haproxy 2>/dev/null || true
    prometheus --version 2>&1 | head -1
    haproxy -v 2>&1 | head -1
}

step "prometheus + alertmanager + haproxy" install_daemons
