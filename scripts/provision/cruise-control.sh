#!/usr/bin/env bash
# Lays out the real Cruise Control 2.5.146 like an image's /opt/cruise-control: libs/
# (the server, its core and metrics reporter, copied from a local build of its release
# tag, plus their runtime dependencies from Maven Central), bin/ and config/ (Stoker's
# launcher and logging). Puts the metrics reporter into the Kafka layout's libs/, as the
# broker images of Koperator and Strimzi do. The jars are read from
# $STOKER_CRUISE_CONTROL_SRC (default ../shared/cruise-control beside the project) and
# never committed. Idempotent: a complete layout is renamed into place.
source "$(dirname "$0")/../lib.sh"

CC_VERSION="2.5.146"
# Kept in the cache too, so a clone elsewhere (CI's) still finds it once provisioned.
SAVED="$STOKER_CACHE/cruise-control-src"

# The folder with jars/ and runtime-deps.pom: $STOKER_CRUISE_CONTROL_SRC, else
# ../shared/cruise-control beside this checkout or beside the local repository it was
# cloned from, else the copy a previous run saved.
find_source() {
    local origin candidates=()
    [ -n "${STOKER_CRUISE_CONTROL_SRC:-}" ] && { echo "$STOKER_CRUISE_CONTROL_SRC"; return; }
    candidates+=("$STOKER_ROOT/../shared/cruise-control")
    origin="$(git -C "$STOKER_ROOT" remote get-url origin 2>/dev/null || true)"
    [ -d "$origin" ] && candidates+=("$origin/../shared/cruise-control")
    candidates+=("$SAVED")
    for c in "${candidates[@]}"; do
        [ -f "$c/runtime-deps.pom" ] && { (cd "$c" && pwd); return; }
    done
    echo "$STOKER_ROOT/../shared/cruise-control"
}
SRC="$(find_source)"
DEST="$STOKER_CACHE/cruise-control-$CC_VERSION"
M2="$STOKER_CACHE/m2"
CC_JARS=(cruise-control cruise-control-core cruise-control-metrics-reporter)

provision_cruise_control() {
    local jar
    for jar in "${CC_JARS[@]}"; do
        [ -f "$SRC/jars/$jar-$CC_VERSION.jar" ] || die "cruise control: find jars" "ls $SRC/jars/$jar-$CC_VERSION.jar" \
            "set STOKER_CRUISE_CONTROL_SRC to a folder holding jars/ and runtime-deps.pom of Cruise Control $CC_VERSION (its build.sh rebuilds them from the release sources)"
    done
    [ -f "$SRC/runtime-deps.pom" ] || die "cruise control: find runtime-deps.pom" "ls $SRC/runtime-deps.pom" \
        "set STOKER_CRUISE_CONTROL_SRC to the folder of Cruise Control's jars and runtime-deps.pom"
    local stamp
    stamp="$CC_VERSION+$(cat "$SRC/runtime-deps.pom" "$SRC"/jars/*.jar "$STOKER_ROOT"/tests/infra/cruise-control-bin/* "$STOKER_ROOT"/tests/infra/cruise-control-config/* | sha256sum | cut -c1-12)"
    if stamp_ok "$DEST/.stamp" "$stamp"; then
        log "cruise control $CC_VERSION already laid out at $DEST"
    else
        local tmp="$DEST.tmp.$$"
        rm -rf "$tmp"; mkdir -p "$tmp/libs" "$tmp/bin" "$tmp/config"
        mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2" -f "$SRC/runtime-deps.pom" \
            "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
            || die "cruise control: fetch runtime dependencies" "mvn -f $SRC/runtime-deps.pom copy-dependencies" \
                   "check that Maven Central is reachable (mvn -v; ~/.m2/settings.xml)"
        for jar in "${CC_JARS[@]}"; do cp "$SRC/jars/$jar-$CC_VERSION.jar" "$tmp/libs/"; done
        ls "$tmp"/libs/kafka-clients-*.jar >/dev/null 2>&1 || die "cruise control: verify jars" "ls libs/kafka-clients-*.jar" "delete $M2 and retry"
        cp "$STOKER_ROOT"/tests/infra/cruise-control-bin/* "$tmp/bin/" && chmod +x "$tmp"/bin/*.sh
        cp "$STOKER_ROOT"/tests/infra/cruise-control-config/* "$tmp/config/"
        echo "$stamp" > "$tmp/.stamp"
        rm -rf "$DEST.old"; [ -d "$DEST" ] && mv "$DEST" "$DEST.old"
        mv "$tmp" "$DEST"; rm -rf "$DEST.old"
        ln -sfn "$DEST" "$STOKER_CACHE/cruise-control"
    fi
    if [ "$SRC" != "$SAVED" ]; then
        mkdir -p "$SAVED/jars"
        cp "$SRC/runtime-deps.pom" "$SAVED/"
        for jar in "${CC_JARS[@]}"; do cp "$SRC/jars/$jar-$CC_VERSION.jar" "$SAVED/jars/"; done
    fi
    # Every broker runs Cruise Control's metrics reporter: it belongs in Kafka's libs/.
    [ -d "$STOKER_CACHE/kafka/libs" ] || die "cruise control: find kafka" "ls $STOKER_CACHE/kafka/libs" "run scripts/provision/kafka.sh first"
    cp "$DEST/libs/cruise-control-metrics-reporter-$CC_VERSION.jar" "$STOKER_CACHE/kafka/libs/"
}

step "cruise control $CC_VERSION" provision_cruise_control
