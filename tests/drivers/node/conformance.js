'use strict';
// The driver suite's Node.js conformance program: the `cassandra-driver` package through the
// deployed proxy fleet, step by step, as an application would use it. The contract shared by
// every program of the suite (environment in, `PROTOCOL_VERSION=`, `STEP name: ok|FAIL` lines
// and the exit code out) is described in tests/drivers/README.md.
//
// The driver (4.x) speaks protocol v4 at most against Apache Cassandra; it negotiates the
// highest version both sides speak on its own.

const assert = require('assert');
const cassandra = require('cassandra-driver');

const { RoundRobinPolicy } = cassandra.policies.loadBalancing;

function env(key) {
  const v = process.env[key];
  if (!v) {
    console.error(`missing environment variable ${key}`);
    process.exit(2);
  }
  return v;
}

const PROXIES = env('ZDM_DRIVER_PROXIES').split(',');
const USER = env('ZDM_DRIVER_USERNAME');
const PASSWORD = env('ZDM_DRIVER_PASSWORD');
const KS = env('ZDM_DRIVER_KEYSPACE');
const WANT = {
  1: { name: 'ada', emails: ['a@x.test', 'ada@x.test'], tags: ['a', 'b'], attrs: { k: 1 }, home: { street: 'Main', zip: 1000 } },
  2: { name: 'bob', emails: ['bob@x.test'], tags: ['x'], attrs: { z: 26 }, home: { street: 'Elm', zip: 2000 } },
};

let failed = false;
async function step(name, fn) {
  try {
    await fn();
    console.log(`STEP ${name}: ok`);
  } catch (e) {
    failed = true;
    console.log(`STEP ${name}: FAIL ${String(e && e.message || e).replace(/\n/g, ' ')}`);
  }
}

/** The data center the nodes report: a DC-aware client must be told its local one. */
async function localDc(hosts, user, password) {
  const probe = new cassandra.Client({
    contactPoints: hosts,
    credentials: { username: user, password },
    policies: { loadBalancing: new RoundRobinPolicy() },
    isMetadataSyncEnabled: false,
  });
  try {
    const rs = await probe.execute('SELECT data_center FROM system.local');
    return rs.first().data_center;
  } finally {
    await probe.shutdown();
  }
}

async function client(hosts, user, password, keyspace) {
  const c = new cassandra.Client({
    contactPoints: hosts,
    localDataCenter: await localDc(hosts, user, password),
    credentials: { username: user, password },
    keyspace,
    socketOptions: { connectTimeout: 20000, readTimeout: 30000 },
  });
  await c.connect();
  return c;
}

async function events(c, p) {
  const rs = await c.execute('SELECT v FROM events WHERE p = ?', [p], { prepare: true });
  return rs.rows.map((r) => r.v);
}

async function checkUsers(c) {
  for (const [id, want] of Object.entries(WANT)) {
    const r = (await c.execute('SELECT name, emails, tags, attrs, home FROM users WHERE id = ?', [Number(id)], { prepare: true })).first();
    assert.ok(r, `user ${id} is missing`);
    const got = { name: r.name, emails: [...r.emails].sort(), tags: r.tags, attrs: { ...r.attrs }, home: { street: r.home.street, zip: r.home.zip } };
    assert.deepStrictEqual(got, want, `user ${id} reads ${JSON.stringify(got)}`);
  }
}

