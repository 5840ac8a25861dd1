#!/usr/bin/env bash
# Fan-out benchmark: how long a large fleet takes, next to ansible-core on the same fleet.
#
#   scripts/bench-fleet.sh            # writes bench-results/fleet-fanout.md
#   BENCH_SKIP_THREE=1 BENCH_SKIP_ANSIBLE=1 BENCH_OUT=/tmp/deploy.md scripts/bench-fleet.sh
#                                     # the deploy rows alone, the committed figures untouched
#
# It brings up a second, fleet-only sandbox (its own hosts, network and directory, beside the
# shared sandbox, which it only reads: the clusters' addresses and credentials for the real
# deploy), then measures on it:
#   1. a three-task playbook (gather facts, a command, a copy) at -f FORKS with zdm-run;
#   2. the same playbook with ansible-core (pip-installed into a throwaway virtualenv under
#      /tmp, never a project dependency);
#   3. playbooks/deploy.yml --check, then a real playbooks/deploy.yml, on the fresh fleet;
# with the load average before and after each and the CPU seconds the run used (the machine is
# shared, so wall seconds alone mislead), and takes the fleet down however it ends. Each log
# line under target/fleet-bench/ starts with the seconds since its run began.
#
# Settings (environment): BENCH_HOSTS (100), BENCH_FORKS (50), BENCH_PROFILE (release; `dev`
# reuses the debug build), BENCH_BUILD=0 (use the binaries as built), BENCH_SKIP_THREE=1,
# BENCH_SKIP_ANSIBLE=1, BENCH_SKIP_DEPLOY=1, BENCH_ZDM_ARGS (more zdm-run arguments for the
# deploy runs, e.g. -v), BENCH_PROXY (the zdm-proxy binary the deploy ships, default the one
# built beside zdm-run), BENCH_OUT (the report, default bench-results/fleet-fanout.md),
# BENCH_NET (10.213.3), BENCH_PREFIX (zfo), BENCH_ANSIBLE ('ansible-core>=2.19,<2.20').
# Needs root (network namespaces, like the sandbox) and the shared sandbox up (for deploy).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOSTS=${BENCH_HOSTS:-100}
FORKS=${BENCH_FORKS:-50}
PROFILE=${BENCH_PROFILE:-release}
NET=${BENCH_NET:-10.213.3}
PREFIX=${BENCH_PREFIX:-zfo}
ANSIBLE_REQ=${BENCH_ANSIBLE:-ansible-core>=2.19,<2.20}
WORK=$ROOT/target/fleet-bench
SB=$WORK/sandbox
VENV=${BENCH_VENV:-/tmp/zdm-bench-ansible-venv}
OUT=${BENCH_OUT:-$ROOT/bench-results/fleet-fanout.md}
SHARED_INV=$ROOT/.sandbox/inventory/hosts.yml

log() { echo "[bench-fleet] $*" >&2; }
die() { log "error: $*"; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

sandbox() {
  ZDM_SANDBOX_NET=$NET ZDM_SANDBOX_PREFIX=$PREFIX ZDM_SANDBOX_DIR=$SB ZDM_SANDBOX_HOSTS=$HOSTS \
    "$ROOT/scripts/sandbox.sh" "$@"
}

[[ $(id -u) == 0 ]] || die "needs root (the fleet lives in network namespaces)"
mkdir -p "$WORK" "$ROOT/bench-results"

case $PROFILE in
  release) BIN=$ROOT/target/release ;;
  dev | debug) BIN=$ROOT/target/debug ;;
  *) die "BENCH_PROFILE must be release or dev" ;;
esac
PROXY=${BENCH_PROXY:-$BIN/zdm-proxy}
flags=()
[[ $PROFILE == release ]] && flags=(--release)
if [[ ${BENCH_BUILD:-1} == 1 ]]; then
  (cd "$ROOT" && cargo build "${flags[@]}" --bin zdm-run) >&2
  [[ -n ${BENCH_PROXY:-} ]] || (cd "$ROOT" && cargo build "${flags[@]}" -p zdm-proxy --bin zdm-proxy) >&2
