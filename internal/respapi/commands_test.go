package respapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// step is one command of a script and the reply it must get.
type step struct {
	args []string
	want string
	// at, if set, makes the arguments when the step runs (an absolute
	// time: made when the script is written, it is stale by the time the
	// server has started and elected itself on a loaded machine).
	at func() []string
}

func s(want string, args ...string) step { return step{args: args, want: want} }

// sAt is a step whose arguments are made when it runs.
func sAt(want string, at func() []string) step { return step{want: want, at: at} }

func (st step) command() []string {
	if st.at != nil {
		return st.at()
	}
	return st.args
}

// runScript runs steps in order on one connection to a fresh service.
func runScript(t *testing.T, steps []step) {
	t.Helper()
	srv := startServer(t, newService(t), Options{Version: "1.2.3"})
	c := dial(t, srv)
	for _, st := range steps {
		c.mustDo(st.want, st.command()...)
	}
}

func TestStringCommands(t *testing.T) {
	runScript(t, []step{
		s("nil", "GET", "a"),
		s("+OK", "SET", "a", "1"),
		s(`"1"`, "GET", "a"),
		s("+OK", "set", "b", "x"),
		s(`"x"`, "get", "b"),
		s(`nil`, "SET", "a", "2", "NX"),
		s(`"1"`, "GET", "a"),
		s(`+OK`, "SET", "a", "2", "XX"),
		s(`nil`, "SET", "zz", "2", "XX"),
		s(`nil`, "GET", "zz"),
		s(`"2"`, "SET", "a", "3", "GET"),
		s(`"3"`, "SET", "a", "4", "NX", "GET"),
		s(`"3"`, "GET", "a"),
		s(`nil`, "SET", "new", "v", "NX", "GET"),
		s(`"v"`, "GET", "new"),
		s("-ERR syntax error", "SET", "a", "1", "NX", "XX"),
		s("-ERR syntax error", "SET", "a", "1", "EX", "10", "PX", "100"),
		s("-ERR syntax error", "SET", "a", "1", "EX"),
		s("-ERR syntax error", "SET", "a", "1", "BOGUS"),
		s("-ERR value is not an integer or out of range", "SET", "a", "1", "EX", "ten"),
		s("-ERR invalid expire time in 'set' command", "SET", "a", "1", "EX", "0"),
		s("-ERR invalid expire time in 'set' command", "SET", "a", "1", "PX", "-5"),
		s("-ERR invalid expire time in 'set' command", "SET", "a", "1", "EX", "9223372036854775807"),
		s("-ERR wrong number of arguments for 'get' command", "GET"),
		s("-ERR wrong number of arguments for 'set' command", "SET", "a"),
		s(":1", "SETNX", "n", "1"),
		s(":0", "SETNX", "n", "2"),
		s(`"1"`, "GET", "n"),
		s("+OK", "SETEX", "e", "100", "v"),
		s(":100", "TTL", "e"),
		s("-ERR invalid expire time in 'setex' command", "SETEX", "e", "0", "v"),
		s("-ERR value is not an integer or out of range", "PSETEX", "e", "x", "v"),
		s("+OK", "PSETEX", "pe", "100000", "v"),
		s(`"v"`, "GETSET", "pe", "w"),
		s(":-1", "TTL", "pe"),
		s("nil", "GETSET", "fresh", "w"),
		s(`"w"`, "GETDEL", "fresh"),
		s("nil", "GETDEL", "fresh"),
		s("+OK", "MSET", "m1", "a", "m2", "b"),
		s(`["a" "b" nil]`, "MGET", "m1", "m2", "m3"),
		s("-ERR wrong number of arguments for 'mset' command", "MSET", "m1", "a", "m2"),
		s(":0", "MSETNX", "m1", "x", "m9", "y"),
		s("nil", "GET", "m9"),
		s(":1", "MSETNX", "m8", "x", "m9", "y"),
		s(":3", "EXISTS", "m1", "m9", "m1", "nope"),
		s(":2", "DEL", "m1", "m2", "m3"),
		s(":1", "UNLINK", "m8"),
		s(":0", "EXISTS", "m1"),
		s(":1", "INCR", "i"),
		s(":11", "INCRBY", "i", "10"),
		s(":10", "DECR", "i"),
		s(":0", "DECRBY", "i", "10"),
		s("-ERR value is not an integer or out of range", "INCRBY", "i", "1.5"),
		s("-ERR decrement would overflow", "DECRBY", "i", "-9223372036854775808"),
		s("-ERR value is not an integer or out of range", "INCR", "b"),
		s("+OK", "SET", "big", "9223372036854775807"),
		s("-ERR value is not an integer or out of range", "INCR", "big"),
		s(`"10.5"`, "INCRBYFLOAT", "f", "10.5"),
		s(`"5.25"`, "INCRBYFLOAT", "f", "-5.25"),
		s("-ERR value is not a valid float", "INCRBYFLOAT", "f", "abc"),
		s("-ERR increment would produce NaN or Infinity", "INCRBYFLOAT", "f", "inf"),
		s(":5", "APPEND", "s", "hello"),
		s(":11", "APPEND", "s", " world"),
		s(":11", "STRLEN", "s"),
		s(":0", "STRLEN", "nope"),
		s(`"hello"`, "GETRANGE", "s", "0", "4"),
		s(`"world"`, "GETRANGE", "s", "-5", "-1"),
		s(`"hello world"`, "GETRANGE", "s", "0", "-1"),
		s(`""`, "GETRANGE", "s", "5", "3"),
		s(`""`, "GETRANGE", "nope", "0", "-1"),
		s(`"d"`, "GETRANGE", "s", "-1", "100"),
		s("-ERR value is not an integer or out of range", "GETRANGE", "s", "a", "1"),
		s("-ERR invalid key: empty key", "SET", "", "v"),
	})
}

