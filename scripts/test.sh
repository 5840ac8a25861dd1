#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the sandbox needs, starts it (real
# Cassandra origin and target, the SSH fleet), checks formatting and lints, runs every test of
# the workspace against it, and stops the sandbox again if this script was the one to start it
# (ZDM_KEEP_SANDBOX=1 leaves it running for the next run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started_sandbox=0
if ! scripts/sandbox.sh status >/dev/null 2>&1 || [[ ! -f .sandbox/env ]]; then
  started_sandbox=1
fi
cleanup() {
  if ((started_sandbox)) && [[ ${ZDM_KEEP_SANDBOX:-0} != 1 ]]; then
    scripts/sandbox.sh down || true
  fi
}
trap cleanup EXIT

scripts/sandbox.sh up
scripts/sandbox.sh status

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads="${ZDM_TEST_THREADS:-2}"
