package model

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The clock of these tests: versions at millisecond ms of one second, and
// the key read well after every write unless a test says otherwise.
var (
	t0     = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	readAt = t0.Add(10 * time.Second)
)

func ver(ms int, origin string) Version {
	return Version{Timestamp: fmt.Sprintf("2025-03-01T12:00:00.%03dZ-00000", ms), Origin: origin}
}

func ackedPut(value string, ms int, origin string) Write {
	return Write{Key: "k", Value: value, Node: origin, Outcome: WriteAcked, Version: ver(ms, origin)}
}

func ackedDelete(ms int, origin string) Write {
	return Write{Key: "k", Delete: true, Node: origin, Outcome: WriteAcked, Version: ver(ms, origin)}
}

func putWith(o WriteOutcome, value, node string) Write {
	return Write{Key: "k", Value: value, Node: node, Outcome: o, Err: "timeout"}
}

func deleteWith(o WriteOutcome, node string) Write {
	return Write{Key: "k", Delete: true, Node: node, Outcome: o, Err: "503 unavailable"}
}

// ttl gives a put an expiry at t0 plus d.
func ttl(w Write, d time.Duration) Write { w.Expires = t0.Add(d); return w }

func holding(value string, v Version) Replica {
	return Replica{Present: true, Value: value, Version: v}
}
func absent() Replica { return Replica{} }

// replicas names the states n1, n2, n3… in order.
func replicas(rs ...Replica) KeyState {
	for i := range rs {
		rs[i].Node = fmt.Sprintf("n%d", i+1)
	}
	return KeyState{Key: "k", Replicas: rs, ReadAt: readAt}
}

func TestConvergenceLegal(t *testing.T) {
	cases := []struct {
		name   string
		writes []Write
		final  KeyState
	}{
		{"one acknowledged put everywhere",
			[]Write{ackedPut("a", 100, "n1")},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1")))},
		{"the greater of two acknowledged puts",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 200, "n2")},
			replicas(holding("b", ver(200, "n2")), holding("b", ver(200, "n2")), holding("b", ver(200, "n2")))},
		{"concurrent puts on both sides of a partition: the greater timestamp wins",
			[]Write{ackedPut("a", 300, "n1"), ackedPut("b", 200, "n3")},
			replicas(holding("a", ver(300, "n1")), holding("a", ver(300, "n1")), holding("a", ver(300, "n1")))},
		{"a tie on the timestamp is broken by the origin",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 100, "n3")},
			replicas(holding("b", ver(100, "n3")), holding("b", ver(100, "n3")), holding("b", ver(100, "n3")))},
		{"a put of unknown outcome wins over the acknowledged ones",
			[]Write{ackedPut("a", 100, "n1"), putWith(WriteUnknown, "u", "n2")},
			replicas(holding("u", ver(900, "n2")), holding("u", ver(900, "n2")), holding("u", ver(900, "n2")))},
		{"a put answered 503 landed after all and wins",
			[]Write{ackedPut("a", 100, "n1"), putWith(WriteFailed, "f", "n3")},
			replicas(holding("f", ver(500, "n3")), holding("f", ver(500, "n3")), holding("f", ver(500, "n3")))},
		{"a put of unknown outcome that never landed",
			[]Write{ackedPut("a", 100, "n1"), putWith(WriteUnknown, "u", "n2")},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1")))},
		{"an acknowledged delete wins",
			[]Write{ackedPut("a", 100, "n1"), ackedDelete(200, "n2")},
			replicas(absent(), absent(), absent())},
		{"a put after the delete wins over it",
			[]Write{ackedPut("a", 100, "n1"), ackedDelete(200, "n2"), ackedPut("b", 300, "n3")},
			replicas(holding("b", ver(300, "n3")), holding("b", ver(300, "n3")), holding("b", ver(300, "n3")))},
		{"a delete of unknown outcome may be the greatest version",
			[]Write{ackedPut("a", 100, "n1"), deleteWith(WriteUnknown, "n2")},
			replicas(absent(), absent(), absent())},
		{"a delete answered 503 may be the greatest version",
			[]Write{ackedPut("a", 100, "n1"), deleteWith(WriteFailed, "n2")},
			replicas(absent(), absent(), absent())},
		{"no write was acknowledged",
			[]Write{putWith(WriteUnknown, "u", "n1"), putWith(WriteFailed, "f", "n2")},
			replicas(absent(), absent(), absent())},
		{"no write acknowledged, one landed",
			[]Write{putWith(WriteUnknown, "u", "n1"), putWith(WriteRefused, "r", "n2")},
			replicas(holding("u", ver(100, "n1")), holding("u", ver(100, "n1")), holding("u", ver(100, "n1")))},
		{"never written",
			nil,
			replicas(absent(), absent(), absent())},
		{"the greatest acknowledged put has expired",
			[]Write{ackedPut("a", 100, "n1"), ttl(ackedPut("b", 200, "n2"), 2*time.Second)},
			replicas(absent(), absent(), absent())},
		{"a put of unknown outcome may be the greatest version, and has expired",
			[]Write{ackedPut("a", 100, "n1"), ttl(putWith(WriteUnknown, "u", "n2"), 2*time.Second)},
			replicas(absent(), absent(), absent())},
		{"a put with a TTL not yet expired",
			[]Write{ttl(ackedPut("a", 100, "n1"), time.Hour)},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1")))},
		{"a put expiring while its replicas are read",
			[]Write{ttl(ackedPut("a", 100, "n1"), 10*time.Second)},
			replicas(holding("a", ver(100, "n1")), absent(), absent())},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := CheckConvergence(c.writes, []KeyState{c.final}, 500*time.Millisecond)
			if !res.OK() {
				t.Fatalf("legal end state refused: %v", res.Violations)
			}
			if res.Keys != 1 || res.Replicas != 3 || res.Writes != len(c.writes) {
				t.Fatalf("counted %+v", res)
			}
		})
	}
}

