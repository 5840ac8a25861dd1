#!/usr/bin/env bash
# The driver suite: one conformance program per client applications really use (Java driver 4.x,
# gocql, the Node.js and Python `cassandra-driver`, cqlsh), run against the deployed proxy fleet.
# tests/drivers/README.md says what every program checks and prints.
#
#   scripts/drivers.sh install [NAME...]   fetch each toolchain's dependencies from its registry
#                                          (Maven Central, the Go module proxy, npm, PyPI) and
#                                          compile the Java and Go programs; cached, so a second
#                                          run does nothing
#   scripts/drivers.sh run NAME            run one program (java|go|node|python|cqlsh); its exit
#                                          code is the program's
#
# `run` takes its settings from the environment, with defaults from the sandbox's env file:
#   ZDM_DRIVER_PROXIES   proxy addresses, comma-separated (default: the sandbox's SANDBOX_HOSTS)
#   ZDM_DRIVER_USERNAME / ZDM_DRIVER_PASSWORD  client credentials (default: target's, as an
#                        application in phase 1 uses)
#   ZDM_DRIVER_KEYSPACE  a keyspace the program creates (default: drivers_NAME_<random>); the
#                        caller drops it
#   ZDM_ORIGIN_* / ZDM_TARGET_*  the clusters, for the direct check
# Passwords only ever travel in the environment or 0600 files, never on a command line.
#
# Caches live in $ZDM_CACHE_DIR/drivers (default ~/.cache/zdm-run/drivers), keyed by the content
# of each program's manifest and sources; Maven, Go and npm also keep their own download caches.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/tests/drivers
CACHE=${ZDM_CACHE_DIR:-$HOME/.cache/zdm-run}
OUT=$CACHE/drivers
ALL=(java go node python cqlsh)

log() { printf '[drivers] %s\n' "$*" >&2; }
die() { printf '[drivers] error: %s\n' "$*" >&2; exit 1; }

