package model

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// h builds a history from (call, return) pairs in milliseconds; an Unknown
// operation's return is replaced by the end of the history, as Run does.
func h(ops ...*Op) []*Op {
	var end int64
	for _, o := range ops {
		end = max(end, o.Return)
	}
	for _, o := range ops {
		if o.Outcome == Unknown {
			o.Return = end + 1
		}
	}
	return ops
}

func at(call, ret int64, o Op) *Op {
	o.Call, o.Return = call, ret
	if o.Key == "" {
		o.Key = "k"
	}
	return &o
}

func put(v string, rev int64) Op { return Op{Kind: KindPut, Value: v, Rev: rev, ClusterRev: rev} }
func putUnknown(v string) Op     { return Op{Kind: KindPut, Value: v, Outcome: Unknown} }
func get(v string, rev, ver int64) Op {
	return Op{Kind: KindGet, Found: true, Got: v, Rev: rev, Ver: ver}
}
func getAbsent() Op { return Op{Kind: KindGet} }

func TestKV(t *testing.T) {
	cases := []struct {
		name string
		ops  []*Op
		want Verdict
	}{
		{"sequential put and get", h(
			at(0, 1, put("a", 1)), at(2, 3, get("a", 1, 1)), at(4, 5, put("b", 2)), at(6, 7, get("b", 2, 2)),
		), Linearizable},
		{"stale read after a newer write returned", h(
			at(0, 1, put("a", 1)), at(2, 3, put("b", 2)), at(4, 5, get("a", 1, 1)),
		), NotLinearizable},
		{"concurrent read may see either", h(
			at(0, 1, put("a", 1)), at(2, 6, put("b", 2)), at(3, 4, get("a", 1, 1)), at(5, 7, get("b", 2, 2)),
		), Linearizable},
		{"read of a value never written", h(
			at(0, 1, put("a", 1)), at(2, 3, get("zz", 1, 1)),
		), NotLinearizable},
		{"acknowledged write lost", h(
			at(0, 1, put("a", 1)), at(2, 3, getAbsent()),
		), NotLinearizable},
		{"revision goes backwards", h(
			at(0, 1, put("a", 5)), at(2, 3, put("b", 3)),
		), NotLinearizable},
		{"read at the wrong revision", h(
			at(0, 1, put("a", 5)), at(2, 3, get("a", 4, 1)),
		), NotLinearizable},
		{"write applied twice (version 2 after one put)", h(
			at(0, 1, put("a", 1)), at(2, 3, get("a", 2, 2)),
		), NotLinearizable},
		{"unknown put seen later", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("b", 7, 2)), at(6, 7, get("b", 7, 2)),
		), Linearizable},
		{"unknown put never seen", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("a", 1, 1)),
		), Linearizable},
		{"unknown put seen, then the older value again", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("b", 2, 2)), at(6, 7, get("a", 1, 1)),
		), NotLinearizable},
		{"cas succeeds on the right revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 3, Rev: 4}), at(4, 5, get("b", 4, 2)),
		), Linearizable},
		{"cas succeeds on the wrong revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 2, Rev: 4}),
		), NotLinearizable},
		{"cas fails and reports the current revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 2, Outcome: Failed, Rev: 3}),
		), Linearizable},
		{"cas fails although it should hold", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 3, Outcome: Failed, Rev: 3}),
		), NotLinearizable},
		{"create-only fails on an absent key", h(
			at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 0, Outcome: Failed, Rev: 0}),
		), NotLinearizable},
		{"unknown cas on an unknown revision: either way", h(
			at(0, 1, putUnknown("a")), at(2, 3, get("a", 9, 1)), at(4, 5, putUnknown("b")),
			at(6, 7, Op{Kind: KindCAS, Value: "c", Match: 11, Outcome: Unknown}), at(20, 21, get("b", 11, 2)),
		), Linearizable},
		{"delete then read absent", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}), at(4, 5, getAbsent()),
		), Linearizable},
		{"delete of an absent key that deleted one", h(
			at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}),
		), NotLinearizable},
		{"deleted key comes back", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}), at(4, 5, get("a", 1, 1)),
		), NotLinearizable},
		{"txn put succeeds and reads its own write", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnPut, Value: "b", Match: 1, Found: true, Got: "b", Rev: 2, Ver: 2}),
			at(4, 5, get("b", 2, 2)),
		), Linearizable},
		{"txn put failure branch sees the state", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnPut, Value: "b", Match: 7, Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), Linearizable},
		{"txn put failure branch sees a stale state", h(
			at(0, 1, put("a", 1)), at(2, 3, put("b", 2)),
			at(4, 5, Op{Kind: KindTxnPut, Value: "c", Match: 7, Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), NotLinearizable},
		{"txn delete on value", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnDelete, MatchValue: "a", Deleted: 1, ClusterRev: 2}),
			at(4, 5, getAbsent()),
		), Linearizable},
		{"txn delete succeeds on the wrong value", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnDelete, MatchValue: "x", Deleted: 1, ClusterRev: 2}),
		), NotLinearizable},
		// txn-swap: compare-and-swap by value, or create if absent.
		{"swap on the value it holds", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "a", Found: true, Got: "b", Rev: 2, Ver: 2}),
			at(4, 5, get("b", 2, 2)),
		), Linearizable},
		{"swap succeeds on a value it does not hold", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "x", Found: true, Got: "b", Rev: 2, Ver: 2}),
		), NotLinearizable},
		{"create-if-absent swap on an absent key", h(
			at(0, 1, Op{Kind: KindTxnSwap, Value: "a", Found: true, Got: "a", Rev: 1, Ver: 1}), at(2, 3, get("a", 1, 1)),
		), Linearizable},
		{"create-if-absent swap succeeds on a key that exists", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", Found: true, Got: "b", Rev: 2, Ver: 2}),
		), NotLinearizable},
		{"swap fails although the value matched", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "a", Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), NotLinearizable},
		{"swap fails and its get sees the current value", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "x", Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), Linearizable},
		{"two swaps from the same value both succeed", h(
			at(0, 1, put("a", 1)),
			at(2, 4, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "a", Found: true, Got: "b", Rev: 2, Ver: 2}),
			at(3, 5, Op{Kind: KindTxnSwap, Value: "c", MatchValue: "a", Found: true, Got: "c", Rev: 3, Ver: 3}),
		), NotLinearizable},
		{"unknown swap that took effect", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "a", Outcome: Unknown}),
			at(4, 5, get("b", 2, 2)),
		), Linearizable},
		{"unknown swap whose condition cannot hold is seen", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnSwap, Value: "b", MatchValue: "x", Outcome: Unknown}),
			at(4, 5, get("b", 2, 2)),
		), NotLinearizable},
		{"stale read on another key does not excuse this one", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindPut, Key: "other", Value: "o", Rev: 2}),
			at(4, 5, put("b", 3)), at(6, 7, get("a", 1, 1)),
		), NotLinearizable},
		{"RESP set then HTTP and RESP reads", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindRespSet, Value: "b"}),
			at(4, 5, get("b", 2, 2)), at(6, 7, Op{Kind: KindRespGet, Found: true, Got: "b"}),
		), Linearizable},
		{"RESP read of an overwritten value", h(
			at(0, 1, Op{Kind: KindRespSet, Value: "a"}), at(2, 3, put("b", 2)),
			at(4, 5, Op{Kind: KindRespGet, Found: true, Got: "a"}),
		), NotLinearizable},
		{"RESP del of an absent key that deleted one", h(
			at(0, 1, Op{Kind: KindRespDel, Deleted: 1}),
		), NotLinearizable},
		{"RESP del then HTTP read sees the key", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindRespDel, Deleted: 1}), at(4, 5, get("a", 1, 1)),
		), NotLinearizable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Check(tc.ops, nil, 10*time.Second, t.TempDir())
			if got.Verdict != tc.want {
				t.Fatalf("got %s, want %s", got.Verdict, tc.want)
			}
			if tc.want == NotLinearizable && (got.HTMLPath == "" || len(got.BadKeys) != 1 || got.BadKeys[0] != "k") {
				t.Fatalf("no visualization or bad keys: %+v", got)
			}
			if tc.want == NotLinearizable {
				if _, err := os.Stat(got.HTMLPath); err != nil {
					t.Fatalf("visualization: %v", err)
				}
			}
		})
	}
}

