package harness

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// ClockBeyondKeyspace is the keyspace CheckClockBeyondBound writes to
// besides the defaults: a write needs every one of its three replicas.
var ClockBeyondKeyspace = EventualKeyspace{Prefix: "evall/", Replicas: 3, WriteQuorum: 3, ReadQuorum: 1}

// CheckClockBeyondBound shows what a node whose clock is beyond the bound
// does, and that it leaves nothing behind once its clock is right: an
// eventual run with cfg on c (by default DefaultEventualKeyspaces and
// ClockBeyondKeyspace, and one step, FaultClockBeyond: one node's clock
// four max offsets ahead) that must pass every check, and in which, while
// the skew held,
//
//   - every write the skewed node coordinated on a keyspace with a write
//     quorum above 1 failed with a 503 that names the clock (the other
//     replicas refuse a stamp more than the max offset ahead of theirs),
//     and at least one was tried;
//   - writes the other nodes coordinated on ClockBeyondKeyspace were still
//     acknowledged (the skewed replica takes stamps behind its clock), so
//     the 503s are the clock's doing, not a cluster that was down.
//
// Once its failure detector has measured the others' clocks (a ping or
// two), the skewed node refuses to coordinate any eventual write (503
// naming its clock); the few write quorum 1 writes it took before that
// stay with it, and reach the others only once their clocks come within
// the bound of their stamps (replicas defer copies stamped too far
// ahead): the check of the end state takes that into account, as it
// orders by version.
func CheckClockBeyondBound(t *testing.T, c Cluster, dir string, cfg EventualConfig) *EventualResult {
	t.Helper()
	if why := Unsupported(c, FaultClockBeyond); why != "" {
		t.Skipf("%s cannot skew a clock: %s", c.Describe(), why)
	}
	if cfg.Keyspaces == nil {
		cfg.Keyspaces = slices.Clone(DefaultEventualKeyspaces)
	}
	if !slices.Contains(cfg.Keyspaces, ClockBeyondKeyspace) {
		cfg.Keyspaces = append(slices.Clone(cfg.Keyspaces), ClockBeyondKeyspace)
	}
	if cfg.Steps == nil {
		cfg.Steps = [][]string{{FaultClockBeyond}}
	}
	res := MustRunEventual(t, c, dir, cfg)
	quorum := func(key string) int {
		for _, ks := range res.Config.Keyspaces {
			if strings.HasPrefix(key, ks.Prefix) {
				return ks.WriteQuorum
			}
		}
		return 0
	}
	checked := 0
	for _, f := range res.Faults {
		if f.Kind != FaultClockBeyond || f.Err != "" || len(f.Skews) != 1 {
			continue
		}
		var node string
		for n := range f.Skews {
			node = n
		}
		// The skew is in force a moment after the fault's start, and the
		// node's stamps stay ahead for a while after its end (its HLC
		// never goes back), so only writes well inside the fault count.
		from, to := f.Start+200*time.Millisecond, f.End
		var refused, acked, local int
		var example string
		for i := range res.Writes {
			w := &res.Writes[i]
			if w.Call < from || w.Return > to {
				continue
			}
			switch q := quorum(w.Key); {
			case w.Node == node && q > 1:
				switch {
				case w.Outcome == model.WriteAcked:
					t.Errorf("%s: acknowledged, though %s's clock was %s ahead and the write needed %d replicas", w.Describe(), node, f.Skews[node], q)
				case w.Outcome == model.WriteFailed && !strings.Contains(strings.ToLower(w.Err), "clock"):
					t.Errorf("%s: the 503 does not say the replicas refused the clock", w.Describe())
				case w.Outcome == model.WriteFailed:
					refused++
					if example == "" {
						example = w.Describe()
					}
				}
			case w.Node == node && w.Outcome == model.WriteAcked:
				local++
			case w.Node != node && q == ClockBeyondKeyspace.WriteQuorum && w.Outcome == model.WriteAcked:
				acked++
			}
		}
		if refused == 0 {
			t.Errorf("no write %s coordinated with a write quorum above 1 answered 503 while its clock was %s ahead (+%.1fs to +%.1fs): the run proves nothing",
				node, f.Skews[node], from.Seconds(), to.Seconds())
		}
		if acked == 0 {
			t.Errorf("no write the other nodes coordinated on %s was acknowledged while %s's clock was ahead: the 503s may not be the clock's doing",
				ClockBeyondKeyspace.Prefix, node)
		}
		t.Logf("while %s's clock was %s ahead: %d of its writes needing more than one replica answered 503 naming the clock (the first: %s), %d with write quorum 1 were acknowledged; %d writes of the others needing all 3 replicas were acknowledged",
			node, f.Skews[node], refused, example, local, acked)
		checked++
	}
	if checked == 0 {
		t.Errorf("the run injected no %s fault: %v", FaultClockBeyond, res.Faults)
	}
	return res
}
