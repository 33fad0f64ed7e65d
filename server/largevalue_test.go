package server_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// heapSampler records the peak of the process's live heap while it runs.
type heapSampler struct {
	base, peak uint64
	stop, done chan struct{}
}

func sampleHeap() *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapSampler{base: ms.HeapAlloc, peak: ms.HeapAlloc, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				h.peak = max(h.peak, ms.HeapAlloc)
			}
		}
	}()
	return h
}

// end stops sampling and returns the peak growth and, after a GC, what the
// heap still holds over the base, in MiB.
func (h *heapSampler) end() (peak, retained float64) {
	close(h.stop)
	<-h.done
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mib := func(a, b uint64) float64 { return (float64(a) - float64(b)) / (1 << 20) }
	return mib(h.peak, h.base), mib(ms.HeapAlloc, h.base)
}

// largeValueTimeouts gives a test cluster that moves MiB-sized values the
// production Raft timeouts: with the test cluster's 300 ms, three nodes
// copying MiBs on two shared cores (more so under the race detector) miss
// their heartbeats and elect a new leader mid-write.
func largeValueTimeouts(cfg *config.Config) {
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Second, time.Second
	cfg.RequestTimeout = 10 * time.Second
}

// putRetrying puts body at url as a client does: an answer of 503
// (unavailable: a leader lost mid-write) is retried, a few times, since a
// put of a whole value may be repeated. The retries are logged; a node
// that answers anything else, or keeps answering 503, fails the test.
func putRetrying(t *testing.T, url string, body []byte) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		code, b := httpDo(t, http.MethodPut, url, body)
		if code == http.StatusOK {
			return
		}
		if code != http.StatusServiceUnavailable || attempt == 3 {
			t.Fatalf("put (attempt %d): %d %s", attempt, code, b)
		}
		t.Logf("put (attempt %d): %d %s; retrying", attempt, code, b)
		time.Sleep(time.Second)
	}
}

func httpDo(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// TestLargeValues puts a value of many MiB into a strong and an eventual key
// of a 3-node cluster with --max-value-bytes 64 MiB, through a follower's
// HTTP API, reads it back byte for byte from every node (a follower
// restarted after the write too), and reports the peak heap growth of the
// process (the three nodes and the test client share it). 8 MiB in the
// short suite and under the race detector (which makes three nodes on two
// cores copying 50 MiB miss their heartbeats); 50 MiB (the Debian package
// of the issue) otherwise.
func TestLargeValues(t *testing.T) {
	sizes := []int{8 << 20}
	if !testing.Short() && !raceEnabled {
		sizes = append(sizes, 50<<20)
	}
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.MaxValueBytes = config.MaxMaxValueBytes
		largeValueTimeouts(cfg)
	}})
	l := c.WaitLeader(5 * time.Second)
	if code, b := httpDo(t, http.MethodPut, "http://"+c.Nodes[l].ClientAddr+"/v1/keyspaces/ev/",
		[]byte(`{"mode":"eventual","replicas":3}`)); code != http.StatusOK {
		t.Fatalf("create the eventual keyspace: %d %s", code, b)
	}
	for _, size := range sizes {
		for _, key := range []string{"files/pkg.deb", "ev/pkg.deb"} {
			t.Run(fmt.Sprintf("%s/%dMiB", key, size>>20), func(t *testing.T) {
				val := make([]byte, size)
				_, _ = rand.Read(val)
				want := sha256.Sum256(val)
				f := c.Follower()
				h := sampleHeap()
				start := time.Now()
				// ?w=3: an eventual write is answered once every replica has
				// it, so each node's own copy can be read below. Even with
				// the production timeouts, three nodes copying 50 MiB on two
				// cores that other test packages share can keep a leader
				// from its followers' heartbeats past its lease (500 ms):
				// it steps down, and the put is answered 503 — so the put is
				// retried, as a client would.
				putRetrying(t, "http://"+c.Nodes[f].ClientAddr+"/v1/kv/"+key+"?w=3", val)
				took := time.Since(start)
				peak, retained := h.end()
				t.Logf("put %d MiB via a follower in %s: heap peak +%.0f MiB (%.1f copies per node), after GC +%.0f MiB",
					size>>20, took.Round(time.Millisecond), peak, peak/float64(size>>20)/3, retained)
				h = sampleHeap()
				var wg sync.WaitGroup
				for i := range c.Nodes {
					wg.Add(1)
					go func() {
						defer wg.Done()
						q := ""
						if strings.HasPrefix(key, "ev/") {
							q = "?consistency=local"
						}
						code, b := httpDo(t, http.MethodGet, "http://"+c.Nodes[i].ClientAddr+"/v1/kv/"+key+q, nil)
						if code != http.StatusOK || sha256.Sum256(b) != want {
							t.Errorf("node %d: %d, %d bytes, sha256 differs: %v", i, code, len(b), sha256.Sum256(b) != want)
						}
					}()
				}
				wg.Wait()
				peak, retained = h.end()
				t.Logf("3 GETs at once: heap peak +%.0f MiB, after GC +%.0f MiB", peak, retained)
			})
		}
	}
	t.Run("restarted follower", func(t *testing.T) {
		f := c.Follower()
		c.Stop(f)
		c.Start(f)
		c.WaitReady(30 * time.Second)
		for _, key := range []string{"files/pkg.deb", "ev/pkg.deb"} {
			code, b := httpDo(t, http.MethodGet, "http://"+c.Nodes[f].ClientAddr+"/v1/kv/"+key+"?consistency=local", nil)
			if code != http.StatusOK || len(b) != sizes[len(sizes)-1] {
				t.Errorf("%s after a restart: %d, %d bytes", key, code, len(b))
			}
		}
	})
}

