# shellcheck shell=bash
# Shared helpers for Stoker's scripts: cache location, timed steps, clear failures.
# Sourced, never executed.

set -euo pipefail

STOKER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STOKER_CACHE="${STOKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stoker}"
# Builds live outside the repository too, so a fresh clone (CI) reuses them.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STOKER_CACHE/target}"
# No incremental state: a fresh clone (CI) never reuses it (its paths differ), and it
# grows the shared target dir by gigabytes per run.
CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export STOKER_ROOT STOKER_CACHE CARGO_TARGET_DIR CARGO_INCREMENTAL
mkdir -p "$STOKER_CACHE"

# Pinned versions of every real component the tests and the demo run.
KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
JMX_EXPORTER_VERSION="1.0.1"
K8S_VERSION="${K8S_VERSION:-1.34.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
MAVEN_DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
export KAFKA_VERSION JMX_EXPORTER_VERSION K8S_VERSION ETCD_VERSION

_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# log MESSAGE... — one line on stderr, prefixed so interleaved output stays readable.
log() { printf '[stoker %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# die STEP COMMAND HINT — stop with a message that names the step, the command and what to try.
die() {
    printf '\n[stoker] FAILED step: %s\n[stoker]   command: %s\n[stoker]   try: %s\n' "$1" "$2" "$3" >&2
    exit 1
}

# step NAME CMD... — run CMD, print how long it took, fail with the step named.
step() {
    local name="$1"; shift
    local t0; t0="$(_now_ms)"
    log "step '$name' ..."
    if ! "$@"; then
        die "$name" "$*" "read the output above; re-running is safe (every step is idempotent)"
    fi
    local ms=$(( $(_now_ms) - t0 ))
    local dt; dt="$((ms / 1000)).$(( (ms % 1000) / 100 ))"
    printf '[stoker] step %-32s %7ss\n' "'$name'" "$dt" >&2
    printf '%s\t%s\n' "$name" "$dt" >> "${STOKER_TIMINGS:-/dev/null}"
}

# stamp_ok FILE — true when a completion stamp exists with the expected content.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
