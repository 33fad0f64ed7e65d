package hlc

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWall is a wall clock the test sets; safe for concurrent use.
type fakeWall struct{ ms atomic.Int64 }

func newFakeWall(ms int64) *fakeWall { w := &fakeWall{}; w.ms.Store(ms); return w }
func (w *fakeWall) now() time.Time   { return time.UnixMilli(w.ms.Load()) }
func (w *fakeWall) set(ms int64)     { w.ms.Store(ms) }

// base is a plausible wall clock in ms (2025-03-01T12:00:00Z).
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()

func mustClock(t testing.TB, o Options) *Clock {
	t.Helper()
	c, err := NewClock(o)
	if err != nil {
		t.Fatalf("NewClock: %v", err)
	}
	return c
}

func mustNow(t testing.TB, c *Clock) Timestamp {
	t.Helper()
	ts, err := c.Now()
	if err != nil {
		t.Fatalf("Now: %v", err)
	}
	return ts
}

func TestNowMonotonicConcurrent(t *testing.T) {
	c := mustClock(t, Options{}) // the real wall clock
	const goroutines, each = 8, 5000
	got := make([][]Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				ts, err := c.Now()
				if err != nil {
					t.Errorf("Now: %v", err)
					return
				}
				got[g] = append(got[g], ts)
			}
		})
	}
	wg.Wait()
	var all []Timestamp
	for g, seq := range got {
		if !slices.IsSorted(seq) || len(slices.Compact(slices.Clone(seq))) != len(seq) {
			t.Fatalf("goroutine %d saw timestamps that do not strictly increase", g)
		}
		all = append(all, seq...)
	}
	slices.Sort(all)
	if n := len(slices.Compact(all)); n != goroutines*each {
		t.Fatalf("%d distinct timestamps out of %d; Now repeated itself", n, goroutines*each)
	}
	if now := time.Now().UnixMilli(); all[len(all)-1].Physical() > now+1 {
		t.Errorf("clock ran ahead of the wall clock: %s at %d", all[len(all)-1], now)
	}
}

func TestWallStepsBack(t *testing.T) {
	w := newFakeWall(base)
	c := mustClock(t, Options{Wall: w.now})
	first := mustNow(t, c)
	if first != Make(base, 0) {
		t.Fatalf("first Now = %s; want the wall clock %s", first, Make(base, 0))
	}
	w.set(base - 10_000) // NTP steps the clock back 10 s
	prev := first
	for range 100 {
		ts := mustNow(t, c)
		if ts <= prev {
			t.Fatalf("Now went from %s to %s after the wall clock stepped back", prev, ts)
		}
		if ts.Physical() != base {
			t.Fatalf("Now = %s; want the physical part held at %d while the wall is behind", ts, base)
		}
		prev = ts
	}
	if lead := c.Lead(); lead != 10*time.Second {
		t.Errorf("Lead = %v; want 10s", lead)
	}
	w.set(base + 5) // the wall clock catches up: back to real time, logical 0
	if ts := mustNow(t, c); ts != Make(base+5, 0) {
		t.Errorf("Now = %s; want %s once the wall clock passes the clock", ts, Make(base+5, 0))
	}
}

func TestLogicalOverflow(t *testing.T) {
	w := newFakeWall(base) // frozen: every Now in the same millisecond
	c := mustClock(t, Options{Wall: w.now})
	prev := Timestamp(0)
	for i := range 1<<16 + 10 {
		ts := mustNow(t, c)
		if ts <= prev {
			t.Fatalf("Now #%d = %s after %s", i, ts, prev)
		}
		prev = ts
	}
	// 65,536 timestamps fill base's logical counter; the rest carry into the
	// next millisecond, so the clock leads the wall by 1 ms rather than wrap.
	if want := Make(base+1, 9); prev != want {
		t.Errorf("after 65546 timestamps in one ms: %s; want %s", prev, want)
	}
	if lead := c.Lead(); lead != time.Millisecond {
		t.Errorf("Lead = %v; want 1ms", lead)
	}
}

