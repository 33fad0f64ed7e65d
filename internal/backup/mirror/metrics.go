package mirror

import (
	"github.com/prometheus/client_golang/prometheus"
)

var mirrorDescs = struct {
	active, behind, outbox, overflow, puts, deletes, errors *prometheus.Desc
}{
	active:   prometheus.NewDesc("cairn_mirror_active", "1 if this node copies the keyspace's writes into its bucket now.", []string{"prefix"}, nil),
	behind:   prometheus.NewDesc("cairn_mirror_behind_revisions", "Revisions the cluster is ahead of a strong keyspace's mirror (0 for an eventual one).", []string{"prefix"}, nil),
	outbox:   prometheus.NewDesc("cairn_mirror_outbox_keys", "Keys this node's eventual outbox holds for the bucket (every mirrored eventual keyspace together).", []string{"prefix"}, nil),
	overflow: prometheus.NewDesc("cairn_mirror_outbox_overflow", "Writes the eventual outbox could not queue since its last reconcile (they wait for the next reconcile).", []string{"prefix"}, nil),
	puts:     prometheus.NewDesc("cairn_mirror_puts_total", "Objects the mirror wrote into its bucket since start.", []string{"prefix"}, nil),
	deletes:  prometheus.NewDesc("cairn_mirror_deletes_total", "Objects the mirror removed from its bucket since start.", []string{"prefix"}, nil),
	errors:   prometheus.NewDesc("cairn_mirror_last_error_timestamp_seconds", "Unix time the bucket last refused a write (0: never).", []string{"prefix"}, nil),
}

// managerCollector reports the mirrors' Status as metrics.
type managerCollector struct{ mg *Manager }

// Collector returns the metrics of every mirror running here, by prefix,
// read from Status when scraped.
func (mg *Manager) Collector() prometheus.Collector { return managerCollector{mg} }

func (c managerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mirrorDescs.active, mirrorDescs.behind, mirrorDescs.outbox, mirrorDescs.overflow,
		mirrorDescs.puts, mirrorDescs.deletes, mirrorDescs.errors} {
		ch <- d
	}
}

func (c managerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.mg.Status() {
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, st.Prefix)
		}
		active := 0.0
		if st.Active {
			active = 1
		}
		gauge(mirrorDescs.active, active)
		gauge(mirrorDescs.behind, float64(st.Behind))
		gauge(mirrorDescs.outbox, float64(st.Outbox))
		gauge(mirrorDescs.overflow, float64(st.OutboxOverflow))
		ch <- prometheus.MustNewConstMetric(mirrorDescs.puts, prometheus.CounterValue, float64(st.Puts), st.Prefix)
		ch <- prometheus.MustNewConstMetric(mirrorDescs.deletes, prometheus.CounterValue, float64(st.Deletes), st.Prefix)
		lastErr := 0.0
		if st.LastErrorAt != nil {
			lastErr = float64(st.LastErrorAt.UnixNano()) / 1e9
		}
		gauge(mirrorDescs.errors, lastErr)
	}
}
