package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// evClient is one client of an eventual run: puts (some with a TTL),
// deletes and reads of random keys of every keyspace, each through a random
// node (paused ones included: a paused node is a fault clients live with).
type evClient struct {
	id   int
	c    Cluster
	cfg  EventualConfig
	rec  *recorder
	hist *evHistory
	rng  *rand.Rand
	hc   *http.Client
	seq  int
}

// runEventualClients starts cfg.Clients clients; they stop when ctx is
// done, and the returned function waits for them (and their requests).
func runEventualClients(ctx context.Context, c Cluster, cfg EventualConfig, rec *recorder, hist *evHistory) (wait func()) {
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		cl := &evClient{id: i, c: c, cfg: cfg, rec: rec, hist: hist, rng: rand.New(rand.NewPCG(cfg.Seed, uint64(i)+0x65760000)),
			hc: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.hc.CloseIdleConnections()
			cl.run(ctx)
		}()
	}
	return wg.Wait
}

func (cl *evClient) run(ctx context.Context) {
	var interval time.Duration
	if cl.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cl.cfg.Clients) / cl.cfg.Rate)
	}
	next := time.Now()
	for ctx.Err() == nil {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				sleep(ctx, d)
			} else if d < -time.Second {
				next = time.Now()
			}
		}
		targets := cl.c.Targets()
		if len(targets) == 0 {
			sleep(ctx, 50*time.Millisecond)
			continue
		}
		node := targets[cl.rng.IntN(len(targets))]
		ks := cl.cfg.Keyspaces[cl.rng.IntN(len(cl.cfg.Keyspaces))]
		key := ks.Prefix + cl.cfg.Workload.Key(cl.rng.IntN(cl.cfg.Workload.Keys))
		var w *model.Write
		switch p := cl.rng.IntN(100); {
		case p < 40:
			w = cl.put(node, ks, key, 0)
		case p < 55:
			w = cl.put(node, ks, key, cl.cfg.TTL)
		case p < 75:
			w = cl.delete(node, ks, key)
		default:
			cl.read(node, key)
		}
		if w == nil {
			continue
		}
		cl.hist.mu.Lock()
		cl.hist.writes = append(cl.hist.writes, *w)
		cl.hist.mu.Unlock()
		if w.Outcome != model.WriteAcked {
			// Back off a little while a node or a quorum is away.
			sleep(ctx, time.Duration(50+cl.rng.IntN(100))*time.Millisecond)
		}
	}
}

func (cl *evClient) begin(node int, key string) *model.Write {
	return &model.Write{Key: key, Client: cl.id, Node: cl.c.Node(node).Name, Call: time.Duration(cl.rec.now())}
}

// eventualAnswer is the body of a successful eventual write.
type eventualAnswer struct {
	Timestamp string `json:"timestamp"`
	Acks      int    `json:"acks"`
	Replicas  int    `json:"replicas"`
	Deleted   *int64 `json:"deleted"`
}

func (cl *evClient) put(node int, ks EventualKeyspace, key string, ttl time.Duration) *model.Write {
	w := cl.begin(node, key)
	cl.seq++
	w.Value = fmt.Sprintf("e%d-%d", cl.id, cl.seq)
	u := cl.c.Node(node).ClientURL + keyPath(key)
	if ttl > 0 {
		u += "?ttl=" + url.QueryEscape(ttl.String())
	}
	sent := time.Now()
	a := httpDo(cl.hc, http.MethodPut, u, []byte(w.Value))
	cl.settle(w, ks, a, false)
	if ttl > 0 {
		// An acknowledged put expires at its stamp's time plus the TTL (the
		// coordinator sets the absolute expiry when it stamps the write);
		// another one no earlier than when it was sent plus the TTL.
		w.Expires = sent.Add(ttl)
		if w.Outcome == model.WriteAcked {
			if at, err := stampTime(w.Version.Timestamp); err == nil {
				w.Expires = at.Add(ttl)
			}
		}
	}
	return w
}

func (cl *evClient) delete(node int, ks EventualKeyspace, key string) *model.Write {
	w := cl.begin(node, key)
	w.Delete = true
	a := httpDo(cl.hc, http.MethodDelete, cl.c.Node(node).ClientURL+keyPath(key), nil)
	cl.settle(w, ks, a, true)
	return w
}