func TestUpdate(t *testing.T) {
	w := newFakeWall(base)
	c := mustClock(t, Options{Wall: w.now})
	local := mustNow(t, c)

	// Within the bound: accepted, and the clock moves past it.
	remote := Make(base+400, 7)
	got, err := c.Update(remote)
	if err != nil {
		t.Fatalf("Update(400ms ahead): %v", err)
	}
	if got != remote+1 {
		t.Errorf("Update = %s; want %s (just past remote)", got, remote+1)
	}
	if ts := mustNow(t, c); ts <= remote {
		t.Errorf("Now after Update = %s; want > %s", ts, remote)
	}

	// Exactly at the bound: accepted.
	if _, err := c.Update(Make(base+500, 0)); err != nil {
		t.Errorf("Update(500ms ahead): %v", err)
	}

	// Over the bound: refused, and the clock keeps its state.
	before := c.Last()
	far := Make(base+501, 0)
	if _, err := c.Update(far); !errors.Is(err, ErrTooFarAhead) {
		t.Fatalf("Update(501ms ahead) = %v; want ErrTooFarAhead", err)
	}
	if c.Last() != before {
		t.Errorf("a refused Update moved the clock from %s to %s", before, c.Last())
	}

	// Behind: the clock keeps its own, larger time.
	if got, err := c.Update(local); err != nil || got != before+1 {
		t.Errorf("Update(old) = %s, %v; want %s", got, err, before+1)
	}

	// The bound is measured from the wall clock, not from the clock's own
	// lead: after the wall moves, what was too far is fine.
	w.set(base + 100)
	if _, err := c.Update(far); err != nil {
		t.Errorf("Update(401ms ahead after the wall moved): %v", err)
	}
}

func TestUpdateCustomOffset(t *testing.T) {
	w := newFakeWall(base)
	c := mustClock(t, Options{Wall: w.now, MaxOffset: 50 * time.Millisecond})
	if c.MaxOffset() != 50*time.Millisecond {
		t.Fatalf("MaxOffset = %v", c.MaxOffset())
	}
	if _, err := c.Update(Make(base+50, 0)); err != nil {
		t.Errorf("50ms ahead: %v", err)
	}
	if _, err := c.Update(Make(base+51, 0)); !errors.Is(err, ErrTooFarAhead) {
		t.Errorf("51ms ahead: %v; want ErrTooFarAhead", err)
	}
}

// store is what an engine does with the ceiling: keep the last one.
type store struct {
	mu     sync.Mutex
	mark   Timestamp
	writes int
	fail   error
}

func (s *store) persist(ts Timestamp) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if ts < s.mark {
		return errors.New("ceiling went down")
	}
	s.mark, s.writes = ts, s.writes+1
	return nil
}

func TestRestartNeverGoesBack(t *testing.T) {
	w := newFakeWall(base)
	st := &store{}
	c := mustClock(t, Options{Wall: w.now, Persist: st.persist})

	// 10 s of activity, one timestamp per ms, with a peer pushing the clock
	// ahead now and then.
	var highest Timestamp
	for i := range 10_000 {
		w.set(base + int64(i))
		ts := mustNow(t, c)
		if i%1000 == 0 {
			if ts, _ = c.Update(Make(base+int64(i)+400, 0)); ts == 0 {
				t.Fatal("Update refused a timestamp within the bound")
			}
		}
		highest = max(highest, ts)
	}
	if st.mark < highest {
		t.Fatalf("persisted ceiling %s is below issued %s", st.mark, highest)
	}
	// One write per PersistAhead of clock time, not one per timestamp.
	if st.writes > 12 {
		t.Errorf("%d ceiling writes for 10,000 timestamps over 10 s; want about 10", st.writes)
	}
	t.Logf("10,000 timestamps over 10 s: %d ceiling writes", st.writes)

	// Crash, and restart immediately with the wall clock stepped back a
	// minute: the first timestamp is still above everything issued before.
	w.set(base - 60_000)
	c2 := mustClock(t, Options{Wall: w.now, Start: st.mark, Persist: st.persist})
	if ts := mustNow(t, c2); ts <= highest {
		t.Fatalf("after restart Now = %s; want above %s issued before", ts, highest)
	}
	if c2.Lead() <= 0 {
		t.Errorf("Lead = %v after restarting behind the ceiling; want the wait the engine should do", c2.Lead())
	}
}

