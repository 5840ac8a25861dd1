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
cleanup() {
  if ((started_sandbox)) && [[ ${ZDM_KEEP_SANDBOX:-0} != 1 ]]; then
    scripts/sandbox.sh down || true
  fi
}
trap cleanup EXIT

scripts/sandbox.sh up
scripts/sandbox.sh status
# The driver suite's toolchains and programs (tests/drivers.rs runs them); cached after the
# first run.
scripts/drivers.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast -- --test-threads="${ZDM_TEST_THREADS:-2}"
