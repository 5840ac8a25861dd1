"""The driver suite's Python conformance program: the DataStax/Apache `cassandra-driver`
through the deployed proxy fleet, step by step, as an application would use it. The contract
shared by every program of the suite (environment in, `PROTOCOL_VERSION=`, `STEP name: ok|FAIL`
lines and the exit code out) is described in tests/drivers/README.md.
"""

import os
import sys
import time

from cassandra import InvalidRequest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster
from cassandra.query import BatchStatement, BatchType, SimpleStatement

FAILED = []


def step(name, fn):
    try:
        fn()
    except Exception as e:  # every failure is reported as the step's, then the next step runs
        FAILED.append(name)
        print(f"STEP {name}: FAIL {type(e).__name__}: {e}".replace("\n", " "), flush=True)
        return
    print(f"STEP {name}: ok", flush=True)


def env(key):
    value = os.environ.get(key)
    if not value:
        sys.exit(f"missing environment variable {key}")
    return value


def cluster(hosts, user, password):
    # No protocol_version: the driver negotiates the highest version both sides speak.
    return Cluster(
        hosts,
        port=9042,
        auth_provider=PlainTextAuthProvider(user, password),
        connect_timeout=20,
        control_connection_timeout=20,
    )


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


class Address:
    """The `address` UDT, registered with the driver so it maps both ways."""

    def __init__(self, street=None, zip=None):
        self.street, self.zip = street, zip

    def __eq__(self, other):
        return (self.street, self.zip) == (other.street, other.zip)

    def __repr__(self):
        return f"Address({self.street!r}, {self.zip!r})"


PROXIES = env("ZDM_DRIVER_PROXIES").split(",")
USER, PASSWORD = env("ZDM_DRIVER_USERNAME"), env("ZDM_DRIVER_PASSWORD")
KS = env("ZDM_DRIVER_KEYSPACE")
WANT = {
    1: ("ada", {"a@x.test", "ada@x.test"}, ["a", "b"], {"k": 1}, Address("Main", 1000)),
    2: ("bob", {"bob@x.test"}, ["x"], {"z": 26}, Address("Elm", 2000)),
}

state = {}


def connect():
    c = cluster(PROXIES, USER, PASSWORD)
    state["cluster"] = c
    state["s"] = c.connect()
    got = sorted(h.endpoint.address for h in c.metadata.all_hosts())
    check(got == sorted(PROXIES), f"nodes in the driver's metadata: {got}, want exactly {sorted(PROXIES)}")


def ddl():
    s = state["s"]
    for q in [
        f"CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
        f"CREATE TYPE {KS}.address (street text, zip int)",
        f"CREATE TABLE {KS}.users (id int PRIMARY KEY, name text, emails set<text>, tags list<text>, "
        "attrs map<text, int>, home frozen<address>)",
        f"CREATE TABLE {KS}.events (p int, c int, v text, PRIMARY KEY (p, c))",
        f"CREATE TABLE {KS}.hits (id int PRIMARY KEY, n counter)",
        f"CREATE TABLE {KS}.locks (id int PRIMARY KEY, owner text)",
    ]:
        s.execute(q)
    state["cluster"].register_user_type(KS, "address", Address)


def use():
    s = state["s"]
    s.execute(f"USE {KS}")
    check(s.keyspace == KS, f"session keyspace is {s.keyspace}")
    s.execute("SELECT COUNT(*) FROM users")


def second_session():
    """A second cluster object of the same application, connected before the ALTER TABLE."""
    c2 = cluster(PROXIES, USER, PASSWORD)
    c2.connect()
    state["cluster2"] = c2
    check("users" in c2.metadata.keyspaces[KS].tables, "the second session does not see table users")


def prepared_write():
    s = state["s"]
    ins = s.prepare("INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (?, ?, ?, ?, ?, ?)")
    s.execute(ins, (1, *WANT[1]))


def simple_write():
    state["s"].execute(
        SimpleStatement(
            "INSERT INTO users (id, name, emails, tags, attrs, home) VALUES "
            "(2, 'bob', {'bob@x.test'}, ['x'], {'z': 26}, {street: 'Elm', zip: 2000})"
        )
    )


def events(s, p):
    return [r.v for r in s.execute("SELECT v FROM events WHERE p = %s", (p,))]


def batch(kind, p, values):
    s = state["s"]
    ins = s.prepare("INSERT INTO events (p, c, v) VALUES (?, ?, ?)")
    b = BatchStatement(batch_type=kind)
    for i, v in enumerate(values, start=1):
        if i % 2:
            b.add(ins, (p, i, v))
        else:
            b.add(SimpleStatement("INSERT INTO events (p, c, v) VALUES (%s, %s, %s)"), (p, i, v))
    s.execute(b)
    got = events(s, p)
    check(got == values, f"partition {p} holds {got}, want {values}")


def ttl():
    s = state["s"]
    s.execute("INSERT INTO events (p, c, v) VALUES (3, 1, 'short') USING TTL 600")
    t = s.execute("SELECT TTL(v) FROM events WHERE p = 3 AND c = 1").one()[0]
    check(0 < t <= 600, f"TTL(v) = {t}, want 1..600")


def delete():
    s = state["s"]
    s.execute("INSERT INTO events (p, c, v) VALUES (4, 1, 'gone')")
    s.execute("DELETE FROM events WHERE p = 4 AND c = 1")
    check(events(s, 4) == [], "the deleted row is still there")


