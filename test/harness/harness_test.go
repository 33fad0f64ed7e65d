package harness

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

func TestReportFormat(t *testing.T) {
	r := &Result{Config: Config{Name: "unit", Workload: Workload{Clients: 1, Keys: 1}}, Cluster: "in-process",
		Ops:    []*model.Op{{Kind: model.KindPut, Outcome: model.OK}, {Kind: model.KindGet, Outcome: model.Error}},
		Faults: []FaultRecord{{Kind: FaultKill, Start: time.Second, End: 3 * time.Second, Detail: "kill -9 n1"}}}
	r.fail("lost write: x")
	out := r.format()
	for _, want := range []string{"on in-process", "put", "kill -9 n1", "linearizability: ok", "verdict: FAIL", "lost: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// fakeCluster offers only the actions in can; every other method is the
// nil interface's (and panics if called).
type fakeCluster struct {
	Cluster
	can         map[Action]bool
	size, slots int
}

func (f fakeCluster) Can(a Action) (string, bool) {
	if f.can[a] {
		return "yes", true
	}
	return "not here", false
}
func (f fakeCluster) Size() int  { return f.size }
func (f fakeCluster) Slots() int { return f.slots }

func TestUnsupported(t *testing.T) {
	inproc := fakeCluster{can: map[Action]bool{ActLinks: true, ActStop: true, ActLog: true}, size: 3, slots: 4}
	var skipped []string
	for _, k := range AllFaults {
		if Unsupported(inproc, k) != "" {
			skipped = append(skipped, k)
		}
	}
	if !slices.Equal(skipped, []string{FaultKill, FaultPause}) {
		t.Fatalf("skipped %v, want kill and pause", skipped)
	}
	if why := Unsupported(fakeCluster{can: inproc.can, size: 3, slots: 3}, FaultLearner); why == "" {
		t.Fatal("learner-promote without a spare slot was not skipped")
	}
	if why := Unsupported(inproc, FaultDisconnect); why != "not here" {
		t.Fatalf("disconnect: %q", why)
	}
	for _, k := range append(slices.Clone(AllFaults), FaultDisconnect) {
		if !ValidFault(k) {
			t.Errorf("%s has no injector", k)
		}
	}
}

func TestPlan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	kinds := []string{FaultKill, FaultSplit, FaultPause}
	p := &plan{kinds: kinds, mix: []string{FaultKill, FaultPause}, passes: 2, mixed: 3}
	var steps [][]string
	for s := p.next(rng); s != nil; s = p.next(rng) {
		steps = append(steps, s)
	}
	if len(steps) != 2*len(kinds)+3 {
		t.Fatalf("%d steps: %v", len(steps), steps)
	}
	for pass := 0; pass < 2; pass++ {
		var got []string
		for _, s := range steps[pass*3 : pass*3+3] {
			got = append(got, s[0])
		}
		slices.Sort(got)
		if !slices.Equal(got, []string{FaultKill, FaultPause, FaultSplit}) {
			t.Fatalf("pass %d is %v, not every kind once", pass+1, got)
		}
	}
	for _, s := range steps[6:] {
		if len(s) != 2 || s[0] == s[1] {
			t.Fatalf("mixed step %v", s)
		}
	}

	// With a duration: passes without end, a mixed step after every two.
	p = &plan{kinds: kinds, mix: []string{FaultKill, FaultPause}, mixed: 1, repeat: true}
	for n := 0; n < 30; n++ {
		s := p.next(rng)
		if mixed := len(s) == 2; mixed != (n%3 == 2) {
			t.Fatalf("step %d is %v", n, s)
		}
	}

	// Fixed steps, in order.
	p = &plan{queue: [][]string{{FaultKill}, {FaultSplit, FaultLatency}}}
	if s := p.next(rng); !slices.Equal(s, []string{FaultKill}) {
		t.Fatal(s)
	}
	if s := p.next(rng); !slices.Equal(s, []string{FaultSplit, FaultLatency}) {
		t.Fatal(s)
	}
	if s := p.next(rng); s != nil {
		t.Fatal(s)
	}
}

func TestLeaderTurn(t *testing.T) {
	nm := &nemesis{rng: rand.New(rand.NewPCG(3, 4)), turns: map[string]int{}, first: map[string]bool{}}
	a, b := nm.leaderTurn(FaultKill), nm.leaderTurn(FaultKill)
	if a == b {
		t.Fatal("two injections of a kind aimed at the same role")
	}
}

// clockCluster is three live nodes whose clock offsets SkewClock records.
type clockCluster struct {
	fakeCluster
	skews map[int]time.Duration
}

func (f *clockCluster) Live() []int { return []int{0, 1, 2} }
func (f *clockCluster) Node(i int) Node {
	return Node{Name: "n" + string(rune('1'+i)), Member: true, Running: true}
}
func (f *clockCluster) SkewClock(i int, d time.Duration) error {
	f.skews[i] = d
	return nil
}

// The clock-skew fault keeps every clock, the unskewed ones included,
// within 0.6 max offsets of every other, and heals to 0; the fault beyond
// the bound goes four max offsets ahead.
func TestClockSkewWithinBound(t *testing.T) {
	const offset = 500 * time.Millisecond
	bound := offset * 6 / 10
	two := 0
	for seed := range uint64(200) {
		f := &clockCluster{fakeCluster: fakeCluster{can: map[Action]bool{ActClock: true}, size: 3, slots: 3}, skews: map[int]time.Duration{}}
		nm := newNemesis(f, Config{Workload: Workload{Seed: seed}, Logf: func(string, ...any) {}}, &recorder{start: time.Now()})
		nm.clockBound = offset
		act, _ := nm.inject([]string{FaultClockSkew}, 0)
		r := nm.faults[0]
		if r.Err != "" || len(r.Skews) == 0 || len(r.Skews) > 2 {
			t.Fatalf("seed %d: %+v", seed, r)
		}
		lo, hi := time.Duration(0), time.Duration(0)
		for _, d := range f.skews {
			lo, hi = min(lo, d), max(hi, d)
		}
		if hi-lo > bound || lo < -bound || hi > bound {
			t.Fatalf("seed %d: skews %v spread %s, beyond %s", seed, f.skews, hi-lo, bound)
		}
		if max(hi, -lo) < bound/2 {
			t.Fatalf("seed %d: skews %v, none of half the bound or more", seed, f.skews)
		}
		if len(f.skews) == 2 {
			two++
		}
		nm.undo(act)
		for i, d := range f.skews {
			if d != 0 {
				t.Fatalf("seed %d: n%d still %s off after healing", seed, i+1, d)
			}
		}
		if len(nm.skews) != 0 {
			t.Fatalf("seed %d: the nemesis still counts %v", seed, nm.skews)
		}
	}
	if two == 0 || two == 200 {
		t.Fatalf("%d of 200 injections skewed two nodes", two)
	}

	f := &clockCluster{fakeCluster: fakeCluster{can: map[Action]bool{ActClock: true}, size: 3, slots: 3}, skews: map[int]time.Duration{}}
	nm := newNemesis(f, Config{Logf: t.Logf}, &recorder{start: time.Now()})
	nm.clockBound = offset
	nm.inject([]string{FaultClockBeyond}, 0)
	if r := nm.faults[0]; len(r.Skews) != 1 || !strings.Contains(r.Detail, "+2s") {
		t.Fatalf("%+v", r)
	}
	if err := nm.restore(); err != nil {
		t.Fatal(err)
	}
	for i, d := range f.skews {
		if d != 0 {
			t.Fatalf("n%d still %s off after restore", i+1, d)
		}
	}
}
