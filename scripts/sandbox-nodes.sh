#!/usr/bin/env bash
# The multi-node sandbox tests/cluster_nodes.rs runs against: a second, minimal instance of
# scripts/sandbox.sh beside the shared one (its own directory .sandbox-nodes, its own /24
# 10.213.5.0 and names zmn-*), with a 3-node origin (one data center, `datacenter1`) and a
# 2-node target in two data centers (dc1, dc2), and a fleet of three proxy hosts.
#
#   scripts/sandbox-nodes.sh up      start it (idempotent); ~5 GiB for five nodes
#   scripts/sandbox-nodes.sh down    stop it
#   scripts/sandbox-nodes.sh VERB .. any other verb of scripts/sandbox.sh on this instance
#                                    (status, cassandra-stop origin 2, cqlsh target, ...)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

export ZDM_SANDBOX_DIR=${ZDM_NODES_SANDBOX_DIR:-$ROOT/.sandbox-nodes}
export ZDM_SANDBOX_NET=10.213.5 ZDM_SANDBOX_PREFIX=zmn ZDM_SANDBOX_HOSTS=3
export ZDM_SANDBOX_ORIGIN_NODES=3 ZDM_SANDBOX_TARGET_NODES=2
export ZDM_SANDBOX_ORIGIN_DCS='' ZDM_SANDBOX_TARGET_DCS='dc1 dc2'
# Five nodes beside the shared sandbox's two: the smallest heap that runs the tests' load.
export ZDM_SANDBOX_HEAP=${ZDM_SANDBOX_HEAP:-512m}

if [[ ${1:-} == up ]]; then
  exec "$ROOT/scripts/sandbox.sh" up --minimal
fi
exec "$ROOT/scripts/sandbox.sh" "$@"
