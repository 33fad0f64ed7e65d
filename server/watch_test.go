package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// TestWatchResumesWithoutLossOrDuplicates: a watcher on a follower that
// disconnects now and then and resumes from its last revision + 1, while
// writes go on through every node, sees every write under its prefix once,
// in revision order.
func TestWatchResumesWithoutLossOrDuplicates(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	w := c.Follower()
	first := mustPut(t, c.Svc(0), "other", "x").ModRevision

	const writes = 300
	var (
		mu      sync.Mutex
		written []int64
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range writes {
			r, err := c.Svc(i%3).Put(context.Background(), fmt.Sprintf("w/%03d", i), []byte("v"), kv.PutOptions{})
			if err != nil {
				t.Errorf("put %d: %v", i, err)
				return
			}
			mustPut(t, c.Svc((i+1)%3), "other", "x") // outside the prefix
			mu.Lock()
			written = append(written, r.ModRevision)
			mu.Unlock()
		}
	}()

	var seen []int64
	next := first + 1
	deadline := time.Now().Add(60 * time.Second)
	for session := 0; ; session++ {
		wctx, cancel := context.WithCancel(context.Background())
		seq, err := c.Svc(w).Watch(wctx, "w/", next)
		if err != nil {
			cancel()
			t.Fatalf("session %d from %d: %v", session, next, err)
		}
		n := 0
		for evs, err := range seq {
			if err != nil {
				t.Fatalf("session %d: %v", session, err)
			}
			for _, ev := range evs {
				if ev.Type != kv.EventPut || ev.Key[:2] != "w/" {
					t.Fatalf("unexpected event %+v", ev)
				}
				seen = append(seen, ev.Revision)
				next = ev.Revision + 1
			}
			// Disconnect after a few commands, sooner in early sessions.
			if n++; n >= 5+session*10 || len(seen) == writes {
				break
			}
		}
		cancel()
		if len(seen) >= writes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d sessions the watcher saw %d of %d writes", session, len(seen), writes)
		}
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
		t.Fatalf("revisions out of order or repeated: %v", seen)
	}
	if !slices.Equal(seen, written) {
		t.Fatalf("the watcher saw %d revisions, the writer made %d; first difference in\n%v\n%v", len(seen), len(written), seen, written)
	}
}

// TestWatchCompacted: with a short history, a watch from a trimmed
// revision is refused with the oldest one kept, and a watch from that one
// replays.
func TestWatchCompacted(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.WatchHistory = 20
	}})
	var last int64
	for i := range 40 {
		last = mustPut(t, c.Svc(i%3), fmt.Sprintf("k%02d", i), "v").ModRevision
	}
	c.WaitConverged(10 * time.Second)
	for i := range c.Nodes {
		_, err := c.Svc(i).Watch(ctx(t), "", 1)
		var ce *kv.CompactedError
		if !errors.As(err, &ce) || kv.CodeOf(err) != kv.CodeCompacted {
			t.Fatalf("node %d: watch from 1: %v", i, err)
		}
		if want := last - 20 + 1; ce.Oldest != want {
			t.Fatalf("node %d: oldest %d, want %d", i, ce.Oldest, want)
		}
		wctx, cancel := context.WithCancel(ctx(t))
		seq, err := c.Svc(i).Watch(wctx, "", ce.Oldest)
		if err != nil {
			t.Fatal(err)
		}
		var revs []int64
		for evs, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, evs[0].Revision)
			if evs[0].Revision == last {
				break
			}
		}
		cancel()
		if len(revs) != 20 || revs[0] != ce.Oldest {
			t.Fatalf("node %d: replay from %d gave %v", i, ce.Oldest, revs)
		}
	}
}

