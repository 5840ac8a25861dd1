// The driver suite's Go conformance program: gocql (apache/cassandra-gocql-driver v2) through
// the deployed proxy fleet, step by step, as an application would use it. The contract shared
// by every program of the suite (environment in, `PROTOCOL_VERSION=`, `STEP name: ok|FAIL`
// lines and the exit code out) is described in tests/drivers/README.md.
//
// gocql prepares every DML statement itself (there is no unprepared INSERT in its API), so the
// "simple" write here is a statement with literal values, and the logged batch carries plain
// query strings (batch entries of kind 0) while the unlogged one carries bound values.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

type address struct {
	Street string `cql:"street"`
	Zip    int    `cql:"zip"`
}

type person struct {
	name   string
	emails []string
	tags   []string
	attrs  map[string]int
	home   address
}

var failed bool

func step(name string, f func() error) {
	if err := f(); err != nil {
		failed = true
		fmt.Printf("STEP %s: FAIL %s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	fmt.Printf("STEP %s: ok\n", name)
}

func env(k string) string {
	v := os.Getenv(k)
	if v == "" {
		fmt.Fprintf(os.Stderr, "missing environment variable %s\n", k)
		os.Exit(2)
	}
	return v
}

// versionSeen records the protocol version of the frames the cluster answers with: gocql
// negotiates the version on its own and keeps the result private.
type versionSeen struct{ v atomic.Int32 }

func (o *versionSeen) ObserveFrameHeader(_ context.Context, h gocql.ObservedFrameHeader) {
	o.v.Store(int32(byte(h.Version) & 0x7f))
}

// tableWatch is told by the driver when a table's metadata changes (after a SCHEMA_CHANGE
// event from the cluster made it refresh).
type tableWatch struct {
	keyspace string
	updated  chan *gocql.TableMetadata
}

func (w *tableWatch) OnTableCreated(gocql.OnTableCreatedEvent) {}
func (w *tableWatch) OnTableDropped(gocql.OnTableDroppedEvent) {}
func (w *tableWatch) OnTableUpdated(e gocql.OnTableUpdatedEvent) {
	if e.New != nil && e.New.Keyspace == w.keyspace {
		select {
		case w.updated <- e.New:
		default:
		}
	}
}

func cluster(hosts []string, port int, user, password string) *gocql.ClusterConfig {
	c := gocql.NewCluster(hosts...)
	c.Port = port
	c.Authenticator = gocql.PasswordAuthenticator{Username: user, Password: password}
	c.Timeout = 20 * time.Second
	c.ConnectTimeout = 20 * time.Second
	c.Consistency = gocql.LocalQuorum
	return c
}

func main() {
	proxies := strings.Split(env("ZDM_DRIVER_PROXIES"), ",")
	user, password := env("ZDM_DRIVER_USERNAME"), env("ZDM_DRIVER_PASSWORD")
	ks := env("ZDM_DRIVER_KEYSPACE")
	port := 9042

	seen := &versionSeen{}
	var s *gocql.Session
	step("connect", func() error {
		c := cluster(proxies, port, user, password)
		c.FrameHeaderObserver = seen
		var err error
		if s, err = c.CreateSession(); err != nil {
			return err
		}
		var got []string
		for _, h := range s.GetHosts() {
			got = append(got, h.ConnectAddress().String())
		}
		return sameSet(got, proxies, "nodes in the driver's metadata")
	})
	if s == nil {
		os.Exit(1)
	}
	defer s.Close()
	if err := s.Query("SELECT release_version FROM system.local").Exec(); err == nil {
		fmt.Printf("PROTOCOL_VERSION=%d\n", seen.v.Load())
	}

	step("ddl", func() error {
		for _, q := range ddl(ks) {
			if err := s.Query(q).Exec(); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})

	// gocql refuses a USE statement (each pooled connection would need it); its USE is the
	// session keyspace, which it sends as USE on every connection it opens.
	var k *gocql.Session
	step("use", func() error {
		c := cluster(proxies, port, user, password)
		c.Keyspace = ks
		var err error
		if k, err = c.CreateSession(); err != nil {
			return err
		}
		var n int
		return k.Query("SELECT COUNT(*) FROM users").Scan(&n)
	})
	if k == nil {
		os.Exit(1)
	}
	defer k.Close()

	// A second session of the same application, open before the ALTER TABLE of schema_event.
	watch := &tableWatch{keyspace: ks, updated: make(chan *gocql.TableMetadata, 16)}
	c2 := cluster(proxies, port, user, password)
	c2.Metadata.SchemaListener.TableChangeListener = watch
	s2, err2 := c2.CreateSession()
	if err2 == nil {
		defer s2.Close()
	}

	want := map[int]person{
		1: {"ada", []string{"a@x.test", "ada@x.test"}, []string{"a", "b"}, map[string]int{"k": 1}, address{"Main", 1000}},
		2: {"bob", []string{"bob@x.test"}, []string{"x"}, map[string]int{"z": 26}, address{"Elm", 2000}},
	}
	step("prepared_write", func() error {
		u := want[1]
		return k.Query("INSERT INTO users (id, name, emails, tags, attrs, home) VALUES (?, ?, ?, ?, ?, ?)",
			1, u.name, u.emails, u.tags, u.attrs, u.home).Exec()
	})
	step("simple_write", func() error {
		return k.Query("INSERT INTO users (id, name, emails, tags, attrs, home) VALUES " +
			"(2, 'bob', {'bob@x.test'}, ['x'], {'z': 26}, {street: 'Elm', zip: 2000})").Exec()
	})
	step("batch_logged", func() error {
		b := k.Batch(gocql.LoggedBatch)
		b.Query("INSERT INTO events (p, c, v) VALUES (1, 1, 'l1')")
		b.Query("INSERT INTO events (p, c, v) VALUES (1, 2, 'l2')")
		if err := b.Exec(); err != nil {
			return err
		}
		return expectEvents(k, 1, []string{"l1", "l2"})
	})
	step("batch_unlogged", func() error {
		b := k.Batch(gocql.UnloggedBatch)
		b.Query("INSERT INTO events (p, c, v) VALUES (?, ?, ?)", 2, 1, "u1")
		b.Query("INSERT INTO events (p, c, v) VALUES (?, ?, ?)", 2, 2, "u2")
		if err := b.Exec(); err != nil {
			return err
		}
		return expectEvents(k, 2, []string{"u1", "u2"})
	})
	step("ttl", func() error {
		if err := k.Query("INSERT INTO events (p, c, v) VALUES (3, 1, 'short') USING TTL 600").Exec(); err != nil {
			return err
		}
		var ttl int
		if err := k.Query("SELECT TTL(v) FROM events WHERE p = 3 AND c = 1").Scan(&ttl); err != nil {
			return err
		}
		if ttl <= 0 || ttl > 600 {
			return fmt.Errorf("TTL(v) = %d, want 1..600", ttl)
		}
		return nil
	})
	step("delete", func() error {
		if err := k.Query("INSERT INTO events (p, c, v) VALUES (4, 1, 'gone')").Exec(); err != nil {
			return err
		}
		if err := k.Query("DELETE FROM events WHERE p = 4 AND c = 1").Exec(); err != nil {
			return err
		}
		return expectEvents(k, 4, nil)
	})
	step("paging", func() error {
		b := k.Batch(gocql.UnloggedBatch)
		for c := 0; c < 25; c++ {
			b.Query("INSERT INTO events (p, c, v) VALUES (?, ?, ?)", 5, c, fmt.Sprintf("r%d", c))
		}
		if err := b.Exec(); err != nil {
			return err
		}
		var state []byte
		pages, rows := 0, 0
		for {
			iter := k.Query("SELECT c FROM events WHERE p = 5").PageSize(7).PageState(state).Iter()
			n := iter.NumRows()
			var c int
			for iter.Scan(&c) {
				if c != rows {
					return fmt.Errorf("row %d has c = %d", rows, c)
				}
				rows++
			}
			state = iter.PageState()
			if err := iter.Close(); err != nil {
				return err
			}
			pages++
			if n > 7 {
				return fmt.Errorf("a page of %d rows at fetch size 7", n)
			}
			if len(state) == 0 {
				break
			}
		}
		if rows != 25 || pages < 4 {
			return fmt.Errorf("%d rows in %d pages, want 25 in at least 4", rows, pages)
		}
		return nil
	})
	step("lwt", func() error {
		var owner string
		applied, err := k.Query("INSERT INTO locks (id, owner) VALUES (1, 'me') IF NOT EXISTS").ScanCAS()
		if err != nil || !applied {
			return fmt.Errorf("first INSERT IF NOT EXISTS: applied=%v err=%v", applied, err)
		}
		var id int
		applied, err = k.Query("INSERT INTO locks (id, owner) VALUES (1, 'you') IF NOT EXISTS").ScanCAS(&id, &owner)
		if err != nil || applied || owner != "me" {
			return fmt.Errorf("second INSERT IF NOT EXISTS: applied=%v owner=%q err=%v", applied, owner, err)
		}
		applied, err = k.Query("UPDATE locks SET owner = 'you' WHERE id = 1 IF owner = 'nobody'").ScanCAS(&owner)
		if err != nil || applied || owner != "me" {
			return fmt.Errorf("UPDATE IF owner = 'nobody': applied=%v owner=%q err=%v", applied, owner, err)
		}
		return nil
	})
	step("counter", func() error {
		for i := 0; i < 2; i++ {
			if err := k.Query("UPDATE hits SET n = n + 3 WHERE id = 1").Exec(); err != nil {
				return err
			}
		}
		var n int64
		if err := k.Query("SELECT n FROM hits WHERE id = 1").Scan(&n); err != nil {
			return err
		}
		if n != 6 {
			return fmt.Errorf("counter = %d, want 6", n)
		}
		return nil
	})
	step("read_back", func() error { return expectUsers(k, "users", want) })
	step("missing_table_error", func() error {
		err := k.Query("SELECT * FROM no_such_table").Exec()
		var invalid *gocql.RequestErrInvalid
		if !errors.As(err, &invalid) || !strings.Contains(err.Error(), "no_such_table") {
			return fmt.Errorf("want an Invalid error naming no_such_table, got %v", err)
		}
		var n int
		return k.Query("SELECT COUNT(*) FROM users").Scan(&n)
	})
	step("schema_event", func() error {
		if err2 != nil {
			return fmt.Errorf("second session: %w", err2)
		}
		if err := k.Query("ALTER TABLE users ADD nickname text").Exec(); err != nil {
			return err
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case t := <-watch.updated:
				if t.Name == "users" && t.Columns["nickname"] != nil {
					return nil
				}
			case <-deadline:
				return errors.New("the second session was not told of the ALTER TABLE within 10 s (no SCHEMA_CHANGE event)")
			}
		}
	})
	step("direct_check", func() error {
		for i, name := range []string{"ORIGIN", "TARGET"} {
			seenDirect := &versionSeen{}
			c := cluster(strings.Split(env("ZDM_"+name+"_CONTACT_POINTS"), ","), port,
				env("ZDM_"+name+"_USERNAME"), env("ZDM_"+name+"_PASSWORD"))
			c.FrameHeaderObserver = seenDirect
			c.Keyspace = ks
			d, err := c.CreateSession()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			err = checkCluster(d)
			if i == 0 {
				fmt.Printf("DIRECT_PROTOCOL_VERSION=%d\n", seenDirect.v.Load())
			}
			d.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	})
	if failed {
		os.Exit(1)
	}
}

func ddl(ks string) []string {
	return []string{
		"CREATE KEYSPACE " + ks + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TYPE " + ks + ".address (street text, zip int)",
		"CREATE TABLE " + ks + ".users (id int PRIMARY KEY, name text, emails set<text>, tags list<text>, attrs map<text, int>, home frozen<address>)",
		"CREATE TABLE " + ks + ".events (p int, c int, v text, PRIMARY KEY (p, c))",
		"CREATE TABLE " + ks + ".hits (id int PRIMARY KEY, n counter)",
		"CREATE TABLE " + ks + ".locks (id int PRIMARY KEY, owner text)",
	}
}

// checkCluster reads on one real cluster what was written through the proxies.
func checkCluster(d *gocql.Session) error {
	if err := expectUsers(d, "users", map[int]person{
		1: {"ada", []string{"a@x.test", "ada@x.test"}, []string{"a", "b"}, map[string]int{"k": 1}, address{"Main", 1000}},
		2: {"bob", []string{"bob@x.test"}, []string{"x"}, map[string]int{"z": 26}, address{"Elm", 2000}},
	}); err != nil {
		return err
	}
	for p, vs := range map[int][]string{1: {"l1", "l2"}, 2: {"u1", "u2"}, 4: nil} {
		if err := expectEvents(d, p, vs); err != nil {
			return err
		}
	}
	var n int
	if err := d.Query("SELECT COUNT(*) FROM events WHERE p = 5").Scan(&n); err != nil || n != 25 {
		return fmt.Errorf("partition 5 has %d rows (want 25), err %v", n, err)
	}
	var hits int64
	if err := d.Query("SELECT n FROM hits WHERE id = 1").Scan(&hits); err != nil || hits != 6 {
		return fmt.Errorf("counter = %d (want 6), err %v", hits, err)
	}
	var owner string
	if err := d.Query("SELECT owner FROM locks WHERE id = 1").Scan(&owner); err != nil || owner != "me" {
		return fmt.Errorf("lock owner = %q (want me), err %v", owner, err)
	}
	return nil
}

func expectEvents(s *gocql.Session, p int, want []string) error {
	iter := s.Query("SELECT v FROM events WHERE p = ?", p).Iter()
	var got []string
	var v string
	for iter.Scan(&v) {
		got = append(got, v)
	}
	if err := iter.Close(); err != nil {
		return err
	}
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		return fmt.Errorf("partition %d holds %v, want %v", p, got, want)
	}
	return nil
}

func expectUsers(s *gocql.Session, table string, want map[int]person) error {
	for id, w := range want {
		var u person
		err := s.Query("SELECT name, emails, tags, attrs, home FROM "+table+" WHERE id = ?", id).
			Scan(&u.name, &u.emails, &u.tags, &u.attrs, &u.home)
		if err != nil {
			return fmt.Errorf("user %d: %w", id, err)
		}
		sort.Strings(u.emails)
		if !reflect.DeepEqual(u, w) {
			return fmt.Errorf("user %d reads %+v, want %+v", id, u, w)
		}
	}
	return nil
}

func sameSet(got, want []string, what string) error {
	g := append([]string(nil), got...)
	w := append([]string(nil), want...)
	sort.Strings(g)
	sort.Strings(w)
	if !reflect.DeepEqual(g, w) {
		return fmt.Errorf("%s: %v, want exactly %v", what, g, w)
	}
	return nil
}