func TestPersistFailure(t *testing.T) {
	w := newFakeWall(base)
	st := &store{fail: errors.New("disk full")}
	c := mustClock(t, Options{Wall: w.now, Persist: st.persist})
	if _, err := c.Now(); !errors.Is(err, ErrPersist) || !errors.Is(err, st.fail) {
		t.Fatalf("Now with a failing store = %v; want ErrPersist wrapping the store's error", err)
	}
	if c.Last() != 0 {
		t.Errorf("a failed Now issued %s", c.Last())
	}
	st.fail = nil
	if ts := mustNow(t, c); ts != Make(base, 0) || st.mark < ts {
		t.Errorf("Now = %s with ceiling %s after the store recovered", ts, st.mark)
	}
}

func TestNewClockOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"negative offset":        {MaxOffset: -time.Second},
		"negative persist-ahead": {PersistAhead: -time.Second},
		"start at the end":       {Start: MaxTimestamp},
	} {
		if _, err := NewClock(o); err == nil {
			t.Errorf("%s: NewClock accepted %+v", name, o)
		}
	}
	c := mustClock(t, Options{})
	if c.MaxOffset() != DefaultMaxOffset {
		t.Errorf("default MaxOffset = %v", c.MaxOffset())
	}
}

func TestClockExhausted(t *testing.T) {
	w := newFakeWall(base)
	c := mustClock(t, Options{Wall: w.now, Start: MaxTimestamp - 1})
	if ts := mustNow(t, c); ts != MaxTimestamp {
		t.Fatalf("Now = %s; want MaxTimestamp", ts)
	}
	if _, err := c.Now(); !errors.Is(err, ErrRange) {
		t.Errorf("Now past MaxTimestamp = %v; want ErrRange", err)
	}
}

func TestFormatParse(t *testing.T) {
	for _, c := range []struct {
		ts   Timestamp
		want string
	}{
		{0, "1970-01-01T00:00:00.000Z-00000"},
		{Make(base+250, 3), "2025-03-01T12:00:00.250Z-00003"},
		{Make(base, 65535), "2025-03-01T12:00:00.000Z-65535"},
		{MaxTimestamp, "9999-12-31T23:59:59.999Z-65535"},
	} {
		if got := Format(c.ts); got != c.want {
			t.Errorf("Format(%d) = %q; want %q", uint64(c.ts), got, c.want)
		}
		if got, err := Parse(c.want); err != nil || got != c.ts {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.want, uint64(got), err, uint64(c.ts))
		}
	}

	// Random round trips, and string order is timestamp order.
	rng := rand.New(rand.NewPCG(3, 4))
	var tss []Timestamp
	var strs []string
	for range 2000 {
		ts := Timestamp(rng.Uint64N(uint64(MaxTimestamp) + 1))
		s := Format(ts)
		if got, err := Parse(s); err != nil || got != ts {
			t.Fatalf("Parse(Format(%d)) = %d, %v", uint64(ts), uint64(got), err)
		}
		tss, strs = append(tss, ts), append(strs, s)
	}
	sort.Slice(tss, func(i, j int) bool { return tss[i] < tss[j] })
	slices.Sort(strs)
	for i := range tss {
		if Format(tss[i]) != strs[i] {
			t.Fatalf("strings sort differently from timestamps at %d: %s vs %s", i, Format(tss[i]), strs[i])
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"1740830400000",                    // decimal ms
		"2025-03-01T12:00:00.250Z",         // no logical part
		"2025-03-01T12:00:00.250Z-3",       // short counter
		"2025-03-01T12:00:00.250Z-65536",   // counter overflows 16 bits
		"2025-03-01T12:00:00.250Z-0000x",   // not digits
		"2025-03-01T12:00:00.250Z-+0003",   // sign
		"2025-03-01T12:00:00.25Z-000003",   // two fractional digits
		"2025-03-01T12:00:00.250+00:00-03", // offset instead of Z
		"2025-02-30T12:00:00.250Z-00003",   // no such day
		"2025-03-01T24:00:00.250Z-00003",   // no such hour
		"2025-03-01 12:00:00.250Z-00003",   // space instead of T
		"2025-03-01T12:00:00,250Z-00003",   // comma
		"2025-03-01t12:00:00.250z-00003",   // lower case
		"0000-03-01T12:00:00.250Z-00003",   // before the epoch
		"1969-12-31T23:59:59.999Z-00000",   // before the epoch
		"2025-03-01T12:00:00.250Z_00003",   // wrong separator
	} {
		if ts, err := Parse(s); !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrRange) {
			t.Errorf("Parse(%q) = %s, %v; want ErrSyntax or ErrRange", s, ts, err)
		}
	}
}