func TestCheckSerializable(t *testing.T) {
	sget := func(call int64, node string, inc int, rev int64) *Op {
		return &Op{Kind: KindSerialGet, Key: "k", Node: node, Incarnation: inc, Call: call, Found: true, Got: "v", Rev: rev}
	}
	n, bad, across := CheckSerializable([]*Op{sget(1, "n1", 1, 5), sget(2, "n1", 1, 7), sget(3, "n1", 1, 6)})
	if n != 3 || len(bad) != 1 || len(across) != 0 {
		t.Fatalf("n=%d bad=%v across=%v", n, bad, across)
	}
	// Across a restart, a step back is allowed only in an answer marked stale.
	staleRead := sget(3, "n1", 2, 4)
	staleRead.Stale = true
	_, bad, across = CheckSerializable([]*Op{sget(1, "n1", 1, 5), staleRead, sget(4, "n2", 1, 1)})
	if len(bad) != 0 || len(across) != 1 {
		t.Fatalf("bad=%v across=%v", bad, across)
	}
	_, bad, across = CheckSerializable([]*Op{sget(1, "n1", 1, 5), sget(3, "n1", 2, 4)})
	if len(bad) != 1 || len(across) != 0 {
		t.Fatalf("fresh answer back in time across a restart: bad=%v across=%v", bad, across)
	}
}

