#!/usr/bin/env bash
# The local sandbox every test and the demo run against: two real single-node Apache Cassandra
# clusters (origin and target) and a fleet of proxy hosts, each a network namespace with its own
# address, its own sshd and its own private /opt/zdm-proxy.
#
#   scripts/sandbox.sh up            start everything (idempotent), write .sandbox/env + inventory
#   scripts/sandbox.sh up --fleet-only  only the network and the SSH hosts (see ZDM_SANDBOX_PREFIX)
#   scripts/sandbox.sh down [--purge] stop everything we started, by pid; remove the namespaces
#   scripts/sandbox.sh status        what runs, with each Cassandra node's memory
#   scripts/sandbox.sh cqlsh origin|target [N] [cqlsh args]   (N: that node, default 1)
#   scripts/sandbox.sh spark-up|spark-down  start/stop the Spark cluster alone (`up` starts it,
#                                    `down` stops it): master spark://10.213.0.1:7077, a worker on
#                                    zdm-h1 and zdm-h2
#   scripts/sandbox.sh users         add the sudo-capable operator account zdmops to a running
#                                    sandbox (`up` does it too; `down --purge` removes it)
#   scripts/sandbox.sh monitoring    add the monitoring host zdm-mon (10.213.0.9, group
#                                    `monitoring`) and the prometheus package to a running
#                                    sandbox, touching nothing else (`up` does it too)
#
# Fault switches for tests:
#   cut HOST | restore HOST          take a proxy host off the network and bring it back
#   sshd-stop HOST | sshd-start HOST
#   cassandra-stop origin|target [N] | cassandra-start origin|target [N]
#                                    stop / start node N of a cluster (default 1)
#   rekey HOST | trust HOST          give a host a new host key (not trusted) / trust its key
#   tls-apply                        (re)make missing certificates, rewrite both nodes' TLS
#                                    config and restart them one at a time (for a running sandbox)
#
# TLS: `up` makes a CA and certificates under .sandbox/tls/ and starts both nodes with client
# encryption enabled but optional, so the native port takes TLS and plain clients alike.
#
# Settings (environment): ZDM_SANDBOX_HOSTS (fleet size, default 3), ZDM_SANDBOX_HEAP (per node,
# default 640m), ZDM_SANDBOX_DIR (default <repo>/.sandbox), ZDM_CACHE_DIR (default
# ~/.cache/zdm-run: the resolved Cassandra classpath and the cqlsh virtualenv live there so a
# second run is fast), ZDM_SANDBOX_NET (the hosts' /24, default 10.213.0), ZDM_SANDBOX_PREFIX
# (names: PREFIX-h1.., PREFIX-br0; default zdm).
#
# Multi-node clusters (read by `up`, remembered in $SB/layout for every later verb):
# ZDM_SANDBOX_ORIGIN_NODES / ZDM_SANDBOX_TARGET_NODES (nodes per cluster, default 1; node 1 is
# NET.2 / NET.3, origin's node N is NET.(200+N), target's NET.(220+N)), ZDM_SANDBOX_ORIGIN_DCS /
# ZDM_SANDBOX_TARGET_DCS (each node's data center in node order, e.g. "dc1 dc2"; unset: one data
# center, `datacenter1`). `up --minimal` starts the clusters and the fleet only (no Spark, no
# monitoring host, no operator account), for a second instance beside the running one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SB=${ZDM_SANDBOX_DIR:-$ROOT/.sandbox}
CACHE=${ZDM_CACHE_DIR:-$HOME/.cache/zdm-run}
# What `up` was given is remembered in the sandbox's own directory ($SB/layout, see
# save_layout): a later verb given only ZDM_SANDBOX_DIR (a fault switch from a test) acts on
# that instance as it was made. The environment still wins.
SAVED_NET='' SAVED_PREFIX='' SAVED_HOSTS='' SAVED_HEAP=''
ORIGIN_NODES=1 TARGET_NODES=1 ORIGIN_DCS='' TARGET_DCS=''
# shellcheck disable=SC1091
[[ -f $SB/layout ]] && source "$SB/layout"
FLEET_SIZE=${ZDM_SANDBOX_HOSTS:-${SAVED_HOSTS:-3}}
HEAP=${ZDM_SANDBOX_HEAP:-${SAVED_HEAP:-640m}}
CASSANDRA_VERSION=5.0.6

