package strong

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/kv"
)

// mustHistory returns every command's events the history holds from rev on.
func mustHistory(t *testing.T, m *Machine, from int64) [][]kv.Event {
	t.Helper()
	groups, err := m.readHistory(from, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]kv.Event
	for _, g := range groups {
		for _, ev := range g.Events {
			if ev.Revision != g.Revision {
				t.Fatalf("event %+v in the group of revision %d", ev, g.Revision)
			}
		}
		out = append(out, g.Events)
	}
	return out
}

func describe(groups [][]kv.Event) string {
	var b strings.Builder
	for _, g := range groups {
		b.WriteString("[")
		for i, ev := range g {
			if i > 0 {
				b.WriteString(" ")
			}
			typ := string(ev.Type)
			if ev.Expired {
				typ = "expired"
			}
			fmt.Fprintf(&b, "%d:%s:%s=%s", ev.Revision, typ, ev.Key, ev.Value)
		}
		b.WriteString("]")
	}
	return b.String()
}

func TestHistoryKeepsATxnTogether(t *testing.T) {
	m, db := mustMachine(t)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("c", "0")}})
	res := applyTxns(t, m, db, 1,
		kv.Txn{Success: []kv.Op{put("b", "1"), put("a", "2"), {Type: kv.OpDelete, Key: "c"}, {Type: kv.OpGet, Key: "a"}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "missing"}}}, // no change, no event
		kv.Txn{Success: []kv.Op{put("d", "3")}})
	if res[0].Revision != 4 || res[2].Revision != 5 {
		t.Fatalf("revisions %d %d, want 4 5", res[0].Revision, res[2].Revision)
	}
	got := describe(mustHistory(t, m, 1))
	want := "[1:put:c=0][4:put:b=1 4:put:a=2 4:delete:c=][5:put:d=3]"
	if got != want {
		t.Fatalf("history\n got %s\nwant %s", got, want)
	}
	// A revision inside a txn gives the whole txn.
	if got := describe(mustHistory(t, m, 3)); got != "[4:put:b=1 4:put:a=2 4:delete:c=][5:put:d=3]" {
		t.Fatalf("from 3: %s", got)
	}
}

// An expiry is a delete marked Expired, live and in the history; a
// command's delete is not.
func TestHistoryRecordsExpiry(t *testing.T) {
	m, db := mustMachine(t)
	now := time.Now().UnixNano()
	res := applyTxns(t, m, db, now, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "t", Value: []byte("v"), TTL: time.Millisecond}}}, kv.Txn{Success: []kv.Op{put("u", "w")}})
	m.Committed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seq, err := m.watch(ctx, "", 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	live, _ := collect(seq)
	data, _ := encodeCommand(command{Type: cmdExpire, Expire: []expireItem{{Key: "t", ModRevision: res[0].Revision}}})
	b := db.NewBatch()
	m.Apply(b, []raftnode.Entry{{Index: 2, Time: now + int64(time.Second), Data: data}})
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	m.Committed()
	applyTxns(t, m, db, now, kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "u"}}})
	m.Committed()
	if got := describe(mustHistory(t, m, 1)); got != "[1:put:t=v][2:put:u=w][3:expired:t=][4:delete:u=]" {
		t.Fatalf("history %s", got)
	}
	var got [][]kv.Event
	for len(got) < 2 {
		select {
		case g := <-live:
			got = append(got, g)
		case <-time.After(5 * time.Second):
			t.Fatalf("live events so far: %s", describe(got))
		}
	}
	if describe(got) != "[3:expired:t=][4:delete:u=]" {
		t.Fatalf("live events %s", describe(got))
	}
}

func TestHistoryTrimmedAndReopened(t *testing.T) {
	m, db := mustMachine(t)
	m.hist.limit = 10 // trims in steps of one revision
	if got := m.OldestRevision(); got != 1 {
		t.Fatalf("oldest of an empty history %d, want 1", got)
	}
	for i := range 25 {
		applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put(fmt.Sprintf("k%02d", i), "v")}})
	}
	if got := m.OldestRevision(); got != 16 {
		t.Fatalf("oldest after 25 revisions with a limit of 10: %d, want 16", got)
	}
	h := mustHistory(t, m, 0)
	if len(h) != 10 || h[0][0].Revision != 16 || h[9][0].Revision != 25 {
		t.Fatalf("history after trimming: %s", describe(h))
	}
	if _, err := m.watch(context.Background(), "", 15, 0, nil); err == nil {
		t.Fatal("a watch from a trimmed revision started")
	} else if ce := (*kv.CompactedError)(nil); !errors.As(err, &ce) || ce.Oldest != 16 || kv.CodeOf(err) != kv.CodeCompacted {
		t.Fatalf("watch from 15: %v, want a CompactedError with oldest 16", err)
	}

	// The history and its oldest revision are in the database.
	m2, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.OldestRevision(); got != 16 {
		t.Fatalf("oldest after reopening %d, want 16", got)
	}
	if got, want := describe(mustHistory(t, m2, 0)), describe(h); got != want {
		t.Fatalf("history after reopening\n got %s\nwant %s", got, want)
	}

	// A larger limit: nothing is trimmed before the newest revision is a
	// sixteenth of the limit past it.
	m2.hist.limit = 64
	for i := range 10 {
		applyTxns(t, m2, db, 1, kv.Txn{Success: []kv.Op{put(fmt.Sprintf("j%02d", i), "v")}})
	}
	if got := m2.OldestRevision(); got != 16 {
		t.Fatalf("oldest %d moved before a step was due", got)
	}
}