func TestCheckClientRevisions(t *testing.T) {
	ok := []*Op{{Kind: KindPut, Call: 1, ClusterRev: 3}, {Kind: KindDelete, Call: 2, ClusterRev: 3}, {Kind: KindPut, Call: 3, ClusterRev: 5}}
	if bad := CheckClientRevisions(ok); len(bad) != 0 {
		t.Fatal(bad)
	}
	back := []*Op{{Kind: KindPut, Call: 1, ClusterRev: 3}, {Kind: KindPut, Call: 2, ClusterRev: 3}}
	if bad := CheckClientRevisions(back); len(bad) != 1 {
		t.Fatal(bad)
	}
}

func TestCheckLostWrites(t *testing.T) {
	w := func(v string, rev int64, o Outcome) *Op {
		return &Op{Kind: KindPut, Key: "k", Value: v, Rev: rev, ClusterRev: rev, Outcome: o}
	}
	item := func(v string, rev int64) map[string]Item {
		return map[string]Item{"k": {Key: "k", Value: []byte(v), ModRevision: rev, Version: 1}}
	}
	cases := []struct {
		name  string
		ops   []*Op
		final map[string]Item
		lost  int
	}{
		{"last write present", []*Op{w("a", 1, OK), w("b", 2, OK)}, item("b", 2), 0},
		{"older value back", []*Op{w("a", 1, OK), w("b", 2, OK)}, item("a", 1), 1},
		{"unknown write after", []*Op{w("a", 1, OK), w("c", 0, Unknown)}, item("c", 5), 0},
		{"gone without a delete", []*Op{w("a", 1, OK)}, map[string]Item{}, 1},
		{"gone after an unknown delete", []*Op{w("a", 1, OK), {Kind: KindDelete, Key: "k", Outcome: Unknown}}, map[string]Item{}, 0},
		{"deleted key back", []*Op{w("a", 1, OK), {Kind: KindDelete, Key: "k", Deleted: 1, ClusterRev: 2}}, item("a", 1), 1},
		{"value from nowhere", nil, item("zz", 1), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, lost := CheckLostWrites(tc.ops, []string{"k"}, tc.final)
			if len(lost) != tc.lost {
				t.Fatalf("lost %v, want %d", lost, tc.lost)
			}
		})
	}
}

func TestAccountUnknowns(t *testing.T) {
	mk := func() []*Op {
		return []*Op{
			{Kind: KindPut, Key: "k", Value: "a", Outcome: OK, Rev: 1},
			{Kind: KindPut, Key: "k", Value: "b", Outcome: Unknown},          // seen below
			{Kind: KindPut, Key: "k", Value: "c", Outcome: Unknown},          // never seen
			{Kind: KindDelete, Key: "k", Outcome: Unknown},                   // never seen
			{Kind: KindGet, Key: "k", Found: true, Got: "b", Rev: 3, Ver: 2}, // sees b
		}
	}
	// 1 acknowledged + 1 seen + 2 filler = 4 changes: c and the delete did nothing.
	ops := mk()
	note := AccountUnknowns(ops, 4, 2, 0)
	if !ops[2].Dropped || !ops[3].Dropped || ops[1].Dropped {
		t.Fatalf("dropped %v %v %v: %s", ops[1].Dropped, ops[2].Dropped, ops[3].Dropped, note)
	}
	// One change more than explained: some unknown write took effect; keep them all.
	ops = mk()
	AccountUnknowns(ops, 5, 2, 0)
	for _, o := range ops {
		if o.Dropped {
			t.Fatalf("dropped %s although a change is unexplained", o)
		}
	}
}

func TestHistorySaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.json")
	in := &History{Name: "unit", Ops: h(at(0, 1, put("a", 1)), at(2, 3, putUnknown("b"))),
		Faults: []Annotation{{Start: 1, End: 2, Description: "kill"}}}
	if err := in.Save(path); err != nil {
		t.Fatal(err)
	}
	out, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Ops) != 2 || out.Ops[1].Outcome != Unknown || out.Faults[0].Description != "kill" {
		t.Fatalf("loaded %+v", out)
	}
	if res := Check(out.Ops, out.Faults, 10*time.Second, t.TempDir()); res.Verdict != Linearizable {
		t.Fatalf("reloaded history: %s", res.Verdict)
	}
}

func TestAccountUnknownsCountsRESPWrites(t *testing.T) {
	ops := []*Op{
		{Kind: KindPut, Key: "k", Value: "a", Outcome: OK, Rev: 1},
		{Kind: KindRespSet, Key: "k", Value: "b", Outcome: OK},
		{Kind: KindRespDel, Key: "k", Deleted: 1, Outcome: OK},
		{Kind: KindRespDel, Key: "k", Deleted: 0, Outcome: OK},
		{Kind: KindPut, Key: "k", Value: "c", Outcome: Unknown},
	}
	// put, SET and the DEL that removed a key: 3 changes, so c did nothing.
	AccountUnknowns(ops, 3, 0, 0)
	if !ops[4].Dropped {
		t.Fatal("the unknown put was kept although the RESP writes explain every change")
	}
}
