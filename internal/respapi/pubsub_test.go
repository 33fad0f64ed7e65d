package respapi

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// silent reports whether nothing arrives on the connection for d.
func (c *testClient) silent(d time.Duration) bool {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := c.br.Peek(1)
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// mustRead reads the next frame and checks it.
func (c *testClient) mustRead(want string) {
	c.t.Helper()
	if got := c.read(); got != want {
		c.t.Errorf("got %s, want %s", got, want)
	}
}

// A go-redis subscriber hears about the SET and DEL another connection
// sends, on the keyspace channel of the key and the keyevent channel of
// the event, as Redis publishes them.
func TestKeyspaceNotificationsGoRedis(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	ctx := kvtest.Ctx(t)
	cl := redis.NewClient(&redis.Options{Addr: srv.addr, DialTimeout: 5 * time.Second})
	defer cl.Close()
	if err := cl.ConfigSet(ctx, "notify-keyspace-events", "KEA").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := cl.ConfigGet(ctx, "notify-keyspace-events").Result(); err != nil || got["notify-keyspace-events"] != "AKE" {
		t.Fatalf("CONFIG GET = %v, %v", got, err)
	}
	ps := cl.PSubscribe(ctx, "__keyspace@0__:*")
	defer ps.Close()
	if err := ps.Subscribe(ctx, "__keyevent@0__:del"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*redis.Subscription); !ok {
			t.Fatalf("got %#v, want a subscription confirmation", msg)
		}
	}
	if err := cl.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Del(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	want := []redis.Message{
		{Pattern: "__keyspace@0__:*", Channel: "__keyspace@0__:k", Payload: "set"},
		{Pattern: "__keyspace@0__:*", Channel: "__keyspace@0__:k", Payload: "del"},
		{Channel: "__keyevent@0__:del", Payload: "k"},
	}
	for _, w := range want {
		msg, err := ps.ReceiveTimeout(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := msg.(*redis.Message)
		if !ok || m.Pattern != w.Pattern || m.Channel != w.Channel || m.Payload != w.Payload {
			t.Fatalf("got %#v, want %+v", msg, w)
		}
	}
	if err := ps.Ping(ctx, "hi"); err != nil {
		t.Fatal(err)
	}
	if msg, err := ps.ReceiveTimeout(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	} else if p, ok := msg.(*redis.Pong); !ok || p.Payload != "hi" {
		t.Fatalf("got %#v, want the pong", msg)
	}
}

// The exact frames, the subscribed mode's rules, and the setting read at
// delivery: nothing while notify-keyspace-events is empty.
func TestSubscribedMode(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo(`["notify-keyspace-events" ""]`, "CONFIG", "GET", "notify-keyspace-events")

	sub.send(encode("SUBSCRIBE", "__keyspace@0__:k", "__keyevent@0__:set", "news"))
	sub.mustRead(`["subscribe" "__keyspace@0__:k" :1]`)
	sub.mustRead(`["subscribe" "__keyevent@0__:set" :2]`)
	sub.mustRead(`["subscribe" "news" :3]`)
	sub.mustDo(`["psubscribe" "__keyspace@0__:k*" :4]`, "PSUBSCRIBE", "__keyspace@0__:k*")
	sub.mustDo(`["subscribe" "news" :4]`, "SUBSCRIBE", "news")

	admin.mustDo("+OK", "SET", "k", "1")
	if !sub.silent(300 * time.Millisecond) {
		t.Fatalf("a message with notify-keyspace-events empty: %s", sub.read())
	}

	sub.mustDo(`["pong" ""]`, "PING")
	sub.mustDo(`["pong" "hi"]`, "PING", "hi")
	sub.mustDo("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", "GET", "k")
	sub.mustDo("-ERR Can't execute 'config': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", "CONFIG", "GET", "*")
	sub.mustDo("-ERR Can't execute 'multi': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", "MULTI")

	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "KE$")
	admin.mustDo("+OK", "SET", "k", "2")
	sub.mustRead(`["message" "__keyspace@0__:k" "set"]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:k*" "__keyspace@0__:k" "set"]`)
	sub.mustRead(`["message" "__keyevent@0__:set" "k"]`)
	// No class g: the delete is not announced; the next set is.
	admin.mustDo(":1", "DEL", "k")
	admin.mustDo("+OK", "SET", "kk", "1")
	sub.mustRead(`["pmessage" "__keyspace@0__:k*" "__keyspace@0__:kk" "set"]`)
	sub.mustRead(`["message" "__keyevent@0__:set" "kk"]`)

	sub.mustDo(`["punsubscribe" "__keyspace@0__:k*" :3]`, "PUNSUBSCRIBE")
	sub.mustDo(`["punsubscribe" nil :3]`, "PUNSUBSCRIBE")
	sub.send(encode("UNSUBSCRIBE"))
	sub.mustRead(`["unsubscribe" "__keyevent@0__:set" :2]`)
	sub.mustRead(`["unsubscribe" "__keyspace@0__:k" :1]`)
	sub.mustRead(`["unsubscribe" "news" :0]`)
	sub.mustDo(`["unsubscribe" nil :0]`, "UNSUBSCRIBE")
	sub.mustDo("+PONG", "PING")
	sub.mustDo("nil", "GET", "k")
	admin.mustDo("+OK", "SET", "k", "3")
	if !sub.silent(300 * time.Millisecond) {
		t.Fatalf("a message after UNSUBSCRIBE: %s", sub.read())
	}

	// RESET leaves subscribed mode too; PUBLISH is refused.
	sub.mustDo(`["subscribe" "__keyspace@0__:k" :1]`, "SUBSCRIBE", "__keyspace@0__:k")
	sub.mustDo("+RESET", "RESET")
	sub.mustDo(`"3"`, "GET", "k")
	if got := sub.do("PUBLISH", "news", "x"); !strings.HasPrefix(got, "-ERR PUBLISH is not supported") {
		t.Errorf("PUBLISH: %s", got)
	}
}

// Patterns follow Redis's glob rules, escapes included, and narrow the
// watch to their literal prefix.
func TestKeyspaceNotificationPatterns(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "Kg$")
	sub.mustDo(`["psubscribe" "__keyspace@0__:user:[12]" :1]`, "PSUBSCRIBE", "__keyspace@0__:user:[12]")
	sub.mustDo(`["psubscribe" "__keyspace@0__:a\\*" :2]`, "PSUBSCRIBE", `__keyspace@0__:a\*`)
	sub.mustDo(`["psubscribe" "__keyevent@0__:*" :3]`, "PSUBSCRIBE", "__keyevent@0__:*") // E is off
	for _, k := range []string{"user:3", "user:1", "user:12", "ab", "a*", "user:2"} {
		admin.mustDo("+OK", "SET", k, "v")
	}
	admin.mustDo(":1", "DEL", "user:1")
	sub.mustRead(`["pmessage" "__keyspace@0__:user:[12]" "__keyspace@0__:user:1" "set"]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:a\\*" "__keyspace@0__:a*" "set"]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:user:[12]" "__keyspace@0__:user:2" "set"]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:user:[12]" "__keyspace@0__:user:1" "del"]`)
	if !sub.silent(200 * time.Millisecond) {
		t.Fatalf("unexpected: %s", sub.read())
	}

	cases := []struct {
		pattern, prefix string
		watch           bool
	}{
		{"__keyspace@0__:user:*", "user:", true},
		{`__keyspace@0__:us\?r*`, "us?r", true},
		{"__keyspace@0__:k", "k", true},
		{"*", "", true},
		{"__key*", "", true},
		{"__keyevent@0__:s*", "", true},
		{"__keyevent@0__:expired", "", true},
		{"__keyevent@0__:evicted", "", false},
		{"__keyspace@1__:*", "", false},
		{"news.*", "", false},
	}
	for _, tc := range cases {
		if p, ok := patternPrefix(tc.pattern); p != tc.prefix || ok != tc.watch {
			t.Errorf("patternPrefix(%q) = %q, %v; want %q, %v", tc.pattern, p, ok, tc.prefix, tc.watch)
		}
	}
}

