// The driver suite's Java conformance program: the Apache Cassandra Java driver 4.x through the
// deployed proxy fleet, step by step, as an application would use it. The contract shared by
// every program of the suite (environment in, `PROTOCOL_VERSION=`, `STEP name: ok|FAIL` lines
// and the exit code out) is described in tests/drivers/README.md.
//
// The local data center is inferred from the contact points (DcInferringLoadBalancingPolicy):
// the program does not need to know what the proxies report.

import com.datastax.oss.driver.api.core.CqlIdentifier;
import com.datastax.oss.driver.api.core.CqlSession;
import com.datastax.oss.driver.api.core.config.DefaultDriverOption;
import com.datastax.oss.driver.api.core.config.DriverConfigLoader;
import com.datastax.oss.driver.api.core.cql.BatchStatement;
import com.datastax.oss.driver.api.core.cql.DefaultBatchType;
import com.datastax.oss.driver.api.core.cql.PreparedStatement;
import com.datastax.oss.driver.api.core.cql.ResultSet;
import com.datastax.oss.driver.api.core.cql.Row;
import com.datastax.oss.driver.api.core.cql.SimpleStatement;
import com.datastax.oss.driver.api.core.data.UdtValue;
import com.datastax.oss.driver.api.core.metadata.Node;
import com.datastax.oss.driver.api.core.metadata.schema.SchemaChangeListenerBase;
import com.datastax.oss.driver.api.core.metadata.schema.TableMetadata;
import com.datastax.oss.driver.api.core.servererrors.InvalidQueryException;
import com.datastax.oss.driver.api.core.type.UserDefinedType;
import com.datastax.oss.driver.internal.core.loadbalancing.DcInferringLoadBalancingPolicy;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class Conformance {
  interface Step {
    void run() throws Exception;
  }

  static boolean failed;

  static void step(String name, Step s) {
    try {
      s.run();
      System.out.println("STEP " + name + ": ok");
    } catch (Throwable e) {
      failed = true;
      System.out.println(("STEP " + name + ": FAIL " + e).replace('\n', ' '));
    }
    System.out.flush();
  }

  static void check(boolean cond, String msg) {
    if (!cond) {
      throw new AssertionError(msg);
    }
  }

  static String env(String key) {
    String v = System.getenv(key);
    if (v == null || v.isEmpty()) {
      System.err.println("missing environment variable " + key);
      System.exit(2);
    }
    return v;
  }

  static final String KS = env("ZDM_DRIVER_KEYSPACE");
  static final Map<Integer, List<Object>> WANT =
      Map.of(
          1, List.of("ada", Set.of("a@x.test", "ada@x.test"), List.of("a", "b"), Map.of("k", 1), List.of("Main", 1000)),
          2, List.of("bob", Set.of("bob@x.test"), List.of("x"), Map.of("z", 26), List.of("Elm", 2000)));

  static CqlSession session(String hosts, String user, String password, String keyspace,
      SchemaChangeListenerBase listener) {
    DriverConfigLoader config =
        DriverConfigLoader.programmaticBuilder()
            .withClass(DefaultDriverOption.LOAD_BALANCING_POLICY_CLASS, DcInferringLoadBalancingPolicy.class)
            .withDuration(DefaultDriverOption.REQUEST_TIMEOUT, Duration.ofSeconds(30))
            .withDuration(DefaultDriverOption.CONNECTION_CONNECT_TIMEOUT, Duration.ofSeconds(20))
            .withDuration(DefaultDriverOption.CONNECTION_INIT_QUERY_TIMEOUT, Duration.ofSeconds(20))
            .withDuration(DefaultDriverOption.CONTROL_CONNECTION_TIMEOUT, Duration.ofSeconds(20))
            .withDuration(DefaultDriverOption.METADATA_SCHEMA_REQUEST_TIMEOUT, Duration.ofSeconds(20))
            .build();
    var b = CqlSession.builder().withConfigLoader(config).withAuthCredentials(user, password);
    for (String h : hosts.split(",")) {
      b.addContactPoint(new InetSocketAddress(h, 9042));
    }
    if (keyspace != null) {
      b.withKeyspace(keyspace);
    }
    if (listener != null) {
      b.withSchemaChangeListener(listener);
    }
    return b.build();
  }

  static List<String> events(CqlSession s, int p) {
    List<String> out = new ArrayList<>();
    for (Row r : s.execute(SimpleStatement.newInstance("SELECT v FROM events WHERE p = ?", p))) {
      out.add(r.getString("v"));
    }
    return out;
  }

  static void checkUsers(CqlSession s) {
    for (var e : WANT.entrySet()) {
      Row r = s.execute(SimpleStatement.newInstance(
          "SELECT name, emails, tags, attrs, home FROM users WHERE id = ?", e.getKey())).one();
      check(r != null, "user " + e.getKey() + " is missing");
      UdtValue home = r.getUdtValue("home");
      List<Object> got = List.of(r.getString("name"), r.getSet("emails", String.class),
          r.getList("tags", String.class), r.getMap("attrs", String.class, Integer.class),
          List.of(home.getString("street"), home.getInt("zip")));
      check(got.equals(e.getValue()), "user " + e.getKey() + " reads " + got);
    }
  }

  /** Told by the driver when a table's metadata changes (a SCHEMA_CHANGE event made it refresh). */
  static final class NicknameWatch extends SchemaChangeListenerBase {
    final CountDownLatch seen = new CountDownLatch(1);

    @Override
    public void onTableUpdated(TableMetadata current, TableMetadata previous) {
      if (current.getKeyspace().asInternal().equals(KS)
          && current.getName().asInternal().equals("users")
          && current.getColumn("nickname").isPresent()) {
        seen.countDown();
      }
    }
  }

  public static void main(String[] args) throws Exception {
    String proxies = env("ZDM_DRIVER_PROXIES");
    String user = env("ZDM_DRIVER_USERNAME");
    String password = env("ZDM_DRIVER_PASSWORD");
    CqlSession[] holder = new CqlSession[2];

    step("connect", () -> {
      holder[0] = session(proxies, user, password, null, null);
      Set<String> got = new TreeSet<>();
      for (Node n : holder[0].getMetadata().getNodes().values()) {
        got.add(((InetSocketAddress) n.getEndPoint().resolve()).getAddress().getHostAddress());
      }
      Set<String> want = new TreeSet<>(Arrays.asList(proxies.split(",")));
      check(got.equals(want), "nodes in the driver's metadata: " + got + ", want exactly " + want);
    });
    CqlSession s = holder[0];
    if (s == null) {
      System.exit(1);
    }
    System.out.println("PROTOCOL_VERSION=" + s.getContext().getProtocolVersion().getCode());

    step("ddl", () -> {
      for (String q : List.of(
          "CREATE KEYSPACE " + KS + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
          "CREATE TYPE " + KS + ".address (street text, zip int)",
          "CREATE TABLE " + KS + ".users (id int PRIMARY KEY, name text, emails set<text>, tags list<text>, attrs map<text, int>, home frozen<address>)",
          "CREATE TABLE " + KS + ".events (p int, c int, v text, PRIMARY KEY (p, c))",
          "CREATE TABLE " + KS + ".hits (id int PRIMARY KEY, n counter)",
          "CREATE TABLE " + KS + ".locks (id int PRIMARY KEY, owner text)")) {
        s.execute(q);
      }
    });
    step("use", () -> {
      s.execute("USE " + KS);
      check(s.getKeyspace().map(CqlIdentifier::asInternal).orElse("").equals(KS),
          "session keyspace is " + s.getKeyspace());
      s.execute("SELECT COUNT(*) FROM users");
    });

    // A second session of the same application, open before the ALTER TABLE of schema_event.
    NicknameWatch watch = new NicknameWatch();
    Exception s2Error = null;
    try {
      holder[1] = session(proxies, user, password, null, watch);
    } catch (Exception e) {
      s2Error = e;
    }
    Exception secondSessionError = s2Error;

    step("prepared_write", () -> {
      UserDefinedType address = s.getMetadata().getKeyspace(KS)
          .flatMap(k -> k.getUserDefinedType("address")).orElseThrow();
      PreparedStatement ps = s.prepare(
          "INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (?, ?, ?, ?, ?, ?)");
      List<Object> u = WANT.get(1);
      List<?> home = (List<?>) u.get(4);
      UdtValue h = address.newValue().setString("street", (String) home.get(0)).setInt("zip", (Integer) home.get(1));
      s.execute(ps.bind(1, u.get(0), u.get(1), u.get(2), u.get(3), h));
    });
    step("simple_write", () -> s.execute(SimpleStatement.newInstance(
        "INSERT INTO users (id, name, emails, tags, attrs, home) VALUES "
            + "(2, 'bob', {'bob@x.test'}, ['x'], {'z': 26}, {street: 'Elm', zip: 2000})")));
    PreparedStatement insEvent = s.prepare("INSERT INTO events (p, c, v) VALUES (?, ?, ?)");
    step("batch_logged", () -> {
      s.execute(BatchStatement.newInstance(DefaultBatchType.LOGGED,
          insEvent.bind(1, 1, "l1"),
          SimpleStatement.newInstance("INSERT INTO events (p, c, v) VALUES (1, 2, 'l2')")));
      check(events(s, 1).equals(List.of("l1", "l2")), "partition 1 holds " + events(s, 1));
    });
    step("batch_unlogged", () -> {
      s.execute(BatchStatement.newInstance(DefaultBatchType.UNLOGGED,
          insEvent.bind(2, 1, "u1"), insEvent.bind(2, 2, "u2")));
      check(events(s, 2).equals(List.of("u1", "u2")), "partition 2 holds " + events(s, 2));
    });
    step("ttl", () -> {
      s.execute("INSERT INTO events (p, c, v) VALUES (3, 1, 'short') USING TTL 600");
      int t = s.execute("SELECT TTL(v) FROM events WHERE p = 3 AND c = 1").one().getInt(0);
      check(t > 0 && t <= 600, "TTL(v) = " + t + ", want 1..600");
    });
    step("delete", () -> {
      s.execute("INSERT INTO events (p, c, v) VALUES (4, 1, 'gone')");
      s.execute(SimpleStatement.newInstance("DELETE FROM events WHERE p = ? AND c = ?", 4, 1));
      check(events(s, 4).isEmpty(), "the deleted row is still there");
    });
    step("paging", () -> {
      var b = BatchStatement.builder(DefaultBatchType.UNLOGGED);
      for (int c = 0; c < 25; c++) {
        b.addStatement(insEvent.bind(5, c, "r" + c));
      }
      s.execute(b.build());
      List<Integer> rows = new ArrayList<>();
      int pages = 0;
      ByteBuffer state = null;
      do {
        ResultSet rs = s.execute(SimpleStatement.newInstance("SELECT c FROM events WHERE p = 5")
            .setPageSize(7).setPagingState(state));
        int n = rs.getAvailableWithoutFetching();
        check(n <= 7, "a page of " + n + " rows at fetch size 7");
        for (int i = 0; i < n; i++) {
          rows.add(rs.one().getInt("c"));
        }
        pages++;
        state = rs.getExecutionInfo().getPagingState();
      } while (state != null);
      List<Integer> want = new ArrayList<>();
      for (int c = 0; c < 25; c++) {
        want.add(c);
      }
      check(rows.equals(want) && pages >= 4, rows.size() + " rows in " + pages + " pages, want 25 in at least 4");
    });
    step("lwt", () -> {
      check(s.execute("INSERT INTO locks (id, owner) VALUES (1, 'me') IF NOT EXISTS").wasApplied(),
          "the first INSERT IF NOT EXISTS was not applied");
      ResultSet rs = s.execute("INSERT INTO locks (id, owner) VALUES (1, 'you') IF NOT EXISTS");
      boolean applied = rs.wasApplied();
      Row r = rs.one();
      check(!applied && "me".equals(r.getString("owner")), "second INSERT IF NOT EXISTS: " + r.getFormattedContents());
      rs = s.execute(SimpleStatement.newInstance("UPDATE locks SET owner = 'you' WHERE id = ? IF owner = 'nobody'", 1));
      applied = rs.wasApplied();
      r = rs.one();
      check(!applied && "me".equals(r.getString("owner")), "UPDATE IF owner = 'nobody': " + r.getFormattedContents());
    });
    step("counter", () -> {
      for (int i = 0; i < 2; i++) {
        s.execute("UPDATE hits SET n = n + 3 WHERE id = 1");
      }
      long n = s.execute("SELECT n FROM hits WHERE id = 1").one().getLong("n");
      check(n == 6, "counter = " + n + ", want 6");
    });
    step("read_back", () -> checkUsers(s));
    step("missing_table_error", () -> {
      try {
        s.execute("SELECT * FROM no_such_table");
        throw new AssertionError("SELECT from a missing table succeeded");
      } catch (InvalidQueryException e) {
        check(e.getMessage().contains("no_such_table"), "the error does not name the table: " + e.getMessage());
      }
      s.execute("SELECT COUNT(*) FROM users");
    });
    step("schema_event", () -> {
      if (secondSessionError != null) {
        throw new AssertionError("second session: " + secondSessionError);
      }
      s.execute("ALTER TABLE users ADD nickname text");
      check(watch.seen.await(10, TimeUnit.SECONDS),
          "the second session was not told of the ALTER TABLE within 10 s (no SCHEMA_CHANGE event)");
    });
    step("direct_check", () -> {
      for (String name : List.of("ORIGIN", "TARGET")) {
        try (CqlSession d = session(env("ZDM_" + name + "_CONTACT_POINTS"), env("ZDM_" + name + "_USERNAME"),
            env("ZDM_" + name + "_PASSWORD"), KS, null)) {
          if (name.equals("ORIGIN")) {
            System.out.println("DIRECT_PROTOCOL_VERSION=" + d.getContext().getProtocolVersion().getCode());
          }
          checkUsers(d);
          check(events(d, 1).equals(List.of("l1", "l2")), "partition 1 holds " + events(d, 1));
          check(events(d, 2).equals(List.of("u1", "u2")), "partition 2 holds " + events(d, 2));
          check(events(d, 4).isEmpty(), "partition 4 holds " + events(d, 4));
          long n = d.execute("SELECT COUNT(*) FROM events WHERE p = 5").one().getLong(0);
          check(n == 25, "partition 5 has " + n + " rows");
          long hits = d.execute("SELECT n FROM hits WHERE id = 1").one().getLong("n");
          check(hits == 6, "counter = " + hits);
          String owner = d.execute("SELECT owner FROM locks WHERE id = 1").one().getString("owner");
          check(Objects.equals(owner, "me"), "lock owner = " + owner);
        } catch (Throwable e) {
          throw new AssertionError(name + ": " + e, e);
        }
      }
    });

    for (CqlSession c : holder) {
      if (c != null) {
        c.close();
      }
    }
    System.exit(failed ? 1 : 0);
  }
}
