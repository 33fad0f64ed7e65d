package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairnkv/cairn/test/model"
)

// Workload shapes the clients of a run.
type Workload struct {
	Clients int
	Keys    int
	// Rate is the total operations per second of all clients (0: as fast as
	// they go).
	Rate float64
	// Prefix goes before every key ("chaos/r1/" gives chaos/r1/k0…).
	Prefix string
	Seed   uint64
	// Timeout bounds each request (default 3 s); a write that runs out of it
	// has an unknown outcome.
	Timeout time.Duration
	// Watchers follow Prefix through the run from its first revision,
	// resuming on another node whenever a stream breaks (watch.go); 0: none.
	Watchers int
}

// Key is the workload's i-th key.
func (w Workload) Key(i int) string { return fmt.Sprintf("%sk%d", w.Prefix, i) }

// recorder collects the history of a run.
type recorder struct {
	start     time.Time
	mu        sync.Mutex
	ops       []*model.Op
	anomalies []string // answers that break the API contract on their own
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(op *model.Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

func (r *recorder) anomaly(format string, args ...any) {
	r.mu.Lock()
	r.anomalies = append(r.anomalies, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// known is what one client last saw of a key; conditional writes use it.
type known struct {
	found bool
	value string // "" when not known
	rev   int64
}

type client struct {
	id    int
	c     Cluster
	w     Workload
	rec   *recorder
	rng   *rand.Rand
	hc    *http.Client
	known map[string]known
	seq   int
	resp  map[int]*redis.Client // per node, made on first use
}

// runClients starts w.Clients clients; they stop when ctx is done, and the
// returned function waits for them.
func runClients(ctx context.Context, c Cluster, w Workload, rec *recorder) (wait func()) {
	if w.Timeout <= 0 {
		w.Timeout = 3 * time.Second
	}
	var wg sync.WaitGroup
	for i := 0; i < w.Clients; i++ {
		cl := &client{id: i, c: c, w: w, rec: rec, rng: rand.New(rand.NewPCG(w.Seed, uint64(i)+1)),
			hc:    &http.Client{Timeout: w.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
			known: map[string]known{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.hc.CloseIdleConnections()
			defer func() {
				for _, rc := range cl.resp {
					rc.Close()
				}
			}()
			cl.run(ctx)
		}()
	}
	return wg.Wait
}

func (cl *client) run(ctx context.Context) {
	var interval time.Duration
	if cl.w.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(cl.w.Clients) / cl.w.Rate)
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
		key := cl.w.Key(cl.rng.IntN(cl.w.Keys))
		var op *model.Op
		switch p := cl.rng.IntN(100); {
		case p < 15:
			op = cl.respOp(node, key)
		case p < 30:
			op = cl.get(node, key)
		case p < 40:
			// Serializable reads stay on one node per client: only there must
			// they never go back in time.
			home := cl.id % cl.c.Size()
			if !cl.c.Node(home).Running {
				continue
			}
			op = cl.serialGet(home, key)
		case p < 56:
			op = cl.put(node, key)
		case p < 68:
			op = cl.cas(node, key)
		case p < 76:
			op = cl.delete(node, key)
		case p < 86:
			op = cl.txnPut(node, key)
		case p < 92:
			op = cl.txnSwap(node, key)
		default:
			if k := cl.known[key]; k.found && k.value != "" {
				op = cl.txnDelete(node, key, k.value)
			} else {
				op = cl.txnPut(node, key)
			}
		}
		if op == nil {
			continue
		}
		cl.learn(op)
		cl.rec.add(op)
		switch op.Outcome {
		case model.Unknown:
			// Each unknown write stays open to the end of the history and
			// widens the checker's search; do not pile them up while the
			// cluster is unavailable.
			sleep(ctx, time.Duration(150+cl.rng.IntN(200))*time.Millisecond)
		case model.Error:
			sleep(ctx, time.Duration(20+cl.rng.IntN(50))*time.Millisecond)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// learn remembers what op showed about its key.
func (cl *client) learn(op *model.Op) {
	switch {
	case op.Outcome == model.Unknown || op.Outcome == model.Error:
		delete(cl.known, op.Key)
	case op.Kind == model.KindPut || (op.Kind == model.KindCAS && op.Outcome == model.OK):
		cl.known[op.Key] = known{found: true, value: op.Value, rev: op.Rev}
	case op.Kind == model.KindCAS:
		cl.known[op.Key] = known{found: op.Rev != 0, rev: op.Rev}
	case op.Kind == model.KindRespGet || op.Kind == model.KindRespSet:
		cl.known[op.Key] = known{found: op.Found || op.Kind == model.KindRespSet, value: op.Got + op.Value}
	case op.Kind == model.KindDelete || op.Kind == model.KindRespDel || (op.Kind == model.KindTxnDelete && op.Outcome == model.OK):
		cl.known[op.Key] = known{}
	default:
		cl.known[op.Key] = known{found: op.Found, value: op.Got, rev: op.Rev}
	}
}

func (cl *client) nextValue() string {
	cl.seq++
	return fmt.Sprintf("c%d-%d", cl.id, cl.seq)
}

// answer is one HTTP exchange.
type answer struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// errorCode is the "code" of a JSON error body, and its "revision".
func (a answer) errorCode() (string, int64) {
	var e struct {
		Error struct {
			Code     string `json:"code"`
			Revision int64  `json:"revision"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code, e.Error.Revision
}

// errorMessage is the "message" of a JSON error body, cut to 300 bytes.
func (a answer) errorMessage() string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	if m := e.Error.Message; len(m) > 300 {
		return m[:300] + "…"
	}
	return e.Error.Message
}

// notSent reports whether the request never left: the connection was
// refused, so the server cannot have acted on it.
func (a answer) notSent() bool {
	var oe *net.OpError
	return errors.As(a.err, &oe) && oe.Op == "dial"
}

func (cl *client) do(node int, method, path string, body []byte, hdr map[string]string) answer {
	req, err := http.NewRequest(method, cl.c.Node(node).ClientURL+path, bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (cl *client) begin(node int, kind model.Kind, key string) *model.Op {
	return &model.Op{Client: cl.id, Node: cl.c.Node(node).Name, Kind: kind, Key: key, Call: cl.rec.now()}
}

// settle classifies an answer that is not a success: reads that fail are
// errors (no effect); writes that may have reached the server are unknown.
func (cl *client) settle(op *model.Op, a answer) *model.Op {
	op.Return = cl.rec.now()
	switch {
	case a.err != nil:
		op.Err = a.err.Error()
	default:
		code, _ := a.errorCode()
		op.Err = fmt.Sprintf("%d %s", a.status, code)
		if a.status/100 == 4 {
			// The request itself was wrong: a harness or API bug, not a fault.
			cl.rec.anomaly("%s: unexpected answer %d %s", op, a.status, bytes.TrimSpace(a.body))
			op.Outcome = model.Error
			return op
		}
	}
	if op.IsWrite() && !a.notSent() {
		op.Outcome = model.Unknown
	} else {
		op.Outcome = model.Error
	}
	return op
}

func keyPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

func (cl *client) get(node int, key string) *model.Op {
	op := cl.begin(node, model.KindGet, key)
	return cl.read(op, node, keyPath(key))
}

func (cl *client) serialGet(node int, key string) *model.Op {
	op := cl.begin(node, model.KindSerialGet, key)
	op.Incarnation = cl.c.Node(node).Incarnation
	return cl.read(op, node, keyPath(key)+"?consistency=serializable")
}

func (cl *client) read(op *model.Op, node int, path string) *model.Op {
	a := cl.do(node, http.MethodGet, path, nil, nil)
	if a.err == nil && a.status == http.StatusNotFound {
		if code, _ := a.errorCode(); code == "key_not_found" {
			op.Return = cl.rec.now()
			return op
		}
	}
	if a.err != nil || a.status != http.StatusOK {
		return cl.settle(op, a)
	}
	op.Return = cl.rec.now()
	op.Found, op.Got = true, string(a.body)
	op.Rev, _ = strconv.ParseInt(a.header.Get("X-Cairn-Revision"), 10, 64)
	op.Ver, _ = strconv.ParseInt(a.header.Get("X-Cairn-Version"), 10, 64)
	op.Stale = a.header.Get("X-Cairn-Stale") == "true"
	if op.Rev <= 0 || op.Ver <= 0 {
		cl.rec.anomaly("%s: no revision or version headers", op)
	}
	return op
}

func (cl *client) put(node int, key string) *model.Op {
	op := cl.begin(node, model.KindPut, key)
	op.Value = cl.nextValue()
	return cl.write(op, node, nil)
}

func (cl *client) cas(node int, key string) *model.Op {
	op := cl.begin(node, model.KindCAS, key)
	op.Value, op.Match = cl.nextValue(), cl.known[key].rev
	return cl.write(op, node, map[string]string{"If-Match": fmt.Sprintf(`"%d"`, op.Match)})
}

func (cl *client) write(op *model.Op, node int, hdr map[string]string) *model.Op {
	a := cl.do(node, http.MethodPut, keyPath(op.Key), []byte(op.Value), hdr)
	if a.err == nil && a.status == http.StatusPreconditionFailed && op.Kind == model.KindCAS {
		op.Return = cl.rec.now()
		op.Outcome = model.Failed
		_, op.Rev = a.errorCode()
		return op
	}
	if a.err != nil || a.status != http.StatusOK {
		return cl.settle(op, a)
	}
	op.Return = cl.rec.now()
	var out struct {
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil || out.Revision <= 0 {
		cl.rec.anomaly("%s: bad answer %q", op, a.body)
	}
	op.Rev, op.ClusterRev = out.Revision, out.Revision
	return op
}

func (cl *client) delete(node int, key string) *model.Op {
	op := cl.begin(node, model.KindDelete, key)
	a := cl.do(node, http.MethodDelete, keyPath(key), nil, nil)
	if a.err != nil || a.status != http.StatusOK {
		return cl.settle(op, a)
	}
	op.Return = cl.rec.now()
	var out struct {
		Deleted  int64 `json:"deleted"`
		Revision int64 `json:"revision"`
	}
	if err := json.Unmarshal(a.body, &out); err != nil {
		cl.rec.anomaly("%s: bad answer %q", op, a.body)
	}
	op.Deleted, op.ClusterRev = out.Deleted, out.Revision
	return op
}

type txnCompare struct {
	Key    string `json:"key"`
	Target string `json:"target"`
	Op     string `json:"op"`
	Value  string `json:"value,omitempty"`
	Number *int64 `json:"number,omitempty"`
	Exists *bool  `json:"exists,omitempty"`
}

type txnOp struct {
	Op    string `json:"op"`
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

type txnRequest struct {
	Compare []txnCompare `json:"compare"`
	Success []txnOp      `json:"success"`
	Failure []txnOp      `json:"failure"`
}

type txnResponse struct {
	Succeeded bool  `json:"succeeded"`
	Revision  int64 `json:"revision"`
	Results   []struct {
		Op      string      `json:"op"`
		Key     string      `json:"key"`
		Item    *model.Item `json:"item"`
		Deleted int64       `json:"deleted"`
	} `json:"results"`
}

func (cl *client) txnPut(node int, key string) *model.Op {
	op := cl.begin(node, model.KindTxnPut, key)
	op.Value, op.Match = cl.nextValue(), cl.known[key].rev
	req := txnRequest{
		Compare: []txnCompare{{Key: key, Target: "mod_revision", Op: "=", Number: &op.Match}},
		Success: []txnOp{{Op: "put", Key: key, Value: op.Value}, {Op: "get", Key: key}},
		Failure: []txnOp{{Op: "get", Key: key}},
	}
	return cl.txnPutLike(op, node, req)
}

// txnPutLike sends a txn whose success branch is a put and a get of the
// key and whose failure branch a get, and reads its answer into op.
func (cl *client) txnPutLike(op *model.Op, node int, req txnRequest) *model.Op {
	res, ok := cl.txn(op, node, req)
	if !ok {
		return op
	}
	last := len(res.Results) - 1
	if want := map[bool]int{true: 2, false: 1}[res.Succeeded]; len(res.Results) != want {
		cl.rec.anomaly("%s: %d results, want %d", op, len(res.Results), want)
		op.Outcome = model.Unknown
		return op
	}
	if it := res.Results[last].Item; it != nil {
		op.Found, op.Got, op.Rev, op.Ver = true, string(it.Value), it.ModRevision, it.Version
	}
	if res.Succeeded {
		op.Outcome = model.OK
		if put := res.Results[0].Item; put == nil || put.ModRevision != res.Revision || op.Rev != res.Revision {
			cl.rec.anomaly("%s: put item %+v and get %d disagree with the txn revision %d", op, put, op.Rev, res.Revision)
		}
	} else {
		op.Outcome = model.Failed
	}
	return op
}

// txnSwap is a compare-and-swap on the value the client last saw (create
// if absent when it saw none): "if value = v then put w, get; else get".
func (cl *client) txnSwap(node int, key string) *model.Op {
	op := cl.begin(node, model.KindTxnSwap, key)
	op.Value = cl.nextValue()
	if k := cl.known[key]; k.found {
		op.MatchValue = k.value
	}
	cmp := txnCompare{Key: key, Target: "value", Op: "=", Value: op.MatchValue}
	if op.MatchValue == "" {
		absent := false
		cmp = txnCompare{Key: key, Target: "exists", Op: "=", Exists: &absent}
	}
	req := txnRequest{
		Compare: []txnCompare{cmp},
		Success: []txnOp{{Op: "put", Key: key, Value: op.Value}, {Op: "get", Key: key}},
		Failure: []txnOp{{Op: "get", Key: key}},
	}
	return cl.txnPutLike(op, node, req)
}

func (cl *client) txnDelete(node int, key, value string) *model.Op {
	op := cl.begin(node, model.KindTxnDelete, key)
	op.MatchValue = value
	req := txnRequest{
		Compare: []txnCompare{{Key: key, Target: "value", Op: "=", Value: value}},
		Success: []txnOp{{Op: "delete", Key: key}},
		Failure: []txnOp{{Op: "get", Key: key}},
	}
	res, ok := cl.txn(op, node, req)
	if !ok {
		return op
	}
	if len(res.Results) != 1 {
		cl.rec.anomaly("%s: %d results, want 1", op, len(res.Results))
		op.Outcome = model.Unknown
		return op
	}
	if res.Succeeded {
		op.Outcome, op.Deleted = model.OK, res.Results[0].Deleted
	} else if it := res.Results[0].Item; it != nil {
		op.Outcome, op.Found, op.Got, op.Rev, op.Ver = model.Failed, true, string(it.Value), it.ModRevision, it.Version
	} else {
		op.Outcome = model.Failed
	}
	return op
}

// txn posts a transaction; ok is false when op is already settled (an
// error, or an answer that cannot be read).
func (cl *client) txn(op *model.Op, node int, req txnRequest) (*txnResponse, bool) {
	body, _ := json.Marshal(req)
	a := cl.do(node, http.MethodPost, "/v1/txn", body, map[string]string{"Content-Type": "application/json"})
	if a.err != nil || a.status != http.StatusOK {
		cl.settle(op, a)
		return nil, false
	}
	op.Return = cl.rec.now()
	var res txnResponse
	if err := json.Unmarshal(a.body, &res); err != nil {
		cl.rec.anomaly("%s: bad answer %q", op, a.body)
		op.Outcome = model.Unknown
		return nil, false
	}
	op.ClusterRev = res.Revision
	return &res, true
}

// respOp is a GET, SET or DEL through the node's Redis-protocol port. A
// write that fails after its connection was made has an unknown outcome; a
// read that fails, or a write whose dial was refused, is an error.
func (cl *client) respOp(node int, key string) *model.Op {
	rc := cl.resp[node]
	if rc == nil {
		if cl.resp == nil {
			cl.resp = map[int]*redis.Client{}
		}
		rc = redis.NewClient(&redis.Options{Addr: cl.c.Node(node).RESPAddr, Protocol: 2, MaxRetries: -1, PoolSize: 1,
			DialTimeout: time.Second, ReadTimeout: cl.w.Timeout, WriteTimeout: cl.w.Timeout, DisableIdentity: true})
		cl.resp[node] = rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), cl.w.Timeout)
	defer cancel()
	var op *model.Op
	var err error
	switch p := cl.rng.IntN(10); {
	case p < 4:
		op = cl.begin(node, model.KindRespGet, key)
		var v string
		v, err = rc.Get(ctx, key).Result()
		if err == nil {
			op.Found, op.Got = true, v
		} else if errors.Is(err, redis.Nil) {
			err = nil
		}
	case p < 8:
		op = cl.begin(node, model.KindRespSet, key)
		op.Value = cl.nextValue()
		err = rc.Set(ctx, key, op.Value, 0).Err()
	default:
		op = cl.begin(node, model.KindRespDel, key)
		op.Deleted, err = rc.Del(ctx, key).Result()
	}
	op.Return = cl.rec.now()
	if err != nil {
		op.Err = err.Error()
		op.Outcome = model.Error
		if op.IsWrite() && !(answer{err: err}).notSent() {
			op.Outcome = model.Unknown
		}
		op.Found, op.Got, op.Deleted = false, "", 0
	}
	return op
}

// quietRedis drops go-redis's own log lines (refused dials while a node is
// down are expected here and are counted in the report).
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }
