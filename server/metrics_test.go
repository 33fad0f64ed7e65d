package server_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/test/cluster"
)

// scrape GETs /metrics from a node and parses it.
func scrape(t *testing.T, addr string, hdr ...string) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(t, "GET", "http://"+addr+"/metrics", "", hdr...)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("GET /metrics: Content-Type %q, want the Prometheus text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	return fams
}

// sample is the value of the family's sample whose labels include want
// (NaN when there is none).
func sample(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return math.NaN()
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			if !slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == want[i] && l.GetValue() == want[i+1] }) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	return math.NaN()
}

// TestMetrics drives HTTP and RESP traffic through a 3-node cluster and
// checks what Prometheus would scrape from each node: every family the
// operator's alerts and dashboard use, with values that match what
// happened, and no naming problem the Prometheus linter knows.
func TestMetrics(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	leader := c.WaitLeader(10 * time.Second)
	f := (leader + 1) % 3
	u := "http://" + c.Nodes[f].ClientAddr
	for i := range 5 {
		if r := do(t, "PUT", u+"/v1/kv/m/"+string(rune('a'+i)), "v"); r.status != 200 {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
	}
	if r := do(t, "GET", u+"/v1/kv/m/nope", ""); r.status != 404 {
		t.Fatalf("get of a missing key: %d", r.status)
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.Nodes[f].RESPAddr})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "m/r", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Get(ctx, "m/r").Err(); err != nil {
		t.Fatal(err)
	}
	_ = rdb.Do(ctx, "nosuchcommand").Err()

	for i := range c.Nodes {
		fams := scrape(t, c.Nodes[i].ClientAddr)
		for _, name := range []string{
			"go_goroutines", "process_resident_memory_bytes",
			"cairn_raft_term", "cairn_raft_commit_index", "cairn_raft_applied_index", "cairn_raft_is_leader",
			"cairn_raft_leader_changes_total", "cairn_raft_log_fsync_duration_seconds", "cairn_raft_proposal_batch_size",
			"cairn_raft_snapshot_duration_seconds", "cairn_raft_snapshot_size_bytes",
			"cairn_store_disk_usage_bytes", "cairn_store_compactions_total",
			"cairn_eventual_members", "cairn_eventual_read_repairs_total", "cairn_eventual_anti_entropy_rounds_total",
			"cairn_eventual_anti_entropy_keys_total", "cairn_eventual_outbox_keys",
			"cairn_materialize_publishes_total", "cairn_materialize_hook_runs_total", "cairn_materialize_hook_failures_total",
			"cairn_http_requests_refused_total",
			"cairn_http_watch_streams_open", "cairn_http_connections_open", "cairn_resp_commands_refused_total",
			"cairn_resp_connections_open", "cairn_resp_watch_streams_open", "cairn_client_connections_refused_total",
		} {
			if fams[name] == nil {
				t.Errorf("node %d: no %s in /metrics", i, name)
			}
		}
		wantLeader := 0.0
		if i == leader {
			wantLeader = 1
		}
		if v := sample(fams, "cairn_raft_is_leader"); v != wantLeader {
			t.Errorf("node %d: cairn_raft_is_leader = %v, want %v (leader is %d)", i, v, wantLeader, leader)
		}
		if v := sample(fams, "cairn_raft_term"); !(v >= 1) {
			t.Errorf("node %d: cairn_raft_term = %v", i, v)
		}
		if v := sample(fams, "cairn_raft_applied_index"); !(v >= 5) {
			t.Errorf("node %d: cairn_raft_applied_index = %v after 6 writes", i, v)
		}
		if v := sample(fams, "cairn_raft_leader_changes_total"); !(v >= 1) {
			t.Errorf("node %d: cairn_raft_leader_changes_total = %v, want at least the first leader", i, v)
		}
		if v := sample(fams, "cairn_eventual_members", "health", "self"); v != 1 {
			t.Errorf("node %d: cairn_eventual_members{health=self} = %v", i, v)
		}
		if v := sample(fams, "cairn_store_disk_usage_bytes", "db", "state"); !(v > 0) {
			t.Errorf("node %d: state database size %v", i, v)
		}
		if v := sample(fams, "cairn_raft_log_fsync_duration_seconds"); !(v > 0) {
			t.Errorf("node %d: no Raft log fsync timed", i)
		}
	}
	fams := scrape(t, c.Nodes[f].ClientAddr)
	if v := sample(fams, "cairn_http_requests_total", "route", "kv", "method", "PUT", "code", "2xx"); v != 5 {
		t.Errorf("cairn_http_requests_total{route=kv,method=PUT,code=2xx} = %v, want 5", v)
	}
	if v := sample(fams, "cairn_http_requests_total", "route", "kv", "method", "GET", "code", "4xx"); v != 1 {
		t.Errorf("cairn_http_requests_total{route=kv,method=GET,code=4xx} = %v, want 1", v)
	}
	if v := sample(fams, "cairn_http_request_duration_seconds", "route", "kv", "method", "PUT"); v != 5 {
		t.Errorf("cairn_http_request_duration_seconds{route=kv,method=PUT} count = %v, want 5", v)
	}
	if h := fams["cairn_http_request_duration_seconds"].GetMetric()[0].GetHistogram(); len(h.GetBucket()) < 5 {
		t.Errorf("latency histogram has %d buckets", len(h.GetBucket()))
	}
	for _, x := range []struct {
		cmd, outcome string
	}{{"set", "ok"}, {"get", "ok"}, {"unknown", "error"}} {
		if v := sample(fams, "cairn_resp_commands_total", "command", x.cmd, "outcome", x.outcome); v != 1 {
			t.Errorf("cairn_resp_commands_total{command=%s,outcome=%s} = %v, want 1", x.cmd, x.outcome, v)
		}
	}
	if v := sample(fams, "cairn_resp_command_duration_seconds", "command", "set"); v != 1 {
		t.Errorf("cairn_resp_command_duration_seconds{command=set} count = %v, want 1", v)
	}
	if v := sample(fams, "cairn_resp_connections_open"); v < 1 {
		t.Errorf("cairn_resp_connections_open = %v with a client connected", v)
	}
	if leaderFams := scrape(t, c.Nodes[leader].ClientAddr); !(sample(leaderFams, "cairn_raft_proposal_batch_size") >= 1) {
		t.Error("the leader timed no proposal round")
	}

	problems, err := testutil.GatherAndLint(c.Nodes[f].S.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "cairn_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestMetricsAccess checks that /metrics follows the admin API's rules once
// ACL rules are in force: an anonymous client must authenticate (401), an
// identity without the metrics action is refused (403), and an admin or an
// identity a rule gives the metrics action is served.
func TestMetricsAccess(t *testing.T) {
	users := []auth.User{}
	for _, u := range []string{"admin", "prom", "reader"} {
		hash, err := auth.HashPassword(u + "pw")
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, auth.User{Name: u, PasswordHash: hash})
	}
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.Auth.Users = users
		cfg.Auth.Rules = []auth.Rule{
			{Identity: "admin", Actions: []string{"read", "write", "admin"}},
			{Identity: "prom", Actions: []string{"metrics"}},
			{Identity: ".*", Keys: "public/", Actions: []string{"read"}},
			{Identity: "reader", Actions: []string{"read"}},
		}
	}})
	u := "http://" + c.Nodes[0].ClientAddr + "/metrics"
	for _, x := range []struct {
		who  string
		hdr  []string
		want int
	}{
		{"anonymous", nil, http.StatusUnauthorized},
		{"reader", []string{"Authorization", basicAuth("reader", "readerpw")}, http.StatusForbidden},
		{"wrong password", []string{"Authorization", basicAuth("prom", "nope")}, http.StatusUnauthorized},
		{"prom (metrics action)", []string{"Authorization", basicAuth("prom", "prompw")}, http.StatusOK},
		{"admin", []string{"Authorization", basicAuth("admin", "adminpw")}, http.StatusOK},
	} {
		r := do(t, "GET", u, "", x.hdr...)
		if r.status != x.want {
			t.Errorf("%s: GET /metrics = %d, want %d (%s)", x.who, r.status, x.want, r.body)
		}
		if x.want == http.StatusOK && !strings.Contains(r.body, "# TYPE cairn_raft_term gauge") {
			t.Errorf("%s: /metrics body has no cairn_raft_term", x.who)
		}
	}
	// The metrics action grants nothing else.
	if r := do(t, "GET", "http://"+c.Nodes[0].ClientAddr+"/v1/kv/x", "", "Authorization", basicAuth("prom", "prompw")); r.status != http.StatusForbidden {
		t.Errorf("prom reading a key: %d, want 403", r.status)
	}
	// An embedder may gather after Close: the closed databases are skipped.
	srv := c.Nodes[0].S
	c.Stop(0)
	if _, err := srv.Metrics().Gather(); err != nil {
		t.Errorf("gather after Close: %v", err)
	}
}