// CONFIG SET refuses the classes cairn cannot deliver, and a refused
// CONFIG SET changes nothing.
func TestConfigSetNotifyKeyspaceEvents(t *testing.T) {
	runScript(t, []step{
		s("+OK", "CONFIG", "SET", "notify-keyspace-events", "Kg"),
		s(`["notify-keyspace-events" "gK"]`, "CONFIG", "GET", "notify-keyspace-events"),
		s(`-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character 'e'. cairn supports K, E, g (del), $ (set), x (expired, strong keys) and A (g$x); it evicts nothing (e), and it has no lists, sets, hashes, sorted sets, streams or key-miss events`,
			"CONFIG", "SET", "notify-keyspace-events", "Ee"),
		s(`["notify-keyspace-events" "gK"]`, "CONFIG", "GET", "notify-keyspace-events"),
		s("-ERR CONFIG SET is not supported for 'save': cairn is configured with its flags and config file; only notify-keyspace-events can be set",
			"CONFIG", "SET", "notify-keyspace-events", "KEA", "save", ""),
		s("-ERR Unknown option or number of arguments for CONFIG SET - 'bogus'", "CONFIG", "SET", "bogus", "1"),
		s("-ERR wrong number of arguments for 'config|set' command", "CONFIG", "SET", "notify-keyspace-events"),
		s(`["notify-keyspace-events" "gK"]`, "CONFIG", "GET", "notify-*"),
		s("+OK", "CONFIG", "SET", "notify-keyspace-events", "Ex"),
		s(`["notify-keyspace-events" "xE"]`, "CONFIG", "GET", "notify-keyspace-events"),
		s("+OK", "CONFIG", "SET", "NOTIFY-KEYSPACE-EVENTS", "$gKE"),
		s(`["notify-keyspace-events" "g$KE"]`, "CONFIG", "GET", "notify-keyspace-events"),
		s("+OK", "CONFIG", "SET", "NOTIFY-KEYSPACE-EVENTS", "x$gKE"),
		s(`["notify-keyspace-events" "AKE"]`, "CONFIG", "GET", "notify-keyspace-events"),
		s("+OK", "CONFIG", "SET", "notify-keyspace-events", ""),
		s(`["notify-keyspace-events" ""]`, "CONFIG", "GET", "notify-keyspace-events"),
	})
}

