package ring

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

const sampleKeys = 100_000

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i+1)
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key/%d", i)
	}
	return out
}

// worstOff is the largest relative distance of a member's count from the
// mean over all members (members that got nothing count as 100 % off).
func worstOff(counts map[string]float64, members []string) float64 {
	var sum float64
	for _, m := range members {
		sum += counts[m]
	}
	mean := sum / float64(len(members))
	worst := 0.0
	for _, m := range members {
		worst = math.Max(worst, math.Abs(counts[m]/mean-1))
	}
	return worst
}

func TestBalance(t *testing.T) {
	ks := keys(sampleKeys)
	for _, m := range []int{3, 5, 10} {
		t.Run(fmt.Sprintf("members=%d", m), func(t *testing.T) {
			ms := names(m)
			r := New(ms, 0)
			primary, replica := map[string]float64{}, map[string]float64{}
			for _, k := range ks {
				owners := r.Owners(k, 3)
				primary[owners[0]]++
				for _, o := range owners {
					replica[o]++
				}
			}
			p, a := worstOff(primary, ms), worstOff(replica, ms)
			t.Logf("%d members, %d keys: worst member %.1f %% off the mean as primary, %.1f %% as any of 3 replicas", m, sampleKeys, 100*p, 100*a)
			if p > 0.10 || a > 0.10 {
				t.Errorf("balance: primary %.3f, replica %.3f off the mean; want <= 0.10\nprimary %v\nreplica %v", p, a, primary, replica)
			}
		})
	}
}

// TestBalanceRandomNames checks the default on exact arc lengths (no key
// sampling noise) for member names other than the ones TestBalance uses, so
// the constant is not tuned to one set of names.
func TestBalanceRandomNames(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 60 rings")
	}
	rng := rand.New(rand.NewPCG(12, 12))
	for _, m := range []int{3, 5, 10} {
		worst := [2]float64{}
		for range 20 {
			ms := make([]string, m)
			for i := range ms {
				ms[i] = fmt.Sprintf("cairn-%08x.example.net", rng.Uint32())
			}
			r := New(ms, 0)
			for j, n := range []int{1, 3} {
				shares := map[string]float64{}
				for _, p := range r.Ranges(n) {
					for _, o := range p.Owners {
						shares[o] += arc(p.Range)
					}
				}
				worst[j] = math.Max(worst[j], worstOff(shares, ms))
			}
		}
		t.Logf("%d members, 20 random name sets: worst member %.1f %% off as primary, %.1f %% at n=3", m, 100*worst[0], 100*worst[1])
		if worst[0] > 0.10 || worst[1] > 0.10 {
			t.Errorf("%d members: worst %.3f / %.3f off the mean; want <= 0.10", m, worst[0], worst[1])
		}
	}
}

// arc is the fraction of the ring a range covers.
func arc(r Range) float64 {
	if r.Start == r.End {
		return 1
	}
	return float64(r.End-r.Start) / math.Exp2(64) // wraps correctly in uint64
}

// movement compares every sample key's owners between two rings and returns
// the fraction whose owner set changed, failing on any key whose change is not
// explained by the members that joined or left.
func movement(t *testing.T, old, new *Ring, n int, joined, left string) float64 {
	t.Helper()
	moved := 0
	for _, k := range keys(sampleKeys) {
		from, to := old.Owners(k, n), new.Owners(k, n)
		if sameSet(from, to) {
			continue
		}
		moved++
		for _, g := range minus(to, from) {
			if g != joined && !(left != "" && slices.Contains(from, left)) {
				t.Fatalf("key %q: %s gained it moving from %v to %v; only the joining member may gain keys from members that stay", k, g, from, to)
			}
		}
		if left != "" && !slices.Contains(from, left) {
			t.Fatalf("key %q moved from %v to %v though %s did not hold it", k, from, to, left)
		}
		if joined != "" && !slices.Contains(to, joined) {
			t.Fatalf("key %q moved from %v to %v without going to %s", k, from, to, joined)
		}
	}
	return float64(moved) / sampleKeys
}

func TestMovementOnJoin(t *testing.T) {
	old, new := New(names(3), 0), New(names(4), 0)
	for _, c := range []struct {
		n    int
		want float64 // expected fraction of keys whose owner set changes
	}{
		{1, 1.0 / 4},     // the newcomer's primary share
		{3, 3.0 / 4 * 1}, // the newcomer holds 3/4 of the keys, each displacing one old owner
	} {
		got := movement(t, old, new, c.n, "node-4", "")
		t.Logf("join 3→4, n=%d: %.1f %% of keys change owner set (ideal %.1f %%)", c.n, 100*got, 100*c.want)
		if math.Abs(got/c.want-1) > 0.10 {
			t.Errorf("n=%d: %.3f of keys moved; want %.3f ± 10 %%", c.n, got, c.want)
		}
	}
}