func TestJSON(t *testing.T) {
	in := struct {
		Timestamp Timestamp `json:"timestamp"`
	}{Make(base+1, 2)}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"timestamp":"2025-03-01T12:00:00.001Z-00002"}` {
		t.Errorf("JSON = %s", b)
	}
	var out struct {
		Timestamp Timestamp `json:"timestamp"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip = %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"timestamp":"nope"}`), &out); !errors.Is(err, ErrSyntax) {
		t.Errorf("Unmarshal(nope) = %v; want ErrSyntax", err)
	}
}

func TestCompare(t *testing.T) {
	a := Stamp{Make(base, 1), "n1"}
	for _, c := range []struct {
		x, y Stamp
		want int
	}{
		{a, a, 0},
		{a, Stamp{Make(base, 2), "n1"}, -1},  // logical decides
		{a, Stamp{Make(base-1, 9), "n9"}, 1}, // physical before logical and node
		{a, Stamp{Make(base, 1), "n2"}, -1},  // tie broken by node name
		{Stamp{Make(base, 1), "n2"}, a, 1},   // and the other way round
		{Stamp{Make(base, 1), ""}, a, -1},    // the empty name sorts first
		{Stamp{Make(base+1, 0), "a"}, a, 1},
	} {
		if got := Compare(c.x, c.y); got != c.want {
			t.Errorf("Compare(%v, %v) = %d; want %d", c.x, c.y, got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"1970-01-01T00:00:00.000Z-00000",
		"2025-03-01T12:00:00.250Z-00003",
		"9999-12-31T23:59:59.999Z-65535",
		"2025-02-30T12:00:00.250Z-00003",
		"2025-03-01T12:00:00.250Z-65536",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) && !errors.Is(err, ErrRange) {
				t.Fatalf("Parse(%q) error %v is neither ErrSyntax nor ErrRange", s, err)
			}
			return
		}
		// One form per timestamp: what parses is exactly what Format writes.
		if got := Format(ts); got != s {
			t.Fatalf("Parse(%q) = %d, which formats as %q", s, uint64(ts), got)
		}
		if ts > MaxTimestamp {
			t.Fatalf("Parse(%q) = %d, past MaxTimestamp", s, uint64(ts))
		}
	})
}

func BenchmarkNow(b *testing.B) {
	c := mustClock(b, Options{})
	for b.Loop() {
		if _, err := c.Now(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormat(b *testing.B) {
	ts := Make(base, 3)
	for b.Loop() {
		_ = Format(ts)
	}
}

func BenchmarkParse(b *testing.B) {
	s := Format(Make(base, 3))
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