def paging():
    s = state["s"]
    ins = s.prepare("INSERT INTO events (p, c, v) VALUES (5, ?, ?)")
    b = BatchStatement(batch_type=BatchType.UNLOGGED)
    for c in range(25):
        b.add(ins, (c, f"r{c}"))
    s.execute(b)
    rs = s.execute(SimpleStatement("SELECT c FROM events WHERE p = 5", fetch_size=7))
    pages, rows = 0, []
    while True:
        page = list(rs.current_rows)
        check(len(page) <= 7, f"a page of {len(page)} rows at fetch size 7")
        rows += [r.c for r in page]
        pages += 1
        if not rs.has_more_pages:
            break
        rs.fetch_next_page()
    check(rows == list(range(25)) and pages >= 4, f"{len(rows)} rows in {pages} pages, want 25 in at least 4")


def lwt():
    s = state["s"]
    r = s.execute("INSERT INTO locks (id, owner) VALUES (1, 'me') IF NOT EXISTS")
    check(r.was_applied, "the first INSERT IF NOT EXISTS was not applied")
    r = s.execute("INSERT INTO locks (id, owner) VALUES (1, 'you') IF NOT EXISTS")
    check(not r.was_applied and r.one().owner == "me", f"second INSERT IF NOT EXISTS: {r.one()}")
    r = s.execute("UPDATE locks SET owner = 'you' WHERE id = 1 IF owner = 'nobody'")
    check(not r.was_applied and r.one().owner == "me", f"UPDATE IF owner = 'nobody': {r.one()}")


def counter():
    s = state["s"]
    for _ in range(2):
        s.execute("UPDATE hits SET n = n + 3 WHERE id = 1")
    n = s.execute("SELECT n FROM hits WHERE id = 1").one().n
    check(n == 6, f"counter = {n}, want 6")


def check_users(s):
    for i, (name, emails, tags, attrs, home) in WANT.items():
        r = s.execute("SELECT name, emails, tags, attrs, home FROM users WHERE id = %s", (i,)).one()
        got = (r.name, set(r.emails), list(r.tags), dict(r.attrs), r.home)
        check(got == (name, emails, tags, attrs, home), f"user {i} reads {got}")


def read_back():
    check_users(state["s"])


def missing_table_error():
    s = state["s"]
    try:
        s.execute("SELECT * FROM no_such_table")
    except InvalidRequest as e:
        check("no_such_table" in str(e), f"the error does not name the table: {e}")
    else:
        raise AssertionError("SELECT from a missing table succeeded")
    s.execute("SELECT COUNT(*) FROM users")


def schema_event():
    c2 = state.get("cluster2")
    check(c2 is not None, "no second session")
    state["s"].execute("ALTER TABLE users ADD nickname text")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "nickname" in c2.metadata.keyspaces[KS].tables["users"].columns:
            return
        time.sleep(0.2)
    raise AssertionError("the second session was not told of the ALTER TABLE within 10 s (no SCHEMA_CHANGE event)")


def direct_check():
    for name in ("ORIGIN", "TARGET"):
        c = cluster(
            env(f"ZDM_{name}_CONTACT_POINTS").split(","), env(f"ZDM_{name}_USERNAME"), env(f"ZDM_{name}_PASSWORD")
        )
        try:
            s = c.connect(KS)
            c.register_user_type(KS, "address", Address)
            if name == "ORIGIN":
                print(f"DIRECT_PROTOCOL_VERSION={c.protocol_version}", flush=True)
            try:
                check_users(s)
                for p, vs in {1: ["l1", "l2"], 2: ["u1", "u2"], 4: []}.items():
                    check(events(s, p) == vs, f"partition {p} holds {events(s, p)}")
                n = s.execute("SELECT COUNT(*) FROM events WHERE p = 5").one()[0]
                check(n == 25, f"partition 5 has {n} rows")
                hits = s.execute("SELECT n FROM hits WHERE id = 1").one().n
                check(hits == 6, f"counter = {hits}")
                owner = s.execute("SELECT owner FROM locks WHERE id = 1").one().owner
                check(owner == "me", f"lock owner = {owner}")
            except AssertionError as e:
                raise AssertionError(f"{name}: {e}") from None
        finally:
            c.shutdown()


step("connect", connect)
if "s" not in state:
    sys.exit(1)
print(f"PROTOCOL_VERSION={state['cluster'].protocol_version}", flush=True)
step("ddl", ddl)
step("use", use)
try:
    second_session()
except Exception as e:
    print(f"second session: {e}", file=sys.stderr)
for name, fn in [
    ("prepared_write", prepared_write),
    ("simple_write", simple_write),
    ("batch_logged", lambda: batch(BatchType.LOGGED, 1, ["l1", "l2"])),
    ("batch_unlogged", lambda: batch(BatchType.UNLOGGED, 2, ["u1", "u2"])),
    ("ttl", ttl),
    ("delete", delete),
    ("paging", paging),
    ("lwt", lwt),
    ("counter", counter),
    ("read_back", read_back),
    ("missing_table_error", missing_table_error),
    ("schema_event", schema_event),
    ("direct_check", direct_check),
]:
    step(name, fn)
for c in (state.get("cluster"), state.get("cluster2")):
    if c is not None:
        c.shutdown()
sys.exit(1 if FAILED else 0)