func TestMovementOnLeave(t *testing.T) {
	old, new := New(names(4), 0), New(names(3), 0)
	for _, c := range []struct {
		n    int
		want float64
	}{{1, 1.0 / 4}, {3, 3.0 / 4}} {
		got := movement(t, old, new, c.n, "", "node-4")
		t.Logf("leave 4→3, n=%d: %.1f %% of keys change owner set (ideal %.1f %%)", c.n, 100*got, 100*c.want)
		if math.Abs(got/c.want-1) > 0.10 {
			t.Errorf("n=%d: %.3f of keys moved; want %.3f ± 10 %%", c.n, got, c.want)
		}
	}
}

func TestOwners(t *testing.T) {
	r := New(names(5), 0)
	for _, n := range []int{-1, 0, 1, 2, 3, 5, 6, 100} {
		want := n
		if n <= 0 || n > 5 {
			want = 5
		}
		for _, k := range keys(2000) {
			got := r.Owners(k, n)
			if len(got) != want {
				t.Fatalf("Owners(%q, %d) = %v; want %d owners", k, n, got, want)
			}
			if c := slices.Compact(slices.Sorted(slices.Values(got))); len(c) != want {
				t.Fatalf("Owners(%q, %d) = %v: owners repeat", k, n, got)
			}
			// A preference list for n is a prefix of the one for n+1, so
			// raising a keyspace's replicas only adds owners at the end.
			if all := r.Owners(k, 0); !slices.Equal(all[:want], got) {
				t.Fatalf("Owners(%q, %d) = %v is not a prefix of the full list %v", k, n, got, all)
			}
		}
	}
}

// TestOwnersPinned pins placement: the hash function and the token names
// ("member#i") are part of the wire contract between nodes of different
// releases, so a change must be deliberate.
func TestOwnersPinned(t *testing.T) {
	if got, want := Hash("key"), uint64(0x447762562de14334); got != want {
		t.Errorf("Hash(key) = %#x; want %#x", got, want)
	}
	r := New([]string{"n1", "n2", "n3", "n4", "n5"}, 0)
	for k, want := range pinned {
		if got := r.Owners(k, 3); !slices.Equal(got, want) {
			t.Errorf("Owners(%q, 3) = %q; want %q", k, got, want)
		}
	}
}

var pinned = map[string][]string{
	"a":                     {"n5", "n4", "n3"},
	"config/app.yaml":       {"n3", "n1", "n2"},
	"certs/example.com.pem": {"n5", "n2", "n3"},
}

func TestDeterministicUnderOrder(t *testing.T) {
	ms := names(7)
	ref := New(ms, 64)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = append(shuffled, shuffled[0]) // a duplicate counts once
		r := New(shuffled, 64)
		if !slices.Equal(r.Members(), ref.Members()) || !slices.Equal(r.tokens, ref.tokens) || !slices.Equal(r.owner, ref.owner) {
			t.Fatalf("ring of %v differs from ring of %v", shuffled, ms)
		}
	}
}

func TestRangesAgreeWithOwners(t *testing.T) {
	r := New(names(5), 32)
	for _, n := range []int{1, 3, 0} {
		ps := r.Ranges(n)
		total := 0.0
		for i, p := range ps {
			total += arc(p.Range)
			if next := ps[(i+1)%len(ps)]; next.Range.Start != p.Range.End {
				t.Fatalf("n=%d: range %d ends at %d, range %d starts at %d", n, i, p.Range.End, (i+1)%len(ps), next.Range.Start)
			}
			if len(ps) > 1 && slices.Equal(p.Owners, ps[(i+1)%len(ps)].Owners) {
				t.Fatalf("n=%d: neighbouring ranges %d and %d both owned by %v; want them merged", n, i, i+1, p.Owners)
			}
		}
		if math.Abs(total-1) > 1e-9 {
			t.Fatalf("n=%d: ranges cover %.6f of the ring; want 1", n, total)
		}
		for _, k := range keys(5000) {
			h := Hash(k)
			var in []Placement
			for _, p := range ps {
				if p.Range.Contains(h) {
					in = append(in, p)
				}
			}
			if len(in) != 1 {
				t.Fatalf("n=%d: key %q in %d ranges; want 1", n, k, len(in))
			}
			if got := r.Owners(k, n); !slices.Equal(in[0].Owners, got) {
				t.Fatalf("n=%d: key %q: range says %v, Owners says %v", n, k, in[0].Owners, got)
			}
		}
	}
}