func TestKeyCommands(t *testing.T) {
	runScript(t, []step{
		s(":-2", "TTL", "k"),
		s(":-2", "PTTL", "k"),
		s(":0", "EXPIRE", "k", "10"),
		s("+OK", "SET", "k", "v"),
		s(":-1", "TTL", "k"),
		s(":1", "EXPIRE", "k", "10"),
		s(":10", "TTL", "k"),
		s(":1", "PEXPIRE", "k", "20000"),
		s(":20", "TTL", "k"),
		s(":1", "PERSIST", "k"),
		s(":0", "PERSIST", "k"),
		s(":-1", "TTL", "k"),
		sAt(":1", func() []string {
			return []string{"EXPIREAT", "k", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}
		}),
		sAt(":1", func() []string {
			return []string{"PEXPIREAT", "k", strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)}
		}),
		s(":60", "TTL", "k"),
		s("-ERR syntax error", "EXPIRE", "k", "10", "SOON"),
		s("-ERR value is not an integer or out of range", "EXPIRE", "k", "soon"),
		s("-ERR NX and XX, GT or LT options at the same time are not compatible", "EXPIRE", "k", "10", "NX", "XX"),
		s("-ERR GT and LT options at the same time are not compatible", "EXPIRE", "k", "10", "GT", "LT"),
		s(":0", "EXPIRE", "k", "10", "NX"),
		s(":1", "EXPIRE", "k", "10", "XX"),
		s(":0", "EXPIRE", "k", "5", "GT"),
		s(":1", "EXPIRE", "k", "100", "GT"),
		s(":1", "EXPIRE", "k", "50", "LT"),
		s(":50", "TTL", "k"),
		s(":1", "PERSIST", "k"),
		s(":0", "EXPIRE", "k", "10", "XX"),
		s(":0", "EXPIRE", "k", "10", "GT"),
		s(":1", "EXPIRE", "k", "10", "LT"),
		s(":0", "EXPIRE", "missing", "10", "NX"),
		s(":1", "EXPIRE", "k", "-1"),
		s(":0", "EXISTS", "k"),
		s("+OK", "SET", "k", "v", "PX", "1"),
		s("+none", "TYPE", "nope"),
		s("+OK", "SET", "t", "v"),
		s("+string", "TYPE", "t"),
		s("+OK", "RENAME", "t", "t2"),
		s("nil", "GET", "t"),
		s(`"v"`, "GET", "t2"),
		s("-ERR no such key", "RENAME", "t", "t3"),
		s("+OK", "SET", "t", "w"),
		s(":0", "RENAMENX", "t", "t2"),
		s(":1", "RENAMENX", "t", "t4"),
		s(`"w"`, "GET", "t4"),
	})
}

