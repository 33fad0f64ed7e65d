package strong

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/cairnkv/cairn/kv"
)

func mustMachine(t testing.TB) (*Machine, *store.DB) {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	m, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	return m, db
}

// applyTxns applies each txn as one entry of a single batch, as raft would.
func applyTxns(t *testing.T, m *Machine, db *store.DB, now int64, txns ...kv.Txn) []*kv.TxnResult {
	t.Helper()
	entries := make([]raftnode.Entry, len(txns))
	for i := range txns {
		data, err := encodeCommand(command{Type: cmdTxn, Txn: &txns[i]})
		if err != nil {
			t.Fatal(err)
		}
		entries[i] = raftnode.Entry{Index: uint64(i + 1), Time: now, Data: data}
	}
	b := db.NewBatch()
	out := m.Apply(b, entries)
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	res := make([]*kv.TxnResult, len(out))
	for i, o := range out {
		r, err := decodeResult(o)
		if err != nil {
			res[i] = nil
			continue
		}
		res[i] = r.Txn
	}
	return res
}

func mustGet(t *testing.T, db *store.DB, key string) *kv.Record {
	t.Helper()
	raw, err := db.Get(dataKey(key))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRecord(key, raw)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func put(k, v string) kv.Op { return kv.Op{Type: kv.OpPut, Key: k, Value: []byte(v)} }

func TestRevisionsAndVersions(t *testing.T) {
	m, db := mustMachine(t)
	res := applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("a", "1")}}, kv.Txn{Success: []kv.Op{put("a", "2"), put("b", "x")}})
	if res[0].Revision != 1 || res[1].Revision != 3 {
		t.Fatalf("revisions %d %d, want 1 3", res[0].Revision, res[1].Revision)
	}
	a := mustGet(t, db, "a")
	if string(a.Value) != "2" || a.CreateRevision != 1 || a.ModRevision != 2 || a.Version != 2 {
		t.Fatalf("a = %+v", a)
	}
	if m.Revision() != 3 {
		t.Fatalf("machine revision %d", m.Revision())
	}
	// Deleting a missing key changes nothing.
	res = applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "nope"}}})
	if res[0].Revision != 3 || res[0].Results[0].Deleted != 0 {
		t.Fatalf("delete of missing key: %+v", res[0])
	}
}

func TestTxnCompareBranches(t *testing.T) {
	m, db := mustMachine(t)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("k", "v1")}})
	cases := []struct {
		name string
		cmp  kv.Compare
		want bool
	}{
		{"value equal", kv.Compare{Key: "k", Target: kv.TargetValue, Op: "=", Value: []byte("v1")}, true},
		{"value differs", kv.Compare{Key: "k", Target: kv.TargetValue, Op: "=", Value: []byte("v2")}, false},
		{"value less", kv.Compare{Key: "k", Target: kv.TargetValue, Op: "<", Value: []byte("v2")}, true},
		{"mod revision", kv.Compare{Key: "k", Target: kv.TargetModRevision, Op: "=", Number: 1}, true},
		{"version greater", kv.Compare{Key: "k", Target: kv.TargetVersion, Op: ">", Number: 1}, false},
		{"create revision", kv.Compare{Key: "k", Target: kv.TargetCreateRevision, Op: "!=", Number: 0}, true},
		{"exists", kv.Compare{Key: "k", Target: kv.TargetExists, Op: "=", Exists: true}, true},
		{"missing exists", kv.Compare{Key: "zz", Target: kv.TargetExists, Op: "=", Exists: false}, true},
		{"missing version is 0", kv.Compare{Key: "zz", Target: kv.TargetVersion, Op: "=", Number: 0}, true},
		{"missing value never equal", kv.Compare{Key: "zz", Target: kv.TargetValue, Op: "=", Value: nil}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := applyTxns(t, m, db, 1, kv.Txn{Compare: []kv.Compare{tc.cmp}, Success: []kv.Op{{Type: kv.OpGet, Key: "k"}}, Failure: []kv.Op{{Type: kv.OpGet, Key: "zz"}}})
			if res[0].Succeeded != tc.want {
				t.Fatalf("succeeded = %v, want %v", res[0].Succeeded, tc.want)
			}
		})
	}
}

func TestTxnAtomicOnError(t *testing.T) {
	m, db := mustMachine(t)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("doc", "not json")}})
	before := m.Revision()
	// The put of x comes first, but the patch fails: nothing of the txn stays.
	res := applyTxns(t, m, db, 1,
		kv.Txn{Success: []kv.Op{put("x", "1"), {Type: kv.OpPatch, Key: "doc", Value: []byte(`{"a":1}`)}}},
		kv.Txn{Success: []kv.Op{put("y", "1")}})
	if res[0] != nil {
		t.Fatalf("failing txn returned a result: %+v", res[0])
	}
	if mustGet(t, db, "x") != nil {
		t.Fatal("x was written by a failed txn")
	}
	if mustGet(t, db, "y") == nil || res[1].Revision != before+1 {
		t.Fatalf("the next txn in the batch must still apply: %+v", res[1])
	}
}

func TestPatchCreatesAndMerges(t *testing.T) {
	m, db := mustMachine(t)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{{Type: kv.OpPatch, Key: "d", Value: []byte(`{"a":1,"b":{"c":2}}`)}}})
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{{Type: kv.OpPatch, Key: "d", Value: []byte(`{"b":{"c":null,"e":3}}`)}}})
	got := mustGet(t, db, "d")
	var doc map[string]any
	if err := json.Unmarshal(got.Value, &doc); err != nil {
		t.Fatal(err)
	}
	b := doc["b"].(map[string]any)
	if doc["a"].(float64) != 1 || b["e"].(float64) != 3 || b["c"] != nil || got.Version != 2 {
		t.Fatalf("merged = %s (version %d)", got.Value, got.Version)
	}
}

func TestDeletePrefixSeesBatchWrites(t *testing.T) {
	m, db := mustMachine(t)
	applyTxns(t, m, db, 1, kv.Txn{Success: []kv.Op{put("p/1", "a"), put("p/2", "b"), put("q/1", "c")}})
	res := applyTxns(t, m, db, 1,
		kv.Txn{Success: []kv.Op{put("p/3", "new")}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "p/1"}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpDeletePrefix, Key: "p/"}}})
	if n := res[2].Results[0].Deleted; n != 2 {
		t.Fatalf("delete_prefix deleted %d, want 2 (p/2 and p/3)", n)
	}
	for _, k := range []string{"p/1", "p/2", "p/3"} {
		if mustGet(t, db, k) != nil {
			t.Fatalf("%s survived", k)
		}
	}
	if mustGet(t, db, "q/1") == nil {
		t.Fatal("q/1 deleted")
	}
}

func TestExpiryIsDecidedByEntryTime(t *testing.T) {
	m, db := mustMachine(t)
	t0 := time.Unix(1000, 0).UnixNano()
	applyTxns(t, m, db, t0, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "t", Value: []byte("v"), TTL: time.Second}}})
	r := mustGet(t, db, "t")
	if r.Expires != t0+int64(time.Second) {
		t.Fatalf("expires %d", r.Expires)
	}
	expire := func(now int64, rev int64) {
		data, _ := encodeCommand(command{Type: cmdExpire, Expire: []expireItem{{Key: "t", ModRevision: rev}}})
		b := db.NewBatch()
		m.Apply(b, []raftnode.Entry{{Index: 9, Time: now, Data: data}})
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	expire(t0+int64(500*time.Millisecond), r.ModRevision) // too early
	if mustGet(t, db, "t") == nil {
		t.Fatal("expired before its time")
	}
	expire(t0+int64(2*time.Second), r.ModRevision-1) // stale revision: the key was rewritten
	if mustGet(t, db, "t") == nil {
		t.Fatal("expired with a stale revision")
	}
	expire(t0+int64(2*time.Second), r.ModRevision)
	if mustGet(t, db, "t") != nil {
		t.Fatal("not expired")
	}
	// The TTL index entry is gone too.
	n := 0
	_ = db.Scan([]byte{prefixTTL}, []byte{prefixTTL + 1}, func(_, _ []byte) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d TTL index entries left", n)
	}
}