func TestMoves(t *testing.T) {
	three, four := New(names(3), 64), New(names(4), 64)
	other := New([]string{"node-1", "node-2", "node-5"}, 64) // one left, one joined
	for _, c := range []struct {
		name     string
		old, new *Ring
	}{
		{"join", three, four},
		{"leave", four, three},
		{"replace", three, other},
		{"same", three, New(names(3), 64)},
		{"from empty", New(nil, 0), three},
		{"to empty", three, nil},
	} {
		for _, n := range []int{1, 3, 0} {
			t.Run(fmt.Sprintf("%s/n=%d", c.name, n), func(t *testing.T) {
				moves := Moves(c.old, c.new, n)
				for _, k := range keys(5000) {
					h := Hash(k)
					from, to := c.old.Owners(k, n), c.new.Owners(k, n)
					var in []Move
					for _, m := range moves {
						if m.Range.Contains(h) {
							in = append(in, m)
						}
					}
					if sameSet(from, to) {
						if len(in) != 0 {
							t.Fatalf("key %q keeps owners %v but lies in move %+v", k, from, in[0])
						}
						continue
					}
					if len(in) != 1 || !slices.Equal(in[0].From, slices.Sorted(slices.Values(from))) || !slices.Equal(in[0].To, slices.Sorted(slices.Values(to))) {
						t.Fatalf("key %q moves %v → %v; in moves %+v", k, from, to, in)
					}
				}
				if c.name == "join" {
					for _, m := range moves {
						if g := m.Gained(); !slices.Equal(g, []string{"node-4"}) {
							t.Fatalf("join: move %+v gains %v; want only node-4", m, g)
						}
					}
				}
				if c.name == "leave" {
					for _, m := range moves {
						if l := m.Lost(); !slices.Equal(l, []string{"node-4"}) {
							t.Fatalf("leave: move %+v loses %v; want only node-4", m, l)
						}
					}
				}
			})
		}
	}
	if m := Moves(three, New(names(3), 64), 3); len(m) != 0 {
		t.Errorf("Moves between equal rings = %v; want none", m)
	}
	// With replicas "all" a joining member gains everything, from every
	// member alike: one move, the whole ring.
	if m := Moves(three, four, 0); len(m) != 1 || !slices.Equal(m[0].From, names(3)) || !slices.Equal(m[0].To, names(4)) || m[0].Range.Start != m[0].Range.End || !slices.Equal(m[0].Gained(), []string{"node-4"}) {
		t.Errorf("Moves(3→4, all) = %d moves, first %+v; want one whole-ring move gaining node-4", len(m), m[:min(len(m), 1)])
	}
}

func TestEdgeCases(t *testing.T) {
	var zero Ring
	for name, r := range map[string]*Ring{"nil": nil, "zero": &zero, "no members": New(nil, 0), "empty slice": New([]string{}, 8)} {
		if got := r.Owners("k", 3); got != nil {
			t.Errorf("%s: Owners = %v; want nil", name, got)
		}
		if got := r.Ranges(1); got != nil {
			t.Errorf("%s: Ranges = %v; want nil", name, got)
		}
		if got := r.Members(); len(got) != 0 {
			t.Errorf("%s: Members = %v; want none", name, got)
		}
		if got := Moves(r, r, 1); got != nil {
			t.Errorf("%s: Moves = %v; want nil", name, got)
		}
	}

	one := New([]string{"solo"}, 0)
	for _, n := range []int{-3, 0, 1, 3} {
		if got := one.Owners("k", n); !slices.Equal(got, []string{"solo"}) {
			t.Errorf("one member: Owners(k, %d) = %v; want [solo]", n, got)
		}
	}
	if ps := one.Ranges(3); len(ps) != 1 || ps[0].Range.Start != ps[0].Range.End || !ps[0].Range.Contains(0) {
		t.Errorf("one member: Ranges = %+v; want one whole-ring range", ps)
	}
	if got := New(names(3), 0).Owners("k", 10); len(got) != 3 {
		t.Errorf("n above the member count: Owners = %v; want all 3", got)
	}
	if got := New(names(2), 0).Vnodes(); got != DefaultVnodes {
		t.Errorf("Vnodes = %d; want the default %d", got, DefaultVnodes)
	}
}

func TestRangeContains(t *testing.T) {
	for _, c := range []struct {
		r    Range
		h    uint64
		want bool
	}{
		{Range{10, 20}, 10, false}, // start is exclusive
		{Range{10, 20}, 11, true},
		{Range{10, 20}, 20, true}, // end is inclusive
		{Range{10, 20}, 21, false},
		{Range{20, 10}, 25, true}, // wraps
		{Range{20, 10}, 0, true},
		{Range{20, 10}, 10, true},
		{Range{20, 10}, 15, false},
		{Range{7, 7}, 7, true}, // whole ring
		{Range{7, 7}, math.MaxUint64, true},
	} {
		if got := c.r.Contains(c.h); got != c.want {
			t.Errorf("%+v.Contains(%d) = %v; want %v", c.r, c.h, got, c.want)
		}
	}
}

func BenchmarkOwners(b *testing.B) {
	ks := keys(4096)
	for _, m := range []int{3, 10, 50} {
		r := New(names(m), 0)
		for _, n := range []int{1, 3, 0} {
			b.Run(fmt.Sprintf("members=%d/n=%d", m, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = r.Owners(ks[i&4095], n)
					i++
				}
			})
		}
	}
}

func BenchmarkNew(b *testing.B) {
	for _, m := range []int{3, 10, 50} {
		ms := names(m)
		b.Run(fmt.Sprintf("members=%d", m), func(b *testing.B) {
			for b.Loop() {
				_ = New(ms, 0)
			}
		})
	}
}

// sameSet reports whether a and b hold the same members in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, m := range a {
		if !slices.Contains(b, m) {
			return false
		}
	}
	return true
}
