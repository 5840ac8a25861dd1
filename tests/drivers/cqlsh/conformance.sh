#!/usr/bin/env bash
# The driver suite's cqlsh conformance program: cqlsh (the Python driver underneath) through the
# deployed proxy fleet, each step one CQL script file run with `cqlsh -f`, its output checked.
# The contract shared by every program of the suite (environment in, `PROTOCOL_VERSION=`,
# `STEP name: ok|FAIL` lines and the exit code out) is described in tests/drivers/README.md.
#
# What cqlsh cannot do, it is not asked to: it has no prepared statements (the JSON insert
# stands in for the second write form) and no second session listening for schema events.
# Its paging runs at the page size `PAGING 7` sets; how many pages it fetched is not visible
# from outside, only that every row came back.
set -uo pipefail

for v in CQLSH ZDM_DRIVER_PROXIES ZDM_DRIVER_USERNAME ZDM_DRIVER_PASSWORD ZDM_DRIVER_KEYSPACE \
  ZDM_ORIGIN_CONTACT_POINTS ZDM_ORIGIN_USERNAME ZDM_ORIGIN_PASSWORD \
  ZDM_TARGET_CONTACT_POINTS ZDM_TARGET_USERNAME ZDM_TARGET_PASSWORD; do
  [[ -n ${!v:-} ]] || { echo "missing environment variable $v" >&2; exit 2; }
done
KS=$ZDM_DRIVER_KEYSPACE
IFS=, read -r -a PROXIES <<<"$ZDM_DRIVER_PROXIES"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[connection]\ntimeout = 30\nrequest_timeout = 60\n' >"$tmp/cqlshrc"
# Credentials go through 0600 files, never the command line.
credentials() { # credentials NAME USER PASSWORD
  (umask 077 && printf '[PlainTextAuthProvider]\nusername = %s\npassword = %s\n' "$2" "$3" >"$tmp/$1.cred")
}
credentials proxy "$ZDM_DRIVER_USERNAME" "$ZDM_DRIVER_PASSWORD"
credentials origin "$ZDM_ORIGIN_USERNAME" "$ZDM_ORIGIN_PASSWORD"
credentials target "$ZDM_TARGET_USERNAME" "$ZDM_TARGET_PASSWORD"

# cql WHO HOST: runs the CQL script on stdin with `cqlsh -f`; output (stdout and stderr) in $OUT.
OUT=
cql() {
  cat >"$tmp/step.cql"
  OUT=$("$CQLSH" --cqlshrc "$tmp/cqlshrc" --credentials "$tmp/$1.cred" "$2" 9042 -f "$tmp/step.cql" 2>&1 \
    | grep -v '^WARNING: cqlsh was built against')
}
via_proxy() { cql proxy "${PROXIES[0]}"; }

failed=0
pass() { echo "STEP $1: ok"; }
fail() { failed=1; echo "STEP $1: FAIL $2 -- output: $(tr '\n' ' ' <<<"$OUT" | cut -c1-400)"; }
# expect NAME REGEX...: every extended regex must match the last output, and no error shows.
expect() {
  local name=$1 re
  shift
  if grep -Eq '(Error|Exception)' <<<"$OUT"; then fail "$name" "cqlsh reported an error"; return; fi
  for re in "$@"; do
    grep -Eq -- "$re" <<<"$OUT" || { fail "$name" "no match for /$re/"; return; }
  done
  pass "$name"
}

# connect: the cluster as cqlsh's driver sees it is exactly the proxies (system.local and
# system.peers are where its metadata comes from).
via_proxy <<'EOF'
SHOW VERSION;
SELECT rpc_address FROM system.local;
SELECT rpc_address FROM system.peers;
EOF
# Plain SELECTs: the proxy answers these itself, and it ignores SELECT JSON there.
seen=$(grep -Eo '^ *[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+ *$' <<<"$OUT" | tr -d ' ' | sort | tr '\n' ' ')
want=$(printf '%s\n' "${PROXIES[@]}" | sort | tr '\n' ' ')
if [[ $seen == "$want" ]]; then pass connect; else fail connect "nodes seen: '$seen', want exactly '$want'"; fi
version=$(grep -Eo 'Native protocol v[0-9]+' <<<"$OUT" | grep -Eo '[0-9]+$' | head -n1)
[[ -n $version ]] || exit 1
echo "PROTOCOL_VERSION=$version"

via_proxy <<EOF
CREATE KEYSPACE $KS WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
CREATE TYPE $KS.address (street text, zip int);
CREATE TABLE $KS.users (id int PRIMARY KEY, name text, emails set<text>, tags list<text>, attrs map<text, int>, home frozen<address>);
CREATE TABLE $KS.events (p int, c int, v text, PRIMARY KEY (p, c));
CREATE TABLE $KS.hits (id int PRIMARY KEY, n counter);
CREATE TABLE $KS.locks (id int PRIMARY KEY, owner text);
DESCRIBE TABLES;
EOF
expect ddl 'events' 'hits' 'locks' 'users'

via_proxy <<EOF
USE $KS;
SELECT JSON COUNT(*) FROM users;
EOF
expect use '"count": 0'

USE="USE $KS;"
via_proxy <<EOF
$USE
INSERT INTO users JSON '{"id": 1, "name": "ada", "emails": ["ada@x.test", "a@x.test"], "tags": ["a", "b"], "attrs": {"k": 1}, "home": {"street": "Main", "zip": 1000}}';
EOF
expect json_write '.*'

