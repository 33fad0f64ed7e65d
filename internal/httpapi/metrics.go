package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/internal/reqmetrics"
	"github.com/cairnkv/cairn/kv"
)

// MetricsChecker is what /metrics asks about access when ACL rules are in
// force; *kv.Service implements it. An Options.Admin that does not implement
// it lets admins only.
type MetricsChecker interface {
	CheckMetrics(ctx context.Context) error
}

var _ MetricsChecker = (*kv.Service)(nil)

// metrics serves the Prometheus metrics (Options.Metrics) under the same
// identity and ACL rules as the admin API: open while no rules are in force,
// otherwise to admins and to identities a rule gives the metrics action.
func (a *api) metrics(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.mayScrape(r.Context()); err != nil {
			a.fail(w, r, err)
			return
		}
		h.ServeHTTP(w, r)
	}
}

func (a *api) mayScrape(ctx context.Context) error {
	if a.authn == nil || !a.authn.AuthRequired() {
		return nil
	}
	if c, ok := a.admin.(MetricsChecker); ok {
		return c.CheckMetrics(ctx)
	}
	if a.admin != nil {
		return a.admin.CheckAdmin(ctx)
	}
	return fmt.Errorf("%w: no access check for the metrics on this server", kv.ErrPermissionDenied)
}

// The routes and methods requests are counted by; anything else is "other".
var (
	metricRoutes = []struct{ name, prefix string }{
		{"kv", kvPrefix}, {"txn", "/v1/txn"}, {"watch", watchPrefix}, {"keyspaces", "/v1/keyspaces"},
		{"ring", "/v1/ring"}, {"cluster", "/v1/cluster/"}, {"snapshot", "/v1/snapshot"}, {"auth", "/v1/auth/"},
		{"repose", "/powerapi/"}, {"metrics", "/metrics"}, {"health", "/healthz"}, {"health", "/readyz"},
		{"ui", "/ui"}, {"debug", "/debug/"},
	}
	metricMethods = []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch, "other"}
)

// requestMetrics are the HTTP API's metrics: requests by route, method and
// status class with their latencies, refusals over the in-flight bound and
// open watch streams. The request path touches only atomics.
type requestMetrics struct {
	set     *reqmetrics.Set
	routes  []string            // distinct route names, "other" last
	ops     [][]*reqmetrics.Op  // [route index][method index]
	routeOf map[string]int      // route name -> index
	refused atomic.Uint64       // 429 answers
	watches atomic.Int64        // open watch streams
	descs   [2]*prometheus.Desc // refused, watches
}

func newRequestMetrics() *requestMetrics {
	m := &requestMetrics{routeOf: map[string]int{}, set: reqmetrics.NewSet(reqmetrics.Opts{
		Total:        "cairn_http_requests_total",
		TotalHelp:    "HTTP API requests answered, by route, method and status class.",
		Duration:     "cairn_http_request_duration_seconds",
		DurationHelp: "Time to answer an HTTP API request (a watch stream: how long it was open), by route and method.",
		Labels:       []string{"route", "method"},
		OutcomeLabel: "code",
		Outcomes:     []string{"1xx", "2xx", "3xx", "4xx", "5xx"},
	})}
	for _, r := range metricRoutes {
		if _, ok := m.routeOf[r.name]; !ok {
			m.routeOf[r.name] = len(m.routes)
			m.routes = append(m.routes, r.name)
		}
	}
	m.routes = append(m.routes, "other")
	for _, route := range m.routes {
		ops := make([]*reqmetrics.Op, len(metricMethods))
		for i, method := range metricMethods {
			ops[i] = m.set.Op(route, method)
		}
		m.ops = append(m.ops, ops)
	}
	m.descs[0] = prometheus.NewDesc("cairn_http_requests_refused_total", "HTTP requests answered 429 because the node was serving max-inflight-requests already.", nil, nil)
	m.descs[1] = prometheus.NewDesc("cairn_http_watch_streams_open", "Watch streams (/v1/watch/) open on this node.", nil, nil)
	return m
}

// op returns the Op of r: a few prefix comparisons, no lock.
func (m *requestMetrics) op(r *http.Request) *reqmetrics.Op {
	route := len(m.routes) - 1
	p := r.URL.Path
	for _, mr := range metricRoutes {
		if strings.HasPrefix(p, mr.prefix) {
			route = m.routeOf[mr.name]
			break
		}
	}
	method := len(metricMethods) - 1
	for i, x := range metricMethods[:len(metricMethods)-1] {
		if r.Method == x {
			method = i
			break
		}
	}
	return m.ops[route][method]
}

// done counts a request that started at start and was answered through sw.
func (m *requestMetrics) done(r *http.Request, sw *statusWriter, start time.Time) {
	code := sw.status
	if code == 0 {
		code = http.StatusOK // nothing written: net/http answers 200
	}
	class := min(max(code/100-1, 0), 4)
	m.op(r).Observe(class, time.Since(start))
}

// refuse counts a 429; a nil requestMetrics counts nothing.
func (m *requestMetrics) refuse() {
	if m != nil {
		m.refused.Add(1)
	}
}

// watchOpened counts a watch stream open until the returned func is called.
func (m *requestMetrics) watchOpened() func() {
	if m == nil {
		return func() {}
	}
	m.watches.Add(1)
	return func() { m.watches.Add(-1) }
}

// Describe implements prometheus.Collector (unchecked: see reqmetrics.Set).
func (m *requestMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *requestMetrics) Collect(ch chan<- prometheus.Metric) {
	m.set.Collect(ch)
	ch <- prometheus.MustNewConstMetric(m.descs[0], prometheus.CounterValue, float64(m.refused.Load()))
	ch <- prometheus.MustNewConstMetric(m.descs[1], prometheus.GaugeValue, float64(m.watches.Load()))
}

// statusWriter remembers the status code of a response. Unwrap lets
// http.ResponseController reach the connection (flushes and deadlines of
// watch streams and snapshots).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets code that asserts http.Flusher keep working.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // a Flusher cannot report errors
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