// settle reads the answer to a write into w: 200 with the version
// (acknowledged), 503 (failed: fewer than W acks, may have landed), no
// answer (unknown; refused when the connection was never made), a 4xx (a
// harness or API bug: refused, and an anomaly).
func (cl *evClient) settle(w *model.Write, ks EventualKeyspace, a answer, del bool) {
	w.Return = time.Duration(cl.rec.now())
	switch {
	case a.err != nil:
		w.Err = a.err.Error()
		w.Outcome = model.WriteUnknown
		if a.notSent() {
			w.Outcome = model.WriteRefused
		}
		return
	case a.status == http.StatusServiceUnavailable:
		code, _ := a.errorCode()
		w.Outcome, w.Err = model.WriteFailed, "503 "+code
		if m := a.errorMessage(); m != "" {
			w.Err += ": " + m
		}
		return
	case a.status/100 == 4:
		w.Outcome, w.Err = model.WriteRefused, fmt.Sprintf("%d %s", a.status, strings.TrimSpace(string(a.body)))
		cl.rec.anomaly("%s: unexpected answer %s", w.Describe(), w.Err)
		return
	case a.status != http.StatusOK:
		code, _ := a.errorCode()
		w.Outcome, w.Err = model.WriteUnknown, fmt.Sprintf("%d %s", a.status, code)
		return
	}
	var out eventualAnswer
	if err := json.Unmarshal(a.body, &out); err != nil || out.Timestamp == "" {
		// Without its version the write cannot be checked as acknowledged.
		w.Outcome, w.Err = model.WriteUnknown, "answer without a timestamp"
		var strong struct {
			Revision *int64 `json:"revision"`
		}
		if json.Unmarshal(a.body, &strong) == nil && strong.Revision != nil {
			cl.rec.anomaly("%s: answered as for a strong key, with revision %d and no timestamp (%s)",
				w.Describe(), *strong.Revision, strings.TrimSpace(string(a.body)))
			return
		}
		cl.rec.anomaly("%s: answer %q has no timestamp", w.Describe(), a.body)
		return
	}
	w.Outcome = model.WriteAcked
	w.Version = model.Version{Timestamp: out.Timestamp, Origin: a.header.Get("X-Cairn-Origin")}
	if w.Version.Origin == "" {
		// The node the request went to coordinated it.
		w.Version.Origin = w.Node
	}
	if h := a.header.Get("X-Cairn-Timestamp"); h != out.Timestamp {
		cl.rec.anomaly("%s: X-Cairn-Timestamp %q, body timestamp %q", w.Describe(), h, out.Timestamp)
	}
	if _, err := stampTime(out.Timestamp); err != nil {
		cl.rec.anomaly("%s: %v", w.Describe(), err)
	}
	// Replicas 0 is "all": as many as there are members when it was written.
	if out.Acks < ks.WriteQuorum || (ks.Replicas != 0 && out.Replicas != ks.Replicas) || out.Replicas < 1 || out.Acks > out.Replicas {
		cl.rec.anomaly("%s: answered with %d acks of %d replicas, but the keyspace %s needs %d of %d",
			w.Describe(), out.Acks, out.Replicas, ks.Prefix, ks.WriteQuorum, ks.Replicas)
	}
	if del && out.Deleted == nil {
		cl.rec.anomaly("%s: answer %q has no \"deleted\"", w.Describe(), a.body)
	}
}

// read is a read through a node at the keyspace's read quorum; its
// answer must be a value written to the key, at its write's version. It
// also gives read repair something to do.
func (cl *evClient) read(node int, key string) {
	r := model.EventualRead{Key: key, Node: cl.c.Node(node).Name, Call: time.Duration(cl.rec.now())}
	a := httpDo(cl.hc, http.MethodGet, cl.c.Node(node).ClientURL+keyPath(key), nil)
	rep, err := replicaOf(a)
	cl.hist.mu.Lock()
	defer cl.hist.mu.Unlock()
	if err != "" {
		cl.hist.readErrors++
		return
	}
	r.Found, r.Value, r.Version = rep.Present, rep.Value, rep.Version
	cl.hist.reads = append(cl.hist.reads, r)
}