async function main() {
  let s;
  let s2;
  await step('connect', async () => {
    s = await client(PROXIES, USER, PASSWORD);
    const got = s.hosts.values().map((h) => h.address.split(':')[0]).sort();
    assert.deepStrictEqual(got, [...PROXIES].sort(), `nodes in the driver's metadata: ${got}`);
  });
  if (!s) process.exit(1);
  console.log(`PROTOCOL_VERSION=${s.controlConnection.protocolVersion}`);

  await step('ddl', async () => {
    for (const q of [
      `CREATE KEYSPACE ${KS} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
      `CREATE TYPE ${KS}.address (street text, zip int)`,
      `CREATE TABLE ${KS}.users (id int PRIMARY KEY, name text, emails set<text>, tags list<text>, attrs map<text, int>, home frozen<address>)`,
      `CREATE TABLE ${KS}.events (p int, c int, v text, PRIMARY KEY (p, c))`,
      `CREATE TABLE ${KS}.hits (id int PRIMARY KEY, n counter)`,
      `CREATE TABLE ${KS}.locks (id int PRIMARY KEY, owner text)`,
    ]) {
      await s.execute(q);
    }
  });
  await step('use', async () => {
    await s.execute(`USE ${KS}`);
    assert.strictEqual(s.keyspace, KS, `client keyspace is ${s.keyspace}`);
    await s.execute('SELECT COUNT(*) FROM users');
  });

  // A second client of the same application, with the table's metadata loaded before the
  // ALTER TABLE of schema_event.
  let s2Error;
  try {
    s2 = await client(PROXIES, USER, PASSWORD);
    const t = await s2.metadata.getTable(KS, 'users');
    assert.ok(t, 'the second client does not see table users');
  } catch (e) {
    s2Error = e;
  }

  await step('prepared_write', async () => {
    const u = WANT[1];
    await s.execute('INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (?, ?, ?, ?, ?, ?)',
      [1, u.name, u.emails, u.tags, u.attrs, u.home], { prepare: true });
  });
  await step('simple_write', async () => {
    await s.execute("INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (2, 'bob', {'bob@x.test'}, ['x'], {'z': 26}, {street: 'Elm', zip: 2000})");
  });
  await step('batch_logged', async () => {
    await s.batch([
      { query: 'INSERT INTO events (p, c, v) VALUES (?, ?, ?)', params: [1, 1, 'l1'] },
      { query: 'INSERT INTO events (p, c, v) VALUES (?, ?, ?)', params: [1, 2, 'l2'] },
    ], { prepare: true, logged: true });
    assert.deepStrictEqual(await events(s, 1), ['l1', 'l2']);
  });
  await step('batch_unlogged', async () => {
    await s.batch([
      "INSERT INTO events (p, c, v) VALUES (2, 1, 'u1')",
      "INSERT INTO events (p, c, v) VALUES (2, 2, 'u2')",
    ], { logged: false });
    assert.deepStrictEqual(await events(s, 2), ['u1', 'u2']);
  });
  await step('ttl', async () => {
    await s.execute("INSERT INTO events (p, c, v) VALUES (3, 1, 'short') USING TTL 600");
    const t = (await s.execute('SELECT TTL(v) AS t FROM events WHERE p = 3 AND c = 1')).first().t;
    assert.ok(t > 0 && t <= 600, `TTL(v) = ${t}, want 1..600`);
  });
  await step('delete', async () => {
    await s.execute("INSERT INTO events (p, c, v) VALUES (4, 1, 'gone')");
    await s.execute('DELETE FROM events WHERE p = ? AND c = ?', [4, 1], { prepare: true });
    assert.deepStrictEqual(await events(s, 4), []);
  });
  await step('paging', async () => {
    const q = [];
    for (let c = 0; c < 25; c++) q.push({ query: 'INSERT INTO events (p, c, v) VALUES (5, ?, ?)', params: [c, `r${c}`] });
    await s.batch(q, { prepare: true, logged: false });
    const rows = [];
    let pages = 0;
    let pageState;
    do {
      const rs = await s.execute('SELECT c FROM events WHERE p = 5', [], { prepare: true, fetchSize: 7, pageState });
      assert.ok(rs.rows.length <= 7, `a page of ${rs.rows.length} rows at fetch size 7`);
      rows.push(...rs.rows.map((r) => r.c));
      pages++;
      pageState = rs.pageState;
    } while (pageState);
    assert.deepStrictEqual(rows, [...Array(25).keys()], `${rows.length} rows read`);
    assert.ok(pages >= 4, `${pages} pages, want at least 4`);
  });
  await step('lwt', async () => {
    let rs = await s.execute("INSERT INTO locks (id, owner) VALUES (1, 'me') IF NOT EXISTS");
    assert.ok(rs.wasApplied(), 'the first INSERT IF NOT EXISTS was not applied');
    rs = await s.execute("INSERT INTO locks (id, owner) VALUES (1, 'you') IF NOT EXISTS");
    assert.ok(!rs.wasApplied() && rs.first().owner === 'me', `second INSERT IF NOT EXISTS: ${JSON.stringify(rs.first())}`);
    rs = await s.execute("UPDATE locks SET owner = 'you' WHERE id = ? IF owner = 'nobody'", [1], { prepare: true });
    assert.ok(!rs.wasApplied() && rs.first().owner === 'me', `UPDATE IF owner = 'nobody': ${JSON.stringify(rs.first())}`);
  });
  await step('counter', async () => {
    for (let i = 0; i < 2; i++) await s.execute('UPDATE hits SET n = n + 3 WHERE id = 1');
    const n = (await s.execute('SELECT n FROM hits WHERE id = 1')).first().n;
    assert.strictEqual(n.toString(), '6', `counter = ${n}`);
  });
  await step('read_back', () => checkUsers(s));
  await step('missing_table_error', async () => {
    await assert.rejects(s.execute('SELECT * FROM no_such_table'), (e) => {
      assert.ok(e instanceof cassandra.errors.ResponseError, `not a server error: ${e}`);
      assert.strictEqual(e.code, cassandra.types.responseErrorCodes.invalid, `error code ${e.code}: ${e.message}`);
      assert.ok(/no_such_table/.test(e.message), `the error does not name the table: ${e.message}`);
      return true;
    });
    await s.execute('SELECT COUNT(*) FROM users');
  });
  await step('schema_event', async () => {
    if (s2Error) throw new Error(`second client: ${s2Error.message}`);
    await s.execute('ALTER TABLE users ADD nickname text');
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      const t = await s2.metadata.getTable(KS, 'users');
      if (t && t.columnsByName.nickname) return;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error('the second client was not told of the ALTER TABLE within 10 s (no SCHEMA_CHANGE event)');
  });
  await step('direct_check', async () => {
    for (const name of ['ORIGIN', 'TARGET']) {
      const d = await client(env(`ZDM_${name}_CONTACT_POINTS`).split(','), env(`ZDM_${name}_USERNAME`), env(`ZDM_${name}_PASSWORD`), KS);
      try {
        if (name === 'ORIGIN') console.log(`DIRECT_PROTOCOL_VERSION=${d.controlConnection.protocolVersion}`);
        await checkUsers(d);
        for (const [p, vs] of [[1, ['l1', 'l2']], [2, ['u1', 'u2']], [4, []]]) {
          assert.deepStrictEqual(await events(d, p), vs, `partition ${p}`);
        }
        const n = (await d.execute('SELECT COUNT(*) AS n FROM events WHERE p = 5')).first().n;
        assert.strictEqual(n.toString(), '25', `partition 5 has ${n} rows`);
        const hits = (await d.execute('SELECT n FROM hits WHERE id = 1')).first().n;
        assert.strictEqual(hits.toString(), '6', `counter = ${hits}`);
        const owner = (await d.execute('SELECT owner FROM locks WHERE id = 1')).first().owner;
        assert.strictEqual(owner, 'me', `lock owner = ${owner}`);
      } catch (e) {
        throw new Error(`${name}: ${e.message}`);
      } finally {
        await d.shutdown();
      }
    }
  });

  await s.shutdown();
  if (s2) await s2.shutdown();
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`STEP main: FAIL ${e && e.stack}`);
  process.exit(1);
});
