package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
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

func TestModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []*Op
		want porcupine.CheckResult
	}{
		{"sequential put and get", h(
			at(0, 1, put("a", 1)), at(2, 3, get("a", 1, 1)), at(4, 5, put("b", 2)), at(6, 7, get("b", 2, 2)),
		), porcupine.Ok},
		{"stale read after a newer write returned", h(
			at(0, 1, put("a", 1)), at(2, 3, put("b", 2)), at(4, 5, get("a", 1, 1)),
		), porcupine.Illegal},
		{"concurrent read may see either", h(
			at(0, 1, put("a", 1)), at(2, 6, put("b", 2)), at(3, 4, get("a", 1, 1)), at(5, 7, get("b", 2, 2)),
		), porcupine.Ok},
		{"read of a value never written", h(
			at(0, 1, put("a", 1)), at(2, 3, get("zz", 1, 1)),
		), porcupine.Illegal},
		{"acknowledged write lost", h(
			at(0, 1, put("a", 1)), at(2, 3, getAbsent()),
		), porcupine.Illegal},
		{"revision goes backwards", h(
			at(0, 1, put("a", 5)), at(2, 3, put("b", 3)),
		), porcupine.Illegal},
		{"read at the wrong revision", h(
			at(0, 1, put("a", 5)), at(2, 3, get("a", 4, 1)),
		), porcupine.Illegal},
		{"write applied twice (version 2 after one put)", h(
			at(0, 1, put("a", 1)), at(2, 3, get("a", 2, 2)),
		), porcupine.Illegal},
		{"unknown put seen later", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("b", 7, 2)), at(6, 7, get("b", 7, 2)),
		), porcupine.Ok},
		{"unknown put never seen", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("a", 1, 1)),
		), porcupine.Ok},
		{"unknown put seen, then the older value again", h(
			at(0, 1, put("a", 1)), at(2, 3, putUnknown("b")), at(4, 5, get("b", 2, 2)), at(6, 7, get("a", 1, 1)),
		), porcupine.Illegal},
		{"cas succeeds on the right revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 3, Rev: 4}), at(4, 5, get("b", 4, 2)),
		), porcupine.Ok},
		{"cas succeeds on the wrong revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 2, Rev: 4}),
		), porcupine.Illegal},
		{"cas fails and reports the current revision", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 2, Outcome: Failed, Rev: 3}),
		), porcupine.Ok},
		{"cas fails although it should hold", h(
			at(0, 1, put("a", 3)), at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 3, Outcome: Failed, Rev: 3}),
		), porcupine.Illegal},
		{"create-only fails on an absent key", h(
			at(2, 3, Op{Kind: KindCAS, Value: "b", Match: 0, Outcome: Failed, Rev: 0}),
		), porcupine.Illegal},
		{"unknown cas on an unknown revision: either way", h(
			at(0, 1, putUnknown("a")), at(2, 3, get("a", 9, 1)), at(4, 5, putUnknown("b")),
			at(6, 7, Op{Kind: KindCAS, Value: "c", Match: 11, Outcome: Unknown}), at(20, 21, get("b", 11, 2)),
		), porcupine.Ok},
		{"delete then read absent", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}), at(4, 5, getAbsent()),
		), porcupine.Ok},
		{"delete of an absent key that deleted one", h(
			at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}),
		), porcupine.Illegal},
		{"deleted key comes back", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindDelete, Deleted: 1, ClusterRev: 2}), at(4, 5, get("a", 1, 1)),
		), porcupine.Illegal},
		{"txn put succeeds and reads its own write", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnPut, Value: "b", Match: 1, Found: true, Got: "b", Rev: 2, Ver: 2}),
			at(4, 5, get("b", 2, 2)),
		), porcupine.Ok},
		{"txn put failure branch sees the state", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnPut, Value: "b", Match: 7, Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), porcupine.Ok},
		{"txn put failure branch sees a stale state", h(
			at(0, 1, put("a", 1)), at(2, 3, put("b", 2)),
			at(4, 5, Op{Kind: KindTxnPut, Value: "c", Match: 7, Outcome: Failed, Found: true, Got: "a", Rev: 1, Ver: 1}),
		), porcupine.Illegal},
		{"txn delete on value", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnDelete, MatchValue: "a", Deleted: 1, ClusterRev: 2}),
			at(4, 5, getAbsent()),
		), porcupine.Ok},
		{"txn delete succeeds on the wrong value", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindTxnDelete, MatchValue: "x", Deleted: 1, ClusterRev: 2}),
		), porcupine.Illegal},
		{"RESP set then HTTP and RESP reads", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindRespSet, Value: "b"}),
			at(4, 5, get("b", 2, 2)), at(6, 7, Op{Kind: KindRespGet, Found: true, Got: "b"}),
		), porcupine.Ok},
		{"RESP read of an overwritten value", h(
			at(0, 1, Op{Kind: KindRespSet, Value: "a"}), at(2, 3, put("b", 2)),
			at(4, 5, Op{Kind: KindRespGet, Found: true, Got: "a"}),
		), porcupine.Illegal},
		{"RESP del of an absent key that deleted one", h(
			at(0, 1, Op{Kind: KindRespDel, Deleted: 1}),
		), porcupine.Illegal},
		{"RESP del then HTTP read sees the key", h(
			at(0, 1, put("a", 1)), at(2, 3, Op{Kind: KindRespDel, Deleted: 1}), at(4, 5, get("a", 1, 1)),
		), porcupine.Illegal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckLinearizable(tc.ops, nil, 10*time.Second, t.TempDir())
			if got.Result != tc.want {
				t.Fatalf("got %s, want %s", got.Result, tc.want)
			}
			if tc.want == porcupine.Illegal && (got.HTMLPath == "" || len(got.BadKeys) != 1) {
				t.Fatalf("no visualization or bad keys: %+v", got)
			}
		})
	}
}

