package reqmetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func newTestSet() (*Set, *Op, *Op) {
	s := NewSet(Opts{
		Total: "test_requests_total", TotalHelp: "Requests.",
		Duration: "test_request_duration_seconds", DurationHelp: "Request latency.",
		Labels: []string{"route"}, OutcomeLabel: "outcome", Outcomes: []string{"ok", "error"},
	})
	return s, s.Op("get"), s.Op("put")
}

// TestSetReportsUsedOps: a scrape shows the Ops that were used, each
// outcome counted apart, and nothing for an Op never used.
func TestSetReportsUsedOps(t *testing.T) {
	s, get, _ := newTestSet()
	if n := testutil.CollectAndCount(s); n != 0 {
		t.Fatalf("an unused set reports %d metrics", n)
	}
	get.Observe(0, time.Millisecond)
	get.Observe(0, 2*time.Millisecond)
	get.Observe(1, time.Second)
	want := `
# HELP test_requests_total Requests.
# TYPE test_requests_total counter
test_requests_total{outcome="error",route="get"} 1
test_requests_total{outcome="ok",route="get"} 2
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want), "test_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(s, "test_request_duration_seconds"); n != 1 {
		t.Errorf("%d latency histograms, want the one used", n)
	}
	problems, err := testutil.CollectAndLint(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	var nilOp *Op
	nilOp.Observe(0, time.Second) // must not panic
}

// BenchmarkObserve is the cost one request pays.
func BenchmarkObserve(b *testing.B) {
	_, get, _ := newTestSet()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get.Observe(0, 3*time.Millisecond)
		}
	})
}