via_proxy <<EOF
$USE
INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (2, 'bob', {'bob@x.test'}, ['x'], {'z': 26}, {street: 'Elm', zip: 2000});
EOF
expect simple_write '.*'

via_proxy <<EOF
$USE
BEGIN BATCH
  INSERT INTO events (p, c, v) VALUES (1, 1, 'l1');
  INSERT INTO events (p, c, v) VALUES (1, 2, 'l2');
APPLY BATCH;
SELECT JSON v FROM events WHERE p = 1;
EOF
expect batch_logged '"v": "l1"' '"v": "l2"' '\(2 rows\)'

via_proxy <<EOF
$USE
BEGIN UNLOGGED BATCH
  INSERT INTO events (p, c, v) VALUES (2, 1, 'u1');
  INSERT INTO events (p, c, v) VALUES (2, 2, 'u2');
APPLY BATCH;
SELECT JSON v FROM events WHERE p = 2;
EOF
expect batch_unlogged '"v": "u1"' '"v": "u2"' '\(2 rows\)'

via_proxy <<EOF
$USE
INSERT INTO events (p, c, v) VALUES (3, 1, 'short') USING TTL 600;
SELECT JSON TTL(v) FROM events WHERE p = 3 AND c = 1;
EOF
expect ttl '"ttl\(v\)": ([1-9][0-9]?|[1-5][0-9][0-9]|600)\}'

via_proxy <<EOF
$USE
INSERT INTO events (p, c, v) VALUES (4, 1, 'gone');
DELETE FROM events WHERE p = 4 AND c = 1;
SELECT JSON v FROM events WHERE p = 4;
EOF
expect delete '\(0 rows\)'

via_proxy < <(
  echo "$USE"
  echo "BEGIN UNLOGGED BATCH"
  for c in $(seq 0 24); do echo "  INSERT INTO events (p, c, v) VALUES (5, $c, 'r$c');"; done
  echo "APPLY BATCH;"
  echo "PAGING 7;"
  echo "SELECT c FROM events WHERE p = 5;"
)
expect paging 'Page size: 7' '\(25 rows\)'

via_proxy <<EOF
$USE
INSERT INTO locks (id, owner) VALUES (1, 'me') IF NOT EXISTS;
INSERT INTO locks (id, owner) VALUES (1, 'you') IF NOT EXISTS;
UPDATE locks SET owner = 'you' WHERE id = 1 IF owner = 'nobody';
EOF
expect lwt '^ +True *$' 'False \| +1 \| +me' 'False \| +me'

via_proxy <<EOF
$USE
UPDATE hits SET n = n + 3 WHERE id = 1;
UPDATE hits SET n = n + 3 WHERE id = 1;
SELECT JSON n FROM hits WHERE id = 1;
EOF
expect counter '"n": 6\}'

# The stored rows, as JSON the server renders (set elements sorted, map and UDT fields named).
USERS=('"name": "ada", "emails": \["a@x.test", "ada@x.test"\], "tags": \["a", "b"\], "attrs": \{"k": 1\}, "home": \{"street": "Main", "zip": 1000\}'
  '"name": "bob", "emails": \["bob@x.test"\], "tags": \["x"\], "attrs": \{"z": 26\}, "home": \{"street": "Elm", "zip": 2000\}')
READ_USERS="SELECT JSON name, emails, tags, attrs, home FROM users WHERE id IN (1, 2);"
via_proxy <<EOF
$USE
$READ_USERS
EOF
expect read_back "${USERS[@]}"

via_proxy <<EOF
$USE
SELECT * FROM no_such_table;
SELECT JSON COUNT(*) FROM users;
EOF
if grep -Eq 'InvalidRequest.*no_such_table' <<<"$OUT" && grep -q '"count": 2' <<<"$OUT"; then
  pass missing_table_error
else
  fail missing_table_error "want an InvalidRequest naming no_such_table, then the next statement answered"
fi

direct_ok=1
for cluster in origin target; do
  up=${cluster^^}
  host_var=ZDM_${up}_CONTACT_POINTS
  cql "$cluster" "${!host_var%%,*}" <<EOF
SHOW VERSION;
$USE
$READ_USERS
SELECT JSON v FROM events WHERE p IN (1, 2, 4);
SELECT JSON COUNT(*) FROM events WHERE p = 5;
SELECT JSON n FROM hits WHERE id = 1;
SELECT JSON owner FROM locks WHERE id = 1;
EOF
  if [[ $cluster == origin ]]; then
    echo "DIRECT_PROTOCOL_VERSION=$(grep -Eo 'Native protocol v[0-9]+' <<<"$OUT" | grep -Eo '[0-9]+$' | head -n1)"
  fi
  for re in "${USERS[@]}" '"v": "l1"' '"v": "l2"' '"v": "u1"' '"v": "u2"' '\(4 rows\)' '"count": 25' '"n": 6\}' '"owner": "me"'; do
    if ! grep -Eq -- "$re" <<<"$OUT" || grep -Eq '(Error|Exception)' <<<"$OUT"; then
      fail direct_check "$cluster: no match for /$re/"
      direct_ok=0
      break 2
    fi
  done
done
((direct_ok)) && pass direct_check

exit "$failed"