// A database written before the history existed (or restored from a
// snapshot of one) has history from the revision after its last.
func TestHistoryOfAnOlderDatabase(t *testing.T) {
	m, db := mustMachine(t)
	for range 3 {
		applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("a", "v")}})
	}
	if err := db.DeleteRange([]byte{prefixHistory}, []byte{prefixHistory + 1}, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Restored(); err != nil {
		t.Fatal(err)
	}
	if got := m.OldestRevision(); got != 4 {
		t.Fatalf("oldest %d, want 4", got)
	}
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("a", "w")}})
	m2, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.OldestRevision(); got != 4 {
		t.Fatalf("oldest after reopening %d, want 4 (the first one was stored)", got)
	}
	if got := describe(mustHistory(t, m2, 0)); got != "[4:put:a=w]" {
		t.Fatalf("history %s", got)
	}
}

// collect runs seq in a goroutine and sends what it yields.
func collect(seq iter.Seq2[[]kv.Event, error]) (<-chan []kv.Event, <-chan error) {
	evs, errs := make(chan []kv.Event, 1024), make(chan error, 1)
	go func() {
		for g, err := range seq {
			if err != nil {
				errs <- err
				return
			}
			evs <- g
		}
		errs <- nil
	}()
	return evs, errs
}

func TestWatchReplaysThenGoesLive(t *testing.T) {
	m, db := mustMachine(t)
	for i := range 3 {
		applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put(fmt.Sprintf("w/%d", i), "v"), put("other", "x")}})
	}
	m.Committed()
	ctx, cancel := context.WithCancel(context.Background())
	seq, err := m.watch(ctx, "w/", 3, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	evs, errs := collect(seq)
	for i := 3; i < 6; i++ {
		applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put(fmt.Sprintf("w/%d", i), "v"), put("other", "x")}})
		m.Committed()
	}
	var revs []int64
	for len(revs) < 5 {
		select {
		case g := <-evs:
			for _, ev := range g {
				if !strings.HasPrefix(ev.Key, "w/") {
					t.Fatalf("event %+v outside the prefix", ev)
				}
				revs = append(revs, ev.Revision)
			}
		case err := <-errs:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatalf("got revisions %v, want 4 6 8 10 12", revs)
		}
	}
	if !slices.Equal(revs, []int64{4, 6, 8, 10, 12}) {
		t.Fatalf("revisions %v, want 4 6 8 10 12", revs)
	}
	cancel()
	if err := <-errs; err != nil {
		t.Fatalf("after cancel: %v", err)
	}
}

func TestWatchDropsASlowWatcher(t *testing.T) {
	m, db := mustMachine(t)
	seq, err := m.watch(context.Background(), "", 0, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("a", "v")}})
		m.Committed()
	}
	var last error
	for _, err := range seq {
		last = err
	}
	if !errors.Is(last, kv.ErrUnavailable) || !strings.Contains(last.Error(), "resume from revision") {
		t.Fatalf("a watcher that fell behind ended with %v", last)
	}
}

func TestEventsCodec(t *testing.T) {
	evs := []kv.Event{{Type: kv.EventPut, Key: "a", Value: []byte("1"), Revision: 7}, {Type: kv.EventDelete, Key: "b", Revision: 7},
		{Type: kv.EventPut, Key: "c", Value: []byte{}, Revision: 7}, {Type: kv.EventDelete, Key: "d", Revision: 7, Expired: true}}
	got, err := decodeEvents(encodeEvents(evs), 7)
	if err != nil {
		t.Fatal(err)
	}
	if describe([][]kv.Event{got}) != describe([][]kv.Event{evs}) {
		t.Fatalf("round trip: %s", describe([][]kv.Event{got}))
	}
	b := encodeEvents(evs)
	for i := range b {
		if _, err := decodeEvents(b[:i], 7); err == nil {
			t.Fatalf("a truncated entry of %d bytes decoded", i)
		}
	}
}

// TestHistoryOmitsLargeValues: a value over historyValueBytes is not
// stored in the history; a replay fills it in from the record while no
// later write replaced it, and marks it omitted once one has.
func TestHistoryOmitsLargeValues(t *testing.T) {
	m, db := mustMachine(t)
	big := strings.Repeat("x", historyValueBytes+1)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("big", big), put("small", "s")}})
	m.Committed()
	raw, err := db.Get(historyKey(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 100 {
		t.Fatalf("the history entry is %d bytes: it holds the large value", len(raw))
	}
	evs := mustHistory(t, m, 1)[0]
	if string(evs[0].Value) != big || evs[0].ValueOmitted || string(evs[1].Value) != "s" {
		t.Fatalf("replay before any later write: %d bytes, omitted %v; %q", len(evs[0].Value), evs[0].ValueOmitted, evs[1].Value)
	}
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("big", "later")}})
	m.Committed()
	got := mustHistory(t, m, 1)
	if ev := got[0][0]; ev.Value != nil || !ev.ValueOmitted || ev.Type != kv.EventPut {
		t.Fatalf("replay after a later write: %+v", ev)
	}
	if ev := got[1][0]; string(ev.Value) != "later" || ev.ValueOmitted {
		t.Fatalf("the later write's event: %+v", ev)
	}
}
