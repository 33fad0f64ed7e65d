package eventual

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/eventual/ring"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// outboxMembers are the members of the test engines' view.
var outboxMembers = []string{"n1", "n2", "n3"}

// outboxTable holds the test policies: "mir/" eventual and mirrored, "ev/"
// eventual and not mirrored, two replicas each.
func outboxTable(t testing.TB) *keyspace.Table {
	t.Helper()
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{
		{Prefix: "mir/", Mode: keyspace.Eventual, Replicas: 2, Backup: "s3://bucket/mir"},
		{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 2},
	}); err != nil {
		t.Fatal(err)
	}
	return tbl
}

// mustOutboxEngine is an engine named name with what the outbox and
// MirrorPrimary need: the test policies, a view of outboxMembers, a
// failure detector and, unless reps is nil, the replica store with the
// engine's mirrored hook.
func mustOutboxEngine(t testing.TB, name string, reps *replicas) *Engine {
	t.Helper()
	e := &Engine{cfg: Config{Name: name, Cluster: fakeCluster{outboxTable(t)}}, log: slog.New(slog.DiscardHandler),
		reps: reps, ctx: context.Background(), hintWake: make(chan struct{}, 1)}
	addrs := map[string]string{}
	for _, m := range outboxMembers {
		addrs[m] = m + ":1"
	}
	e.view.Store(&view{ring: ring.New(outboxMembers, 0), addrs: addrs, members: outboxMembers})
	e.det = newDetector(e)
	if reps != nil {
		reps.mirrored = e.mirrored
	}
	return e
}

// mustOpenReplicas opens the replica store in dir; the caller closes it.
func mustOpenReplicas(t testing.TB, dir string) *replicas {
	t.Helper()
	r, err := openReplicas(dir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustWrite(t testing.TB, r *replicas, puts ...put) {
	t.Helper()
	if err := r.write(&commit{puts: puts}); err != nil {
		t.Fatal(err)
	}
}

// mustOutbox returns every entry of the outbox as key=token strings, the
// token shown as its version.
func mustOutbox(t testing.TB, e *Engine) []string {
	t.Helper()
	es, err := e.Outbox("", "", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(es))
	for _, x := range es {
		out = append(out, x.Key+"="+showToken(x.Token))
	}
	return out
}

func showToken(tok string) string {
	if len(tok) < 8 {
		return fmt.Sprintf("bad token %x", tok)
	}
	var ts uint64
	for _, c := range []byte(tok[:8]) {
		ts = ts<<8 | uint64(c)
	}
	return fmt.Sprintf("%d@%s", ts, tok[8:])
}

// A replica write of a mirrored key is queued in its batch, a delete
// included; a write of an unmirrored key, a hint and a write that loses
// to the stored version are not. The outbox stays out of the record scans
// that lists, snapshots and anti-entropy digests use.
func TestOutboxQueuesMirroredReplicaWrites(t *testing.T) {
	r := openTestReplicas(t)
	e := mustOutboxEngine(t, "n1", r)
	mustWrite(t, r,
		put{key: "mir/a", rec: rec(5, "n1", "x")},
		put{key: "ev/a", rec: rec(5, "n1", "x")},
		put{key: "mir/hinted", rec: rec(5, "n1", "x"), hint: "n2"},
		put{key: "other", rec: rec(5, "n1", "x")},
	)
	mustWrite(t, r, put{key: "mir/del", rec: &record{version: version{stamp: 6, origin: "n2"}, tombstone: true}})
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/a=5@n1", "mir/del=6@n2"}) {
		t.Fatalf("outbox %v, want mir/a and mir/del only", got)
	}
	if e.OutboxLen() != 2 {
		t.Fatalf("OutboxLen %d, want 2", e.OutboxLen())
	}
	// A write older than the stored version changes nothing: not queued
	// again after the entry is done.
	es, _ := e.Outbox("mir/a", "", 10)
	if err := e.OutboxDone(es); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, put{key: "mir/a", rec: rec(4, "n3", "older")})
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/del=6@n2"}) {
		t.Fatalf("outbox %v after a losing write", got)
	}
	var scanned []string
	if err := r.scan("", "", func(key string, _ *record) bool { scanned = append(scanned, key); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(scanned, []string{"ev/a", "mir/a", "mir/del", "other"}) {
		t.Fatalf("the record scan sees %v", scanned)
	}
}

// The outbox holds one entry per key, with the newest version's token,
// however many writes arrive, in one batch or many, in any order.
func TestOutboxCoalescesByKey(t *testing.T) {
	r := openTestReplicas(t)
	e := mustOutboxEngine(t, "n1", r)
	for i := range 50 {
		mustWrite(t, r, put{key: "mir/k", rec: rec(uint64(100+i), "n1", "v")})
	}
	mustWrite(t, r, put{key: "mir/k", rec: rec(300, "n2", "a")}, put{key: "mir/k", rec: rec(200, "n3", "b")}, put{key: "mir/k", rec: rec(300, "n1", "c")})
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/k=300@n2"}) {
		t.Fatalf("outbox %v, want one entry at the newest version", got)
	}
	if e.OutboxLen() != 1 {
		t.Fatalf("OutboxLen %d, want 1", e.OutboxLen())
	}
}