func TestConvergenceViolations(t *testing.T) {
	cases := []struct {
		name   string
		writes []Write
		final  KeyState
		rule   string
		// mention must all appear in the violation: the replicas and
		// writes involved.
		mention []string
	}{
		{"replicas hold different versions",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 200, "n2")},
			replicas(holding("b", ver(200, "n2")), holding("a", ver(100, "n1")), holding("b", ver(200, "n2"))),
			"replicas differ", []string{"n1, n3 hold b @2025-03-01T12:00:00.200Z-00000/n2", "n2 holds a @2025-03-01T12:00:00.100Z-00000/n1"}},
		{"one replica missed the last put",
			[]Write{ackedPut("a", 100, "n1")},
			replicas(holding("a", ver(100, "n1")), absent(), holding("a", ver(100, "n1"))),
			"replicas differ", []string{"n2 holds nothing", "n1, n3 hold a"}},
		{"one replica missed a delete",
			[]Write{ackedPut("a", 100, "n1"), ackedDelete(200, "n2")},
			replicas(absent(), absent(), holding("a", ver(100, "n1"))),
			"replicas differ", []string{"n1, n2 hold nothing", "n3 holds a"}},
		{"the losing side of a partition everywhere",
			[]Write{ackedPut("a", 300, "n1"), ackedPut("b", 200, "n3")},
			replicas(holding("b", ver(200, "n3")), holding("b", ver(200, "n3")), holding("b", ver(200, "n3"))),
			"lost write", []string{"n1, n2, n3 hold b", "below put(k, a) via n1", "acked @2025-03-01T12:00:00.300Z-00000/n1"}},
		{"a tie broken the wrong way",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 100, "n3")},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1"))),
			"lost write", []string{"put(k, b) via n3"}},
		{"a deleted value comes back",
			[]Write{ackedPut("a", 100, "n1"), ackedDelete(200, "n2")},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1"))),
			"resurrection", []string{"delete(k) via n2", "acked @2025-03-01T12:00:00.200Z-00000/n2"}},
		{"a value nobody wrote",
			[]Write{ackedPut("a", 100, "n1")},
			replicas(holding("zz", ver(900, "n1")), holding("zz", ver(900, "n1")), holding("zz", ver(900, "n1"))),
			"unknown value", []string{"zz"}},
		{"an acknowledged value under another version",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 200, "n2")},
			replicas(holding("a", ver(900, "n1")), holding("a", ver(900, "n1")), holding("a", ver(900, "n1"))),
			"wrong version", []string{"a @2025-03-01T12:00:00.900Z-00000/n1", "put(k, a) via n1"}},
		{"an unknown write's value under an acknowledged write's version",
			[]Write{ackedPut("a", 100, "n1"), putWith(WriteUnknown, "u", "n2")},
			replicas(holding("u", ver(100, "n1")), holding("u", ver(100, "n1")), holding("u", ver(100, "n1"))),
			"wrong version", []string{"put(k, u) via n2", "put(k, a) via n1"}},
		{"a refused write landed",
			[]Write{putWith(WriteRefused, "r", "n2")},
			replicas(holding("r", ver(100, "n2")), holding("r", ver(100, "n2")), holding("r", ver(100, "n2"))),
			"refused write landed", []string{"put(k, r) via n2"}},
		{"an acknowledged put vanished",
			[]Write{ackedPut("a", 100, "n1"), putWith(WriteUnknown, "u", "n2")},
			replicas(absent(), absent(), absent()),
			"lost write", []string{"n1, n2, n3 hold nothing", "put(k, a) via n1"}},
		{"a delete below the last acknowledged put",
			[]Write{ackedDelete(100, "n1"), ackedPut("a", 200, "n2")},
			replicas(absent(), absent(), absent()),
			"lost write", []string{"put(k, a) via n2"}},
		{"a refused delete and a TTL not yet expired cannot explain a lost put",
			[]Write{ttl(ackedPut("a", 100, "n1"), time.Hour), deleteWith(WriteRefused, "n2")},
			replicas(absent(), absent(), absent()),
			"lost write", []string{"put(k, a) with a TTL"}},
		{"an expired put still shows",
			[]Write{ttl(ackedPut("a", 100, "n1"), 2*time.Second)},
			replicas(holding("a", ver(100, "n1")), holding("a", ver(100, "n1")), holding("a", ver(100, "n1"))),
			"expired value", []string{"put(k, a) with a TTL, expiring 12:00:02.000"}},
		{"two acknowledged writes with one version",
			[]Write{ackedPut("a", 100, "n1"), ackedPut("b", 100, "n1")},
			replicas(holding("b", ver(100, "n1")), holding("b", ver(100, "n1")), holding("b", ver(100, "n1"))),
			"duplicate version", []string{"put(k, a)", "put(k, b)"}},
		{"a replica that does not answer",
			[]Write{ackedPut("a", 100, "n1")},
			replicas(holding("a", ver(100, "n1")), Replica{Err: "connection refused"}, holding("a", ver(100, "n1"))),
			"unreadable", []string{"n2: connection refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := CheckConvergence(c.writes, []KeyState{c.final}, 500*time.Millisecond)
			var found *Violation
			for i, v := range res.Violations {
				if v.Rule == c.rule {
					found = &res.Violations[i]
				}
			}
			if found == nil {
				t.Fatalf("no %q violation; got %v", c.rule, res.Violations)
			}
			s := found.String()
			for _, m := range append([]string{"k: " + c.rule + ": "}, c.mention...) {
				if !strings.Contains(s, m) {
					t.Errorf("violation %q does not mention %q", s, m)
				}
			}
		})
	}
}

