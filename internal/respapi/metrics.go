package respapi

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/internal/reqmetrics"
)

// Outcomes of a command, indexes into commandMetrics' outcome label.
const (
	outcomeOK = iota
	outcomeError
)

// commandMetrics are the RESP front end's metrics: commands by name and
// outcome (an error reply or not) with their latencies, -BUSY refusals and
// open connections. A command's latency is what a pipelining client sees:
// from the start of the group it arrived in (see conn.group) until the
// group's replies are written, which includes the batched writes ahead of
// it. The request path touches only atomics: the Op of every command is
// built in New, and the table is read-only after that.
type commandMetrics struct {
	set     *reqmetrics.Set
	ops     map[string]*reqmetrics.Op // by command table name
	unknown *reqmetrics.Op            // names not in the table
	refused atomic.Uint64             // -BUSY replies
	conns   atomic.Int64              // open connections
	watches atomic.Int64              // keyspace-notification watches running
	descs   [3]*prometheus.Desc       // refused, conns, watches
}

func newCommandMetrics() *commandMetrics {
	m := &commandMetrics{ops: make(map[string]*reqmetrics.Op, len(commands)), set: reqmetrics.NewSet(reqmetrics.Opts{
		Total:        "cairn_resp_commands_total",
		TotalHelp:    "RESP commands answered, by command and outcome (error: an error reply).",
		Duration:     "cairn_resp_command_duration_seconds",
		DurationHelp: "Time from the start of a RESP command's pipelined group until its reply was written, by command.",
		Labels:       []string{"command"},
		OutcomeLabel: "outcome",
		Outcomes:     []string{"ok", "error"},
	})}
	for name := range commands {
		m.ops[name] = m.set.Op(name)
	}
	m.unknown = m.set.Op("unknown")
	m.descs[0] = prometheus.NewDesc("cairn_resp_commands_refused_total", "RESP commands answered -BUSY because the node was serving max-inflight-requests already.", nil, nil)
	m.descs[1] = prometheus.NewDesc("cairn_resp_connections_open", "RESP connections open on this node.", nil, nil)
	m.descs[2] = prometheus.NewDesc("cairn_resp_watch_streams_open", "Watches of the change feed running for RESP keyspace-notification subscribers (one per watched prefix).", nil, nil)
	return m
}

// Describe implements prometheus.Collector (unchecked: see reqmetrics.Set).
func (m *commandMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *commandMetrics) Collect(ch chan<- prometheus.Metric) {
	m.set.Collect(ch)
	ch <- prometheus.MustNewConstMetric(m.descs[0], prometheus.CounterValue, float64(m.refused.Load()))
	ch <- prometheus.MustNewConstMetric(m.descs[1], prometheus.GaugeValue, float64(m.conns.Load()))
	ch <- prometheus.MustNewConstMetric(m.descs[2], prometheus.GaugeValue, float64(m.watches.Load()))
}

// tracked is a command of the current group whose reply is out[slot].
type tracked struct {
	op   *reqmetrics.Op
	slot int
}

// track notes the command dispatched next, whose reply will be the group's
// next one.
func (c *conn) track(name string) {
	m := c.s.metrics
	if m == nil {
		return
	}
	op := m.ops[name]
	if op == nil {
		op = m.unknown
	}
	c.tracked = append(c.tracked, tracked{op, len(c.out)})
}

// observeGroup counts the tracked commands once their replies are final
// (pending writes filled in), just before they are written.
func (c *conn) observeGroup() {
	if len(c.tracked) == 0 {
		return
	}
	d := time.Since(c.groupStart)
	for _, t := range c.tracked {
		outcome := outcomeOK
		if t.slot < len(c.out) && len(c.out[t.slot]) > 0 && c.out[t.slot][0] == '-' {
			outcome = outcomeError
		}
		t.op.Observe(outcome, d)
	}
	clear(c.tracked)
	c.tracked = c.tracked[:0]
}

// refuse counts a -BUSY reply.
func (m *commandMetrics) refuse() {
	if m != nil {
		m.refused.Add(1)
	}
}

// connOpened counts a connection open until the returned func is called.
func (m *commandMetrics) connOpened() func() {
	return m.gauge(func(m *commandMetrics) *atomic.Int64 { return &m.conns })
}

// watchOpened counts a running watch until the returned func is called.
func (m *commandMetrics) watchOpened() func() {
	return m.gauge(func(m *commandMetrics) *atomic.Int64 { return &m.watches })
}

// gauge adds one to the gauge pick chooses until the returned func is
// called; a nil commandMetrics counts nothing.
func (m *commandMetrics) gauge(pick func(*commandMetrics) *atomic.Int64) func() {
	if m == nil {
		return func() {}
	}
	g := pick(m)
	g.Add(1)
	return func() { g.Add(-1) }
}
