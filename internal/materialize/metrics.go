package materialize

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are what the materializers of one Manager count for its metrics.
// A Materializer made by New alone (tests, tools) has none.
type stats struct {
	publishes, publishFailures, hookRuns, hookFailures atomic.Uint64
}

// count adds one to the counter pick chooses; a nil stats counts nothing.
func (s *stats) count(pick func(*stats) *atomic.Uint64) {
	if s != nil {
		pick(s).Add(1)
	}
}

func publishes(s *stats) *atomic.Uint64       { return &s.publishes }
func publishFailures(s *stats) *atomic.Uint64 { return &s.publishFailures }
func hookRuns(s *stats) *atomic.Uint64        { return &s.hookRuns }
func hookFailures(s *stats) *atomic.Uint64    { return &s.hookFailures }

var materializeDescs = struct {
	running, publishes, publishFailures, hookRuns, hookFailures *prometheus.Desc
}{
	running:         prometheus.NewDesc("cairn_materialize_running", "Materializers (prefixes written into local directories) running on this node.", nil, nil),
	publishes:       prometheus.NewDesc("cairn_materialize_publishes_total", "Versions of a materialized directory published with at least one changed file.", nil, nil),
	publishFailures: prometheus.NewDesc("cairn_materialize_publish_failures_total", "Publishes of a materialized directory that failed (retried).", nil, nil),
	hookRuns:        prometheus.NewDesc("cairn_materialize_hook_runs_total", "Runs of on_change hooks.", nil, nil),
	hookFailures:    prometheus.NewDesc("cairn_materialize_hook_failures_total", "Runs of on_change hooks that failed or timed out (retried).", nil, nil),
}

// managerCollector reports a Manager's metrics.
type managerCollector struct{ mg *Manager }

// Collector returns the metrics of this node's materializers: how many run,
// publishes, and on_change hook runs and failures.
func (mg *Manager) Collector() prometheus.Collector { return managerCollector{mg} }

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	mg := c.mg
	mg.mu.Lock()
	n := len(mg.running)
	mg.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(materializeDescs.running, prometheus.GaugeValue, float64(n))
	for _, x := range []struct {
		d *prometheus.Desc
		v *atomic.Uint64
	}{{materializeDescs.publishes, &mg.stats.publishes}, {materializeDescs.publishFailures, &mg.stats.publishFailures},
		{materializeDescs.hookRuns, &mg.stats.hookRuns}, {materializeDescs.hookFailures, &mg.stats.hookFailures}} {
		ch <- prometheus.MustNewConstMetric(x.d, prometheus.CounterValue, float64(x.v.Load()))
	}
}
