#!/usr/bin/env bash
# The main job, end to end on this machine. For now: bring the sandbox up (two real Cassandra
# clusters and the proxy host fleet) and show that every part of it is healthy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/sandbox.sh up
echo
scripts/sandbox.sh status
echo
for cluster in origin target; do
  echo "== $cluster: a real CQL query with its own credentials"
  scripts/sandbox.sh cqlsh "$cluster" -e "SELECT cluster_name, release_version, data_center FROM system.local"
done
# shellcheck disable=SC1091
source .sandbox/env
for host in $SANDBOX_HOST_NAMES; do
  printf '== %s over ssh: ' "$host"
  ssh -F "$SANDBOX_SSH_CONFIG" "$host" 'echo "$(hostname) $(ip -4 -o addr show dev eth0 | awk "{print \$4}") install root $(ls -d /opt/zdm-proxy)"'
done
echo
echo "sandbox is up; stop it with: scripts/sandbox.sh down"
