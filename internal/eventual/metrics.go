package eventual

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/kv"
)

// engineStats are what the engine counts for its metrics; the gauges (hints
// pending, members by health, outbox) are read when scraped.
type engineStats struct {
	readRepairs     atomic.Uint64 // replicas sent a newer version by a read
	aeRoundsOK      atomic.Uint64
	aeRoundFailures atomic.Uint64
	aeKeysSent      atomic.Uint64
	aeKeysReceived  atomic.Uint64
}

var engineDescs = struct {
	hints, members, outbox, overflow, repairs, rounds, keys *prometheus.Desc
}{
	hints:    prometheus.NewDesc("cairn_eventual_hints_pending", "Writes this node holds as hints for owners that did not take them, by owner.", []string{"owner"}, nil),
	members:  prometheus.NewDesc("cairn_eventual_members", "Members of the ring by their health as this node's failure detector sees them (self, healthy, validating, damaged).", []string{"health"}, nil),
	outbox:   prometheus.NewDesc("cairn_eventual_outbox_keys", "Replica writes queued in this node's outbox for the mirrors.", nil, nil),
	overflow: prometheus.NewDesc("cairn_eventual_outbox_overflow", "Replica writes the full outbox could not queue since the mirrors' last reconcile.", nil, nil),
	repairs:  prometheus.NewDesc("cairn_eventual_read_repairs_total", "Replicas a read found behind and sent the newest version (read repair).", nil, nil),
	rounds:   prometheus.NewDesc("cairn_eventual_anti_entropy_rounds_total", "Anti-entropy rounds this node ran, by outcome.", []string{"outcome"}, nil),
	keys:     prometheus.NewDesc("cairn_eventual_anti_entropy_keys_total", "Keys exchanged with peers by anti-entropy, by direction (sent, received).", []string{"direction"}, nil),
}

// engineCollector reports an Engine's metrics.
type engineCollector struct{ e *Engine }

// Collector returns the eventual engine's metrics: hints pending by owner,
// members by health, read repairs, anti-entropy rounds and keys exchanged,
// the mirrors' outbox, and the replica database's pebble metrics
// (db="replica"). Counting the hints scans them, once per scrape.
func (e *Engine) Collector() prometheus.Collector { return engineCollector{e} }

// Describe sends nothing (an unchecked collector): the hints by owner come
// and go, and the replica database's metrics share their families with the
// node's other databases (see store.DB.Collector).
func (c engineCollector) Describe(chan<- *prometheus.Desc) {}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	if e.reps.db.Closed() {
		return // shut down: nothing to report
	}
	if hints, err := e.reps.hintCounts(); err == nil {
		for owner, n := range hints {
			ch <- prometheus.MustNewConstMetric(engineDescs.hints, prometheus.GaugeValue, float64(n), owner)
		}
	}
	byHealth := map[string]int{kv.HealthSelf: 0, kv.HealthHealthy: 0, kv.HealthValidating: 0, kv.HealthDamaged: 0}
	for _, h := range e.Health() {
		byHealth[h]++
	}
	for h, n := range byHealth {
		ch <- prometheus.MustNewConstMetric(engineDescs.members, prometheus.GaugeValue, float64(n), h)
	}
	ch <- prometheus.MustNewConstMetric(engineDescs.outbox, prometheus.GaugeValue, float64(e.reps.outboxLen.Load()))
	ch <- prometheus.MustNewConstMetric(engineDescs.overflow, prometheus.GaugeValue, float64(e.reps.outboxOverflow.Load()))
	st := &e.stats
	ch <- prometheus.MustNewConstMetric(engineDescs.repairs, prometheus.CounterValue, float64(st.readRepairs.Load()))
	ch <- prometheus.MustNewConstMetric(engineDescs.rounds, prometheus.CounterValue, float64(st.aeRoundsOK.Load()), "success")
	ch <- prometheus.MustNewConstMetric(engineDescs.rounds, prometheus.CounterValue, float64(st.aeRoundFailures.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(engineDescs.keys, prometheus.CounterValue, float64(st.aeKeysSent.Load()), "sent")
	ch <- prometheus.MustNewConstMetric(engineDescs.keys, prometheus.CounterValue, float64(st.aeKeysReceived.Load()), "received")
	e.reps.db.Collector("replica").Collect(ch)
}

// hintCounts counts the hints kept, by owner.
func (r *replicas) hintCounts() (map[string]int, error) {
	out := map[string]int{}
	err := r.db.Scan([]byte{prefixHint}, []byte{prefixHint + 1}, func(k, _ []byte) bool {
		i := 1
		for i < len(k) && k[i] != 0 {
			i++
		}
		out[string(k[1:i])]++
		return true
	})
	return out, err
}
