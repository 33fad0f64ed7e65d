package strong

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// The fast path must be invisible: two machines, one applying every
// transaction through the general path, are given the same random
// commands, and after every batch they must hold the same bytes (records,
// revision, TTL index, watch history), have returned the same bytes, have
// staged and cached the same records and have delivered the same events.
func TestFastPathEquivalent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int // record cache budget: a small one makes the machines read the database
		seed   uint64
	}{{"cached", recordCacheBudget, 1}, {"small cache", 600, 2}, {"seed 3", recordCacheBudget, 3}, {"seed 4", 1500, 4}} {
		t.Run(tc.name, func(t *testing.T) {
			slow, fast := newEquivMachine(t, tc.budget, true), newEquivMachine(t, tc.budget, false)
			g := &cmdGen{rnd: rand.New(rand.NewPCG(tc.seed, 99)), now: int64(1e15)}
			// Keys under ev/ belong to an eventual keyspace: the machine refuses them.
			first := []raftnode.Entry{g.entry(command{Type: cmdKeyspaceSet, Keyspace: &keyspace.Policy{Prefix: "ev/", Mode: keyspace.Eventual}})}
			slow.applyAndCompare(t, fast, first)
			fastCount := 0
			for i := range 250 {
				entries := g.batch(slow)
				for _, e := range entries {
					if c, err := decodeCommand(e.Data); err == nil && c.Type == cmdTxn && isSimple(c.Txn) {
						fastCount++
					}
				}
				slow.applyAndCompare(t, fast, entries)
				if t.Failed() {
					t.Fatalf("after batch %d", i)
				}
			}
			if fastCount < 500 {
				t.Fatalf("only %d commands took the fast path", fastCount)
			}
		})
	}
}

// isSimple reports a txn the fast path takes.
func isSimple(t *kv.Txn) bool {
	return len(t.Compare) == 0 && len(t.Success) == 1 && (t.Success[0].Type == kv.OpPut || t.Success[0].Type == kv.OpDelete)
}

type equivMachine struct {
	m   *Machine
	db  *store.DB
	sub *watch.Sub
}

func newEquivMachine(t *testing.T, budget int, noFastPath bool) *equivMachine {
	t.Helper()
	m, db := mustMachine(t)
	m.noFastPath = noFastPath
	m.recent.budget = budget
	m.hist.limit = 40 // trims the history now and then
	sub := m.hist.hub.Subscribe("", 1<<16)
	t.Cleanup(sub.Close)
	return &equivMachine{m: m, db: db, sub: sub}
}