// OutboxDone removes an entry only if it was not rewritten since it was
// read, including entries of keys no longer mirrored; Outbox pages by
// prefix and after.
func TestOutboxDoneKeepsRewrittenEntries(t *testing.T) {
	r := openTestReplicas(t)
	e := mustOutboxEngine(t, "n1", r)
	for _, k := range []string{"mir/a", "mir/b", "mir/c"} {
		mustWrite(t, r, put{key: k, rec: rec(10, "n1", "v")})
	}
	page, err := e.Outbox("mir/", "mir/a", 1)
	if err != nil || len(page) != 1 || page[0].Key != "mir/b" {
		t.Fatalf("page after mir/a: %v %v", page, err)
	}
	read, _ := e.Outbox("mir/", "", 10)
	// mir/b is written between the read and the done.
	mustWrite(t, r, put{key: "mir/b", rec: rec(11, "n2", "w")})
	if err := e.OutboxDone(read); err != nil {
		t.Fatal(err)
	}
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/b=11@n2"}) {
		t.Fatalf("outbox %v, want the rewritten mir/b kept", got)
	}
	if e.OutboxLen() != 1 {
		t.Fatalf("OutboxLen %d, want 1", e.OutboxLen())
	}
	again, _ := e.Outbox("", "", 10)
	if err := e.OutboxDone(again); err != nil {
		t.Fatal(err)
	}
	if got := mustOutbox(t, e); len(got) != 0 || e.OutboxLen() != 0 {
		t.Fatalf("outbox %v (len %d) after done with the current token", got, e.OutboxLen())
	}
	// The policy loses its bucket: its entries can still be listed and
	// removed, and new writes are not queued.
	mustWrite(t, r, put{key: "mir/d", rec: rec(12, "n1", "v")})
	if err := e.cfg.Cluster.Keyspaces().Set([]keyspace.Policy{{Prefix: "mir/", Mode: keyspace.Eventual, Replicas: 2}}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, put{key: "mir/e", rec: rec(12, "n1", "v")})
	left, _ := e.Outbox("", "", 10)
	if len(left) != 1 || left[0].Key != "mir/d" {
		t.Fatalf("outbox %v after the policy change, want mir/d", left)
	}
	if err := e.OutboxDone(left); err != nil || e.OutboxLen() != 0 {
		t.Fatalf("done %v, len %d", err, e.OutboxLen())
	}
}

// copyDir copies the files of a pebble directory as they are on disk.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.IsDir() {
			continue
		}
		src, err := os.Open(filepath.Join(from, ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, ent.Name()))
		if err == nil {
			_, err = io.Copy(dst, src)
		}
		_ = src.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Entries, their count and the overflow counter survive a crash: a copy
// of the directory taken while the store is open (what kill -9 leaves)
// holds every acknowledged write's entry, and so does a clean reopen.
func TestOutboxSurvivesACrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "live")
	r := mustOpenReplicas(t, dir)
	closeLive := sync.OnceValue(r.close)
	t.Cleanup(func() { _ = closeLive() })
	e := mustOutboxEngine(t, "n1", r)
	r.maxOutbox = 3
	for i := range 5 {
		mustWrite(t, r, put{key: fmt.Sprintf("mir/%d", i), rec: rec(uint64(10+i), "n1", "v")})
	}
	mustWrite(t, r, put{key: "mir/0", rec: rec(20, "n2", "v")})
	want := mustOutbox(t, e)
	if len(want) != 3 || e.OutboxOverflow() != 2 {
		t.Fatalf("before the crash: %v, overflow %d", want, e.OutboxOverflow())
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	copyDir(t, dir, crashed)

	check := func(what, dir string) {
		t.Helper()
		r := mustOpenReplicas(t, dir)
		defer func() { _ = r.close() }()
		e := mustOutboxEngine(t, "n1", r)
		if got := mustOutbox(t, e); !slices.Equal(got, want) {
			t.Fatalf("%s: outbox %v, want %v", what, got, want)
		}
		if e.OutboxLen() != 3 || e.OutboxOverflow() != 2 {
			t.Fatalf("%s: len %d overflow %d, want 3 and 2", what, e.OutboxLen(), e.OutboxOverflow())
		}
	}
	check("crash image", crashed)
	if err := closeLive(); err != nil {
		t.Fatal(err)
	}
	check("reopened", dir)
}