func TestCheckSerializable(t *testing.T) {
	sget := func(call int64, node string, inc int, rev int64) *Op {
		return &Op{Kind: KindSerialGet, Key: "k", Node: node, Incarnation: inc, Call: call, Found: true, Got: "v", Rev: rev}
	}
	n, bad, across := checkSerializable([]*Op{sget(1, "n1", 1, 5), sget(2, "n1", 1, 7), sget(3, "n1", 1, 6)})
	if n != 3 || len(bad) != 1 || len(across) != 0 {
		t.Fatalf("n=%d bad=%v across=%v", n, bad, across)
	}
	// Across a restart, a step back is allowed only in an answer marked stale.
	staleRead := sget(3, "n1", 2, 4)
	staleRead.Stale = true
	_, bad, across = checkSerializable([]*Op{sget(1, "n1", 1, 5), staleRead, sget(4, "n2", 1, 1)})
	if len(bad) != 0 || len(across) != 1 {
		t.Fatalf("bad=%v across=%v", bad, across)
	}
	_, bad, across = checkSerializable([]*Op{sget(1, "n1", 1, 5), sget(3, "n1", 2, 4)})
	if len(bad) != 1 || len(across) != 0 {
		t.Fatalf("fresh answer back in time across a restart: bad=%v across=%v", bad, across)
	}
}

func TestCheckClientRevisions(t *testing.T) {
	ok := []*Op{{Kind: KindPut, Call: 1, ClusterRev: 3}, {Kind: KindDelete, Call: 2, ClusterRev: 3}, {Kind: KindPut, Call: 3, ClusterRev: 5}}
	if bad := checkClientRevisions(ok); len(bad) != 0 {
		t.Fatal(bad)
	}
	back := []*Op{{Kind: KindPut, Call: 1, ClusterRev: 3}, {Kind: KindPut, Call: 2, ClusterRev: 3}}
	if bad := checkClientRevisions(back); len(bad) != 1 {
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
			_, lost := checkLostWrites(tc.ops, []string{"k"}, tc.final)
			if len(lost) != tc.lost {
				t.Fatalf("lost %v, want %d", lost, tc.lost)
			}
		})
	}
}

func TestReportFormat(t *testing.T) {
	r := &Result{Config: Config{Name: "unit", Workload: Workload{Clients: 1, Keys: 1}},
		Ops:    []*Op{{Kind: KindPut, Outcome: OK}, {Kind: KindGet, Outcome: Error}},
		Faults: []FaultRecord{{Kind: FaultKill, Start: time.Second, End: 3 * time.Second, Detail: "kill -9 n1"}}}
	r.Linearizable.Result = porcupine.Ok
	r.fail("lost write: x")
	out := r.format()
	for _, want := range []string{"put", "kill -9 n1", "verdict: FAIL", "lost: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
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
	note := accountUnknowns(ops, 4, 2, 0)
	if !ops[2].Dropped || !ops[3].Dropped || ops[1].Dropped {
		t.Fatalf("dropped %v %v %v: %s", ops[1].Dropped, ops[2].Dropped, ops[3].Dropped, note)
	}
	// One change more than explained: some unknown write took effect; keep them all.
	ops = mk()
	accountUnknowns(ops, 5, 2, 0)
	for _, o := range ops {
		if o.Dropped {
			t.Fatalf("dropped %s although a change is unexplained", o)
		}
	}
}
