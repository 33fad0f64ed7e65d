package harness

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// fakeEventual is three nodes that speak the HTTP contract of eventual keys
// (keyspaces, PUT and DELETE with their versions, local reads, the ring)
// over one toy store per node: a write reaches every node its coordinator
// is not cut off from, and with repair on a background exchange between
// connected nodes (anti-entropy, every 50 ms) copies the greater version.
// It is the harness's own test double, not a model of the engine.
type fakeEventual struct {
	Cluster // methods the eventual run does not call panic
	names   []string
	srv     []*httptest.Server
	repair  bool

	mu       sync.Mutex
	data     []map[string]fakeRec
	cut      map[[2]int]bool
	policies map[string]int // prefix -> write quorum
	last     string         // the last stamp issued
	logical  int
	stop     chan struct{}
}

type fakeRec struct {
	value   string
	version model.Version
	deleted bool
	expires time.Time
}

func newFakeEventual(t *testing.T, repair bool) *fakeEventual {
	f := &fakeEventual{repair: repair, cut: map[[2]int]bool{}, policies: map[string]int{}, stop: make(chan struct{})}
	for i := 0; i < 3; i++ {
		f.names = append(f.names, fmt.Sprintf("n%d", i+1))
		f.data = append(f.data, map[string]fakeRec{})
		f.srv = append(f.srv, httptest.NewServer(f.handler(i)))
	}
	go f.antiEntropy()
	t.Cleanup(func() {
		close(f.stop)
		for _, s := range f.srv {
			s.Close()
		}
	})
	return f
}

func (f *fakeEventual) Describe() string { return "fake" }
func (f *fakeEventual) Size() int        { return 3 }
func (f *fakeEventual) Slots() int       { return 3 }
func (f *fakeEventual) Node(i int) Node {
	return Node{Name: f.names[i], ClientURL: f.srv[i].URL, Member: true, Running: true, Incarnation: 1}
}
func (f *fakeEventual) Live() []int                        { return []int{0, 1, 2} }
func (f *fakeEventual) Targets() []int                     { return []int{0, 1, 2} }
func (f *fakeEventual) WaitReady(int, time.Duration) error { return nil }
func (f *fakeEventual) Drain() (notes, crashes []string)   { return nil, nil }
func (f *fakeEventual) Can(a Action) (string, bool) {
	if a == ActLinks {
		return "the fake's link table", true
	}
	return "not in the fake", false
}
func (f *fakeEventual) Resume(int) error    { return nil }
func (f *fakeEventual) Start(int) error     { return nil }
func (f *fakeEventual) Reconnect(int) error { return nil }

func (f *fakeEventual) Partition(group ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.names {
		for j := range f.names {
			if slices.Contains(group, i) != slices.Contains(group, j) {
				f.cut[[2]int{i, j}] = true
			}
		}
	}
}

func (f *fakeEventual) Heal() {
	f.mu.Lock()
	clear(f.cut)
	f.mu.Unlock()
}

func (f *fakeEventual) antiEntropy() {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		if !f.repair {
			continue
		}
		f.mu.Lock()
		for i := range f.data {
			for j := range f.data {
				if i == j || f.cut[[2]int{i, j}] {
					continue
				}
				for k, r := range f.data[i] {
					if o, ok := f.data[j][k]; !ok || o.version.Compare(r.version) < 0 {
						f.data[j][k] = r
					}
				}
			}
		}
		f.mu.Unlock()
	}
}