// The service filters events by the subscriber's identity: a user hears
// only of keys it may read. A new identity takes effect on the next
// subscription (AUTH is refused in subscribed mode).
func TestKeyspaceNotificationsACL(t *testing.T) {
	svc := newService(t,
		kvtest.Users(kvtest.User(t, "root", "pw"), kvtest.User(t, "alice", "pw")),
		kvtest.Rules(
			auth.Rule{Identity: "root", Actions: []string{"read", "write", "admin"}},
			auth.Rule{Identity: "alice", Keys: "pub/", Actions: []string{"read"}},
		))
	srv := startServer(t, svc, Options{Auth: svc})
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo("+OK", "AUTH", "root", "pw")
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "KA")
	sub.mustDo("-NOAUTH Authentication required.", "SUBSCRIBE", "__keyspace@0__:pub/a")
	sub.mustDo("+OK", "AUTH", "alice", "pw")
	sub.mustDo(`["psubscribe" "__keyspace@0__:*" :1]`, "PSUBSCRIBE", "__keyspace@0__:*")
	sub.mustDo("-ERR Can't execute 'auth': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", "AUTH", "root", "pw")
	admin.mustDo("+OK", "SET", "secret/a", "1")
	admin.mustDo("+OK", "SET", "pub/a", "1")
	sub.mustRead(`["pmessage" "__keyspace@0__:*" "__keyspace@0__:pub/a" "set"]`)

	sub.mustDo(`["punsubscribe" "__keyspace@0__:*" :0]`, "PUNSUBSCRIBE")
	sub.mustDo("+OK", "AUTH", "root", "pw")
	sub.mustDo(`["psubscribe" "__keyspace@0__:*" :1]`, "PSUBSCRIBE", "__keyspace@0__:*")
	admin.mustDo("+OK", "SET", "secret/b", "1")
	sub.mustRead(`["pmessage" "__keyspace@0__:*" "__keyspace@0__:secret/b" "set"]`)
}

// A subscription whose keys span strong and eventual keyspaces watches
// both engines' feeds: a keyevent channel sees strong and eventual writes.
func TestKeyspaceNotificationsMixedModes(t *testing.T) {
	svc := newService(t, kvtest.Eventual(&kvtest.FakeEventual{}))
	kvtest.MustEventualKeyspace(t, svc, "ev/")
	srv := startServer(t, svc, Options{})
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "KEA")
	sub.mustDo(`["subscribe" "__keyspace@0__:s/1" :1]`, "SUBSCRIBE", "__keyspace@0__:s/1")
	sub.mustDo(`["subscribe" "__keyevent@0__:set" :2]`, "SUBSCRIBE", "__keyevent@0__:set")
	admin.mustDo("+OK", "SET", "s/1", "v")
	got := []string{sub.read(), sub.read()}
	slices.Sort(got)
	if want := []string{`["message" "__keyevent@0__:set" "s/1"]`, `["message" "__keyspace@0__:s/1" "set"]`}; !slices.Equal(got, want) {
		t.Fatalf("a strong SET: %q", got)
	}
	admin.mustDo("+OK", "SET", "ev/1", "v")
	sub.mustRead(`["message" "__keyevent@0__:set" "ev/1"]`)
}