// At the bound a new key is not queued and the overflow counter rises
// (persisted); a key that has an entry is still requeued; clearing with a
// stale count keeps the counter.
func TestOutboxBound(t *testing.T) {
	dir := t.TempDir()
	r := mustOpenReplicas(t, dir)
	e := mustOutboxEngine(t, "n1", r)
	r.maxOutbox = 2
	for _, k := range []string{"mir/a", "mir/b", "mir/c", "mir/d"} {
		mustWrite(t, r, put{key: k, rec: rec(10, "n1", "v")})
	}
	mustWrite(t, r, put{key: "mir/a", rec: rec(11, "n1", "v")}) // has an entry: requeued
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/a=11@n1", "mir/b=10@n1"}) {
		t.Fatalf("outbox at the bound %v", got)
	}
	if e.OutboxLen() != 2 || e.OutboxOverflow() != 2 {
		t.Fatalf("len %d overflow %d, want 2 and 2", e.OutboxLen(), e.OutboxOverflow())
	}
	seen := e.OutboxOverflow()
	// One more skip after the mirror read the counter: clearing with what
	// it saw keeps the counter.
	mustWrite(t, r, put{key: "mir/e", rec: rec(10, "n1", "v")})
	if err := e.ClearOutboxOverflow(seen); err != nil {
		t.Fatal(err)
	}
	if e.OutboxOverflow() != 3 {
		t.Fatalf("overflow %d after a stale clear, want 3", e.OutboxOverflow())
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	r = mustOpenReplicas(t, dir)
	defer func() { _ = r.close() }()
	e = mustOutboxEngine(t, "n1", r)
	r.maxOutbox = 2
	if e.OutboxOverflow() != 3 || e.OutboxLen() != 2 {
		t.Fatalf("reopened: overflow %d len %d, want 3 and 2", e.OutboxOverflow(), e.OutboxLen())
	}
	if err := e.ClearOutboxOverflow(3); err != nil || e.OutboxOverflow() != 0 {
		t.Fatalf("clear: %v, overflow %d", err, e.OutboxOverflow())
	}
	// Room again once entries are done.
	done, _ := e.Outbox("", "", 1)
	if err := e.OutboxDone(done); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, r, put{key: "mir/f", rec: rec(10, "n1", "v")})
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"mir/b=10@n1", "mir/f=10@n1"}) || e.OutboxOverflow() != 0 {
		t.Fatalf("outbox %v overflow %d after room was made", got, e.OutboxOverflow())
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	r = mustOpenReplicas(t, dir)
	if e := mustOutboxEngine(t, "n1", r); e.OutboxOverflow() != 0 || e.OutboxLen() != 2 {
		t.Fatalf("the cleared counter after reopening: %d, len %d", e.OutboxOverflow(), e.OutboxLen())
	}
}

// The mirror primary of a key is its first owner; while the first owner
// is damaged or validating, the next owner; never a node that does not
// own the key.
func TestMirrorPrimary(t *testing.T) {
	const key = "mir/k"
	owners := ring.New(outboxMembers, 0).Owners(key, 2)
	var other string
	for _, m := range outboxMembers {
		if !slices.Contains(owners, m) {
			other = m
		}
	}
	first, second, third := mustOutboxEngine(t, owners[0], nil), mustOutboxEngine(t, owners[1], nil), mustOutboxEngine(t, other, nil)
	want := func(e *Engine, primary bool) {
		t.Helper()
		if got := e.MirrorPrimary(key); got != primary {
			t.Fatalf("%s: MirrorPrimary %v, want %v (owners %v, health %v)", e.cfg.Name, got, primary, owners, e.Health())
		}
	}
	want(first, true)
	want(second, false)
	want(third, false)
	for range missesToDamage {
		second.det.record(owners[0], false)
		third.det.record(owners[0], false)
	}
	want(second, true)
	want(third, false)
	second.det.record(owners[0], true) // validating: not healthy yet
	want(second, true)
	for range roundsToHeal {
		second.det.record(owners[0], true)
	}
	want(second, false)
	// No owner healthy, as the non-owner sees it: the first owner is the
	// primary, still not this node.
	for range missesToDamage {
		third.det.record(owners[1], false)
	}
	want(third, false)
	// Any key has a primary, mirrored or not: its first owner here.
	if !mustOutboxEngine(t, ring.New(outboxMembers, 0).Owners("ev/x", 2)[0], nil).MirrorPrimary("ev/x") {
		t.Fatal("the first owner of ev/x is not its primary")
	}
}

