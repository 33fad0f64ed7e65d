package eventual

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/kv"
)

func testDetector(t *testing.T) *detector {
	t.Helper()
	clock, err := hlc.NewClock(hlc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &Engine{cfg: Config{Name: "n1"}, log: slog.New(slog.DiscardHandler), ctx: context.Background(),
		hintWake: make(chan struct{}, 1), clock: clock}
	return newDetector(e)
}

// A member is damaged after missesToDamage missed pings, validating while
// it answers again, and healthy only after roundsToHeal answers in a row;
// a miss while validating starts the validation over.
func TestDetectorValidationRounds(t *testing.T) {
	d := testDetector(t)
	want := func(h string) {
		t.Helper()
		if got := d.health("n2"); got != h {
			t.Fatalf("health %s, want %s", got, h)
		}
		if d.usable("n2") != (h == kv.HealthHealthy) {
			t.Fatalf("usable %v while %s", d.usable("n2"), h)
		}
	}
	want(kv.HealthHealthy) // never seen: trusted until it misses
	for range missesToDamage - 1 {
		d.record("n2", false)
	}
	want(kv.HealthHealthy)
	d.record("n2", false)
	want(kv.HealthDamaged)
	for range roundsToHeal - 1 {
		d.record("n2", true)
		want(kv.HealthValidating)
	}
	d.record("n2", false) // not yet: start over
	want(kv.HealthDamaged)
	for range roundsToHeal {
		d.record("n2", true)
	}
	want(kv.HealthHealthy)
	if d.health("n1") != kv.HealthSelf || !d.usable("n1") {
		t.Fatal("this node is always itself and usable")
	}
}

// The clock check: ahead of most measured peers by more than the max
// offset stops this node; ahead of one of three does not.
func TestDetectorClockAhead(t *testing.T) {
	d := testDetector(t)
	for _, m := range []string{"n2", "n3"} {
		d.record(m, true)
	}
	d.measure("n2", 2*time.Second)
	d.measure("n3", 10*time.Millisecond)
	if ahead, _ := d.clockAhead(); ahead {
		t.Fatal("ahead of one peer of two is not most of them")
	}
	d.measure("n3", 700*time.Millisecond)
	if ahead, by := d.clockAhead(); !ahead || by < 700*time.Millisecond {
		t.Fatalf("ahead of both: %v by %v", ahead, by)
	}
}