// metricName matches the cairn metric names an expression uses.
var metricName = regexp.MustCompile(`\bcairn_[a-z0-9_]+`)

// definedMetrics are the cairn metric names the source defines (a string
// literal "cairn_…"), with the series names a histogram adds.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	lit := regexp.MustCompile(`"(cairn_[a-z0-9_]+)"`)
	for _, dir := range []string{"../internal", "."} {
		err := walkGo(dir, func(b []byte) {
			for _, m := range lit.FindAllSubmatch(b, -1) {
				n := string(m[1])
				out[n] = true
				if strings.HasSuffix(n, "_seconds") || strings.HasSuffix(n, "_bytes") || strings.HasSuffix(n, "_size") {
					out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func walkGo(dir string, fn func([]byte)) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := dir + "/" + e.Name()
		switch {
		case e.IsDir():
			if err := walkGo(p, fn); err != nil {
				return err
			}
		case strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go"):
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fn(b)
		}
	}
	return nil
}

// TestAlertsAndDashboard checks deploy/prometheus/alerts.yaml (promtool is
// not at hand: it is parsed here) and deploy/grafana/cairn.json: the alerts
// are the ones docs/OPERATIONS.md explains, and every cairn metric their
// expressions name is one a live node serves, or one the source defines
// that appears only once its feature runs (mirrors, hints for a down owner).
func TestAlertsAndDashboard(t *testing.T) {
	c := cluster.New(t, 1, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.BackupTarget = "file://" + t.TempDir()
		cfg.BackupInterval = time.Hour
	}})
	if r := do(t, "PUT", "http://"+c.Nodes[0].ClientAddr+"/v1/kv/a", "v"); r.status != 200 {
		t.Fatalf("put: %d %s", r.status, r.body)
	}
	served := map[string]bool{}
	for name, f := range scrape(t, c.Nodes[0].ClientAddr) {
		served[name] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			served[name+"_bucket"], served[name+"_sum"], served[name+"_count"] = true, true, true
		}
	}
	for _, n := range []string{"cairn_backup_last_success_timestamp_seconds", "cairn_backup_interval_seconds", "cairn_backup_last_success"} {
		if !served[n] {
			t.Errorf("a node with --backup-target serves no %s", n)
		}
	}
	defined := definedMetrics(t)
	check := func(where, expr string) {
		t.Helper()
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no cairn metric", where, expr)
		}
		for _, n := range names {
			if !served[n] && !defined[n] {
				t.Errorf("%s: %s is not a cairn metric (expr %q)", where, n, expr)
			}
		}
	}

	b, err := os.ReadFile("../deploy/prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			check("alert "+r.Alert, r.Expr)
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s needs a severity label, a summary and a description", r.Alert)
			}
		}
	}
	want := []string{"CairnNoLeader", "CairnMemberDown", "CairnHintsGrowing", "CairnBackupStale", "CairnMirrorBehind"}
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}

	b, err = os.ReadFile("../deploy/grafana/cairn.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("cairn.json: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			if strings.HasPrefix(tg.Expr, "go_") || strings.HasPrefix(tg.Expr, "process_") || strings.Contains(tg.Expr, "(process_") {
				continue
			}
			check("panel "+p.Title, tg.Expr)
		}
	}
	if exprs < 20 {
		t.Errorf("the dashboard has %d queries", exprs)
	}
}