// End to end on three engines over real peer endpoints: a write the
// non-owner coordinates is queued on both owners (W = N: both made it
// durable before the answer) and nowhere else, Config.MaxOutbox bounds
// each node's outbox, and the mirror primary moves to the second owner
// while the second owner cannot reach the first.
func TestOutboxInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and waits for the failure detector")
	}
	tbl := keyspace.NewTable()
	if err := tbl.Set([]keyspace.Policy{
		{Prefix: "mir/", Mode: keyspace.Eventual, Replicas: 2, WriteQuorum: 2, Backup: "s3://bucket/mir"},
		{Prefix: "ev/", Mode: keyspace.Eventual, Replicas: 2, WriteQuorum: 2},
	}); err != nil {
		t.Fatal(err)
	}
	nodes := mustCluster(t, 3, tbl, Config{AntiEntropyInterval: time.Hour, RequestTimeout: 2 * time.Second, MaxOutbox: 2})
	byName := map[string]*testNode{}
	for _, n := range nodes {
		byName[n.cfg.Name] = n
	}
	ownersOf := func(key string) []string { return nodes[0].view.Load().owners(key, 2) }
	write := func(coord *testNode, key string) {
		t.Helper()
		_, errs, err := coord.Apply(context.Background(), []kv.Txn{{Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: []byte("v")}}}}, 0)
		if err == nil {
			err = errs[0]
		}
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	owned := map[string]int{}
	for i := range 6 {
		key := fmt.Sprintf("mir/%d", i)
		var coord *testNode
		for _, n := range nodes {
			if !slices.Contains(ownersOf(key), n.cfg.Name) {
				coord = n
			}
		}
		write(coord, key)
		write(coord, "ev/"+key)
		for _, o := range ownersOf(key) {
			owned[o]++
		}
	}
	for _, n := range nodes {
		es, err := n.Outbox("", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		wantLen := min(owned[n.cfg.Name], 2)
		wantOverflow := uint64(owned[n.cfg.Name] - wantLen)
		if len(es) != wantLen || n.OutboxLen() != int64(wantLen) || n.OutboxOverflow() != wantOverflow {
			t.Errorf("%s owns %d mirrored keys: entries %v (len %d), overflow %d; want %d entries, overflow %d",
				n.cfg.Name, owned[n.cfg.Name], es, n.OutboxLen(), n.OutboxOverflow(), wantLen, wantOverflow)
		}
		for _, x := range es {
			if !strings.HasPrefix(x.Key, "mir/") || !slices.Contains(ownersOf(x.Key), n.cfg.Name) {
				t.Errorf("%s queued %s, owned by %v", n.cfg.Name, x.Key, ownersOf(x.Key))
			}
		}
	}

	const key = "mir/0"
	owners := ownersOf(key)
	first, second := byName[owners[0]], byName[owners[1]]
	if !first.MirrorPrimary(key) || second.MirrorPrimary(key) {
		t.Fatalf("primary of %s (owners %v): first %v, second %v", key, owners, first.MirrorPrimary(key), second.MirrorPrimary(key))
	}
	second.faults.Block(first.addr)
	waitFor(t, "the second owner to take over", func() bool { return second.MirrorPrimary(key) })
	if !first.MirrorPrimary(key) {
		t.Fatal("the first owner stopped counting itself healthy")
	}
	second.faults.Unblock(first.addr)
	waitFor(t, "the first owner to be healthy again", func() bool { return !second.MirrorPrimary(key) })
}

// loadingCluster is a cluster whose node is still replaying its policies.
type loadingCluster struct{ fakeCluster }

func (loadingCluster) PoliciesLoaded() bool { return false }

// A node replaying its log after a restart does not know its policies
// yet: every replica write it takes is queued (a hint handed back to it
// first thing must not miss the outbox), hints still are not.
func TestOutboxQueuesEverythingWhilePoliciesLoad(t *testing.T) {
	r := openTestReplicas(t)
	e := mustOutboxEngine(t, "n1", r)
	e.cfg.Cluster = loadingCluster{fakeCluster{outboxTable(t)}}
	mustWrite(t, r,
		put{key: "mir/a", rec: rec(5, "n1", "x")},
		put{key: "ev/a", rec: rec(5, "n1", "x")},
		put{key: "mir/hinted", rec: rec(5, "n1", "x"), hint: "n2"},
	)
	if got := mustOutbox(t, e); !slices.Equal(got, []string{"ev/a=5@n1", "mir/a=5@n1"}) {
		t.Fatalf("outbox %v while the policies load, want every replica write", got)
	}
	es, _ := e.Outbox("mir/a", "", 1)
	if got, want := es[0].Stamped(), hlc.Timestamp(5).Time(); !got.Equal(want) {
		t.Fatalf("Stamped %v, want the stamp's time %v", got, want)
	}
}