// TestWatchEventualFeed: a node's feed of an eventual keyspace shows a
// write coordinated elsewhere once it lands here as a replica; a from
// revision is refused there, and a prefix over both modes everywhere.
func TestWatchEventualFeed(t *testing.T) {
	c := eventualCluster(t, 3, time.Hour, 3, 3, 1)
	wctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	seq, err := c.Svc(2).Watch(wctx, "ev/", 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan kv.Event, 16)
	go func() {
		for evs, err := range seq {
			if err != nil {
				return
			}
			for _, ev := range evs {
				got <- ev
			}
		}
	}()
	if _, err := c.Svc(0).Put(ctx(t), "ev/a", []byte("1"), kv.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Type != kv.EventPut || ev.Key != "ev/a" || string(ev.Value) != "1" || ev.Timestamp == "" || ev.Origin != c.Nodes[0].Name {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node 2's feed did not show a write coordinated by node 0")
	}
	if _, _, err := c.Svc(1).Delete(ctx(t), "ev/a", kv.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-got:
		if ev.Type != kv.EventDelete || ev.Key != "ev/a" || ev.Origin != c.Nodes[1].Name {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node 2's feed did not show a delete coordinated by node 1")
	}
	if _, err := c.Svc(2).Watch(ctx(t), "ev/", 3); kv.CodeOf(err) != kv.CodeInvalidArgument {
		t.Fatalf("from revision on an eventual keyspace: %v", err)
	}
	if _, err := c.Svc(2).Watch(ctx(t), "", 5); kv.CodeOf(err) != kv.CodeInvalidArgument {
		t.Fatalf("a revision over both modes: %v", err)
	}
	// The empty prefix spans both modes: both feeds, merged.
	all, err := c.Svc(2).Watch(wctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	both := make(chan string, 16)
	go func() {
		for evs, err := range all {
			if err != nil {
				return
			}
			for _, ev := range evs {
				both <- ev.Key
			}
		}
	}()
	if _, err := c.Svc(0).Put(ctx(t), "strong/x", []byte("1"), kv.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Svc(0).Put(ctx(t), "ev/b", []byte("1"), kv.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for !seen["strong/x"] || !seen["ev/b"] {
		select {
		case k := <-both:
			seen[k] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("the watch of \"\" saw %v", seen)
		}
	}
}

// TestWatchOverHTTP: the Go client's Watch on one node sees writes made
// through another, from a revision, over Server-Sent Events.
func TestWatchOverHTTP(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	first := mustPut(t, c.Svc(0), "w/k0", "0").ModRevision
	for j := 1; j <= 5; j++ {
		mustPut(t, c.Svc(1), fmt.Sprintf("w/k%d", j), "v")
	}
	cl, err := client.New(client.Config{Endpoints: []string{c.Running(2).ClientURL()}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var keys []string
	stop := errors.New("enough")
	err = cl.Watch(wctx, "w/", first+1, func(ev client.Event) error {
		keys = append(keys, ev.Key)
		if !ev.Last || ev.Revision <= first {
			t.Errorf("event %+v", ev)
		}
		if len(keys) == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || !slices.Equal(keys, []string{"w/k1", "w/k2", "w/k3", "w/k4", "w/k5"}) {
		t.Fatalf("watch over HTTP: %v, keys %v", err, keys)
	}
}

// replayRevs watches node i from rev until it has seen the revision last,
// and returns the revisions of the commands it got.
func replayRevs(t *testing.T, c *cluster.Cluster, i int, from, last int64) []int64 {
	t.Helper()
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, err := c.Svc(i).Watch(wctx, "", from)
	if err != nil {
		t.Fatalf("node %d: watch from %d: %v", i, from, err)
	}
	var revs []int64
	for evs, err := range seq {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		revs = append(revs, evs[0].Revision)
		if evs[0].Revision >= last {
			break
		}
	}
	return revs
}

// TestWatchHistoryAcrossRestartAndSnapshot: a node's history survives its
// restart, and a follower that catches up by installing a snapshot has the
// history the snapshot carries, with a correct oldest revision.
func TestWatchHistoryAcrossRestartAndSnapshot(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.SnapshotEntries = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 200 * time.Millisecond
		cfg.WatchHistory = 100
	}})
	l := c.WaitLeader(5 * time.Second)
	f := (l + 1) % 3
	var last int64
	for i := range 50 {
		last = mustPut(t, c.Svc(l), fmt.Sprintf("a%02d", i), "v").ModRevision
	}
	c.WaitConverged(10 * time.Second)
	before := replayRevs(t, c, f, last-30, last)

	// Restart: the history is in the state database.
	c.Stop(f)
	c.Start(f)
	c.WaitReady(15 * time.Second)
	waitValue(t, c.Svc(f), "a49", "v")
	if after := replayRevs(t, c, f, last-30, last); !slices.Equal(after, before) {
		t.Fatalf("history after a restart %v, before %v", after, before)
	}

	// Snapshot install: the follower misses 400 writes and the leader's log moves past it.
	behind := c.Raft(f).AppliedIndex()
	c.Stop(f)
	for i := range 400 {
		last = mustPut(t, c.Svc(l), fmt.Sprintf("k%03d", i), "v").ModRevision
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.Raft(l).LogFirstIndex() <= behind+1 {
		if time.Now().After(deadline) {
			t.Fatal("leader log not compacted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Start(f)
	waitValue(t, c.Svc(f), "k399", "v")
	c.WaitConverged(15 * time.Second)
	want := replayRevs(t, c, l, last-60, last)
	if got := replayRevs(t, c, f, last-60, last); !slices.Equal(got, want) {
		t.Fatalf("the follower restored from a snapshot replays %v, the leader %v", got, want)
	}
	for _, i := range []int{l, f} {
		_, err := c.Svc(i).Watch(ctx(t), "", 1)
		var ce *kv.CompactedError
		if !errors.As(err, &ce) || ce.Oldest > last-99 || ce.Oldest < last-99-100/16 {
			t.Fatalf("node %d: watch from 1: %v (last revision %d, history 100)", i, err, last)
		}
	}
}