apt_install() {
  log "installing packages: $*"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A stamp of everything a program's build depends on: an unchanged stamp means nothing to do.
stamp_of() { (cd "$SRC/$1" && find . -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16; }
up_to_date() { [[ -f $OUT/$1/.stamp && $(cat "$OUT/$1/.stamp") == "$(stamp_of "$1")" ]]; }
mark_done() { stamp_of "$1" >"$OUT/$1/.stamp"; }

# Java: Maven resolves the driver; javac compiles the one source file against that classpath.
install_java() {
  command -v mvn >/dev/null || apt_install maven
  command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
  local dir=$OUT/java
  rm -rf "$dir" && mkdir -p "$dir/classes"
  log "java: resolving the driver from Maven Central"
  mvn -q -B -Dstyle.color=never -f "$SRC/java/pom.xml" dependency:build-classpath \
    -Dmdep.outputFile="$dir/classpath" >&2 || die "maven could not resolve the Java driver"
  log "java: compiling"
  javac -nowarn -d "$dir/classes" -cp "$(cat "$dir/classpath")" "$SRC/java/Conformance.java" >&2 \
    || die "javac failed on tests/drivers/java/Conformance.java"
}

# Go: modules come from the Go module proxy (checked against go.sum); one static binary.
install_go() {
  command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || apt_install golang-go
  local go=go
  command -v go >/dev/null || go=/usr/local/go/bin/go
  mkdir -p "$OUT/go"
  log "go: fetching modules and building"
  (cd "$SRC/go" && GOFLAGS=-buildvcs=false "$go" build -mod=readonly -o "$OUT/go/conformance" .) >&2 \
    || die "go build failed in tests/drivers/go"
}

# Node: npm installs the locked dependency tree into the cache (NODE_PATH points there).
install_node() {
  command -v npm >/dev/null || apt_install nodejs npm
  local dir=$OUT/node
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$SRC/node/package.json" "$SRC/node/package-lock.json" "$dir/"
  log "node: npm ci"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2 || die "npm could not install the Node driver"
}

# Python: a virtualenv of its own with the pinned driver from PyPI.
install_python() {
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
  local dir=$OUT/python
  rm -rf "$dir"
  log "python: virtualenv and pip install"
  python3 -m venv "$dir" >&2
  "$dir/bin/pip" install -q -r "$SRC/python/requirements.txt" >&2 || die "pip could not install the Python driver"
}

# cqlsh: the sandbox's own cqlsh virtualenv (scripts/sandbox.sh makes the same one).
cqlsh_bin() { echo "$CACHE/venv/bin/cqlsh"; }
install_cqlsh() {
  mkdir -p "$OUT/cqlsh"
  if [[ ! -x $(cqlsh_bin) ]]; then
    log "cqlsh: installing into $CACHE/venv"
    python3 -m venv "$CACHE/venv" >&2
    "$CACHE/venv/bin/pip" install -q cqlsh >&2 || die "pip could not install cqlsh"
  fi
}

install() {
  local names=("$@")
  ((${#names[@]})) || names=("${ALL[@]}")
  local n
  for n in "${names[@]}"; do
    [[ " ${ALL[*]} " == *" $n "* ]] || die "unknown driver '$n' (${ALL[*]})"
    if up_to_date "$n"; then
      continue
    fi
    "install_$n"
    mark_done "$n"
    log "$n: installed"
  done
}

# The defaults of `run` come from the sandbox's env file, read as data (never sourced).
sandbox_value() {
  local f=${ZDM_SANDBOX_ENV:-$ROOT/.sandbox/env}
  [[ -f $f ]] || die "no sandbox env file $f: run scripts/sandbox.sh up (or set ZDM_SANDBOX_ENV)"
  local line
  line=$(grep -m1 "^$1=" "$f") || die "$f has no $1"
  line=${line#*=}
  line=${line#\"}
  echo "${line%\"}"
}

run() {
  local name=${1:-}
  [[ " ${ALL[*]} " == *" $name "* ]] || die "usage: scripts/drivers.sh run java|go|node|python|cqlsh"
  up_to_date "$name" || die "$name is not installed (or its sources changed): run scripts/drivers.sh install $name"
  local c k
  for c in ORIGIN TARGET; do
    for k in CONTACT_POINTS PORT USERNAME PASSWORD; do
      local v=ZDM_${c}_$k
      [[ -n ${!v:-} ]] || export "$v=$(sandbox_value "$v")"
    done
  done
  if [[ -z ${ZDM_DRIVER_PROXIES:-} ]]; then
    local hosts
    hosts=$(sandbox_value SANDBOX_HOSTS)
    export ZDM_DRIVER_PROXIES=${hosts// /,}
  fi
  export ZDM_DRIVER_USERNAME=${ZDM_DRIVER_USERNAME:-$ZDM_TARGET_USERNAME}
  export ZDM_DRIVER_PASSWORD=${ZDM_DRIVER_PASSWORD:-$ZDM_TARGET_PASSWORD}
  export ZDM_DRIVER_KEYSPACE=${ZDM_DRIVER_KEYSPACE:-drivers_${name}_$(printf '%08x' $((RANDOM * 32768 + RANDOM)))}
  case $name in
    java) exec java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$OUT/java/classes:$(cat "$OUT/java/classpath")" Conformance ;;
    go) exec "$OUT/go/conformance" ;;
    node) NODE_PATH=$OUT/node/node_modules exec node "$SRC/node/conformance.js" ;;
    python) exec "$OUT/python/bin/python" "$SRC/python/conformance.py" ;;
    cqlsh) CQLSH=$(cqlsh_bin) exec bash "$SRC/cqlsh/conformance.sh" ;;
  esac
}

case ${1:-} in
  install) shift; install "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: scripts/drivers.sh install [java|go|node|python|cqlsh ...] | run NAME" ;;
esac