// TestValueOverTheLimit: a value one byte over --max-value-bytes is a 413
// that names the limit, refused before anything is written.
func TestValueOverTheLimit(t *testing.T) {
	const limit = 4 << 20
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.MaxValueBytes = limit
		largeValueTimeouts(cfg)
	}})
	url := "http://" + c.Nodes[c.Follower()].ClientAddr + "/v1/kv/big"
	if code, b := httpDo(t, http.MethodPut, url, []byte("before")); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, b)
	}
	code, b := httpDo(t, http.MethodPut, url, make([]byte, limit+1))
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), fmt.Sprint(limit)) || !strings.Contains(string(b), "value_too_large") {
		t.Fatalf("over the limit: %d %s", code, b)
	}
	if code, b := httpDo(t, http.MethodGet, url, nil); code != http.StatusOK || string(b) != "before" {
		t.Fatalf("after the refused put: %d %q", code, b)
	}
	// At the limit exactly it is taken.
	if code, b := httpDo(t, http.MethodPut, url, make([]byte, limit)); code != http.StatusOK {
		t.Fatalf("at the limit: %d %s", code, b)
	}
}

// TestLargeValueInSnapshot: a follower that was down while a large value
// was written, and whose missing entries the leader compacted away, gets it
// with a snapshot install; a watch replayed there from the value's revision
// delivers it whole although the history does not store it.
func TestLargeValueInSnapshot(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.MaxValueBytes = config.MaxMaxValueBytes
		largeValueTimeouts(cfg)
		cfg.SnapshotEntries = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 200 * time.Millisecond
	}})
	l := c.WaitLeader(5 * time.Second)
	f := (l + 1) % 3
	mustPut(t, c.Svc(l), "first", "1")
	c.WaitConverged(10 * time.Second)
	behind := c.Raft(f).AppliedIndex()
	c.Stop(f)
	val := make([]byte, 8<<20)
	_, _ = rand.Read(val)
	rec, err := c.Svc(l).Put(ctx(t), "files/big", val, kv.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		mustPut(t, c.Svc(l), fmt.Sprintf("k%03d", i), "v")
	}
	waitCompacted(t, c, l, behind)
	c.Start(f)
	waitValue(t, c.Svc(f), "k199", "v")
	got, err := c.Svc(f).Get(ctx(t), "files/big", kv.ReadOptions{Serializable: true})
	if err != nil || !bytes.Equal(got.Value, val) {
		t.Fatalf("after the snapshot install: %v, equal %v", err, err == nil && bytes.Equal(got.Value, val))
	}
	seq, err := c.Svc(f).Watch(ctx(t), "files/", rec.ModRevision)
	if err != nil {
		t.Fatal(err)
	}
	for evs, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].ValueOmitted || !bytes.Equal(evs[0].Value, val) {
			t.Fatalf("replayed event: %d events, omitted %v, %d bytes", len(evs), evs[0].ValueOmitted, len(evs[0].Value))
		}
		break
	}
}

// TestLargeBatchIsSplit: a batch of transactions larger than one command
// may carry (a pipeline of large writes) is committed as several entries,
// in order, and a single transaction over it is refused as too large.
func TestLargeBatchIsSplit(t *testing.T) {
	const limit = 2 << 20 // one command: 2 × 2 MiB + 1 MiB
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.MaxValueBytes = limit
		largeValueTimeouts(cfg)
	}})
	svc := c.Svc(c.Follower())
	var txns []kv.Txn
	for i := range 6 { // 12 MiB in all
		v := bytes.Repeat([]byte{byte('a' + i)}, limit)
		txns = append(txns, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "batch/k", Value: v}}})
	}
	res, errs, err := svc.TxnBatch(ctx(t), txns)
	if err != nil {
		t.Fatal(err)
	}
	for i := range txns {
		if errs[i] != nil || res[i] == nil || i > 0 && res[i].Revision <= res[i-1].Revision {
			t.Fatalf("txn %d: %v, %+v", i, errs[i], res[i])
		}
	}
	got, err := svc.Get(ctx(t), "batch/k", kv.ReadOptions{})
	if err != nil || got.Value[0] != 'f' {
		t.Fatalf("after the batch: %v, %q", err, got.Value[:1])
	}
	// Three values of the limit in one transaction: over one command.
	var ops []kv.Op
	for i := range 3 {
		ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Sprintf("batch/t%d", i), Value: make([]byte, limit)})
	}
	if _, err := svc.Txn(ctx(t), kv.Txn{Success: ops}); !errors.Is(err, kv.ErrValueTooLarge) {
		t.Fatalf("a transaction over one command: %v, want ErrValueTooLarge", err)
	}
}