# One /24 that lives only on this machine: the bridge in the root namespace (the control side)
# and one veth per proxy host namespace. Nothing outside the machine is ever addressed.
# ZDM_SANDBOX_NET and ZDM_SANDBOX_PREFIX exist for a second, fleet-only instance beside the
# running one (the `down` test): its own /24 and its own host, namespace and bridge names.
NET=${ZDM_SANDBOX_NET:-${SAVED_NET:-10.213.0}}
PREFIX=${ZDM_SANDBOX_PREFIX:-${SAVED_PREFIX:-zdm}}
[[ $PREFIX =~ ^[a-z]{1,4}$ ]] || { echo "[sandbox] error: ZDM_SANDBOX_PREFIX must be 1-4 lower-case letters" >&2; exit 1; }
[[ $NET =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "[sandbox] error: ZDM_SANDBOX_NET must be 10.X.Y (a /24 on this machine)" >&2; exit 1; }
# Proxy hosts are NET.11 onwards; extra Cassandra nodes NET.201 onwards.
((FLEET_SIZE >= 1 && FLEET_SIZE <= 189)) || { echo "[sandbox] error: ZDM_SANDBOX_HOSTS must be 1 to 189" >&2; exit 1; }
HP=$PREFIX-h # host names: zdm-h1, zdm-h2, ...
BRIDGE=$PREFIX-br0
CONTROL_IP=$NET.1
declare -A CLUSTER_IP=([origin]=$NET.2 [target]=$NET.3)
# Extra nodes live far above the proxy hosts (NET.11 onwards) and the monitoring host (NET.9).
declare -A EXTRA_NODE_BASE=([origin]=200 [target]=220)
INSTALL_ROOT=/opt/zdm-proxy

log() { printf '[sandbox] %s\n' "$*" >&2; }
die() { printf '[sandbox] error: %s\n' "$*" >&2; exit 1; }

# Every proxy host mounts a private /tmp over the machine's: a sandbox directory below /tmp would
# be invisible to the hosts' sshd (its config and keys live there), and `up` would never finish.
case $SB/ in
  /tmp/*) die "ZDM_SANDBOX_DIR ($SB) is below /tmp, which every proxy host replaces with its own; choose another directory" ;;
esac

host_index() { # zdm-h2 -> 2
  local name=$1
  [[ $name =~ ^$HP([0-9]+)$ ]] || die "unknown host '$name' (expected ${HP}1..$HP$FLEET_SIZE)"
  local i=${BASH_REMATCH[1]}
  ((i >= 1 && i <= FLEET_SIZE)) || die "unknown host '$name' (fleet has ${HP}1..$HP$FLEET_SIZE)"
  echo "$i"
}
# Hosts are numbered 1..FLEET_SIZE (the proxy hosts zdm-hN) or `mon`, the monitoring host.
MON=mon
MON_IP=$NET.9
host_name() { if [[ $1 == "$MON" ]]; then echo "$PREFIX-mon"; else echo "$HP$1"; fi; }
host_ip() { if [[ $1 == "$MON" ]]; then echo "$MON_IP"; else echo "$NET.$((10 + $1))"; fi; }
# Every host of the sandbox: the fleet, then the monitoring host.
all_hosts() {
  seq 1 "$FLEET_SIZE"
  echo "$MON"
}
# The hosts this sandbox runs: all of them, or the fleet alone for `up --minimal`.
sandbox_hosts() { if [[ -f $SB/minimal ]]; then seq 1 "$FLEET_SIZE"; else all_hosts; fi; }
check_cluster() { [[ $1 == origin || $1 == target ]] || die "unknown cluster '$1' (origin|target)"; }

# ---------------------------------------------------------------------------------------------
# Cluster layout: nodes per cluster and each node's data center. `up` takes it from the
# environment (else from the last `up`) and writes it to $SB/layout, so the fault switches,
# `status` and `down` of a later call know every node without being told again.

declare -A NODES DCS
load_layout() {
  NODES[origin]=${ZDM_SANDBOX_ORIGIN_NODES:-$ORIGIN_NODES}
  NODES[target]=${ZDM_SANDBOX_TARGET_NODES:-$TARGET_NODES}
  DCS[origin]=${ZDM_SANDBOX_ORIGIN_DCS-$ORIGIN_DCS}
  DCS[target]=${ZDM_SANDBOX_TARGET_DCS-$TARGET_DCS}
  local c n
  for c in origin target; do
    n=${NODES[$c]}
    [[ $n =~ ^[1-9]$ ]] || die "ZDM_SANDBOX_${c^^}_NODES must be 1 to 9 (got '$n')"
    DCS[$c]=$(tr ',' ' ' <<<"${DCS[$c]}" | xargs)
    if [[ -n ${DCS[$c]} ]]; then
      local names
      read -ra names <<<"${DCS[$c]}"
      ((${#names[@]} == n)) || die "ZDM_SANDBOX_${c^^}_DCS names ${#names[@]} data centers for $n nodes (one per node, in node order)"
      local d
      for d in "${names[@]}"; do [[ $d =~ ^[A-Za-z0-9_-]+$ ]] || die "ZDM_SANDBOX_${c^^}_DCS: bad data center name '$d'"; done
    fi
  done
}
save_layout() {
  mkdir -p "$SB"
  {
    echo "# Written by scripts/sandbox.sh up: how this sandbox was made."
    printf 'SAVED_NET=%s\nSAVED_PREFIX=%s\nSAVED_HOSTS=%s\nSAVED_HEAP=%s\n' "$NET" "$PREFIX" "$FLEET_SIZE" "$HEAP"
    printf 'ORIGIN_NODES=%s\nTARGET_NODES=%s\nORIGIN_DCS="%s"\nTARGET_DCS="%s"\n' \
      "${NODES[origin]}" "${NODES[target]}" "${DCS[origin]}" "${DCS[target]}"
  } >"$SB/layout.tmp"
  mv "$SB/layout.tmp" "$SB/layout"
}
node_count() { echo "${NODES[$1]}"; }
check_node() { # check_node CLUSTER N
  [[ $2 =~ ^[1-9]$ ]] && (($2 <= ${NODES[$1]})) || die "unknown node '$2' of $1 (it has nodes 1..${NODES[$1]})"
}
node_ip() { # node_ip CLUSTER N
  if (($2 == 1)); then echo "${CLUSTER_IP[$1]}"; else echo "$NET.$((${EXTRA_NODE_BASE[$1]} + $2))"; fi
}
node_ips() { local n; for ((n = 1; n <= ${NODES[$1]}; n++)); do node_ip "$1" "$n"; done; }
# The data center of node N: its name in the layout, or SimpleSnitch's `datacenter1`.
node_dc() {
  local names
  read -ra names <<<"${DCS[$1]}"
  if ((${#names[@]})); then echo "${names[$(($2 - 1))]}"; else echo datacenter1; fi
}
# One token per node (num_tokens 1), spread evenly over the Murmur3 ring; node 1 keeps token 0,
# which a single-node sandbox has always had. Bash arithmetic wraps at 64 bits, as the ring does.
node_token() {
  local step=$(((9223372036854775807 / ${NODES[$1]}) * 2))
  echo $((($2 - 1) * step))
}

# `grep -q` on a pipe would close it early and, with pipefail, fail the pipeline: read it whole.
has_addr() { # has_addr NETNS|"" DEV ADDRESS
  local out
  if [[ -n $1 ]]; then out=$(ip -n "$1" addr show dev "$2"); else out=$(ip addr show dev "$2"); fi
  [[ $out == *"inet $3/"* ]]
}
has_netns() { [[ $'\n'$(ip netns list | awk '{print $1}')$'\n' == *$'\n'"$1"$'\n'* ]]; }

# A daemon must not keep a file descriptor its starter happened to hold: a caller that ran us
# under `flock` (the tests' shared locks) would otherwise leave the lock held for as long as
# the daemon lives. Call it in the subshell that starts the daemon, never in the script itself.
close_inherited_fds() {
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Prerequisites: packages, Cassandra jars, cqlsh.

install_packages() {
  local missing=()
  command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  [[ -x /usr/lib/openssh/sftp-server ]] || missing+=(openssh-sftp-server)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v ip >/dev/null || missing+=(iproute2)
  command -v pgrep >/dev/null || missing+=(procps)
  command -v unshare >/dev/null || missing+=(util-linux)
  java17_bin >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v openssl >/dev/null || missing+=(openssl)
  # The tests' TLS client (the scylla driver's openssl feature) links against libssl.
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if ((${#missing[@]})); then
    log "installing packages: ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  install_prometheus
}

# The monitoring host runs Debian's Prometheus (playbooks/monitoring.yml starts it there). The
# hosts' namespaces have no route off the machine, so the package is installed here, in the
# root namespace; the playbook's `package` task then finds it installed. Its maintainer script
# would start a Prometheus in the root namespace: a policy-rc.d that refuses every start (unless
# the machine has one already) keeps it from doing so.
install_prometheus() {
  [[ $(dpkg-query -W -f='${Status}' prometheus 2>/dev/null) == *"ok installed" ]] && return 0
  log "installing packages: prometheus"
  local policy=/usr/sbin/policy-rc.d ours=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# scripts/sandbox.sh: no service starts while it installs prometheus\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    ours=1
  fi
  apt-get update -qq >/dev/null
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null || rc=$?
  [[ -z $ours ]] || rm -f "$policy"
  ((rc == 0)) || die "apt-get could not install prometheus"
}

# Cassandra 5.0 runs on JDK 11 or 17 only, and machines often have a newer default `java`:
# take a 17 explicitly (JAVA_HOME if it is one, else the distribution's), never whatever is
# first on PATH.
java17_bin() {
  local candidate
  for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} /usr/lib/jvm/java-17-openjdk-*/bin/java \
    /usr/lib/jvm/*17*/bin/java "$(command -v java || true)"; do
    [[ -x $candidate ]] || continue
    if "$candidate" -version 2>&1 | head -n1 | grep -Eq 'version "17[."]'; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# The classpath is resolved once per pom content; the jars themselves stay in ~/.m2.
cassandra_classpath() {
  local pom=$ROOT/scripts/sandbox/pom.xml
  local key
  key=$(sha256sum "$pom" | cut -c1-16)
  local cp_file=$CACHE/cassandra-$CASSANDRA_VERSION-$key.classpath
  if [[ ! -s $cp_file ]]; then
    log "resolving cassandra-all $CASSANDRA_VERSION from Maven Central (first run only)"
    mkdir -p "$CACHE"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp_file.tmp" >&2 \
      || die "maven could not resolve cassandra-all $CASSANDRA_VERSION"
    mv "$cp_file.tmp" "$cp_file"
  fi
  cat "$cp_file"
}

cqlsh_bin() {
  local venv=$CACHE/venv
  if [[ ! -x $venv/bin/cqlsh ]]; then
    log "installing cqlsh into $venv (first run only)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q cqlsh >&2 || die "pip could not install cqlsh"
  fi
  echo "$venv/bin/cqlsh"
}

# ---------------------------------------------------------------------------------------------
# Credentials: generated once per sandbox, different for each cluster, kept 0600.

ensure_credentials() {
  local f=$SB/cluster-credentials.env
  if [[ ! -s $f ]]; then
    umask 077
    {
      echo "ORIGIN_USERNAME=origin_admin"
      echo "ORIGIN_PASSWORD=origin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "TARGET_USERNAME=target_admin"
      echo "TARGET_PASSWORD=target-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } >"$f"
    umask 022
  fi
  chmod 600 "$f"
  # shellcheck disable=SC1090
  source "$f"
}
cluster_user() { local v=${1^^}_USERNAME; echo "${!v}"; }
cluster_password() { local v=${1^^}_PASSWORD; echo "${!v}"; }

# ---------------------------------------------------------------------------------------------
# Network: a bridge for the control side and the Cassandra nodes, a namespace per proxy host.

ensure_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip link set "$BRIDGE" up
  local addr
  for addr in "$CONTROL_IP" $(node_ips origin) $(node_ips target); do
    has_addr "" "$BRIDGE" "$addr" || ip addr add "$addr/24" dev "$BRIDGE"
  done
  local i
  for ((i = 1; i <= FLEET_SIZE; i++)); do ensure_host_network "$i"; done
}

# One host's namespace and its port on the bridge (also used for the monitoring host on its
# own, so adding it never touches a proxy host a test may have cut off).
ensure_host_network() {
  local i=$1 ns veth
  ns=$(host_name "$i")
  veth=$ns-br
  has_netns "$ns" || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE"
  fi
  ip link set "$veth" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  has_addr "$ns" eth0 "$(host_ip "$i")" ||
    ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
}

remove_network() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^($HP[0-9]+|$PREFIX-mon)$" || true); do
    ip link del "$ns-br" 2>/dev/null || true
    ip netns del "$ns"
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# TLS: one sandbox CA; a server certificate per cluster node, one for proxies, one for clients.
# Made once per sandbox (a missing file is made again); private keys and key stores are 0600.

declare -A CLUSTER_DNS=([origin]=origin.zdm.test [target]=target.zdm.test)
tls_dir() { echo "$SB/tls"; }

# tls_leaf NAME CN SAN EKU: a key and a certificate signed by the sandbox CA.
tls_leaf() {
  local name=$1 cn=$2 san=$3 eku=$4 dir
  dir=$(tls_dir)
  [[ -s $dir/$name.pem && -s $dir/$name.key ]] && return 0
  (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/$name.key" 2>/dev/null)
  cat >"$dir/$name.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = $eku
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -new -key "$dir/$name.key" -subj "/O=zdm-sandbox/CN=$cn" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext" "$dir/$name.p12" # a new key needs a new key store
}

ensure_tls() {
  local dir
  dir=$(tls_dir)
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [[ ! -s $dir/ca.pem || ! -s $dir/ca.key ]]; then
    log "making the sandbox TLS CA and certificates in $dir"
    rm -f "$dir"/*.pem "$dir"/*.key "$dir"/*.p12
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/ca.key" 2>/dev/null)
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 3650 -subj "/O=zdm-sandbox/CN=zdm sandbox CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.pem" 2>/dev/null
  fi
  local c
  for c in origin target; do
    tls_leaf "$c" "${CLUSTER_DNS[$c]}" "DNS:${CLUSTER_DNS[$c]}$(printf ', IP:%s' $(node_ips "$c"))" serverAuth
  done
  # Proxies in tests listen on 127.0.0.x; fleet proxies on the hosts' addresses.
  local san="DNS:localhost, DNS:proxy.zdm.test" i
  for ((i = 1; i <= 99; i++)); do san+=", IP:127.0.0.$i"; done
  for ((i = 1; i <= FLEET_SIZE; i++)); do san+=", IP:$(host_ip "$i")"; done
  tls_leaf proxy proxy.zdm.test "$san" serverAuth
  tls_leaf client zdm-sandbox-client "DNS:client.zdm.test" clientAuth
  # Cassandra's default SSL context factory reads PKCS#12 stores. Their password only guards
  # files that already sit in this 0700 directory next to the keys; it is kept 0600 all the same.
  [[ -s $dir/store-password ]] || (umask 077 && head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/store-password")
  local pw
  pw=$(cat "$dir/store-password")
  for c in origin target; do
    [[ -s $dir/$c.p12 ]] || (umask 077 && openssl pkcs12 -export -name "$c" -inkey "$dir/$c.key" -in "$dir/$c.pem" \
      -certfile "$dir/ca.pem" -passout "pass:$pw" -out "$dir/$c.p12")
  done
  if [[ ! -s $dir/truststore.p12 ]]; then
    keytool -importcert -noprompt -alias zdm-sandbox-ca -file "$dir/ca.pem" -storetype PKCS12 \
      -keystore "$dir/truststore.p12" -storepass "$pw" >/dev/null 2>&1 || die "keytool could not write $dir/truststore.p12"
  fi
  chmod 600 "$dir"/*.key "$dir"/*.p12 "$dir/store-password"
  chmod 644 "$dir"/*.pem
}

# Client encryption on the native port, optional: a connection that opens with a TLS
# handshake gets TLS, any other is served in plain, so plain clients and tests keep working.
cassandra_tls_options() {
  local cluster=$1 dir pw
  dir=$(tls_dir)
  pw=$(cat "$dir/store-password")
  cat <<EOF

# Written by scripts/sandbox.sh (TLS): encrypted and plain clients on the same port.
client_encryption_options:
  enabled: true
  optional: true
  keystore: $dir/$cluster.p12
  keystore_password: $pw
  truststore: $dir/truststore.p12
  truststore_password: $pw
  store_type: PKCS12
  require_client_auth: false
EOF
}

tls_env_lines() {
  local dir
  dir=$(tls_dir)
  cat <<EOF
SANDBOX_TLS_DIR=$dir
SANDBOX_TLS_CA=$dir/ca.pem
SANDBOX_TLS_ORIGIN_NAME=${CLUSTER_DNS[origin]}
SANDBOX_TLS_TARGET_NAME=${CLUSTER_DNS[target]}
SANDBOX_TLS_PROXY_CERT=$dir/proxy.pem
SANDBOX_TLS_PROXY_KEY=$dir/proxy.key
SANDBOX_TLS_CLIENT_CERT=$dir/client.pem
SANDBOX_TLS_CLIENT_KEY=$dir/client.key
EOF
}

# ---------------------------------------------------------------------------------------------
# Cassandra nodes.

# Every node has its own directory (data, commit log, logs, config, pid): node 1 keeps the
# single-node sandbox's $SB/origin, node N is $SB/origin-N.
node_dir() { if ((${2:-1} == 1)); then echo "$SB/$1"; else echo "$SB/$1-$2"; fi; }
# The node numbers that have a directory (a node a larger earlier `up` made is still stopped
# by `down`).
existing_nodes() {
  local d
  {
    [[ -d $SB/$1 ]] && echo 1
    for d in "$SB/$1"-*; do [[ -d $d && ${d##*/} =~ ^$1-([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}"; done
  } | sort -nu
}

# With a data-center layout the nodes use GossipingPropertyFileSnitch and say their data center
# in their own cassandra-rackdc.properties; without one, SimpleSnitch (`datacenter1`), as the
# single-node sandbox always had.
render_cassandra_config() {
  local cluster=$1 n=${2:-1} dir snitch=SimpleSnitch
  dir=$(node_dir "$cluster" "$n")
  mkdir -p "$dir"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
  if [[ -n ${DCS[$cluster]} ]]; then
    snitch=GossipingPropertyFileSnitch
    printf '# Written by scripts/sandbox.sh\ndc=%s\nrack=rack1\n' "$(node_dc "$cluster" "$n")" >"$dir/cassandra-rackdc.properties"
  fi
  sed -e "s|@CLUSTER_NAME@|zdm-$cluster|" \
    -e "s|@ADDRESS@|$(node_ip "$cluster" "$n")|g" \
    -e "s|@SEED@|$(node_ip "$cluster" 1)|g" \
    -e "s|@SNITCH@|$snitch|g" \
    -e "s|@TOKEN@|$(node_token "$cluster" "$n")|g" \
    -e "s|@DIR@|$dir|g" \
    "$ROOT/scripts/sandbox/cassandra.yaml.in" >"$dir/cassandra.yaml"
  ensure_tls # a sandbox made before TLS existed gets its certificates here
  cassandra_tls_options "$cluster" >>"$dir/cassandra.yaml"
  chmod 600 "$dir/cassandra.yaml"
}

# The JVM options of Cassandra's own conf/jvm17-server.options (G1, JPMS exports/opens, Netty),
# a fixed small heap, and the properties that make a single fresh node start fast.
cassandra_jvm_args() {
  local cluster=$1 n=${2:-1} dir cp jamm
  dir=$(node_dir "$cluster" "$n")
  cp=$(cassandra_classpath)
  jamm=$(tr ':' '\n' <<<"$cp" | grep -m1 '/jamm-' || true)
  local args=(
    -Xms"$HEAP" -Xmx"$HEAP" -Xss256k -XX:MaxDirectMemorySize=256m
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
    -XX:InitiatingHeapOccupancyPercent=70 -XX:+HeapDumpOnOutOfMemoryError
    -XX:HeapDumpPath="$dir/logs" -XX:ActiveProcessorCount=2
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    -Djava.net.preferIPv4Stack=true
    -Dcassandra.config="file://$dir/cassandra.yaml"
    -Dcassandra.storagedir="$dir"
    -Dcassandra.logdir="$dir/logs"
    -Dcassandra-pidfile="$dir/cassandra.pid"
    -Dlogback.configurationFile="file://$ROOT/scripts/sandbox/logback.xml"
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.load_ring_state=false
    -Dcassandra.initial_token="$(node_token "$cluster" "$n")"
    -Dcassandra-rackdc.properties="file://$dir/cassandra-rackdc.properties"
    -Dcassandra.ring_delay_ms="$(ring_delay_ms "$n")"
    -Dcassandra.superuser_setup_delay_ms=0
  )
  [[ -n $jamm ]] && args+=(-javaagent:"$jamm")
  args+=(-cp "$cp" org.apache.cassandra.service.CassandraDaemon)
  printf '%s\n' "${args[@]}"
}

# Node 1 is the seed and starts alone: a short ring delay makes it fast. A joining node's gossip
# shadow round gives the seed one ring delay to answer, which 1 s does not cover on a busy
# 2-core machine ("Unable to gossip with any peers"); 5 s does, and costs a joining node about
# two ring delays of waiting.
ring_delay_ms() { if (($1 == 1)); then echo 1000; else echo 5000; fi; }

# Running means: the pid in our pidfile is alive. A node whose pidfile was lost (an interrupted
# `up`) is found by its unique config path and adopted, so `up` never starts a second copy.
cassandra_running() { # cassandra_running CLUSTER [N]
  local pidfile
  pidfile=$(node_dir "$1" "${2:-1}")/cassandra.pid
  pid_alive "$pidfile" && return 0
  local pid
  pid=$(pgrep -f -- "-Dcassandra.config=file://$(node_dir "$1" "${2:-1}")/cassandra.yaml" | head -n1 || true)
  [[ -n $pid ]] || return 1
  echo "$pid" >"$pidfile"
}

# cqlsh against one cluster (its node 1, or node N with CQL_NODE=N) with given credentials;
# credentials go through a 0600 rc file so they never appear on a command line.
cql_as() {
  local cluster=$1 user=$2 password=$3
  shift 3
  local tmp
  tmp=$(mktemp -d "$SB/.cqlsh.XXXXXX")
  printf '[connection]\ntimeout = 20\nrequest_timeout = 30\n' >"$tmp/cqlshrc"
  printf '[PlainTextAuthProvider]\nusername = %s\npassword = %s\n' "$user" "$password" >"$tmp/credentials"
  chmod 600 "$tmp/credentials"
  local status=0
  # cqlsh 6.2 (built against 5.0.0) warns on every call about the server's patch version.
  "$(cqlsh_bin)" --cqlshrc "$tmp/cqlshrc" --credentials "$tmp/credentials" "$(node_ip "$cluster" "${CQL_NODE:-1}")" 9042 "$@" \
    > >(grep -v '^WARNING: cqlsh was built against' || true) || status=$?
  rm -rf "$tmp"
  return $status
}
cql() { local c=$1; shift; cql_as "$c" "$(cluster_user "$c")" "$(cluster_password "$c")" "$@"; }

wait_for_cql() { # wait_for_cql CLUSTER USER PASSWORD [N]: node N (default 1) takes a login
  local cluster=$1 user=$2 password=$3 n=${4:-1} deadline=$((SECONDS + 240)) dir
  dir=$(node_dir "$cluster" "$n")
  until CQL_NODE=$n cql_as "$cluster" "$user" "$password" -e "SELECT release_version FROM system.local" >/dev/null 2>&1; do
    cassandra_running "$cluster" "$n" || die "cassandra $cluster node $n exited during start; see $dir/logs/system.log and stdout.log"
    ((SECONDS < deadline)) || die "cassandra $cluster node $n did not answer CQL in time; see $dir/logs/system.log"
    sleep 2
  done
}

launch_cassandra() { # launch_cassandra CLUSTER [N]
  local cluster=$1 n=${2:-1} dir
  dir=$(node_dir "$cluster" "$n")
  if cassandra_running "$cluster" "$n"; then return; fi
  render_cassandra_config "$cluster" "$n"
  local args
  mapfile -t args < <(cassandra_jvm_args "$cluster" "$n")
  local java
  java=$(java17_bin) || die "Cassandra $CASSANDRA_VERSION needs JDK 17 and none was found (apt-get install openjdk-17-jre-headless)"
  log "starting cassandra $cluster node $n at $(node_ip "$cluster" "$n"):9042 in $(node_dc "$cluster" "$n") (heap $HEAP)"
  (
    cd "$dir"
    close_inherited_fds
    setsid "$java" "${args[@]}" >"$dir/logs/stdout.log" 2>&1 </dev/null &
    echo $! >"$dir/cassandra.pid"
  )
}

# First start of a node: create this cluster's own superuser and lock the default one away, so
# each cluster accepts only its own credentials.
ensure_roles() {
  local cluster=$1 dir
  dir=$(node_dir "$cluster")
  local user password
  user=$(cluster_user "$cluster")
  password=$(cluster_password "$cluster")
  if [[ -f $dir/.roles-done ]]; then
    wait_for_cql "$cluster" "$user" "$password"
    return
  fi
  # An interrupted earlier `up` may have created our role, or even locked the default one away
  # already: whichever login answers tells where to continue, so `up` stays idempotent.
  local deadline=$((SECONDS + 240))
  until cql_as "$cluster" "$user" "$password" -e "SELECT release_version FROM system.local" >/dev/null 2>&1; do
    cql_as "$cluster" cassandra cassandra >/dev/null 2>&1 -e \
      "CREATE ROLE IF NOT EXISTS $user WITH PASSWORD = '$password' AND SUPERUSER = true AND LOGIN = true" \
      && continue
    cassandra_running "$cluster" || die "cassandra $cluster exited during start; see $dir/logs/system.log and stdout.log"
    ((SECONDS < deadline)) || die "cassandra $cluster did not accept a login in time; see $dir/logs/system.log"
    sleep 2
  done
  local locked
  locked=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # cqlsh takes a lone `;` after the last statement for an empty one and fails on it, so the
  # replication change is appended only when there is one.
  local statements="ALTER ROLE cassandra WITH PASSWORD = '$locked' AND LOGIN = false;"
  local replication
  replication=$(auth_replication_cql "$cluster")
  [[ -z $replication ]] || statements="$statements $replication"
  cql_as "$cluster" "$user" "$password" >/dev/null -e "$statements"
  touch "$dir/.roles-done"
}

# The roles must survive the loss of any one node: on a multi-node cluster system_auth gets a
# replica on every node (at most 3) once the roles are written and while node 1 is still alone,
# so each later node streams the roles in when it bootstraps (no repair needed). Node 1 alone
# cannot meet the default auth read level (LOCAL_QUORUM) of such a keyspace, nor can two nodes
# of three after a loss be counted on to hold a role written later: cassandra.yaml.in reads
# roles at LOCAL_ONE. (The default superuser is always read at QUORUM, which is why it is
# locked away before the change.) SimpleStrategy ignores data centers, so a second data
# center that has no node yet is no obstacle.
auth_replication_cql() {
  local n=${NODES[$1]}
  ((n > 1)) || return 0
  echo "ALTER KEYSPACE system_auth WITH replication = {'class': 'SimpleStrategy', 'replication_factor': $((n < 3 ? n : 3))};"
}

# Nodes 2..N of a cluster whose node 1 is up, one at a time: each bootstraps (streams its share,
# the roles among it) and takes a login before the next starts, as Cassandra allows only one
# node joining at a time.
start_other_nodes() {
  local cluster=$1 n
  for ((n = 2; n <= ${NODES[$cluster]}; n++)); do
    launch_cassandra "$cluster" "$n"
    wait_for_cql "$cluster" "$(cluster_user "$cluster")" "$(cluster_password "$cluster")" "$n"
    log "cassandra $cluster node $n up"
  done
}

stop_cassandra() { # stop_cassandra CLUSTER [N]
  local cluster=$1 n=${2:-1} pidfile
  pidfile=$(node_dir "$cluster" "$n")/cassandra.pid
  # cassandra_running adopts a node whose pidfile an interrupted `up` lost, so `down` stops it too.
  cassandra_running "$cluster" "$n" || { rm -f "$pidfile"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  log "stopping cassandra $cluster node $n (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  rm -f "$pidfile"
}

# ---------------------------------------------------------------------------------------------
# SSH fleet.

host_dir() { echo "$SB/hosts/$(host_name "$1")"; }

ensure_client_key() {
  mkdir -p "$SB/ssh"
  chmod 700 "$SB/ssh"
  [[ -f $SB/ssh/id_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -C zdm-sandbox-control -f "$SB/ssh/id_ed25519"
  cp "$SB/ssh/id_ed25519.pub" "$SB/ssh/authorized_keys"
  chmod 600 "$SB/ssh/authorized_keys"
}

write_sshd_config() {
  local i=$1 dir
  dir=$(host_dir "$i")
  cat >"$dir/sshd_config" <<EOF
# sshd of sandbox host $(host_name "$i") (network namespace $(host_name "$i")).
ListenAddress $(host_ip "$i")
Port 22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $SB/ssh/authorized_keys
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp /usr/lib/openssh/sftp-server
# The unprivileged operator account (ensure_ops_user): its own key file, which it can read
# (sshd reads key files as the user, and $SB/ssh is root's alone).
Match User $OPS_USER
  AuthorizedKeysFile $OPS_HOME/.ssh/authorized_keys
EOF
}

sshd_running() { pid_alive "$(host_dir "$1")/sshd.pid"; }

start_sshd() {
  local i=$1 dir name
  dir=$(host_dir "$i")
  name=$(host_name "$i")
  mkdir -p "$dir/opt" "$dir/tmp" /run/sshd "$INSTALL_ROOT"
  chmod 1777 "$dir/tmp"
  [[ -f $dir/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$dir/ssh_host_ed25519_key"
  write_sshd_config "$i"
  sshd_running "$i" && return 0
  # Its own mount namespace gives the host a private /opt/zdm-proxy and /tmp, so hosts never
  # see each other's installs; everything started over ssh inherits it from sshd. The
  # monitoring host also gets its own /etc/prometheus and /var/lib/prometheus, so what the
  # playbook writes there stays on that host, as on a real machine.
  local mounts="mount --bind '$dir/opt' '$INSTALL_ROOT' && mount --bind '$dir/tmp' /tmp"
  # sshd runs every remote command through root's bash, and Debian's bash reads ~/.bashrc when
  # sshd starts it. The hosts share this machine's /root, whose .bashrc may be a developer's
  # (here `pyenv init`: ~0.5 s of CPU per command, which 100 hosts on 2 cores turned into 40 s
  # for one command task). A real host has its own, so each host gets a plain one: the same
  # PATH, no start-up code.
  if [[ -f /root/.bashrc ]]; then
    {
      echo "# root's ~/.bashrc on sandbox host $name: the PATH of 'sandbox.sh up', nothing else."
      printf 'export PATH=%q\n' "$PATH"
      [[ -z ${PYENV_ROOT:-} ]] || printf 'export PYENV_ROOT=%q\n' "$PYENV_ROOT"
    } >"$dir/bashrc"
    mounts+=" && mount --bind '$dir/bashrc' /root/.bashrc"
  fi
  if [[ $i == "$MON" ]]; then
    mkdir -p "$dir/etc-prometheus" "$dir/var-lib-prometheus" /etc/prometheus /var/lib/prometheus
    mounts+=" && mount --bind '$dir/etc-prometheus' /etc/prometheus && mount --bind '$dir/var-lib-prometheus' /var/lib/prometheus"
  fi
  (
    close_inherited_fds
    ip netns exec "$name" unshare --mount --propagation private sh -c \
      "$mounts && exec /usr/sbin/sshd -f '$dir/sshd_config' -E '$dir/sshd.log'"
  )
}

stop_sshd() {
  local i=$1 pidfile
  pidfile=$(host_dir "$i")/sshd.pid
  if pid_alive "$pidfile"; then
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$pidfile"
}

# The indexes of every host that has a directory or a network namespace, in order.
existing_hosts() {
  {
    local d
    for d in "$SB"/hosts/"$HP"*; do
      [[ -d $d && ${d##*/} =~ ^$HP([0-9]+)$ ]] && echo "${BASH_REMATCH[1]}"
    done
    ip netns list | awk '{print $1}' | sed -n "s/^$HP\\([0-9][0-9]*\\)\$/\\1/p"
  } | sort -nu
}

# Processes started over ssh on a host (proxies, shells) live in its network namespace; they
# are ours too, so `down` ends them.
kill_namespace_processes() {
  local ns pids
  ns=$(host_name "$1")
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -n $pids ]] || return 0
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while [[ -n $(ip netns pids "$ns" 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.2; done
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

# Both files are written beside and renamed into place: tests running meanwhile read either
# the old or the new file, never half of one.
write_ssh_client_files() {
  local i kh=$SB/ssh/known_hosts.tmp cfg=$SB/ssh/config.tmp name
  : >"$kh"
  : >"$cfg"
  for i in $(all_hosts); do
    [[ -f $(host_dir "$i")/ssh_host_ed25519_key.pub ]] || continue
    name=$(host_name "$i")
    printf '%s,%s %s\n' "$name" "$(host_ip "$i")" "$(cut -d' ' -f1,2 <"$(host_dir "$i")/ssh_host_ed25519_key.pub")" >>"$kh"
    cat >>"$cfg" <<EOF
Host $name $(host_ip "$i")
  HostName $(host_ip "$i")
  HostKeyAlias $name
EOF
  done
  cat >>"$cfg" <<EOF
Host *
  User root
  IdentityFile $SB/ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $SB/ssh/known_hosts
  StrictHostKeyChecking yes
  ConnectTimeout 5
  BatchMode yes
EOF
  mv "$kh" "$SB/ssh/known_hosts"
  mv "$cfg" "$SB/ssh/config"
}

wait_for_ssh() {
  local i=$1 deadline=$((SECONDS + 60)) name
  name=$(host_name "$i")
  until ssh -F "$SB/ssh/config" "$name" true 2>/dev/null; do
    ((SECONDS < deadline)) || die "ssh to $name ($(host_ip "$i")) does not answer; see $(host_dir "$i")/sshd.log"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# Spark: a standalone Spark cluster for Cassandra Data Migrator (CDM), built from Maven Central
# like Cassandra (no distribution download): a master on the control side and one worker in
# each of the first SPARK_WORKERS proxy hosts' network namespaces, so CDM's executors really
# run on other hosts than its driver and reach the clusters over the sandbox network.

SPARK_VERSION=3.5.8
SPARK_WORKERS=2
SPARK_MASTER_PORT=7077
SPARK_DAEMON_HEAP=${ZDM_SANDBOX_SPARK_HEAP:-256m}
SPARK_WORKER_MEMORY=1g

spark_dir() { echo "$SB/spark"; }
spark_master_url() { echo "spark://$CONTROL_IP:$SPARK_MASTER_PORT"; }

# SPARK_HOME: the resolved jars linked under jars/ (where Spark's launcher looks for them) and
# bin/spark-class, bin/spark-submit as small equivalents of Spark's own scripts. Made once per
# pom content in the cache; the jars themselves stay in ~/.m2.
spark_home() {
  local pom=$ROOT/scripts/sandbox/spark-pom.xml key java
  key=$(sha256sum "$pom" | cut -c1-16)
  local home=$CACHE/spark-$SPARK_VERSION-$key
  if [[ ! -x $home/bin/spark-submit ]]; then
    log "resolving Spark $SPARK_VERSION (Scala 2.13) from Maven Central (first run only)"
    java=$(java17_bin) || die "Spark $SPARK_VERSION needs JDK 17 and none was found"
    rm -rf "$home.tmp"
    mkdir -p "$home.tmp/jars" "$home.tmp/bin" "$home.tmp/conf"
    mvn -q -B -Dstyle.color=never -f "$pom" dependency:build-classpath -Dmdep.outputFile="$home.tmp/classpath" >&2 \
      || die "maven could not resolve Spark $SPARK_VERSION"
    local jar
    while IFS= read -r jar; do
      [[ -n $jar ]] && ln -s "$jar" "$home.tmp/jars/${jar##*/}"
    done < <(tr ':' '\n' <"$home.tmp/classpath"; echo)
    # Spark's launcher (org.apache.spark.launcher.Main) builds the real command line, with the
    # --add-opens flags Java 17 needs, as Spark's own bin/spark-class does.
    {
      echo '#!/usr/bin/env bash'
      echo "# Written by zdm-run's scripts/sandbox.sh: Spark's bin/spark-class for jars from Maven Central."
      echo 'set -euo pipefail'
      echo 'SPARK_HOME=$(cd "$(dirname "$0")/.." && pwd)'
      echo 'export SPARK_HOME SPARK_SCALA_VERSION=2.13'
      echo "export JAVA_HOME=\${JAVA_HOME:-$(dirname "$(dirname "$java")")}"
      echo 'mapfile -d "" cmd < <("$JAVA_HOME/bin/java" -Xmx128m -cp "$SPARK_HOME/jars/*" org.apache.spark.launcher.Main "$@"; printf "%d\0" $?)'
      echo 'rc=${cmd[-1]}'
      echo 'unset "cmd[-1]"'
      echo '((rc == 0)) || exit "$rc"'
      echo '# The launcher prints a NUL and a newline before the command (messages may come first).'
      echo 'while ((${#cmd[@]})) && [[ ${cmd[0]} != $'"'"'\n'"'"'* ]]; do cmd=("${cmd[@]:1}"); done'
      echo 'cmd[0]=${cmd[0]#$'"'"'\n'"'"'}'
      echo 'exec "${cmd[@]}"'
    } >"$home.tmp/bin/spark-class"
    printf '#!/bin/sh\nexec "$(dirname "$0")/spark-class" org.apache.spark.deploy.SparkSubmit "$@"\n' >"$home.tmp/bin/spark-submit"
    chmod 755 "$home.tmp/bin/spark-class" "$home.tmp/bin/spark-submit"
    rm -rf "$home"
    mv "$home.tmp" "$home"
  fi
  echo "$home"
}

spark_pidfile() { echo "$(spark_dir)/$1.pid"; }
spark_running() { pid_alive "$(spark_pidfile "$1")"; }

# spark_daemon NAME NETNS|"" CLASS ARGS...: starts one Spark daemon in the background (in a
# host's network namespace when NETNS is given) in its own process group, its log in
# $SB/spark/NAME.log.
spark_daemon() {
  local name=$1 netns=$2 dir home
  shift 2
  dir=$(spark_dir)
  home=$(spark_home)
  spark_running "$name" && return 0
  mkdir -p "$dir/$name"
  local pre=()
  [[ -n $netns ]] && pre=(ip netns exec "$netns")
  log "starting spark $name${netns:+ on $netns}"
  (
    cd "$dir/$name"
    close_inherited_fds
    SPARK_DAEMON_MEMORY=$SPARK_DAEMON_HEAP SPARK_LOG_DIR="$dir" \
      setsid "${pre[@]}" "$home/bin/spark-class" "$@" >"$dir/$name.log" 2>&1 </dev/null &
    echo $! >"$(spark_pidfile "$name")"
  )
}

# Waits until the master's log names every worker as registered.
wait_for_spark() {
  local deadline=$((SECONDS + 120)) log n
  log=$(spark_dir)/master.log
  while :; do
    n=$(grep -c 'Registering worker' "$log" 2>/dev/null || true)
    ((n >= SPARK_WORKERS)) && return 0
    spark_running master || die "spark master exited; see $log"
    ((SECONDS < deadline)) || die "spark workers did not register with the master in time; see $(spark_dir)/*.log"
    sleep 1
  done
}

cmd_spark_up() {
  ((FLEET_SIZE >= SPARK_WORKERS)) || die "the Spark cluster needs $SPARK_WORKERS proxy hosts (ZDM_SANDBOX_HOSTS=$FLEET_SIZE)"
  local fresh=0 i
  spark_running master || fresh=1
  mkdir -p "$(spark_dir)"
  ((fresh)) && rm -f "$(spark_dir)/master.log"
  spark_daemon master "" org.apache.spark.deploy.master.Master \
    --host "$CONTROL_IP" --port "$SPARK_MASTER_PORT" --webui-port 0
  for ((i = 1; i <= SPARK_WORKERS; i++)); do
    # A worker that outlived its master would not register again in time: restart it too.
    if ((fresh)) && spark_running "worker$i"; then stop_spark_daemon "worker$i"; fi
    spark_daemon "worker$i" "$HP$i" org.apache.spark.deploy.worker.Worker \
      --host "$(host_ip "$i")" --cores 1 --memory "$SPARK_WORKER_MEMORY" --webui-port 0 \
      --work-dir "$(spark_dir)/worker$i/work" "$(spark_master_url)"
  done
  wait_for_spark
  log "spark: master $(spark_master_url), workers on ${HP}1..$HP$SPARK_WORKERS, $(spark_home)/bin/spark-submit"
}

stop_spark_daemon() {
  local pidfile
  pidfile=$(spark_pidfile "$1")
  if pid_alive "$pidfile"; then
    local pid
    pid=$(cat "$pidfile")
    # The daemon's children (a worker's executors) go with it: signal its process group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_spark_down() {
  local i
  for ((i = 1; i <= SPARK_WORKERS; i++)); do stop_spark_daemon "worker$i"; done
  stop_spark_daemon master
}

spark_env_lines() {
  echo "SANDBOX_SPARK_MASTER=$(spark_master_url)"
  echo "SANDBOX_SPARK_SUBMIT=$(spark_home)/bin/spark-submit"
  echo "SANDBOX_SPARK_VERSION=$SPARK_VERSION"
}

# ---------------------------------------------------------------------------------------------
# Outputs: the env file and the generated inventory.

write_env() {
  local hosts=() names=() i
  for ((i = 1; i <= FLEET_SIZE; i++)); do
    hosts+=("$(host_ip "$i")")
    names+=("$HP$i")
  done
  umask 077
  cat >"$SB/env.tmp" <<EOF
ZDM_ORIGIN_CONTACT_POINTS=${CLUSTER_IP[origin]}
ZDM_ORIGIN_PORT=9042
ZDM_ORIGIN_USERNAME=$ORIGIN_USERNAME
ZDM_ORIGIN_PASSWORD=$ORIGIN_PASSWORD
ZDM_TARGET_CONTACT_POINTS=${CLUSTER_IP[target]}
ZDM_TARGET_PORT=9042
ZDM_TARGET_USERNAME=$TARGET_USERNAME
ZDM_TARGET_PASSWORD=$TARGET_PASSWORD
SANDBOX_DIR=$SB
SANDBOX_SCRIPT=$ROOT/scripts/sandbox.sh
SANDBOX_INVENTORY=$SB/inventory
SANDBOX_SSH_KEY=$SB/ssh/id_ed25519
SANDBOX_KNOWN_HOSTS=$SB/ssh/known_hosts
SANDBOX_SSH_CONFIG=$SB/ssh/config
SANDBOX_HOSTS="${hosts[*]}"
SANDBOX_HOST_NAMES="${names[*]}"
SANDBOX_CASSANDRA_VERSION=$CASSANDRA_VERSION
EOF
  cluster_env_lines >>"$SB/env.tmp"
  tls_env_lines >>"$SB/env.tmp"
  if [[ ! -f $SB/minimal ]]; then
    spark_env_lines >>"$SB/env.tmp"
    monitoring_env_lines >>"$SB/env.tmp"
  fi
  mv "$SB/env.tmp" "$SB/env"
  umask 022
  write_inventory
}

# Every node of each cluster, in node order, with its data center (ZDM_*_CONTACT_POINTS stay
# node 1, so single-node users read what they always read).
cluster_env_lines() {
  local c n dcs
  for c in origin target; do
    dcs=()
    for ((n = 1; n <= ${NODES[$c]}; n++)); do dcs+=("$(node_dc "$c" "$n")"); done
    echo "SANDBOX_${c^^}_NODES=\"$(node_ips "$c" | xargs)\""
    echo "SANDBOX_${c^^}_DCS=\"${dcs[*]}\""
  done
}

monitoring_env_lines() {
  cat <<EOF
SANDBOX_MONITORING_NAME=$(host_name "$MON")
SANDBOX_MONITORING_HOST=$MON_IP
EOF
}

# The generated inventory: the fleet in `proxies`, the monitoring host in `monitoring`, the
# clusters' settings for all.
write_inventory() {
  local i
  umask 077
  mkdir -p "$SB/inventory"
  {
    echo "# Generated by scripts/sandbox.sh: the sandbox fleet and its two clusters."
    echo "all:"
    echo "  vars:"
    echo "    origin_contact_points: \"$(node_ips origin | paste -sd,)\""
    echo "    origin_port: 9042"
    echo "    origin_username: \"$ORIGIN_USERNAME\""
    echo "    origin_password: \"$ORIGIN_PASSWORD\""
    echo "    target_contact_points: \"$(node_ips target | paste -sd,)\""
    echo "    target_port: 9042"
    echo "    target_username: \"$TARGET_USERNAME\""
    echo "    target_password: \"$TARGET_PASSWORD\""
    echo "  children:"
    echo "    proxies:"
    echo "      vars:"
    echo "        ansible_user: root"
    echo "        ansible_ssh_private_key_file: \"$SB/ssh/id_ed25519\""
    echo "        ansible_ssh_common_args: \"-o UserKnownHostsFile=$SB/ssh/known_hosts -o StrictHostKeyChecking=yes\""
    echo "      hosts:"
    for ((i = 1; i <= FLEET_SIZE; i++)); do
      echo "        $HP$i:"
      echo "          ansible_host: \"$(host_ip "$i")\""
    done
    [[ -f $SB/minimal ]] || {
    echo "    monitoring:"
    echo "      vars:"
    echo "        ansible_user: root"
    echo "        ansible_ssh_private_key_file: \"$SB/ssh/id_ed25519\""
    echo "        ansible_ssh_common_args: \"-o UserKnownHostsFile=$SB/ssh/known_hosts -o StrictHostKeyChecking=yes\""
    echo "      hosts:"
    echo "        $(host_name "$MON"):"
    echo "          ansible_host: \"$MON_IP\""
    }
  } >"$SB/inventory/hosts.yml.tmp"
  mv "$SB/inventory/hosts.yml.tmp" "$SB/inventory/hosts.yml"
  umask 022
}

# ---------------------------------------------------------------------------------------------
# The unprivileged operator account for the become (sudo) tests: it logs in with the sandbox
# key and may run anything as anyone through sudo without a password, like the ops accounts
# production fleets are reached with. The hosts share this machine's users and /etc.

OPS_USER=zdmops
OPS_HOME=/home/$OPS_USER
OPS_SUDOERS=/etc/sudoers.d/zdm-sandbox

ensure_ops_user() {
  if ! command -v sudo >/dev/null; then
    log "installing packages: sudo"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo >/dev/null
  fi
  id -u "$OPS_USER" >/dev/null 2>&1 ||
    useradd --create-home --home-dir "$OPS_HOME" --shell /bin/bash --user-group "$OPS_USER"
  # No password, but not locked: sshd (without PAM) refuses key logins to a locked ('!') account.
  usermod --password '*' "$OPS_USER"
  install -d -m 700 -o "$OPS_USER" -g "$OPS_USER" "$OPS_HOME/.ssh"
  install -m 600 -o "$OPS_USER" -g "$OPS_USER" "$SB/ssh/id_ed25519.pub" "$OPS_HOME/.ssh/authorized_keys"
  local tmp
  tmp=$(mktemp)
  printf '# zdm-run sandbox: the become tests log in as %s and sudo to root or any user.\n%s ALL=(ALL:ALL) NOPASSWD: ALL\n' \
    "$OPS_USER" "$OPS_USER" >"$tmp"
  visudo -cqf "$tmp" || { rm -f "$tmp"; die "the sudoers drop-in for $OPS_USER does not parse"; }
  install -m 0440 -o root -g root "$tmp" "$OPS_SUDOERS"
  rm -f "$tmp"
}

remove_ops_user() {
  rm -f "$OPS_SUDOERS"
  if id -u "$OPS_USER" >/dev/null 2>&1; then
    userdel --remove "$OPS_USER" 2>/dev/null || userdel "$OPS_USER"
  fi
  rm -rf "$OPS_HOME"
}

# `users`: adds the operator account to a running sandbox. Each running sshd gets the new config
# through SIGHUP (it re-executes itself; open sessions are untouched).
cmd_users() {
  [[ -f $SB/ssh/id_ed25519.pub ]] || die "no sandbox at $SB; run: scripts/sandbox.sh up"
  ensure_ops_user
  local i dir before
  for ((i = 1; i <= FLEET_SIZE; i++)); do
    dir=$(host_dir "$i")
    [[ -d $dir ]] || continue
    before=
    [[ -f $dir/sshd_config ]] && before=$(cat "$dir/sshd_config")
    write_sshd_config "$i"
    if sshd_running "$i" && [[ $before != "$(cat "$dir/sshd_config")" ]]; then
      kill -HUP "$(cat "$dir/sshd.pid")"
      sleep 0.5
      wait_for_ssh "$i"
    fi
  done
  log "user $OPS_USER: ssh with the sandbox key, passwordless sudo ($OPS_SUDOERS)"
}

# ---------------------------------------------------------------------------------------------
# Verbs.

# `up --fleet-only`: the network and the SSH hosts alone (no clusters, no Spark, no operator
# account), for a second instance with its own ZDM_SANDBOX_DIR, ZDM_SANDBOX_NET and
# ZDM_SANDBOX_PREFIX beside the running sandbox.
cmd_up_fleet() {
  [[ $(id -u) == 0 ]] || die "the sandbox needs root (network namespaces, sshd)"
  local started=$SECONDS i
  install_packages
  mkdir -p "$SB"
  chmod 700 "$SB"
  ensure_network
  ensure_client_key
  for ((i = 1; i <= FLEET_SIZE; i++)); do start_sshd "$i"; done
  write_ssh_client_files
  # All hosts are waited for at once: one after another, a large fleet spends minutes here.
  local waits=() pid
  for ((i = 1; i <= FLEET_SIZE; i++)); do
    wait_for_ssh "$i" &
    waits+=($!)
  done
  for pid in "${waits[@]}"; do wait "$pid" || die "not every host answers over ssh"; done
  log "fleet up in $((SECONDS - started)) s: ${HP}1..$HP$FLEET_SIZE on $NET.0/24 (ssh config $SB/ssh/config)"
}

cmd_up() {
  [[ $(id -u) == 0 ]] || die "the sandbox needs root (network namespaces, sshd)"
  [[ ${1:-} == --fleet-only ]] && { cmd_up_fleet; return; }
  # --minimal: a second instance beside the running sandbox needs no Spark (one master port on
  # the machine), no monitoring host, and must not rewrite the shared operator account's key.
  local minimal=0
  case ${1:-} in
  --minimal) minimal=1 ;;
  '') ;;
  *) die "unknown option to up: $1 (--fleet-only|--minimal)" ;;
  esac
  local started=$SECONDS
  install_packages
  mkdir -p "$SB"
  chmod 700 "$SB"
  if ((minimal)); then touch "$SB/minimal"; else rm -f "$SB/minimal"; fi
  save_layout
  cassandra_classpath >/dev/null
  cqlsh_bin >/dev/null
  ((minimal)) || spark_home >/dev/null
  ensure_credentials
  ensure_tls
  ensure_network
  # The monitoring host belongs to the full sandbox only (`up --fleet-only` has none).
  ((minimal)) || ensure_host_network "$MON"
  launch_cassandra origin
  launch_cassandra target
  ensure_client_key
  ((minimal)) || ensure_ops_user
  local i
  for i in $(sandbox_hosts); do start_sshd "$i"; done
  write_ssh_client_files
  for i in $(sandbox_hosts); do wait_for_ssh "$i"; done
  ensure_roles origin
  ensure_roles target
  # The clusters' other nodes: origin's and target's joins run side by side, each cluster's
  # nodes one after another.
  local waits=() pid
  start_other_nodes origin &
  waits+=($!)
  start_other_nodes target &
  waits+=($!)
  for pid in "${waits[@]}"; do wait "$pid" || die "not every Cassandra node came up"; done
  ((minimal)) || cmd_spark_up
  write_env
  log "up in $((SECONDS - started)) s: origin $(node_ips origin | xargs):9042, target $(node_ips target | xargs):9042, hosts $(for ((i = 1; i <= FLEET_SIZE; i++)); do printf "$HP%s " "$i"; done)$( ((minimal)) || echo ", monitoring $(host_name "$MON") $MON_IP")"
  log "environment: $SB/env   inventory: $SB/inventory/hosts.yml"
}

cmd_down() {
  local purge=${1:-}
  local i
  cmd_spark_down
  # Every host there is, whatever ZDM_SANDBOX_HOSTS says now: the fleet may have been brought
  # up larger than this call's setting.
  for i in $(existing_hosts); do
    kill_namespace_processes "$i"
    stop_sshd "$i"
  done
  kill_namespace_processes "$MON"
  stop_sshd "$MON"
  local c n
  for c in origin target; do
    for n in $(existing_nodes "$c"); do stop_cassandra "$c" "$n"; done
  done
  remove_network
  rm -f "$SB/env"
  if [[ $purge == --purge ]]; then
    log "removing $SB"
    local minimal=0
    [[ -f $SB/minimal ]] && minimal=1
    rm -rf "$SB"
    # A minimal instance never made the operator account: it may belong to the main sandbox.
    ((minimal)) || remove_ops_user
  fi
  log "down"
}

rss_of() { awk '/VmRSS/ {printf "%d MiB", $2/1024}' "/proc/$1/status" 2>/dev/null; }

cmd_status() {
  local rc=0 c i n
  for c in origin target; do
    for ((n = 1; n <= ${NODES[$c]}; n++)); do
      # Node 1 of a single-node cluster prints as it always did.
      local name=$c
      ((${NODES[$c]} == 1)) || name="$c $n"
      if cassandra_running "$c" "$n"; then
        local pid
        pid=$(cat "$(node_dir "$c" "$n")/cassandra.pid")
        printf 'cassandra %-6s  running  pid %-7s %s:9042  rss %s\n' "$name" "$pid" "$(node_ip "$c" "$n")" "$(rss_of "$pid")"
      else
        printf 'cassandra %-6s  stopped\n' "$name"
        rc=1
      fi
    done
  done
  for ((i = 1; i <= FLEET_SIZE; i++)); do
    local net=absent
    if has_netns "$HP$i"; then
      net=cut
      [[ $(ip -n "$HP$i" -o link show eth0 2>/dev/null) == *"state UP"* ]] && net=up
    fi
    local sshd=stopped
    sshd_running "$i" && sshd=running
    printf "host $HP%-3s %-14s network %-6s sshd %s\n" "$i" "$(host_ip "$i")" "$net" "$sshd"
    [[ $net == up && $sshd == running ]] || rc=1
  done
  # A minimal instance has no monitoring host and no Spark.
  [[ -f $SB/minimal ]] && return $rc
  local mon=stopped
  sshd_running "$MON" && mon=running
  printf 'host %-7s %-14s sshd %s (monitoring)\n' "$(host_name "$MON")" "$MON_IP" "$mon"
  [[ $mon == running ]] || rc=1
  local d
  for d in master $(for ((i = 1; i <= SPARK_WORKERS; i++)); do echo "worker$i"; done); do
    if spark_running "$d"; then
      printf 'spark %-8s running  pid %s\n' "$d" "$(cat "$(spark_pidfile "$d")")"
    else
      printf 'spark %-8s stopped\n' "$d"
      rc=1
    fi
  done
  return $rc
}

cmd_cut() {
  local i
  i=$(host_index "$1")
  ip link set "$HP$i-br" down
  ip -n "$HP$i" link set eth0 down
  log "$HP$i cut off the network"
}

cmd_restore() {
  local i
  i=$(host_index "$1")
  ip -n "$HP$i" link set eth0 up
  ip link set "$HP$i-br" up
  has_addr "$HP$i" eth0 "$(host_ip "$i")" ||
    ip -n "$HP$i" addr add "$(host_ip "$i")/24" dev eth0
  # Wait until the control side really reaches it again (the bridge port relearns).
  local deadline=$((SECONDS + 30))
  until ssh -F "$SB/ssh/config" -o ConnectTimeout=2 "$HP$i" true 2>/dev/null; do
    ((SECONDS < deadline)) || die "$HP$i restored but not reachable over ssh"
    sleep 0.3
  done
  log "$HP$i back on the network"
}

cmd_rekey() {
  local i dir
  i=$(host_index "$1")
  dir=$(host_dir "$i")
  rm -f "$dir/ssh_host_ed25519_key" "$dir/ssh_host_ed25519_key.pub"
  ssh-keygen -q -t ed25519 -N '' -C "$HP$i-rekeyed" -f "$dir/ssh_host_ed25519_key"
  stop_sshd "$i"
  start_sshd "$i"
  log "$HP$i has a new host key that known_hosts does not trust (scripts/sandbox.sh trust $HP$i)"
}

cmd_trust() {
  local i
  i=$(host_index "$1")
  write_ssh_client_files
  wait_for_ssh "$i"
  log "known_hosts trusts the current keys of every host"
}

# TLS for a sandbox that is already up: certificates, both nodes' config, then a restart of
# each node that runs without TLS, one at a time, each waited for until CQL answers. The env file
# gains the SANDBOX_TLS_* lines; nothing else in it changes.
cmd_tls_apply() {
  need_sandbox
  install_packages
  ensure_tls
  local c n
  for c in origin target; do
    for ((n = 1; n <= ${NODES[$c]}; n++)); do
      if cassandra_running "$c" "$n" && grep -q '^client_encryption_options:' "$(node_dir "$c" "$n")/cassandra.yaml"; then
        log "cassandra $c node $n already runs with client TLS; not restarted"
        continue
      fi
      stop_cassandra "$c" "$n"
      launch_cassandra "$c" "$n"
      wait_for_cql "$c" "$(cluster_user "$c")" "$(cluster_password "$c")" "$n"
      grep -q '^client_encryption_options:' "$(node_dir "$c" "$n")/cassandra.yaml" || die "$c node $n: TLS options missing from cassandra.yaml"
      log "cassandra $c node $n back, with optional client TLS"
    done
  done
  if [[ -f $SB/env ]]; then
    umask 077
    grep -v '^SANDBOX_TLS_' "$SB/env" >"$SB/env.tmp" || true
    tls_env_lines >>"$SB/env.tmp"
    mv "$SB/env.tmp" "$SB/env"
    umask 022
  fi
  log "TLS applied: CA $(tls_dir)/ca.pem"
}

# `monitoring`: adds the monitoring host to a sandbox that is already up. Only its own
# namespace, its sshd and the files naming it are made or rewritten (known_hosts and the ssh
# config with every host's current key, the inventory, the SANDBOX_MONITORING_* lines of the
# env file); no node, proxy host or other line of the env file is touched.
cmd_monitoring() {
  [[ $(id -u) == 0 ]] || die "the sandbox needs root (network namespaces, sshd)"
  need_sandbox
  [[ -f $SB/ssh/id_ed25519 && -f $SB/env ]] || die "no running sandbox at $SB; run: scripts/sandbox.sh up"
  install_prometheus
  ip link show "$BRIDGE" >/dev/null 2>&1 || die "no sandbox network ($BRIDGE); run: scripts/sandbox.sh up"
  ensure_host_network "$MON"
  start_sshd "$MON"
  write_ssh_client_files
  wait_for_ssh "$MON"
  umask 077
  grep -v '^SANDBOX_MONITORING_' "$SB/env" >"$SB/env.tmp" || true
  monitoring_env_lines >>"$SB/env.tmp"
  mv "$SB/env.tmp" "$SB/env"
  umask 022
  write_inventory
  log "monitoring host $(host_name "$MON") at $MON_IP (group monitoring in $SB/inventory/hosts.yml)"
}

need_sandbox() {
  [[ -f $SB/cluster-credentials.env ]] || die "no sandbox at $SB; run: scripts/sandbox.sh up"
  ensure_credentials
}

main() {
  local verb=${1:-}
  shift || true
  load_layout
  case $verb in
  up) cmd_up "${1:-}" ;;
  down) cmd_down "${1:-}" ;;
  status) cmd_status ;;
  cqlsh)
    need_sandbox
    check_cluster "${1:-}"
    local c=$1 n=1
    shift
    if [[ ${1:-} =~ ^[0-9]+$ ]]; then
      n=$1
      shift
    fi
    check_node "$c" "$n"
    CQL_NODE=$n cql "$c" "$@"
    ;;
  cut) cmd_cut "${1:?host}" ;;
  restore) cmd_restore "${1:?host}" ;;
  sshd-stop) stop_sshd "$(host_index "${1:?host}")" ;;
  sshd-start)
    start_sshd "$(host_index "${1:?host}")"
    wait_for_ssh "$(host_index "$1")"
    ;;
  cassandra-stop)
    check_cluster "${1:-}"
    check_node "$1" "${2:-1}"
    stop_cassandra "$1" "${2:-1}"
    ;;
  cassandra-start)
    need_sandbox
    check_cluster "${1:-}"
    check_node "$1" "${2:-1}"
    launch_cassandra "$1" "${2:-1}"
    wait_for_cql "$1" "$(cluster_user "$1")" "$(cluster_password "$1")" "${2:-1}"
    ;;
  rekey) cmd_rekey "${1:?host}" ;;
  tls-apply) cmd_tls_apply ;;
  trust) cmd_trust "${1:?host}" ;;
  users) cmd_users ;;
  spark-up)
    need_sandbox
    cmd_spark_up
    if [[ -f $SB/env ]]; then
      umask 077
      grep -v '^SANDBOX_SPARK_' "$SB/env" >"$SB/env.tmp" || true
      spark_env_lines >>"$SB/env.tmp"
      mv "$SB/env.tmp" "$SB/env"
      umask 022
    fi
    ;;
  spark-down) cmd_spark_down ;;
  monitoring) cmd_monitoring ;;
  *)
    sed -n '2,43p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ -z $verb || $verb == help || $verb == -h || $verb == --help ]] || exit 2
    ;;
  esac
}

main "$@"