func TestConvergenceNotRead(t *testing.T) {
	ws := []Write{ackedPut("a", 100, "n1"), {Key: "other", Value: "b", Outcome: WriteAcked, Version: ver(100, "n1")}}
	res := CheckConvergence(ws, []KeyState{replicas(holding("a", ver(100, "n1")))}, 0)
	if len(res.Violations) != 1 || res.Violations[0].Key != "other" || res.Violations[0].Rule != "not read" {
		t.Fatalf("%v", res.Violations)
	}
	if res.Present != 1 || res.Outcomes[WriteAcked] != 2 {
		t.Fatalf("counted %+v", res)
	}
}

func TestCheckEventualReads(t *testing.T) {
	ws := []Write{ackedPut("a", 100, "n1"), putWith(WriteUnknown, "u", "n2"), putWith(WriteRefused, "r", "n3")}
	good := []EventualRead{
		{Key: "k", Node: "n1", Found: true, Value: "a", Version: ver(100, "n1")},
		{Key: "k", Node: "n2", Found: true, Value: "u", Version: ver(300, "n2")},
		{Key: "k", Node: "n3"},
	}
	if bad := CheckEventualReads(ws, good); len(bad) != 0 {
		t.Fatalf("legal reads refused: %v", bad)
	}
	bad := CheckEventualReads(ws, []EventualRead{
		{Key: "k", Node: "n1", Found: true, Value: "zz"},
		{Key: "k", Node: "n1", Found: true, Value: "a", Version: ver(200, "n1")},
		{Key: "k", Node: "n1", Found: true, Value: "r", Version: ver(200, "n3")},
		{Key: "other", Node: "n1", Found: true, Value: "a", Version: ver(100, "n1")},
	})
	var rules []string
	for _, v := range bad {
		rules = append(rules, v.Rule)
	}
	if want := "unknown value,wrong version,refused write landed,unknown value"; strings.Join(rules, ",") != want {
		t.Fatalf("rules %v, want %s", rules, want)
	}
}

func TestVersionOrder(t *testing.T) {
	a, b := ver(100, "n1"), ver(100, "n2")
	if a.Compare(b) >= 0 || b.Compare(a) <= 0 || a.Compare(a) != 0 {
		t.Fatal("ties are not broken by origin")
	}
	if ver(99, "n9").Compare(a) >= 0 {
		t.Fatal("the timestamp does not come first")
	}
	if (Version{}).Compare(a) >= 0 || !(Version{}).IsZero() {
		t.Fatal("the zero version is not the least")
	}
}