// A strong watch the service drops resumes after the last revision it
// delivered; a watch that cannot resume ends the connection with an error.
func TestDroppedWatch(t *testing.T) {
	svc := newService(t)
	sp := newSpy(svc)
	var mu sync.Mutex
	var froms []int64
	sp.set(func(s *spy) {
		s.watchFn = func(ctx context.Context, prefix string, from int64) (iter.Seq2[[]kv.Event, error], error) {
			mu.Lock()
			froms = append(froms, from)
			n := len(froms)
			mu.Unlock()
			return func(yield func([]kv.Event, error) bool) {
				switch {
				case strings.HasPrefix(prefix, "ev/"):
					if yield([]kv.Event{{Type: kv.EventPut, Key: "ev/1"}}, nil) {
						yield(nil, errors.New("kv: unavailable: watcher fell behind"))
					}
				case n == 1:
					if yield([]kv.Event{{Type: kv.EventPut, Key: "k1", Revision: 5}}, nil) {
						yield(nil, errors.New("kv: unavailable: watcher fell behind"))
					}
				default:
					if yield([]kv.Event{{Type: kv.EventDelete, Key: "k2", Revision: 7}}, nil) {
						<-ctx.Done()
					}
				}
			}, nil
		}
	})
	srv := startServer(t, sp, Options{})
	admin := dial(t, srv)
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "KA")
	sub := dial(t, srv)
	sub.send(encode("PSUBSCRIBE", "__keyspace@0__:k*"))
	sub.mustRead(`["psubscribe" "__keyspace@0__:k*" :1]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:k*" "__keyspace@0__:k1" "set"]`)
	sub.mustRead(`["pmessage" "__keyspace@0__:k*" "__keyspace@0__:k2" "del"]`)
	mu.Lock()
	if len(froms) != 2 || froms[0] != 0 || froms[1] != 6 {
		t.Errorf("watches from %v, want [0 6]", froms)
	}
	mu.Unlock()

	ev := dial(t, srv)
	ev.send(encode("SUBSCRIBE", "__keyspace@0__:ev/1"))
	ev.mustRead(`["subscribe" "__keyspace@0__:ev/1" :1]`)
	ev.mustRead(`["message" "__keyspace@0__:ev/1" "set"]`)
	ev.mustRead(`-ERR keyspace notifications stopped, subscribe again: unavailable: watcher fell behind`)
	if !ev.closed() {
		t.Error("the connection is still open")
	}
}

// Behind the connection wrappers (TLS, connection limits) replies wait in
// the group writer until the connection reads again; messages are written
// at once, while the connection's goroutine waits for the client.
func TestKeyspaceNotificationsWrappedConn(t *testing.T) {
	srv, _ := startWrapped(t, newService(t))
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "E$")
	sub.mustDo(`["subscribe" "__keyevent@0__:set" :1]`, "SUBSCRIBE", "__keyevent@0__:set")
	for _, k := range []string{"a", "b", "c"} {
		admin.mustDo("+OK", "SET", k, "v")
		sub.mustRead(`["message" "__keyevent@0__:set" "` + k + `"]`)
	}
}