func fakeError(w http.ResponseWriter, status int, code string) {
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q}}`, code)
}

func (f *fakeEventual) handler(i int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/keyspaces/", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		wq, ok := f.policies[strings.TrimPrefix(r.URL.Path, "/v1/keyspaces/")]
		f.mu.Unlock()
		if !ok {
			fakeError(w, http.StatusNotFound, "not_found")
			return
		}
		fmt.Fprintf(w, `{"mode":"eventual","write_quorum":%d}`, wq)
	})
	mux.HandleFunc("PUT /v1/keyspaces/", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Mode        string `json:"mode"`
			WriteQuorum int    `json:"write_quorum"`
		}
		if json.NewDecoder(r.Body).Decode(&p) != nil || p.Mode != "eventual" {
			fakeError(w, http.StatusBadRequest, "invalid_argument")
			return
		}
		f.mu.Lock()
		f.policies[strings.TrimPrefix(r.URL.Path, "/v1/keyspaces/")] = p.WriteQuorum
		f.mu.Unlock()
		fmt.Fprint(w, `{}`)
	})
	mux.HandleFunc("GET /v1/ring", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"key": r.URL.Query().Get("key"), "preference": f.names})
	})
	write := func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		var ttl time.Duration
		if v := r.URL.Query().Get("ttl"); v != "" {
			ttl, _ = time.ParseDuration(v)
		}
		var value strings.Builder
		if r.Body != nil {
			b := make([]byte, 256)
			n, _ := r.Body.Read(b)
			value.Write(b[:n])
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		wq := 1
		for p, q := range f.policies {
			if strings.HasPrefix(key, p) {
				wq = q
			}
		}
		now := time.Now().UTC()
		ts := now.Format(stampLayout)
		if ts == f.last {
			f.logical++
		} else {
			f.last, f.logical = ts, 0
		}
		rec := fakeRec{value: value.String(), version: model.Version{Timestamp: fmt.Sprintf("%s-%05d", ts, f.logical), Origin: f.names[i]},
			deleted: r.Method == http.MethodDelete}
		if ttl > 0 {
			rec.expires = now.Add(ttl)
		}
		acks := 0
		for j := range f.data {
			if j == i || !f.cut[[2]int{i, j}] {
				if o, ok := f.data[j][key]; !ok || o.version.Compare(rec.version) < 0 {
					f.data[j][key] = rec
				}
				acks++
			}
		}
		if acks < wq {
			fakeError(w, http.StatusServiceUnavailable, "unavailable")
			return
		}
		w.Header().Set("X-Cairn-Timestamp", rec.version.Timestamp)
		w.Header().Set("X-Cairn-Origin", rec.version.Origin)
		if rec.deleted {
			fmt.Fprintf(w, `{"deleted":1,"timestamp":%q,"acks":%d,"replicas":3}`, rec.version.Timestamp, acks)
			return
		}
		fmt.Fprintf(w, `{"timestamp":%q,"acks":%d,"replicas":3}`, rec.version.Timestamp, acks)
	}
	mux.HandleFunc("PUT /v1/kv/", write)
	mux.HandleFunc("DELETE /v1/kv/", write)
	mux.HandleFunc("GET /v1/kv/", func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
		f.mu.Lock()
		rec, ok := f.data[i][key]
		f.mu.Unlock()
		if !ok || rec.deleted || (!rec.expires.IsZero() && !time.Now().Before(rec.expires)) {
			fakeError(w, http.StatusNotFound, "key_not_found")
			return
		}
		w.Header().Set("X-Cairn-Timestamp", rec.version.Timestamp)
		w.Header().Set("X-Cairn-Origin", rec.version.Origin)
		fmt.Fprint(w, rec.value)
	})
	return mux
}

func fakeConfig(t *testing.T, name string) EventualConfig {
	return EventualConfig{
		Config: Config{Name: name, Workload: Workload{Clients: 4, Keys: 3, Rate: 400, Prefix: "r1/", Seed: 1},
			Gap: 100 * time.Millisecond, Hold: 400 * time.Millisecond, OutDir: t.TempDir(), Logf: t.Logf},
		TTL: 150 * time.Millisecond, AntiEntropy: 100 * time.Millisecond, Margin: 300 * time.Millisecond,
	}
}

func TestEventualRunConverges(t *testing.T) {
	t.Parallel()
	f := newFakeEventual(t, true)
	res := RunEventual(f, fakeConfig(t, "fake, converging"))
	t.Log("\n" + res.Report)
	if !res.OK() {
		t.Fatalf("a converging fake failed: %v", res.Failures)
	}
	if res.ConvergedAfter < 0 || res.Convergence.Keys != 6 || res.Convergence.Replicas != 18 {
		t.Fatalf("converged after %s, %d keys on %d replicas", res.ConvergedAfter, res.Convergence.Keys, res.Convergence.Replicas)
	}
	for _, want := range []string{"on fake", "ev/ (N=3 W=1 R=1), evq/ (N=3 W=2 R=1)", "partition-minority", "converged", "verdict: PASS"} {
		if !strings.Contains(res.Report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	var failed, ttl int
	for _, w := range res.Writes {
		if w.Outcome == model.WriteFailed {
			failed++
		}
		if !w.Expires.IsZero() {
			ttl++
		}
	}
	if failed == 0 || ttl == 0 {
		t.Errorf("%d writes answered 503 and %d had a TTL: the W=2 keyspace under a partition, or the TTL puts, were not exercised", failed, ttl)
	}
	// A second run on the same cluster finds the keyspaces in place.
	cfg := fakeConfig(t, "fake, again")
	cfg.Prefix, cfg.Final = "r2/", []string{"none"}
	if res := RunEventual(f, cfg); !res.OK() {
		t.Fatalf("second run: %v", res.Failures)
	}
}

func TestEventualRunCatchesDivergence(t *testing.T) {
	t.Parallel()
	cfg := fakeConfig(t, "fake, no repair")
	cfg.Final = []string{FaultPartitionMinority}
	res := CheckerCatchesDivergence(t, newFakeEventual(t, false), t.TempDir(), cfg)
	if res.OK() || !strings.Contains(res.Report, "NOT converged") || !strings.Contains(res.Report, "replicas differ") {
		t.Fatalf("the report does not say the replicas diverged:\n%s", res.Report)
	}
}

func TestStampTime(t *testing.T) {
	at, err := stampTime("2025-03-01T12:00:00.250Z-00003")
	if err != nil || !at.Equal(time.Date(2025, 3, 1, 12, 0, 0, 250e6, time.UTC)) {
		t.Fatalf("%v %v", at, err)
	}
	for _, bad := range []string{"", "2025-03-01T12:00:00.250Z", "x-1"} {
		if _, err := stampTime(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestEventualKeys(t *testing.T) {
	cfg := EventualConfig{Config: Config{Workload: Workload{Keys: 2, Prefix: "r1/"}}, Keyspaces: DefaultEventualKeyspaces}
	if got := strings.Join(cfg.Keys(), " "); got != "ev/r1/k0 ev/r1/k1 evq/r1/k0 evq/r1/k1" {
		t.Fatal(got)
	}
}
