package server

import (
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// nodeMetrics is the node's Prometheus registry, served at /metrics on the
// client port: its own, never the global default one, because several
// servers run in one test process (test/cluster). Each component defines
// its metrics beside the code it measures and hands a collector here;
// the front ends register theirs through their Options.Registerer.
type nodeMetrics struct {
	reg *prometheus.Registry
	// httpConns are the client port's open HTTP connections; refused the
	// client connections closed at accept (allowed_hosts, max-connections).
	httpConns atomic.Int64
	refused   atomic.Uint64
}

var serverDescs = struct {
	httpConns, refused *prometheus.Desc
}{
	httpConns: prometheus.NewDesc("cairn_http_connections_open", "HTTP connections open on the client port.", nil, nil),
	refused:   prometheus.NewDesc("cairn_client_connections_refused_total", "Client connections (HTTP and RESP) closed at accept: a host outside allowed_hosts, or over max-connections.", nil, nil),
}

func (m *nodeMetrics) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(m, ch) }

func (m *nodeMetrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(serverDescs.httpConns, prometheus.GaugeValue, float64(m.httpConns.Load()))
	ch <- prometheus.MustNewConstMetric(serverDescs.refused, prometheus.CounterValue, float64(m.refused.Load()))
}

// connState counts the client port's open connections (http.Server.ConnState).
func (m *nodeMetrics) connState(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		m.httpConns.Add(1)
	case http.StateClosed, http.StateHijacked:
		m.httpConns.Add(-1)
	}
}

// startMetrics builds the registry from the components started so far (the
// front ends, started after it, add their own).
func (s *Server) startMetrics() error {
	s.metrics = &nodeMetrics{reg: prometheus.NewRegistry()}
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.metrics,
		s.eventual.Collector(),
		s.materialize.Collector(),
	}
	cs = append(cs, s.strong.Collectors()...)
	if s.mirrors != nil {
		cs = append(cs, s.mirrors.Collector())
	}
	if s.backups != nil {
		cs = append(cs, s.backups.Collector())
	}
	for _, c := range cs {
		if err := s.metrics.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// metricsHandler serves the registry in the Prometheus text format (the
// API checks who may see it; see httpapi's metrics.go).
func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}, Registry: s.metrics.reg})
}

// slogPrinter sends promhttp's errors to the node's log.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics: gathering failed", "err", v) }

// Metrics returns the node's registry, what /metrics serves (for an
// embedding program that gathers it itself, and for tests).
func (s *Server) Metrics() prometheus.Gatherer { return s.metrics.reg }