fi
[[ -x $BIN/zdm-run ]] || die "no zdm-run in $BIN"
[[ -x $PROXY ]] || die "no zdm-proxy at $PROXY"
PROXY=$(realpath "$PROXY")

trap 'log "taking the bench fleet down"; sandbox down >&2 || true' EXIT
# A fresh fleet: `down` keeps each host's /opt/zdm-proxy, so a previous bench's deploy would
# still be there (binaries, configs, and pid files that a recycled pid can make look alive).
sandbox down >&2
rm -rf "$SB"/hosts/*/opt "$SB"/hosts/*/tmp
sandbox up --fleet-only >&2

# The proxies of the real deploy reach the shared sandbox's clusters through this machine:
# each host gets a route to the shared sandbox's /24 via its own bridge address.
SHARED_NET=$(sed -n 's/^ *origin_contact_points: "\([0-9.]*\)\.[0-9]*"$/\1/p' "$SHARED_INV" 2>/dev/null || true)
for ((i = 1; i <= HOSTS; i++)); do
  [[ -z $SHARED_NET ]] || ip -n "$PREFIX-h$i" route replace "$SHARED_NET.0/24" via "$NET.1"
done

# The inventories: the fleet alone (three tasks), and the fleet with the shared sandbox's
# cluster variables (deploy). Written 0600: the second holds passwords.
# The fleet opts into the cheaper key exchange (see docs/runner.md, "SSH fleets"); BENCH_KEX=""
# measures with ssh's own defaults.
KEX=${BENCH_KEX-^curve25519-sha256,curve25519-sha256@libssh.org}
write_inventory() {
  local file=$1 with_clusters=$2 i
  (
    umask 077
    {
      echo "all:"
      if [[ $with_clusters == yes ]]; then
        [[ -f $SHARED_INV ]] || die "no $SHARED_INV: the shared sandbox must be up for the deploy"
        sed -n '/^  vars:/,/^  children:/p' "$SHARED_INV" | sed '$d'
      fi
      echo "  children:"
      echo "    proxies:"
      echo "      vars:"
      echo "        ansible_user: root"
      echo "        zdm_proxy_binary_src: \"$PROXY\""
      [[ -n $KEX ]] && echo "        zdm_ssh_kex_algorithms: \"$KEX\""
      echo "        ansible_ssh_private_key_file: \"$SB/ssh/id_ed25519\""
      echo "        ansible_ssh_common_args: \"-o UserKnownHostsFile=$SB/ssh/known_hosts -o StrictHostKeyChecking=yes\""
      echo "      hosts:"
      for ((i = 1; i <= HOSTS; i++)); do
        echo "        $PREFIX-h$i:"
        echo "          ansible_host: \"$NET.$((10 + i))\""
      done
    } >"$file"
  )
}
write_inventory "$WORK/fleet.yml" no
write_inventory "$WORK/deploy.yml" yes

cat >"$WORK/three-tasks.yml" <<'EOF'
- hosts: proxies
  gather_facts: true
  tasks:
    - name: run a command
      command: uname -a
    - name: copy a file
      copy:
        content: "fan-out {{ inventory_hostname }}\n"
        dest: /tmp/fanout.txt
        mode: "0644"
EOF

# The proxy deployed is the zdm-proxy beside the zdm-run that runs (deploy.yml's default).
# Runs a command, keeps its output under $WORK (each line stamped with the seconds since the
# start), and prints "seconds|cpu seconds|load before|load after|rc". CPU seconds are user +
# system of the command and the processes it waited for (ssh clients, not the hosts' sshd).
measure() {
  local name=$1 before start rc=0
  shift
  before=$(load)
  start=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$WORK/$name.cpu" "$@" 2>&1 |
    perl -MTime::HiRes=time -pe 'BEGIN { $t0 = time } printf "%8.3f ", time - $t0' >"$WORK/$name.log" ||
    rc=${PIPESTATUS[0]}
  printf '%.1f|%s|%s|%s|%s\n' "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$(tail -n1 "$WORK/$name.cpu" | awk '{ printf "%.1f", $1 + $2 }')" "$before" "$(load)" "$rc"
}