func TestExpiredKeysAreHidden(t *testing.T) {
	// No expiry sweep during the test: the expired record stays in the
	// store, and only the read path can hide it.
	svc := newService(t, kvtest.ExpiryInterval(time.Hour))
	srv := startServer(t, svc, Options{})
	c := dial(t, srv)
	c.mustDo("+OK", "SET", "gone", "v", "PX", "30")
	c.mustDo("+OK", "SET", "stay", "v")
	rev := kvtest.MustRevision(t, svc)
	time.Sleep(60 * time.Millisecond)
	// A sweep would have deleted the record, which bumps the revision.
	if now := kvtest.MustRevision(t, svc); now != rev {
		t.Fatalf("revision %d -> %d: something removed the expired key", rev, now)
	}
	c.mustDo("nil", "GET", "gone")
	c.mustDo(":0", "EXISTS", "gone")
	c.mustDo(":-2", "TTL", "gone")
	c.mustDo("+none", "TYPE", "gone")
	c.mustDo(`["stay"]`, "KEYS", "*")
	c.mustDo(":1", "DBSIZE")
}

func TestKeysScanDBSize(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	for i := 0; i < 25; i++ {
		c.mustDo("+OK", "SET", fmt.Sprintf("user:%02d", i), "v")
	}
	c.mustDo("+OK", "SET", "other", "v")
	c.mustDo("+OK", "SET", "user?x", "v")
	c.mustDo(":27", "DBSIZE")
	c.mustDo(`["user:01" "user:11" "user:21"]`, "KEYS", "user:?1")
	c.mustDo(`["other"]`, "KEYS", "o*")
	c.mustDo(`["user?x"]`, "KEYS", `user\?x`)
	c.mustDo(`["user:20" "user:21"]`, "KEYS", "user:2[0-1]")
	c.mustDo(`[]`, "KEYS", "zzz*")

	// A full SCAN with MATCH and COUNT sees every matching key exactly once.
	seen := map[string]int{}
	cursor := "0"
	for rounds := 0; ; rounds++ {
		if rounds > 100 {
			t.Fatal("SCAN does not finish")
		}
		c.send(encode("SCAN", cursor, "MATCH", "user:*", "COUNT", "7"))
		reply := c.read()
		if !strings.HasPrefix(reply, `["`) {
			t.Fatalf("SCAN reply %s", reply)
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(reply, "["), "]")
		cur, rest, _ := strings.Cut(inner, " ")
		cursor, _ = strconv.Unquote(cur)
		rest = strings.Trim(rest, "[]")
		for _, k := range strings.Fields(rest) {
			k, _ = strconv.Unquote(k)
			seen[k]++
		}
		if cursor == "0" {
			break
		}
		if _, err := strconv.ParseUint(cursor, 10, 64); err != nil {
			t.Fatalf("cursor %q is not a number", cursor)
		}
	}
	if len(seen) != 25 {
		t.Errorf("SCAN saw %d keys, want 25: %v", len(seen), seen)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("SCAN returned %s %d times", k, n)
		}
	}
	c.mustDo("-ERR invalid cursor", "SCAN", "abc")
	c.mustDo("-ERR invalid cursor", "SCAN", "12345")
	c.mustDo("-ERR syntax error", "SCAN", "0", "COUNT", "0")
	c.mustDo("-ERR syntax error", "SCAN", "0", "MATCH")
	c.mustDo(`["0" []]`, "SCAN", "0", "COUNT", "1000", "TYPE", "hash")
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "abc", true},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbb", false},
		{"h?llo", "hello", true},
		{"h?llo", "hllo", false},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[b-a]llo", "hallo", true},
		{`h\*llo`, "h*llo", true},
		{`h\*llo`, "hello", false},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"[", "x", false},
		{"[abc", "c", true},
		{`\`, `\`, true},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
	if p := globPrefix("user:*:x"); p != "user:" {
		t.Errorf("globPrefix = %q", p)
	}
}

func TestConnectionCommands(t *testing.T) {
	runScript(t, []step{
		s("+PONG", "PING"),
		s(`"hi"`, "PING", "hi"),
		s("-ERR wrong number of arguments for 'ping' command", "PING", "a", "b"),
		s(`"hello"`, "ECHO", "hello"),
		s("+OK", "SELECT", "0"),
		s("-ERR DB index is out of range", "SELECT", "1"),
		s("-ERR value is not an integer or out of range", "SELECT", "x"),
		s("nil", "CLIENT", "GETNAME"),
		s("+OK", "CLIENT", "SETNAME", "worker-1"),
		s(`"worker-1"`, "CLIENT", "GETNAME"),
		s("-ERR Client names cannot contain spaces, newlines or special characters.", "CLIENT", "SETNAME", "a b"),
		s("+OK", "CLIENT", "SETINFO", "LIB-NAME", "go-redis"),
		s("+OK", "CLIENT", "SETINFO", "lib-ver", "9.0"),
		s("-ERR Unrecognized option 'color'", "CLIENT", "SETINFO", "color", "red"),
		s("-ERR wrong number of arguments for 'client|setname' command", "CLIENT", "SETNAME"),
		s("-ERR unknown subcommand 'FLY'. Try CLIENT HELP.", "CLIENT", "FLY"),
		s(`[]`, "COMMAND", "DOCS"),
		s(fmt.Sprintf(":%d", len(commandNames)), "COMMAND", "COUNT"),
		s(`[["get" :2 [+readonly] :1 :1 :1] *nil]`, "COMMAND", "INFO", "get", "nosuch"),
		s(`["appendonly" "no" "save" ""]`, "CONFIG", "GET", "SAVE", "append*"),
		s(`[]`, "CONFIG", "GET", "nosuch"),
		s(`"1.2.3"`, "VERSION"),
		s("+OK", "READONLY"),
		s("+OK", "READWRITE"),
		s("-ERR unknown command 'FLUSHALL', with args beginning with: ", "FLUSHALL"),
		s("-ERR unknown command 'hset', with args beginning with: 'h' 'f' 'v' ", "hset", "h", "f", "v"),
		s("-NOPROTO unsupported protocol version", "HELLO", "3"),
		s("-ERR Protocol version is not an integer or out of range", "HELLO", "x"),
		s(`["server" "redis" "version" "7.2.0" "proto" :2 "id" :1 "mode" "standalone" "role" "master" "modules" []]`, "HELLO", "2"),
		s("-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?", "AUTH", "pw"),
		s("+OK", "QUIT"),
	})
}

func TestClientIDsDiffer(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	a, b := dial(t, srv), dial(t, srv)
	if x, y := a.do("CLIENT", "ID"), b.do("CLIENT", "ID"); x == y || !strings.HasPrefix(x, ":") {
		t.Errorf("client ids %s and %s", x, y)
	}
	if got := a.do("CLIENT", "INFO"); !strings.Contains(got, "id=") || !strings.Contains(got, "resp=2") {
		t.Errorf("CLIENT INFO = %s", got)
	}
}

func TestQuitClosesConnection(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	c := dial(t, srv)
	c.mustDo("+OK", "QUIT")
	if !c.closed() {
		t.Error("connection still open after QUIT")
	}
}

// publish records the node's advertised client addresses, as a server does
// once it is ready, and returns its peer address.
func publish(t *testing.T, svc *kv.Service, respAddr string) string {
	t.Helper()
	ctx := kvtest.Ctx(t)
	st, err := svc.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	self := kv.Member{Name: st.Name, PeerAddr: st.LeaderAddr, ClientURL: "http://127.0.0.1:7700", RESPAddr: respAddr}
	if err := svc.PublishSelf(ctx, self); err != nil {
		t.Fatal(err)
	}
	return st.LeaderAddr
}

func TestInfo(t *testing.T) {
	svc := newService(t)
	publish(t, svc, "127.0.0.1:7702")
	sp := newSpy(svc)
	srv := startServer(t, sp, Options{Version: "1.2.3"})
	c := dial(t, srv)
	c.mustDo("+OK", "SET", "a", "1")
	c.mustDo("+OK", "SET", "b", "1", "EX", "100")
	info := c.do("INFO")
	for _, want := range []string{"# Server", "redis_version:7.2.0", "cairn_version:1.2.3", "# Replication", "role:master",
		"# Keyspace", "db0:keys=2,expires=1,avg_ttl=0", "# Clients"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	if repl := c.do("INFO", "replication"); strings.Contains(repl, "# Server") || !strings.Contains(repl, "role:master") {
		t.Errorf("INFO replication = %s", repl)
	}
	// A single node always leads: a follower's view is injected; the
	// leader's addresses still come from the real member records.
	sp.set(func(s *spy) {
		s.statusFn = func(context.Context) (*kv.Status, error) {
			return &kv.Status{Name: "n2", State: "follower", Leader: kvtest.Name, Members: 2}, nil
		}
	})
	repl := c.do("INFO", "replication")
	for _, want := range []string{"role:slave", "master_host:127.0.0.1", "master_port:7702", "master_link_status:up"} {
		if !strings.Contains(repl, want) {
			t.Errorf("follower INFO lacks %q: %s", want, repl)
		}
	}
}

func TestRaftCommands(t *testing.T) {
	svc := newService(t)
	peerAddr := publish(t, svc, "127.0.0.1:7702")
	nobody := closedAddr(t)
	sp := newSpy(svc)
	runScriptOn(t, sp, []step{
		s(`"127.0.0.1:7702"`, "RAFT", "LEADER"),
		s(`["leader_id" "n1" "leader_peer_addr" "`+peerAddr+`" "leader_resp_addr" "127.0.0.1:7702"]`, "RAFT", "INFO", "*lea*"),
		s(`[["id" "n1" "address" "`+peerAddr+`" "resp" "127.0.0.1:7702" "client_url" "http://127.0.0.1:7700" "voter" "true" "leader" "true"]]`,
			"RAFT", "SERVER", "LIST"),
		s("-ERR member already exists: raftnode: member exists with another address: n1 is at "+peerAddr,
			"RAFT", "SERVER", "ADD", "n1", nobody),
		s("+OK", "RAFT", "SERVER", "ADD", "n1", peerAddr), // as it is: nothing changes
		s("-ERR member not found: raftnode: unknown member: n3", "RAFT", "SERVER", "REMOVE", "n3"),
		s("-ERR wrong number of arguments for 'raft|server|add' command", "RAFT", "SERVER", "ADD", "n4"),
		s("+OK", "RAFT", "SNAPSHOT", "NOW"),
		s("[]", "RAFT", "SNAPSHOT", "LIST"),
		s("-ERR unknown subcommand 'bogus'. Try RAFT LEADER, INFO, SERVER LIST|ADD|REMOVE or SNAPSHOT NOW|LIST|FILE|READ.", "RAFT", "BOGUS"),
	})

	// A real voter to add takes a second node (and adding one that does
	// not answer costs a single node its quorum); the spy stands in for the
	// change, to check what reaches the service.
	sp.set(func(s *spy) {
		s.added, s.removed = nil, nil
		s.addMemberFn = func(context.Context, kv.MemberSpec) error { return nil }
		s.removeMemberFn = func(context.Context, string) error { return nil }
	})
	runScriptOn(t, sp, []step{
		s("+OK", "RAFT", "SERVER", "ADD", "n3", "127.0.0.1:7721", "http://127.0.0.1:7720", "127.0.0.1:7722"),
		s("+OK", "RAFT", "SERVER", "REMOVE", "n3"),
	})
	sp.mu.Lock()
	want := kv.MemberSpec{Name: "n3", PeerAddr: "127.0.0.1:7721", ClientURL: "http://127.0.0.1:7720", RESPAddr: "127.0.0.1:7722"}
	if len(sp.added) != 1 || sp.added[0] != want || len(sp.removed) != 1 || sp.removed[0] != "n3" {
		t.Errorf("added %+v, removed %v", sp.added, sp.removed)
	}
	sp.mu.Unlock()

	srv := startServer(t, sp, Options{Version: "9"})
	c := dial(t, srv)
	if got := c.do("MACHINE"); !strings.Contains(got, `"name" "n1"`) || !strings.Contains(got, `"ready" "yes"`) {
		t.Errorf("MACHINE = %s", got)
	}
	sp.set(func(s *spy) {
		s.statusFn = func(context.Context) (*kv.Status, error) { return &kv.Status{Name: "n2", State: "candidate"}, nil }
	})
	c.mustDo("-TRYAGAIN no leader", "RAFT", "LEADER")
}

// closedAddr is a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func runScriptOn(t *testing.T, svc Service, steps []step) {
	t.Helper()
	srv := startServer(t, svc, Options{})
	c := dial(t, srv)
	for _, st := range steps {
		c.mustDo(st.want, st.command()...)
	}
}

// TestServiceErrors injects the errors and broken answers a healthy node
// does not give, to check how each is answered.
func TestServiceErrors(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	f.set(func(f *spy) {
		f.getFn = func(context.Context, string, kv.ReadOptions) (*kv.Record, error) {
			return nil, fmt.Errorf("%w: %w", kv.ErrNoLeader, errors.New("raftnode: no leader"))
		}
	})
	c.mustDo("-TRYAGAIN no leader: no leader: raftnode: no leader", "GET", "a")
	f.set(func(f *spy) {
		f.getFn = func(context.Context, string, kv.ReadOptions) (*kv.Record, error) { return nil, kv.ErrUnavailable }
	})
	c.mustDo("-TRYAGAIN unavailable", "GET", "a")
	f.set(func(f *spy) {
		f.txnBatchFn = func(context.Context, []kv.Txn) ([]*kv.TxnResult, []error, error) { return nil, nil, kv.ErrUnavailable }
	})
	c.mustDo("-ERR unavailable, the write may or may not have been applied: unavailable", "SET", "a", "1")
	f.set(func(f *spy) {
		f.txnBatchFn = func(_ context.Context, t []kv.Txn) ([]*kv.TxnResult, []error, error) {
			return make([]*kv.TxnResult, len(t)), []error{fmt.Errorf("%w: 2000000 bytes, the limit is 1048576", kv.ErrValueTooLarge)}, nil
		}
	})
	c.mustDo("-ERR value too large: 2000000 bytes, the limit is 1048576", "SET", "a", "1")
	f.set(func(f *spy) {
		f.txnBatchFn = func(_ context.Context, t []kv.Txn) ([]*kv.TxnResult, []error, error) {
			return make([]*kv.TxnResult, len(t)), make([]error, len(t)), nil
		}
	})
	c.mustDo("-ERR internal error: no result for the write", "SET", "a", "1")
	f.set(func(f *spy) {
		f.txnBatchFn = func(_ context.Context, t []kv.Txn) ([]*kv.TxnResult, []error, error) {
			return []*kv.TxnResult{{Succeeded: true}}, []error{nil}, nil
		}
	})
	c.mustDo("-ERR value is not an integer or out of range", "INCR", "a")
	c.mustDo(":0", "APPEND", "a", "x")
	c.mustDo("nil", "GETSET", "a", "x")
}

func TestUnknownCommandChangesNothing(t *testing.T) {
	f := newSpy(newService(t))
	srv := startServer(t, f, Options{})
	c := dial(t, srv)
	c.mustDo("-ERR unknown command 'LPUSH', with args beginning with: 'l' 'x' ", "LPUSH", "l", "x")
	long := strings.Repeat("y", 300)
	got := c.do("ZADD", long, "1", "m")
	if !strings.HasPrefix(got, "-ERR unknown command 'ZADD', with args beginning with: 'yyy") || len(got) > 250 {
		t.Errorf("long unknown command reply %q", got)
	}
	_, txns, calls := f.stats()
	if txns != 0 || len(calls) != 0 {
		t.Errorf("unknown commands called the service: %v", calls)
	}
	c.mustDo("+PONG", "PING")
}

type fakeSnapshots []SnapshotFile

func (f fakeSnapshots) List() ([]SnapshotFile, error) { return f, nil }

// RAFT SNAPSHOT LIST, FILE and READ show the node's saved snapshots.
func TestRaftSnapshotFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cairn-20261201T130000Z-r7.snapshot")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 13, 0, 0, 0, time.UTC)
	srv := startServer(t, newService(t), Options{Snapshots: fakeSnapshots{{ID: "cairn-20261201T130000Z-r7.snapshot", Path: path, Time: at, Revision: 7, Bytes: 10}}})
	c := dial(t, srv)
	c.mustDo(`[["id" "cairn-20261201T130000Z-r7.snapshot" "time" "2026-12-01T13:00:00Z" "revision" "7" "bytes" "10"]]`, "RAFT", "SNAPSHOT", "LIST")
	c.mustDo(`"`+path+`"`, "RAFT", "SNAPSHOT", "FILE", "cairn-20261201T130000Z-r7.snapshot")
	c.mustDo(`"0123456789"`, "RAFT", "SNAPSHOT", "READ", "cairn-20261201T130000Z-r7.snapshot")
	c.mustDo(`"234"`, "RAFT", "SNAPSHOT", "READ", "cairn-20261201T130000Z-r7.snapshot", "RANGE", "2", "5")
	c.mustDo(`"89"`, "RAFT", "SNAPSHOT", "READ", "cairn-20261201T130000Z-r7.snapshot", "RANGE", "8", "100")
	c.mustDo("-ERR RANGE start end: want 0 <= start <= end", "RAFT", "SNAPSHOT", "READ", "cairn-20261201T130000Z-r7.snapshot", "RANGE", "5", "2")
	c.mustDo("-ERR syntax error", "RAFT", "SNAPSHOT", "READ", "cairn-20261201T130000Z-r7.snapshot", "FROM", "2", "5")
	c.mustDo("-ERR no snapshot nope (RAFT SNAPSHOT LIST shows them)", "RAFT", "SNAPSHOT", "FILE", "nope")
}