// applyAndCompare applies entries as one batch to both machines and
// compares everything either shows.
func (a *equivMachine) applyAndCompare(t *testing.T, b *equivMachine, entries []raftnode.Entry) {
	t.Helper()
	var outs [2][][]byte
	for i, x := range []*equivMachine{a, b} {
		batch := x.db.NewBatch()
		outs[i] = x.m.Apply(batch, entries)
		if err := batch.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	for i := range entries {
		if !bytes.Equal(outs[0][i], outs[1][i]) {
			c, _ := decodeCommand(entries[i].Data)
			r0, _ := decodeResultBytes(outs[0][i])
			r1, _ := decodeResultBytes(outs[1][i])
			t.Fatalf("entry %d (%+v %+v): results differ:\n general %x %+v %+v\n fast    %x %+v %+v", i, c, c.Txn, outs[0][i], r0, r0.Txn, outs[1][i], r1, r1.Txn)
		}
	}
	if !reflect.DeepEqual(a.m.staged, b.m.staged) {
		t.Fatalf("staged records differ:\n general %v\n fast    %v", a.m.staged, b.m.staged)
	}
	for _, x := range []*equivMachine{a, b} {
		x.m.Committed()
	}
	if ra, rb := a.m.Revision(), b.m.Revision(); ra != rb {
		t.Fatalf("revisions %d and %d", ra, rb)
	}
	if ga, gb := drain(a.sub), drain(b.sub); !reflect.DeepEqual(ga, gb) {
		t.Fatalf("watch events differ:\n general %+v\n fast    %+v", ga, gb)
	}
	da, db := dump(t, a.db), dump(t, b.db)
	if len(da) != len(db) {
		t.Fatalf("state databases hold %d and %d keys", len(da), len(db))
	}
	for i := range da {
		if !bytes.Equal(da[i][0], db[i][0]) || !bytes.Equal(da[i][1], db[i][1]) {
			t.Fatalf("state databases differ at %d: %x=%x and %x=%x", i, da[i][0], da[i][1], db[i][0], db[i][1])
		}
	}
	for _, k := range genKeys {
		ra, oka := a.m.recent.get(k)
		rb, okb := b.m.recent.get(k)
		if a.m.recent.budget == recordCacheBudget && (oka != okb || !reflect.DeepEqual(ra, rb)) {
			t.Fatalf("cache of %q: %v %+v and %v %+v", k, oka, ra, okb, rb)
		}
		// A cache that turns over holds what the order of its puts left
		// (Committed walks a map), on either path: it must only be true.
		for _, x := range []struct {
			r  *kv.Record
			ok bool
			db *store.DB
		}{{ra, oka, a.db}, {rb, okb, b.db}} {
			if want := mustGet(t, x.db, k); x.ok && !reflect.DeepEqual(x.r, want) {
				t.Fatalf("cache of %q: %+v, database %+v", k, x.r, want)
			}
		}
	}
}

func drain(s *watch.Sub) []watch.Group {
	var out []watch.Group
	for {
		select {
		case g := <-s.C():
			out = append(out, g)
		default:
			return out
		}
	}
}

// dump is every key and value of the state database (raftnode's 0x00
// prefix aside: there is none here).
func dump(t *testing.T, db *store.DB) [][2][]byte {
	t.Helper()
	var out [][2][]byte
	err := db.Scan([]byte{0x01}, []byte{0xff}, func(k, v []byte) bool {
		out = append(out, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// genKeys is the key space of the generated commands: few keys, so that
// commands meet each other's writes, in the batch and across batches.
var genKeys = func() []string {
	var ks []string
	for i := range 12 {
		ks = append(ks, fmt.Sprintf("k%d", i))
	}
	return append(ks, "pre/a", "pre/b", "pre/c", "ev/x", "ev/y")
}()

// cmdGen makes random commands; now is the leader time of the next entry.
type cmdGen struct {
	rnd   *rand.Rand
	now   int64
	index uint64
}

func (g *cmdGen) entry(c command) raftnode.Entry {
	data, err := encodeCommand(c)
	if err != nil {
		panic(err)
	}
	g.index++
	// Time moves on by up to 40 ms an entry, sometimes not at all.
	g.now += int64(g.rnd.IntN(3)) * int64(20*time.Millisecond)
	return raftnode.Entry{Index: g.index, Time: g.now, Data: data}
}

func (g *cmdGen) key() string { return genKeys[g.rnd.IntN(len(genKeys))] }

// batch is 1 to 24 random entries; m (either machine) supplies the revisions
// an expire command names.
func (g *cmdGen) batch(m *equivMachine) []raftnode.Entry {
	n := 1 + g.rnd.IntN(24)
	entries := make([]raftnode.Entry, 0, n)
	for range n {
		var c command
		switch p := g.rnd.IntN(100); {
		case p < 70:
			c = command{Type: cmdTxn, Txn: g.simpleTxn()}
		case p < 82:
			c = command{Type: cmdTxn, Txn: g.generalTxn()}
		case p < 92:
			c = command{Type: cmdBatch}
			for range 1 + g.rnd.IntN(5) {
				if g.rnd.IntN(2) == 0 {
					c.Batch = append(c.Batch, *g.simpleTxn())
				} else {
					c.Batch = append(c.Batch, *g.generalTxn())
				}
			}
		default:
			c = command{Type: cmdExpire, Expire: g.expireItems(m)}
		}
		if c.Type != cmdExpire {
			switch g.rnd.IntN(10) {
			case 0:
				c.AuthChecked, c.AuthRev = true, 0 // the auth state's revision: applies
			case 1:
				c.AuthChecked, c.AuthRev = true, 7 // a stale check: refused
			}
		}
		entries = append(entries, g.entry(c))
	}
	return entries
}

// simpleTxn is a txn of one put or delete, the fast path's own, now and
// then with a failure branch (never run, but its keys are checked).
func (g *cmdGen) simpleTxn() *kv.Txn {
	t := &kv.Txn{Success: []kv.Op{g.simpleOp()}}
	if g.rnd.IntN(15) == 0 {
		t.Failure = []kv.Op{g.simpleOp()}
	}
	return t
}

func (g *cmdGen) simpleOp() kv.Op {
	op := kv.Op{Type: kv.OpPut, Key: g.key(), Value: []byte(fmt.Sprintf("v%d", g.rnd.IntN(1000))), ReturnPrev: g.rnd.IntN(4) == 0}
	if g.rnd.IntN(4) == 0 {
		op.Type, op.Value = kv.OpDelete, nil
		return op
	}
	switch g.rnd.IntN(8) {
	case 0:
		op.TTL = time.Duration(1+g.rnd.IntN(200)) * time.Millisecond
	case 1:
		op.TTL = -time.Second
	case 2:
		op.ExpiresAt = g.now + int64(g.rnd.IntN(400)-100)*int64(time.Millisecond) // past or future
	case 3:
		op.KeepTTL = true
	case 4:
		op.TTL, op.KeepTTL = time.Duration(1+g.rnd.IntN(200))*time.Millisecond, true
	}
	if g.rnd.IntN(20) == 0 {
		op.Value = nil
	}
	return op
}

// generalTxn is anything else: compares, several ops, the other op types.
func (g *cmdGen) generalTxn() *kv.Txn {
	t := &kv.Txn{}
	for range g.rnd.IntN(2) {
		t.Compare = append(t.Compare, kv.Compare{Key: g.key(), Target: kv.TargetVersion, Op: []string{"=", "!=", "<", ">"}[g.rnd.IntN(4)], Number: int64(g.rnd.IntN(3))})
	}
	ops := func() []kv.Op {
		var ops []kv.Op
		for range g.rnd.IntN(3) + 1 {
			op := g.simpleOp()
			switch g.rnd.IntN(7) {
			case 0:
				op = kv.Op{Type: kv.OpIncr, Key: g.key(), Value: []byte("1")}
			case 1:
				op = kv.Op{Type: kv.OpGet, Key: g.key()}
			case 2:
				op = kv.Op{Type: kv.OpDeletePrefix, Key: "pre/"}
			case 3:
				op = kv.Op{Type: kv.OpExpire, Key: g.key(), TTL: time.Duration(g.rnd.IntN(100)) * time.Millisecond}
			case 4:
				op = kv.Op{Type: kv.OpAppend, Key: g.key(), Value: []byte("+")}
			}
			ops = append(ops, op)
		}
		return ops
	}
	t.Success = ops()
	if len(t.Compare) > 0 {
		t.Failure = ops()
	}
	return t
}

// expireItems names keys with their current mod revision (what the leader's
// sweep proposes), and now and then a stale one.
func (g *cmdGen) expireItems(m *equivMachine) []expireItem {
	var items []expireItem
	for _, k := range genKeys {
		raw, err := m.db.Get(dataKey(k))
		if err != nil {
			continue
		}
		r, err := decodeRecord(k, raw)
		if err != nil || r.Expires == 0 {
			continue
		}
		rev := r.ModRevision
		if g.rnd.IntN(5) == 0 {
			rev--
		}
		items = append(items, expireItem{Key: k, ModRevision: rev})
	}
	return items
}

// The record and history encodings are written in place in the batch, so
// their lengths must be exact.
func TestEncodedLengths(t *testing.T) {
	for _, n := range []int64{0, 1, 63, 64, 127, 128, 1 << 20, -1, -64, -65, 1 << 62, -1 << 62, 1<<63 - 1, -1 << 63} {
		for _, v := range [][]byte{nil, []byte("x"), make([]byte, 300)} {
			r := &kv.Record{Key: "k", Value: v, CreateRevision: n, ModRevision: n, Version: n, Expires: n}
			if got, want := recordLen(r), len(appendRecord(nil, r)); got != want {
				t.Fatalf("recordLen(%+v) = %d, encoding %d", r, got, want)
			}
		}
	}
	big := make([]byte, historyValueBytes+1)
	for _, evs := range [][]kv.Event{
		{{Type: kv.EventPut, Key: "k", Value: []byte("v")}},
		{{Type: kv.EventDelete, Key: "k"}, {Type: kv.EventPut, Key: string(make([]byte, 200)), Value: make([]byte, 200)}},
		{{Type: kv.EventPut, Key: "big", Value: big}, {Type: kv.EventPut, Key: "omitted", ValueOmitted: true}},
	} {
		if got, want := eventsLen(evs), len(appendEvents(nil, evs)); got != want {
			t.Fatalf("eventsLen = %d, encoding %d", got, want)
		}
	}
}