// What each command is announced as (docs/RESP.md, Keyspace notifications):
// writes of a value or a TTL are set, removals by a command del, a TTL
// running out expired (class x: not sent to a subscriber of g$ only).
func TestKeyspaceNotificationEvents(t *testing.T) {
	srv := startServer(t, newService(t), Options{})
	admin, sub := dial(t, srv), dial(t, srv)
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "KA")
	sub.mustDo(`["psubscribe" "__keyspace@0__:*" :1]`, "PSUBSCRIBE", "__keyspace@0__:*")
	next := func(want ...string) {
		t.Helper()
		var got []string
		for range want {
			got = append(got, sub.read())
		}
		for i, w := range want {
			if found := strings.Contains(strings.Join(got, "\n"), `"__keyspace@0__:`+w+`"`); !found {
				t.Errorf("messages %q: none for %d: %s", got, i, w)
			}
		}
	}
	admin.mustDo(":1", "INCR", "n")
	next(`n" "set`)
	admin.mustDo(":1", "EXPIRE", "n", "100")
	next(`n" "set`)
	admin.mustDo(":1", "PERSIST", "n")
	next(`n" "set`)
	admin.mustDo("+OK", "RENAME", "n", "m")
	next(`n" "del`, `m" "set`)
	admin.mustDo("+OK", "SET", "m", "v", "PX", "50")
	start := time.Now()
	next(`m" "set`)
	next(`m" "expired`)
	took := time.Since(start)
	// Without class x, an expiry is not announced (and not as del).
	admin.mustDo("+OK", "CONFIG", "SET", "notify-keyspace-events", "Kg$")
	admin.mustDo("+OK", "SET", "q", "v", "PX", "50")
	next(`q" "set`)
	time.Sleep(3*took + 200*time.Millisecond)
	admin.mustDo("+OK", "SET", "r", "v")
	next(`r" "set`)
	admin.mustDo(":1", "DEL", "r")
	next(`r" "del`)
}

// --idle-timeout spares a subscriber, which waits for messages, as Redis's
// timeout does; it closes the connection again once it unsubscribes.
func TestSubscriberIsNotIdle(t *testing.T) {
	srv := startServer(t, newService(t), Options{IdleTimeout: 100 * time.Millisecond})
	c := dial(t, srv)
	c.mustDo(`["subscribe" "news" :1]`, "SUBSCRIBE", "news")
	time.Sleep(300 * time.Millisecond)
	c.mustDo(`["pong" ""]`, "PING")
	c.mustDo(`["unsubscribe" "news" :0]`, "UNSUBSCRIBE")
	if !c.closed() {
		t.Error("an idle connection outside subscribed mode stays open")
	}
}

// A pipeline is refused command by command once SUBSCRIBE has entered
// subscribed mode.
func TestSubscribedModePipelined(t *testing.T) {
	c := dial(t, startServer(t, newService(t), Options{}))
	c.send(append(append(encode("SET", "k", "1"), encode("SUBSCRIBE", "news")...), encode("GET", "k")...))
	c.mustRead("+OK")
	c.mustRead(`["subscribe" "news" :1]`)
	c.mustRead("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
}

// The prefixes watched: the narrowest that cover every subscription, one
// shared watch past maxFeedWatches.
func TestWatchPrefixes(t *testing.T) {
	cases := []struct {
		channels, patterns, want []string
	}{
		{[]string{"news", "__keyevent@0__:evicted", "__keyspace@1__:a"}, nil, nil},
		{[]string{"__keyevent@0__:expired"}, nil, []string{""}},
		{[]string{"__keyspace@0__:user:1", "__keyspace@0__:user:10", "__keyspace@0__:order:2"}, nil, []string{"order:2", "user:1"}},
		{[]string{"__keyspace@0__:user:1"}, []string{"__keyspace@0__:user:*"}, []string{"user:"}},
		{[]string{"__keyspace@0__:a", "__keyevent@0__:del"}, nil, []string{""}},
		{[]string{"__keyspace@0__:a\x00b"}, nil, nil},
	}
	for _, tc := range cases {
		c := &conn{channels: map[string]struct{}{}, patterns: map[string]struct{}{}}
		for _, ch := range tc.channels {
			c.channels[ch] = struct{}{}
		}
		for _, p := range tc.patterns {
			c.patterns[p] = struct{}{}
		}
		if got := c.watchPrefixes(); strings.Join(got, ",") != strings.Join(tc.want, ",") || len(got) != len(tc.want) {
			t.Errorf("%q %q: watch %q, want %q", tc.channels, tc.patterns, got, tc.want)
		}
	}
	c := &conn{channels: map[string]struct{}{}}
	for i := range maxFeedWatches + 1 {
		c.channels[fmt.Sprintf("__keyspace@0__:tenant/%03d/x", i)] = struct{}{}
	}
	if got := c.watchPrefixes(); len(got) != 1 || got[0] != "tenant/0" {
		t.Errorf("watch %q, want [tenant/0]", got)
	}
}
