package raftnode

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are what the node counts as it runs: leader changes seen,
// proposal round sizes, log fsyncs and snapshots. The gauges (term, indexes,
// role) are read from Raft when scraped (Node.Collector).
type nodeMetrics struct {
	leaderChanges atomic.Uint64
	// leaseReads and leaseFallbacks count lease reads the leader answered
	// under its lease, and those it answered with a quorum round instead.
	leaseReads     atomic.Uint64
	leaseFallbacks atomic.Uint64
	// readRepeats counts read-index rounds verified again because a quorum
	// had not accepted an AppendEntries sent since the round began.
	readRepeats atomic.Uint64
	// readRounds counts the leader's read-index rounds, readRoundReads the
	// reads they answered (a round answers every read waiting when it began).
	readRounds     atomic.Uint64
	readRoundReads atomic.Uint64
	batch          prometheus.Histogram
	fsync          prometheus.Histogram
	snapDur        prometheus.Histogram
	snapBytes      prometheus.Histogram
	restoreDur     prometheus.Histogram
}

func newNodeMetrics() *nodeMetrics {
	return &nodeMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_raft_proposal_batch_size",
			Help:    "Proposals handed to Raft together in one round on the leader (one log batch and fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_raft_log_fsync_duration_seconds",
			Help:    "Time to write and fsync one batch of Raft log entries.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12)}),
		snapDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_raft_snapshot_duration_seconds",
			Help:    "Time to write one Raft snapshot of the state.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}),
		snapBytes: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_raft_snapshot_size_bytes",
			Help:    "Size of the Raft snapshots written.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 12)}),
		restoreDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cairn_raft_snapshot_restore_duration_seconds",
			Help:    "Time to restore the state from one Raft snapshot (one sent by the leader, or at start).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12)}),
	}
}

// observeLeaders counts leader changes. The filter runs in Raft's observe
// call and never queues anything: counting needs no goroutine.
func (n *Node) observeLeaders() {
	n.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if l, ok := o.Data.(raft.LeaderObservation); ok && l.LeaderID != "" {
			n.m.leaderChanges.Add(1)
		}
		return false
	}))
}

// observeBatch records the size of one proposal round; nil metrics record nothing.
func (m *nodeMetrics) observeBatch(n int) {
	if m != nil {
		m.batch.Observe(float64(n))
	}
}

// countingWriter counts what a snapshot writes.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

var nodeDescs = struct {
	term, commit, applied, last, leader, contact, changes, leaseReads, leaseFallbacks, readRepeats, readRounds, readRoundReads *prometheus.Desc
}{
	readRepeats:    prometheus.NewDesc("cairn_raft_read_index_repeats_total", "Read-index rounds this leader verified again because a quorum had not yet accepted an AppendEntries sent after the round began.", nil, nil),
	readRounds:     prometheus.NewDesc("cairn_raft_read_index_rounds_total", "Read-index rounds this leader ran to confirm its leadership for linearizable reads.", nil, nil),
	readRoundReads: prometheus.NewDesc("cairn_raft_read_index_reads_total", "Linearizable reads the leader's read-index rounds answered (each round answers every read waiting when it began).", nil, nil),
	leaseReads:     prometheus.NewDesc("cairn_raft_lease_reads_total", "Lease reads this node answered as leader under its lease, with no quorum round.", nil, nil),
	leaseFallbacks: prometheus.NewDesc("cairn_raft_lease_read_fallbacks_total", "Lease reads this node answered as leader with a quorum round because its lease did not hold.", nil, nil),
	term:           prometheus.NewDesc("cairn_raft_term", "Current Raft term of this node.", nil, nil),
	commit:         prometheus.NewDesc("cairn_raft_commit_index", "Highest Raft log index this node knows to be committed.", nil, nil),
	applied:        prometheus.NewDesc("cairn_raft_applied_index", "Highest Raft log index applied to this node's state.", nil, nil),
	last:           prometheus.NewDesc("cairn_raft_last_log_index", "Last index in this node's Raft log.", nil, nil),
	leader:         prometheus.NewDesc("cairn_raft_is_leader", "1 if this node is the Raft leader, else 0.", nil, nil),
	contact:        prometheus.NewDesc("cairn_raft_last_contact_seconds", "Seconds since a follower last heard from the leader (0 on the leader).", nil, nil),
	changes:        prometheus.NewDesc("cairn_raft_leader_changes_total", "Leader changes this node has seen (each new leader it learned of).", nil, nil),
}

// nodeCollector reports a Node's Raft metrics.
type nodeCollector struct{ n *Node }

// Collector returns the node's Raft metrics: term, commit and applied
// indexes, role, leader changes, proposal batch sizes, log fsync and
// snapshot durations and sizes, and the Raft log database's pebble metrics
// (db="raft").
func (n *Node) Collector() prometheus.Collector { return nodeCollector{n} }

// Describe sends nothing (an unchecked collector), as the Raft log
// database's metrics share their families with the node's other databases
// (see store.DB.Collector).
func (c nodeCollector) Describe(chan<- *prometheus.Desc) {}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n, m := c.n, c.n.m
	s := n.Status()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(nodeDescs.term, float64(s.Term))
	gauge(nodeDescs.commit, float64(s.CommitIndex))
	gauge(nodeDescs.applied, float64(s.AppliedIndex))
	gauge(nodeDescs.last, float64(s.LastIndex))
	leader := 0.0
	if s.State == "leader" {
		leader = 1
	}
	gauge(nodeDescs.leader, leader)
	gauge(nodeDescs.contact, s.LastContact.Seconds())
	ch <- prometheus.MustNewConstMetric(nodeDescs.changes, prometheus.CounterValue, float64(m.leaderChanges.Load()))
	ch <- prometheus.MustNewConstMetric(nodeDescs.leaseReads, prometheus.CounterValue, float64(m.leaseReads.Load()))
	ch <- prometheus.MustNewConstMetric(nodeDescs.leaseFallbacks, prometheus.CounterValue, float64(m.leaseFallbacks.Load()))
	ch <- prometheus.MustNewConstMetric(nodeDescs.readRepeats, prometheus.CounterValue, float64(m.readRepeats.Load()))
	ch <- prometheus.MustNewConstMetric(nodeDescs.readRounds, prometheus.CounterValue, float64(m.readRounds.Load()))
	ch <- prometheus.MustNewConstMetric(nodeDescs.readRoundReads, prometheus.CounterValue, float64(m.readRoundReads.Load()))
	m.batch.Collect(ch)
	m.fsync.Collect(ch)
	m.snapDur.Collect(ch)
	m.snapBytes.Collect(ch)
	m.restoreDur.Collect(ch)
	n.logDB.Collector("raft").Collect(ch)
}

// since is the seconds since start, for a histogram.
func since(start time.Time) float64 { return time.Since(start).Seconds() }