// replicaOf reads the answer to a GET of an eventual key: 200 with the
// value and its version, or 404 key_not_found; anything else is an error
// (returned as text).
func replicaOf(a answer) (model.Replica, string) {
	switch {
	case a.err != nil:
		return model.Replica{}, a.err.Error()
	case a.status == http.StatusNotFound:
		if code, _ := a.errorCode(); code != "key_not_found" {
			return model.Replica{}, fmt.Sprintf("404 %s", strings.TrimSpace(string(a.body)))
		}
		return model.Replica{}, ""
	case a.status != http.StatusOK:
		code, _ := a.errorCode()
		return model.Replica{}, fmt.Sprintf("%d %s", a.status, code)
	}
	r := model.Replica{Present: true, Value: string(a.body),
		Version: model.Version{Timestamp: a.header.Get("X-Cairn-Timestamp"), Origin: a.header.Get("X-Cairn-Origin")}}
	if r.Version.Timestamp == "" || r.Version.Origin == "" {
		return model.Replica{}, fmt.Sprintf("200 without its version (X-Cairn-Timestamp %q, X-Cairn-Origin %q)", r.Version.Timestamp, r.Version.Origin)
	}
	return r, ""
}

// stampLayout is the physical part of an HLC stamp's text form
// ("2025-03-01T12:00:00.250Z-00003").
const stampLayout = "2006-01-02T15:04:05.000Z"

// stampTime is the wall-clock time of a stamp.
func stampTime(ts string) (time.Time, error) {
	i := strings.LastIndexByte(ts, '-')
	if i < 0 {
		return time.Time{}, fmt.Errorf("harness: %q is not a timestamp", ts)
	}
	t, err := time.Parse(stampLayout, ts[:i])
	if err != nil {
		return time.Time{}, fmt.Errorf("harness: %q is not a timestamp: %w", ts, err)
	}
	return t, nil
}

// finalReader reads what each replica of a key holds: the key's preference
// list from GET /v1/ring?key=K on a node that is a member now (asked again
// on every poll, so that no list from before a membership change is
// used), then GET ?consistency=local on every node of it. Local reads
// repair nothing, so the polls do not help the replicas converge.
type finalReader struct {
	c     Cluster
	rec   *recorder
	hc    *http.Client
	prefs map[string][]string
}

func newFinalReader(c Cluster, rec *recorder) *finalReader {
	return &finalReader{c: c, rec: rec, hc: &http.Client{Timeout: 2 * time.Second}, prefs: map[string][]string{}}
}

// read reads every key's replicas, keys in parallel.
func (fr *finalReader) read(keys []string) []model.KeyState {
	clear(fr.prefs)
	out := make([]model.KeyState, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		pref, err := fr.preference(k, i)
		if err != nil {
			out[i] = model.KeyState{Key: k, ReadAt: time.Now(), Replicas: []model.Replica{{Node: "?", Err: err.Error()}}}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = fr.readKey(k, pref)
		}()
	}
	wg.Wait()
	return out
}

func (fr *finalReader) preference(key string, n int) ([]string, error) {
	if p, ok := fr.prefs[key]; ok {
		return p, nil
	}
	live := fr.c.Live()
	if len(live) == 0 {
		return nil, fmt.Errorf("no live node to ask where %s lives", key)
	}
	var last error
	for k := range live {
		node := fr.c.Node(live[(n+k)%len(live)])
		a := httpDo(fr.hc, http.MethodGet, node.ClientURL+"/v1/ring?key="+url.QueryEscape(key), nil)
		if a.err != nil || a.status != http.StatusOK {
			last = fmt.Errorf("GET /v1/ring?key=%s on %s: %d %s %v", key, node.Name, a.status, strings.TrimSpace(string(a.body)), a.err)
			continue
		}
		var info struct {
			Mode       string   `json:"mode"`
			Preference []string `json:"preference"`
		}
		if err := json.Unmarshal(a.body, &info); err != nil || len(info.Preference) == 0 {
			last = fmt.Errorf("GET /v1/ring?key=%s on %s: no preference list in %s", key, node.Name, strings.TrimSpace(string(a.body)))
			continue
		}
		fr.prefs[key] = info.Preference
		return info.Preference, nil
	}
	return nil, last
}

func (fr *finalReader) readKey(key string, pref []string) model.KeyState {
	ks := model.KeyState{Key: key, ReadAt: time.Now()}
	for _, name := range pref {
		slot := -1
		for i := 0; i < fr.c.Slots(); i++ {
			if fr.c.Node(i).Name == name {
				slot = i
			}
		}
		if slot < 0 {
			ks.Replicas = append(ks.Replicas, model.Replica{Node: name, Err: "not a node of this cluster"})
			continue
		}
		a := httpDo(fr.hc, http.MethodGet, fr.c.Node(slot).ClientURL+keyPath(key)+"?consistency=local", nil)
		r, err := replicaOf(a)
		r.Node, r.Err = name, err
		ks.Replicas = append(ks.Replicas, r)
	}
	return ks
}