row() {
  local what=$1 m=$2 secs cpu before after rc
  IFS='|' read -r secs cpu before after rc <<<"$m"
  local status=ok
  [[ $rc == 0 ]] || status="exit $rc (see target/fleet-bench/)"
  echo "| $what | $secs | $cpu | $before | $after | $status |"
}

cell() { [[ $2 == *'|'* ]] && row "$1" "$2" || echo "| $1 | $2 | | | | |"; }
# Rewritten after every measurement: an interrupted run keeps what it measured.
report() {
  {
    echo "# Fleet fan-out benchmark"
    echo
    echo "Written by \`scripts/bench-fleet.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): a fleet-only sandbox of $HOSTS hosts"
    echo "(each its own network namespace and sshd, all on this machine's $(nproc) CPUs, which other"
    echo "sessions may share: see the load averages), zdm-run built with the \`$PROFILE\` profile, -f $FORKS, key exchange: ${KEX:-the ssh defaults}."
    echo "The deploy rows ship $(basename "$(dirname "$PROXY")")/$(basename "$PROXY") ($(stat -c %s "$PROXY") bytes)."
    echo "The three-task playbook is gather facts, \`command: uname -a\`, \`copy\` of a short text."
    echo
    echo "| run | seconds | CPU seconds | load before | load after | result |"
    echo "|---|---:|---:|---|---|---|"
    cell "three tasks, zdm-run" "$ZDM"
    cell "three tasks, ${ANS_VERSION:-ansible-core}" "$ANS"
    cell "deploy.yml --check, fresh fleet" "$CHECK"
    cell "deploy.yml, fresh fleet" "$DEPLOY"
    echo
    echo "Logs of each run: target/fleet-bench/*.log."
  } >"$OUT"
}

ZDM="skipped (BENCH_SKIP_THREE)"
ANS="skipped (BENCH_SKIP_ANSIBLE)"
ANS_VERSION=
CHECK="skipped (BENCH_SKIP_DEPLOY)"
DEPLOY=$CHECK
if [[ -z ${BENCH_SKIP_THREE:-} ]]; then
  log "three tasks on $HOSTS hosts at -f $FORKS with zdm-run"
  ZDM=$(measure zdm-run-three "$BIN/zdm-run" -i "$WORK/fleet.yml" "$WORK/three-tasks.yml" -f "$FORKS")
  report
fi

if [[ -z ${BENCH_SKIP_ANSIBLE:-} ]]; then
  if [[ ! -x $VENV/bin/ansible-playbook ]]; then
    log "installing $ANSIBLE_REQ into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$ANSIBLE_REQ" >&2
  fi
  ANS_VERSION=$("$VENV/bin/ansible-playbook" --version 2>/dev/null | sed -n 1p)
  log "the same playbook with $ANS_VERSION"
  ANS=$(ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
    ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_LOCAL_TEMP=$WORK/ansible-tmp \
    measure ansible-three "$VENV/bin/ansible-playbook" -i "$WORK/fleet.yml" "$WORK/three-tasks.yml" -f "$FORKS")
  report
fi

if [[ -z ${BENCH_SKIP_DEPLOY:-} ]]; then
  log "deploy.yml --check on the fresh fleet"
  # shellcheck disable=SC2086 # BENCH_ZDM_ARGS is a list of words
  CHECK=$(measure deploy-check "$BIN/zdm-run" -i "$WORK/deploy.yml" "$ROOT/playbooks/deploy.yml" --check -f "$FORKS" ${BENCH_ZDM_ARGS:-})
  report
  log "deploy.yml on the fresh fleet"
  # shellcheck disable=SC2086
  DEPLOY=$(measure deploy "$BIN/zdm-run" -i "$WORK/deploy.yml" "$ROOT/playbooks/deploy.yml" -f "$FORKS" ${BENCH_ZDM_ARGS:-})
  report
fi
cat "$OUT"
