#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the sandbox needs, starts it (real
# Cassandra origin and target, the SSH fleet), checks formatting and lints, runs every test of
# the workspace against it, and stops the sandbox again if this script was the one to start it
# (ZDM_KEEP_SANDBOX=1 leaves it running for the next run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A sandbox that is up has its env file (`down` removes it): only a sandbox this script brings
# up is taken down again, never one the user started, even if part of it is unhealthy.
started_sandbox=0
[[ -f .sandbox/env ]] || started_sandbox=1
# The same for the multi-node sandbox (scripts/sandbox-nodes.sh, for tests/cluster_nodes.rs).
started_nodes=0
[[ -f .sandbox-nodes/env ]] || started_nodes=1
nodes_pid=
nodes_down() {
  [[ -z $nodes_pid ]] || wait "$nodes_pid" 2>/dev/null || true
  nodes_pid=
  if ((started_nodes)) && [[ ${ZDM_KEEP_SANDBOX:-0} != 1 ]]; then
    scripts/sandbox-nodes.sh down || true
    started_nodes=0
  fi
}
cleanup() {
  nodes_down
  if ((started_sandbox)) && [[ ${ZDM_KEEP_SANDBOX:-0} != 1 ]]; then
    scripts/sandbox.sh down || true
  fi
}
trap cleanup EXIT

scripts/sandbox.sh up
scripts/sandbox.sh status
# The multi-node sandbox's five nodes join one after another, which takes minutes: they start
# in the background while the drivers install and the lints run.
nodes_log=$(mktemp)
scripts/sandbox-nodes.sh up >"$nodes_log" 2>&1 &
nodes_pid=$!
# The driver suite's toolchains and programs (tests/drivers.rs runs them); cached after the
# first run.
scripts/drivers.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# The multi-node tests run first, on their own, and their sandbox (~5 GiB) is stopped before
# the rest of the suite; the workspace run below skips them by name.
echo "== multi-node tests (tests/cluster_nodes.rs)"
if ! wait "$nodes_pid"; then
  nodes_pid=
  cat "$nodes_log" >&2
  echo "scripts/sandbox-nodes.sh up failed" >&2
  exit 1
fi
nodes_pid=
scripts/sandbox-nodes.sh status
cargo build -p zdm-proxy --bin zdm-proxy
nodes_rc=0
cargo test --test cluster_nodes -- --test-threads=1 || nodes_rc=$?
nodes_down

echo "== cargo test"
rc=0
cargo test --workspace --no-fail-fast -- --test-threads="${ZDM_TEST_THREADS:-2}" \
  --skip losing_an_origin_node_under_load --skip target_local_datacenter_keeps_the_proxies || rc=$?
((nodes_rc == 0)) || echo "the multi-node tests failed (see '== multi-node tests' above)" >&2
((rc == 0 && nodes_rc == 0))
