#!/usr/bin/env bash
# Runner benchmark: what the runner itself costs per task as the fleet grows, with no SSH and
# no sandbox, so the figures are the runner's own work (variables, `hostvars`, templates,
# scheduling) rather than the network's.
#
#   scripts/bench-runner-hosts.sh     # appends a section to bench-results/runner-hosts.md
#
# For each fleet size it writes an inventory of N hosts with `ansible_connection: local` (a few
# host vars each, group vars with a templated one) and a playbook of five cheap tasks
# (`set_fact`, `debug` reading another host through `hostvars`, `command: true`, a registered
# `command`, `debug` reading another host's registered result), runs the built zdm-run on it at
# -f FORKS under /usr/bin/time, and appends wall seconds, CPU seconds (user + system) and peak
# RSS per size, with the commit measured and the load average before and after (the machine is
# shared, so wall seconds alone mislead). A run that passes BENCH_TIMEOUT seconds is stopped, and
# one that needs more than BENCH_MEM_MB of address space aborts (the machine is shared: a
# runner whose memory grows with hosts² must not take it all); both are recorded as such.
# Inputs and logs stay under target/runner-hosts-bench/.
#
# Settings (environment): BENCH_SIZES ("100 300 1000"), BENCH_FORKS (50), BENCH_TIMEOUT (300),
# BENCH_MEM_MB (4096),
# BENCH_PROFILE (release; `dev` uses the debug build), BENCH_BUILD=0 (use the binary as built),
# BENCH_LABEL (a word on what is measured, e.g. "before"), BENCH_OUT (the report, default
# bench-results/runner-hosts.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${BENCH_SIZES:-100 300 1000}
FORKS=${BENCH_FORKS:-50}
TIMEOUT=${BENCH_TIMEOUT:-300}
MEM_MB=${BENCH_MEM_MB:-4096}
PROFILE=${BENCH_PROFILE:-release}
LABEL=${BENCH_LABEL:-}
OUT=${BENCH_OUT:-$ROOT/bench-results/runner-hosts.md}
WORK=$ROOT/target/runner-hosts-bench

log() { echo "[bench-runner-hosts] $*" >&2; }
die() { log "error: $*"; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

[[ -x /usr/bin/time ]] || die "needs GNU time at /usr/bin/time (apt-get install time)"
case $PROFILE in
  release) BIN=$ROOT/target/release/zdm-run; flags=(--release) ;;
  dev | debug) BIN=$ROOT/target/debug/zdm-run; flags=() ;;
  *) die "BENCH_PROFILE must be release or dev" ;;
esac
if [[ ${BENCH_BUILD:-1} != 0 ]]; then
  (cd "$ROOT" && cargo build "${flags[@]}" --bin zdm-run)
fi
[[ -x $BIN ]] || die "no $BIN: build it first"
mkdir -p "$WORK" "$(dirname "$OUT")"

# One fleet of $1 hosts: inventory (hosts.yml + group_vars/fleet.yml) and the playbook.
write_fleet() {
  local n=$1 dir=$WORK/n$1 i
  rm -rf "$dir" && mkdir -p "$dir/inventory/group_vars"
  {
    echo "all:"
    echo "  children:"
    echo "    fleet:"
    echo "      hosts:"
    for ((i = 1; i <= n; i++)); do
      echo "        h$i: {ansible_connection: local, bench_port: $((9000 + i)), bench_rack: r$((i % 8))}"
    done
  } >"$dir/inventory/hosts.yml"
  cat >"$dir/inventory/group_vars/fleet.yml" <<'EOF'
bench_dc: dc1
bench_url: "http://{{ inventory_hostname }}:{{ bench_port }}/health"
bench_tags: [a, b, c]
EOF
  cat >"$dir/play.yml" <<'EOF'
- hosts: fleet
  gather_facts: false
  tasks:
    - name: set a fact
      set_fact:
        bench_fact: "{{ inventory_hostname }}-{{ bench_rack }}"
    - name: read the first host's fact through hostvars
      debug:
        msg: "{{ hostvars[groups['fleet'] | first]['bench_fact'] }} {{ hostvars[inventory_hostname]['bench_url'] }}"
    - name: a cheap command
      command: "true"
    - name: register a result
      command: echo hi
      register: bench_echo
    - name: read the last host's result through hostvars
      debug:
        msg: "{{ hostvars[groups['fleet'] | last]['bench_echo']['stdout'] }}"
EOF
}

# The value of one `/usr/bin/time -v` field.
field() { sed -n "s/^[[:space:]]*$1: //p" "$2"; }

commit=$(git -C "$ROOT" rev-parse --short HEAD)
dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no -- src proxy Cargo.toml Cargo.lock)
[[ -n $dirty ]] && commit="$commit+uncommitted changes"
rows=()
for n in $SIZES; do
  write_fleet "$n"
  dir=$WORK/n$n
  before=$(load)
  log "$n hosts ..."
  set +e
  (
    ulimit -v $((MEM_MB * 1024))
    exec /usr/bin/time -v -o "$dir/time.txt" timeout "$TIMEOUT" \
      "$BIN" -i "$dir/inventory" -f "$FORKS" "$dir/play.yml"
  ) >"$dir/run.log" 2>&1
  rc=$?
  set -e
  after=$(load)
  wall=$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)' "$dir/time.txt")
  cpu=$(awk -v u="$(field 'User time (seconds)' "$dir/time.txt")" \
    -v s="$(field 'System time (seconds)' "$dir/time.txt")" 'BEGIN { printf "%.1f", u + s }')
  rss=$(awk -v k="$(field 'Maximum resident set size (kbytes)' "$dir/time.txt")" \
    'BEGIN { printf "%.0f", k / 1024 }')
  secs=$(awk -v t="$wall" 'BEGIN { n = split(t, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.1f", s }')
  if grep -q 'memory allocation of' "$dir/run.log"; then
    result="aborted: past the ${MEM_MB} MiB memory cap"
  elif [[ $rc == 124 ]]; then
    result="stopped after ${TIMEOUT} s"
  elif [[ $rc == 0 ]]; then
    result=ok
  else
    result="exit $rc (see target/runner-hosts-bench/n$n/run.log)"
  fi
  log "$n hosts: $secs s, $cpu CPU s, $rss MiB, $result"
  rows+=("| $n | $secs | $cpu | $rss | $before | $after | $result |")
done

if [[ ! -s $OUT ]]; then
  cat >"$OUT" <<'EOF'
# Runner cost per task against fleet size

Written by `scripts/bench-runner-hosts.sh`: N hosts with `ansible_connection: local` (three
host vars each, three group vars, one of them templated), a playbook of five cheap tasks
(`set_fact`; `debug` of another host's fact through `hostvars`; `command: true`; a registered
`command: echo hi`; `debug` of another host's registered result through `hostvars`), zdm-run
at `-f 50`. Wall seconds, CPU seconds (user + system) and peak RSS of the zdm-run process, as
`/usr/bin/time -v` reports them. The machine has 2 CPUs shared with other work (see the load
averages), so the figures are noisy: compare CPU seconds and RSS rather than wall seconds.
EOF
fi
{
  echo
  echo "## $(date -u '+%Y-%m-%d %H:%M') UTC, commit $commit${LABEL:+ ($LABEL)}, $PROFILE build"
  echo
  echo "| hosts | seconds | CPU seconds | peak RSS MiB | load before | load after | result |"
  echo "|---:|---:|---:|---:|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >>"$OUT"
log "appended to $OUT"
