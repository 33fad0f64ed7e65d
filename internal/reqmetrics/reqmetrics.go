// Package reqmetrics counts and times the requests of a front end (HTTP
// routes, RESP commands) for Prometheus without a lock on the request path.
// Each kind of request is an Op built before the Set is registered: its
// counters are atomics and its latency a prometheus.Histogram (itself
// lock-free), and it is found by the caller without a map lookup under a
// lock. A scrape reports only the Ops that have been used, so the hundred
// routes and methods or two hundred commands a node knows do not each show a
// page of zero buckets.
package reqmetrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets are the histogram buckets of request latencies, in seconds:
// from half a millisecond (a local read) to ten seconds (a request that
// waited out an election).
var LatencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Opts name a Set's two metric families.
type Opts struct {
	// Total and TotalHelp are the counter of requests by label and outcome
	// (a name ending in _total).
	Total, TotalHelp string
	// Duration and DurationHelp are the latency histogram by label (a name
	// ending in _seconds).
	Duration, DurationHelp string
	// Labels name what identifies an Op (route and method, command).
	Labels []string
	// OutcomeLabel names the outcome label of Total; Outcomes are its values,
	// indexed by the outcome passed to Op.Observe.
	OutcomeLabel string
	Outcomes     []string
}

// Set is a prometheus.Collector of Ops.
type Set struct {
	o     Opts
	total *prometheus.Desc
	ops   []*Op
}

// NewSet returns an empty Set.
func NewSet(o Opts) *Set {
	return &Set{o: o, total: prometheus.NewDesc(o.Total, o.TotalHelp, append(append([]string(nil), o.Labels...), o.OutcomeLabel), nil)}
}

// Op adds the Op with these label values (one per Opts.Labels). Ops are
// added before the Set is registered: Collect reads the list without a lock.
func (s *Set) Op(values ...string) *Op {
	labels := prometheus.Labels{}
	for i, n := range s.o.Labels {
		labels[n] = values[i]
	}
	op := &Op{values: values, counts: make([]atomic.Uint64, len(s.o.Outcomes)),
		dur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: s.o.Duration, Help: s.o.DurationHelp,
			ConstLabels: labels, Buckets: LatencyBuckets})}
	s.ops = append(s.ops, op)
	return op
}

// Describe sends nothing: the Set is an unchecked collector, because which
// Ops it reports changes as they are used.
func (s *Set) Describe(chan<- *prometheus.Desc) {}

// Collect reports every Op used so far.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, op := range s.ops {
		if !op.used.Load() {
			continue
		}
		for i, name := range s.o.Outcomes {
			if n := op.counts[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(s.total, prometheus.CounterValue, float64(n), append(append([]string(nil), op.values...), name)...)
			}
		}
		op.dur.Collect(ch)
	}
}

// Op is one kind of request.
type Op struct {
	values []string
	used   atomic.Bool
	counts []atomic.Uint64
	dur    prometheus.Histogram
}

// Observe counts one request with outcome (an index into Opts.Outcomes) that
// took d. A nil Op observes nothing.
func (o *Op) Observe(outcome int, d time.Duration) {
	if o == nil {
		return
	}
	if !o.used.Load() {
		o.used.Store(true)
	}
	o.counts[outcome].Add(1)
	o.dur.Observe(d.Seconds())
}

var _ prometheus.Collector = (*Set)(nil)
