#!/usr/bin/env bash
# The main job, end to end on this machine: a whole zero-downtime migration under a live
# client workload.
#
#   1. bring the sandbox up (two real Cassandra clusters and three proxy hosts over SSH)
#   2. build zdm-run, zdm-proxy and the demo client
#   3. load sample data (keyspace zdm_demo) into origin; its schema is created on both clusters
#   4. start a client workload writing and reading through the three proxies
#   5. preflight, phases 1 to 4, a rollback to phase 1, and forward again (2, 3, 4)
#   6. stop the workload, cut over (phase 5: proxies retired), show the gate results
#      (`zdm-run status`) and the workload's failed requests and lost writes
#
# Exits non-zero if any step fails, or if the workload saw a failed request or a lost write.
# ZDM_DEMO_OBSERVE_SECONDS sets the health gates' observation window (default 10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

observe=${ZDM_DEMO_OBSERVE_SECONDS:-10}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ZDM_SANDBOX_ENV names a sandbox that is already up (as for the tests); else bring up this
# checkout's own.
if [[ -n ${ZDM_SANDBOX_ENV:-} ]]; then
  step "sandbox: using $ZDM_SANDBOX_ENV"
  sandbox_env=$ZDM_SANDBOX_ENV
else
  step "sandbox up"
  scripts/sandbox.sh up
  sandbox_env=.sandbox/env
fi
export ZDM_SANDBOX_ENV=$sandbox_env
# shellcheck disable=SC1090
source "$sandbox_env"
demo_dir=$SANDBOX_DIR/demo
inventory=$demo_dir/inventory

step "build zdm-run, zdm-proxy and the demo client"
cargo build --quiet -p zdm-proxy -p zdm-run -p zdm-tools --bins
zdm_run=target/debug/zdm-run
workload_bin=target/debug/zdm-demo-workload

# The sandbox is shared with the test suite: take the locks its fleet tests take, in the same
# order, for the whole demo: the deploy tests' lock (nobody else deploys to /opt/zdm-proxy),
# then shared the proxy tests' cluster lock (no test stops a cluster) and the SSH tests' fault
# lock (no test cuts a host or stops its sshd).
# The lock files are those of testkit/src/locks.rs (all in /tmp, whatever TMPDIR says).
exec 7>/tmp/zdm-run-deploy-tests.lock 8>/tmp/zdm-proxy-tests.lock 9>/tmp/zdm-run-ssh-tests-faults.lock
flock 7
flock -s 8
flock -s 9

# A migration of its own: the state file lives beside the inventory, so a fresh copy of the
# generated inventory starts the demo at "not started".
rm -rf "$demo_dir"
mkdir -p "$inventory"
cp "$SANDBOX_INVENTORY/hosts.yml" "$inventory/hosts.yml"

workload_pid=
stop_file=$demo_dir/stop-workload
cleanup() {
  if [[ -n $workload_pid ]] && kill -0 "$workload_pid" 2>/dev/null; then
    touch "$stop_file"
    wait "$workload_pid" || true
  fi
}
trap cleanup EXIT

run() {
  step "zdm-run $*"
  "$zdm_run" -i "$inventory" "$@" -e zdm_keyspaces=zdm_demo -e "zdm_observe_seconds=$observe"
}

step "sample data: zdm_demo in origin"
# A rerun starts from scratch: drop what an earlier demo left.
"$workload_bin" load --fresh --customers 500

run playbooks/preflight.yml
run playbooks/phase1.yml --check
run playbooks/phase1.yml

step "client workload through the proxies ($SANDBOX_HOSTS), running throughout"
"$workload_bin" run --workers 4 --rate 10 --stop-file "$stop_file" >"$demo_dir/workload.log" 2>&1 &
workload_pid=$!
sleep 5
kill -0 "$workload_pid" || { cat "$demo_dir/workload.log"; exit 1; }

run playbooks/phase2.yml
run playbooks/phase3.yml
run playbooks/phase4.yml
run playbooks/rollback.yml
# After a rollback, moving on starts again at phase 2's consistency gate.
run playbooks/phase2.yml
run playbooks/phase3.yml
run playbooks/phase4.yml

step "stop the workload and check every acknowledged write on both clusters"
touch "$stop_file"
workload_rc=0
wait "$workload_pid" || workload_rc=$?
workload_pid=

step "cutover: the clients (stopped) would now connect to target; retire the proxies"
run playbooks/phase5.yml -e zdm_confirm_cutover=yes

step "zdm-run status (gate results)"
"$zdm_run" status -i "$inventory"

step "workload"
cat "$demo_dir/workload.log"
if ((workload_rc != 0)); then
  echo "DEMO FAILED: the workload saw failed requests or lost writes (exit $workload_rc)"
  exit 1
fi
echo
echo "demo passed: every phase gate passed, 0 failed requests, 0 lost writes"