func TestRecordCodecRoundTrip(t *testing.T) {
	in := &kv.Record{Key: "k", Value: []byte("hello"), CreateRevision: 3, ModRevision: 9, Version: 4, Expires: -5}
	out, err := decodeRecord("k", encodeRecord(in))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Value) != "hello" || out.CreateRevision != 3 || out.ModRevision != 9 || out.Version != 4 || out.Expires != -5 {
		t.Fatalf("round trip: %+v", out)
	}
	// A record written with the reserved fields set (hlc 77, tombstone
	// flag, origin "n1") still decodes to the same record.
	old := []byte{recordFormat, 3, 9, 4, 9 /* varint -5 */, 77, 1, 2, 'n', '1', 'h', 'i'}
	out, err = decodeRecord("k", old)
	if err != nil || string(out.Value) != "hi" || out.CreateRevision != 3 || out.ModRevision != 9 || out.Version != 4 || out.Expires != -5 {
		t.Fatalf("record with reserved fields: %+v %v", out, err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&kv.Record{Value: []byte("v"), Expires: 7}))
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord("k", b)
		if err == nil && r == nil {
			t.Fatal("nil record without error")
		}
	})
}

func TestRedisStyleOps(t *testing.T) {
	m, db := mustMachine(t)
	now := time.Unix(2000, 0).UnixNano()
	res := applyTxns(t, m, db, now,
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: "n", Value: []byte("5")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: "n", Value: []byte("-7")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncrFloat, Key: "f", Value: []byte("1.5")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpAppend, Key: "s", Value: []byte("ab")}, {Type: kv.OpAppend, Key: "s", Value: []byte("cd")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: "s", Value: []byte("1")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "t", Value: []byte("v"), TTL: time.Minute}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: "t2", Value: []byte("1")}, {Type: kv.OpExpire, Key: "t2", TTL: time.Second}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpRename, Key: "t", Value: []byte("t3")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "gs", Value: []byte("new"), ReturnPrev: true}}},
	)
	if got := string(mustGet(t, db, "n").Value); got != "-2" {
		t.Fatalf("incr: %s", got)
	}
	if got := string(mustGet(t, db, "f").Value); got != "1.5" {
		t.Fatalf("incr float: %s", got)
	}
	if got := string(mustGet(t, db, "s").Value); got != "abcd" {
		t.Fatalf("append: %s", got)
	}
	if res[4] != nil {
		t.Fatal("incr of a non-integer succeeded")
	}
	if r := mustGet(t, db, "t2"); r.Expires != now+int64(time.Second) {
		t.Fatalf("expire: %+v", r)
	}
	if mustGet(t, db, "t") != nil || mustGet(t, db, "t3").Expires != now+int64(time.Minute) {
		t.Fatal("rename did not move the value and its TTL")
	}
	if res[8].Results[0].Prev != nil {
		t.Fatal("prev of a new key")
	}
	res = applyTxns(t, m, db, now,
		kv.Txn{Success: []kv.Op{{Type: kv.OpExpire, Key: "t3"}}},                   // persist
		kv.Txn{Success: []kv.Op{{Type: kv.OpExpire, Key: "n", TTL: -time.Second}}}, // negative deletes
		kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "past", Value: []byte("x"), ExpiresAt: now - 1}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpRename, Key: "missing", Value: []byte("x")}}},
		kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: "big", Value: []byte("9223372036854775807")}, {Type: kv.OpIncr, Key: "big", Value: []byte("1")}}},
	)
	if mustGet(t, db, "t3").Expires != 0 || mustGet(t, db, "n") != nil || mustGet(t, db, "past") != nil {
		t.Fatal("persist, negative expire or past expiry wrong")
	}
	if res[3] != nil || res[4] != nil || mustGet(t, db, "big") != nil {
		t.Fatal("rename of a missing key or an overflowing incr succeeded")
	}
}

