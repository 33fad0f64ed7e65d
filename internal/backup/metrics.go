package backup

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scheduleStats are what a Schedule counts for its metrics.
type scheduleStats struct {
	// lastSuccess is the unix time (ns) of the newest backup known to be
	// in the target: the last one taken, or at Run's start the newest
	// already there (0: none).
	lastSuccess  atomic.Int64
	lastFailed   atomic.Bool
	taken        atomic.Uint64
	failed       atomic.Uint64
	lastDuration atomic.Int64 // ns
}

var scheduleDescs = struct {
	last, ok, taken, failed, dur, interval *prometheus.Desc
}{
	last:     prometheus.NewDesc("cairn_backup_last_success_timestamp_seconds", "Unix time of the newest scheduled backup in the target (0: none known).", nil, nil),
	ok:       prometheus.NewDesc("cairn_backup_last_success", "1 if this node's last scheduled backup attempt succeeded (or none was attempted), 0 if it failed.", nil, nil),
	taken:    prometheus.NewDesc("cairn_backups_total", "Scheduled backups this node attempted, by outcome.", []string{"outcome"}, nil),
	dur:      prometheus.NewDesc("cairn_backup_last_duration_seconds", "Time the last successful scheduled backup took.", nil, nil),
	interval: prometheus.NewDesc("cairn_backup_interval_seconds", "The backup interval (--backup-interval).", nil, nil),
}

// scheduleCollector reports a Schedule's metrics.
type scheduleCollector struct{ s *Schedule }

// Collector returns the schedule's metrics: when the newest backup was
// taken, whether the last attempt failed, attempts by outcome, and the
// interval (what an alert on a stale backup compares with).
func (s *Schedule) Collector() prometheus.Collector { return scheduleCollector{s} }

func (c scheduleCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c scheduleCollector) Collect(ch chan<- prometheus.Metric) {
	st := &c.s.stats
	last := 0.0
	if ns := st.lastSuccess.Load(); ns > 0 {
		last = float64(ns) / 1e9
	}
	ok := 1.0
	if st.lastFailed.Load() {
		ok = 0
	}
	ch <- prometheus.MustNewConstMetric(scheduleDescs.last, prometheus.GaugeValue, last)
	ch <- prometheus.MustNewConstMetric(scheduleDescs.ok, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(scheduleDescs.taken, prometheus.CounterValue, float64(st.taken.Load()), "success")
	ch <- prometheus.MustNewConstMetric(scheduleDescs.taken, prometheus.CounterValue, float64(st.failed.Load()), "failure")
	ch <- prometheus.MustNewConstMetric(scheduleDescs.dur, prometheus.GaugeValue, time.Duration(st.lastDuration.Load()).Seconds())
	ch <- prometheus.MustNewConstMetric(scheduleDescs.interval, prometheus.GaugeValue, c.s.Interval.Seconds())
}

// recordAttempt counts one scheduled backup that started at started.
func (s *Schedule) recordAttempt(started time.Time, err error) {
	if err != nil {
		s.stats.failed.Add(1)
		s.stats.lastFailed.Store(true)
		return
	}
	s.stats.taken.Add(1)
	s.stats.lastFailed.Store(false)
	s.stats.lastSuccess.Store(s.now().UnixNano())
	s.stats.lastDuration.Store(int64(s.now().Sub(started)))
}

// loadNewest sets the last success to the newest backup already in the
// target, so a node that just started (or just became leader) does not look
// as if it never had one.
func (s *Schedule) loadNewest() {
	all, err := ListBackups(s.Target)
	if err != nil || len(all) == 0 {
		return
	}
	if t := all[len(all)-1].Time; t.UnixNano() > s.stats.lastSuccess.Load() {
		s.stats.lastSuccess.Store(t.UnixNano())
	}
}
