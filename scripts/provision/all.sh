#!/usr/bin/env bash
# Provisions every real component the tests and the demo run, into $STOKER_CACHE
# (default ~/.cache/stoker); scripts/demo adds kubectl. Idempotent: a second run only
# checks stamps.
source "$(dirname "$0")/../lib.sh"
"$STOKER_ROOT/scripts/provision/build.sh"
"$STOKER_ROOT/scripts/provision/kafka.sh"
"$STOKER_ROOT/scripts/provision/cruise-control.sh"
"$STOKER_ROOT/scripts/provision/daemons.sh"
"$STOKER_ROOT/scripts/provision/kube.sh" servers
"$STOKER_ROOT/scripts/provision/tools.sh"
"$STOKER_ROOT/scripts/provision/helm.sh"
"$STOKER_ROOT/scripts/provision/monitoring-crds.sh"