func TestExpiredKeysAreAbsentToCommands(t *testing.T) {
	m, db := mustMachine(t)
	t0 := time.Unix(3000, 0).UnixNano()
	applyTxns(t, m, db, t0, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "c", Value: []byte("41"), TTL: time.Second}}})
	// The sweep has not run, but at t0+2s the counter has expired: INCR starts over.
	res := applyTxns(t, m, db, t0+int64(2*time.Second),
		kv.Txn{Compare: []kv.Compare{{Key: "c", Target: kv.TargetExists, Op: "=", Exists: false}}, Success: []kv.Op{{Type: kv.OpIncr, Key: "c", Value: []byte("1")}}})
	if !res[0].Succeeded {
		t.Fatal("an expired key counted as existing")
	}
	r := mustGet(t, db, "c")
	if string(r.Value) != "1" || r.Version != 1 || r.Expires != 0 {
		t.Fatalf("after incr of an expired key: %+v", r)
	}
	n := 0
	_ = db.Scan([]byte{prefixTTL}, []byte{prefixTTL + 1}, func(_, _ []byte) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d stale TTL index entries", n)
	}
}

// The record cache serves reads on other goroutines: a batch's writes appear
// there only once Committed says the batch is in the database, a restarted
// machine (non-empty database) sends misses to the database, and a cache
// that outgrows its budget forgets instead of answering "absent".
func TestRecordCacheVisibility(t *testing.T) {
	m, db := mustMachine(t)
	put := func(k, v string) kv.Txn { return kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: k, Value: []byte(v)}}} }
	data, _ := encodeCommand(command{Type: cmdTxn, Txn: &kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "a", Value: []byte("1")}}}})
	b := db.NewBatch()
	m.Apply(b, []raftnode.Entry{{Index: 1, Time: 1, Data: data}})
	if r, ok := m.Cached("a"); !ok || r != nil {
		t.Fatalf("before commit: %v %v, want known absent (empty database)", r, ok)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	m.Committed()
	if r, ok := m.Cached("a"); !ok || r == nil || string(r.Value) != "1" {
		t.Fatalf("after commit: %v %v", r, ok)
	}

	// A machine over a database that already holds records does not claim
	// to know absent keys.
	m2, err := NewMachine(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m2.Cached("a"); ok {
		t.Fatal("a fresh machine over existing data claims to know a key")
	}
	if _, ok := m2.Cached("never"); ok {
		t.Fatal("a fresh machine over existing data claims a key is absent")
	}

	// Overflow: the budget is tiny, so the cache starts over and stops
	// answering for keys it no longer holds.
	m.recent.budget = 200
	applyTxns(t, m, db, 1, put("b", "2"), put("c", "3"), put("d", "4"))
	m.Committed()
	if _, ok := m.Cached("zzz"); ok {
		t.Fatal("after overflow the cache still claims unknown keys are absent")
	}
}

// Readers race with the apply goroutine (run with -race).
func TestRecordCacheConcurrentReads(t *testing.T) {
	m, db := mustMachine(t)
	m.recent.budget = 4 << 10 // overflow often
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < 50; i++ {
				if r, ok := m.Cached(fmt.Sprintf("k%d", i)); ok && r != nil && r.Key != fmt.Sprintf("k%d", i) {
					t.Errorf("cached record for k%d has key %q", i, r.Key)
					return
				}
			}
		}
	}()
	for round := 0; round < 200; round++ {
		var txns []kv.Txn
		for i := 0; i < 10; i++ {
			k := fmt.Sprintf("k%d", (round*10+i)%50)
			txns = append(txns, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: k, Value: []byte("v")}}})
		}
		applyTxns(t, m, db, 1, txns...)
		m.Committed()
	}
	close(stop)
	<-done
}
