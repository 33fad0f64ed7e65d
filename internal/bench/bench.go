// Package bench is the load generator behind `cairn bench`: the same workload
// (key space, value size, read ratio, clients, pipelining, rate) driven over
// the HTTP API or the Redis protocol, so cairn and Redis itself can be
// measured in one run with one tool. It reports throughput and latency
// percentiles per operation type.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one benchmark run.
type Config struct {
	// Protocol is "http" or "resp".
	Protocol string
	// Endpoints are base URLs (http) or host:port addresses (resp); clients
	// are spread over them round-robin.
	Endpoints []string
	Clients   int
	// Conns is the number of connections shared by the clients (http) or per
	// endpoint (resp); 0 means one per client.
	Conns    int
	Total    int64
	Duration time.Duration
	KeySize  int
	ValSize  int
	KeySpace int
	// ReadRatio is the fraction of operations that are reads (0..1).
	ReadRatio float64
	// Consistency is "linearizable" or "serializable" for reads.
	Consistency string
	// Pipeline is how many commands a RESP client sends before reading replies.
	Pipeline int
	// Rate caps total operations per second (0: as fast as possible).
	Rate float64
	// Password authenticates RESP connections (AUTH), when set.
	Password string
	// Timeout bounds each request.
	Timeout time.Duration
	// KeyPrefix is prepended to every key.
	KeyPrefix string
	// Sequential walks the key space in order (to load every key once)
	// instead of picking keys at random.
	Sequential bool
}

// Validate checks a Config and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	switch c.Protocol {
	case "http", "resp":
	default:
		errs = append(errs, fmt.Errorf("bench: --protocol must be http or resp, not %q", c.Protocol))
	}
	if len(c.Endpoints) == 0 {
		errs = append(errs, errors.New("bench: no endpoints"))
	}
	if c.Clients < 1 {
		errs = append(errs, errors.New("bench: --clients must be at least 1"))
	}
	if c.Total <= 0 && c.Duration <= 0 {
		errs = append(errs, errors.New("bench: give --total or --duration"))
	}
	if c.KeySize < 1 || c.KeySize > 4096 {
		errs = append(errs, errors.New("bench: --key-size must be 1..4096"))
	}
	if c.ValSize < 0 || c.ValSize > 64<<20 {
		errs = append(errs, errors.New("bench: --val-size must be 0..64MiB"))
	}
	if c.KeySpace < 1 {
		errs = append(errs, errors.New("bench: --key-space must be at least 1"))
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		errs = append(errs, errors.New("bench: --read-ratio must be within 0..1"))
	}
	switch c.Consistency {
	case "", "linearizable", "serializable":
	default:
		errs = append(errs, fmt.Errorf("bench: --consistency must be linearizable or serializable, not %q", c.Consistency))
	}
	if c.Pipeline < 0 {
		errs = append(errs, errors.New("bench: --pipeline must be positive"))
	}
	if c.Pipeline > 1 && c.Protocol == "http" {
		errs = append(errs, errors.New("bench: --pipeline applies to --protocol resp only"))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("bench: --rate must not be negative"))
	}
	if c.Pipeline == 0 {
		c.Pipeline = 1
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Consistency == "" {
		c.Consistency = "linearizable"
	}
	return errors.Join(errs...)
}

// Stats summarize one operation type (or all of them). In JSON the
// latencies are float milliseconds named with their unit (p50_ms …), so a
// script need not guess; see MarshalJSON.
type Stats struct {
	Ops    int64
	Errors int64
	P50    time.Duration
	P90    time.Duration
	P99    time.Duration
	P999   time.Duration
	Max    time.Duration
	// PerSec is successful operations per second over the whole run.
	PerSec float64
}

// statsJSON is the wire form of Stats: every duration in milliseconds.
type statsJSON struct {
	Ops    int64   `json:"ops"`
	Errors int64   `json:"errors"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	P999   float64 `json:"p999_ms"`
	Max    float64 `json:"max_ms"`
	PerSec float64 `json:"per_sec"`
}

// millis is d in milliseconds, to the nanosecond.
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fromMillis is the inverse of millis, rounded to the nanosecond.
func fromMillis(ms float64) time.Duration {
	return time.Duration(math.Round(ms * float64(time.Millisecond)))
}

// MarshalJSON writes the durations as float milliseconds (p50_ms …).
func (s Stats) MarshalJSON() ([]byte, error) {
	return json.Marshal(statsJSON{Ops: s.Ops, Errors: s.Errors, P50: millis(s.P50), P90: millis(s.P90), P99: millis(s.P99),
		P999: millis(s.P999), Max: millis(s.Max), PerSec: s.PerSec})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Stats) UnmarshalJSON(b []byte) error {
	var j statsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Stats{Ops: j.Ops, Errors: j.Errors, P50: fromMillis(j.P50), P90: fromMillis(j.P90), P99: fromMillis(j.P99),
		P999: fromMillis(j.P999), Max: fromMillis(j.Max), PerSec: j.PerSec}
	return nil
}

// Result is the outcome of a run. In JSON, Elapsed is elapsed_ms (float
// milliseconds), like the latencies of Stats.
type Result struct {
	Protocol string
	Clients  int
	Pipeline int
	Elapsed  time.Duration
	All      Stats
	ByOp     map[string]*Stats
	// FirstError is the first error seen, for the report.
	FirstError string
}

type resultJSON struct {
	Protocol   string            `json:"protocol"`
	Clients    int               `json:"clients"`
	Pipeline   int               `json:"pipeline"`
	Elapsed    float64           `json:"elapsed_ms"`
	All        Stats             `json:"all"`
	ByOp       map[string]*Stats `json:"by_op"`
	FirstError string            `json:"first_error,omitempty"`
}

// MarshalJSON writes Elapsed as elapsed_ms.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultJSON{Protocol: r.Protocol, Clients: r.Clients, Pipeline: r.Pipeline, Elapsed: millis(r.Elapsed),
		All: r.All, ByOp: r.ByOp, FirstError: r.FirstError})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Result) UnmarshalJSON(b []byte) error {
	var j resultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Result{Protocol: j.Protocol, Clients: j.Clients, Pipeline: j.Pipeline, Elapsed: fromMillis(j.Elapsed),
		All: j.All, ByOp: j.ByOp, FirstError: j.FirstError}
	return nil
}

// op is one request of the workload.
type op struct {
	read  bool
	key   string
	value []byte
}

// driver sends batches of ops (a batch is one op unless pipelining) and
// returns one error per op.
type driver interface {
	do(ctx context.Context, ops []op) []error
	close()
}

// Run executes the benchmark; progress, when set, is called with the number
// of operations completed so far, about ten times a second.
func Run(ctx context.Context, c Config, progress func(done int64)) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	value := make([]byte, c.ValSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	drivers := make([]driver, c.Clients)
	var transport *http.Transport
	if c.Protocol == "http" {
		transport = newTransport(c)
		defer transport.CloseIdleConnections()
	}
	for i := range drivers {
		var err error
		switch c.Protocol {
		case "http":
			drivers[i], err = newHTTPDriver(c, transport, i)
		default:
			drivers[i], err = newRESPDriver(ctx, c, i)
		}
		if err != nil {
			for _, d := range drivers[:i] {
				d.close()
			}
			return nil, err
		}
	}
	defer func() {
		for _, d := range drivers {
			d.close()
		}
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.Duration > 0 {
		runCtx, cancel = context.WithTimeout(runCtx, c.Duration)
		defer cancel()
	}
	var issued, done, seq atomic.Int64
	type sample struct {
		read bool
		d    time.Duration
		err  bool
	}
	perClient := make([][]sample, c.Clients)
	var firstErr atomic.Value
	var interval time.Duration
	if c.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(c.Clients) / c.Rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < c.Clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i)+1, uint64(start.UnixNano())))
			batch := make([]op, 0, c.Pipeline)
			next := time.Now()
			for runCtx.Err() == nil {
				n := int64(c.Pipeline)
				if c.Total > 0 {
					if got := issued.Add(n); got > c.Total {
						n -= got - c.Total
						if n <= 0 {
							return
						}
					}
				}
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-runCtx.Done():
							return
						}
					}
					next = next.Add(interval * time.Duration(n))
				}
				batch = batch[:0]
				for j := int64(0); j < n; j++ {
					n := rng.IntN(c.KeySpace)
					if c.Sequential {
						n = int((seq.Add(1) - 1) % int64(c.KeySpace))
					}
					k := c.KeyPrefix + keyOf(n, c.KeySize)
					batch = append(batch, op{read: rng.Float64() < c.ReadRatio, key: k, value: value})
				}
				t0 := time.Now()
				errs := drivers[i].do(runCtx, batch)
				d := time.Since(t0)
				if runCtx.Err() != nil && c.Total <= 0 {
					return // interrupted by the end of the run: not a sample
				}
				for j, o := range batch {
					failed := errs[j] != nil
					if failed && firstErr.Load() == nil {
						firstErr.Store(errs[j].Error())
					}
					perClient[i] = append(perClient[i], sample{read: o.read, d: d, err: failed})
				}
				done.Add(int64(len(batch)))
			}
		}(i)
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					progress(done.Load())
				case <-stopProgress:
					progress(done.Load())
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	pwg.Wait()

	res := &Result{Protocol: c.Protocol, Clients: c.Clients, Pipeline: c.Pipeline, Elapsed: elapsed, ByOp: map[string]*Stats{}}
	var all, reads, writes []time.Duration
	var allErr, readErr, writeErr int64
	for _, ss := range perClient {
		for _, s := range ss {
			if s.err {
				allErr++
				if s.read {
					readErr++
				} else {
					writeErr++
				}
				continue
			}
			all = append(all, s.d)
			if s.read {
				reads = append(reads, s.d)
			} else {
				writes = append(writes, s.d)
			}
		}
	}
	res.All = summarize(all, allErr, elapsed)
	if len(reads) > 0 || readErr > 0 {
		res.ByOp["get"] = ptr(summarize(reads, readErr, elapsed))
	}
	if len(writes) > 0 || writeErr > 0 {
		res.ByOp["put"] = ptr(summarize(writes, writeErr, elapsed))
	}
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	return res, nil
}

func ptr[T any](v T) *T { return &v }

func summarize(ds []time.Duration, errs int64, elapsed time.Duration) Stats {
	s := Stats{Ops: int64(len(ds)), Errors: errs}
	if len(ds) == 0 {
		return s
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	s.P50, s.P90, s.P99, s.P999, s.Max = q(0.50), q(0.90), q(0.99), q(0.999), ds[len(ds)-1]
	s.PerSec = float64(len(ds)) / elapsed.Seconds()
	return s
}

// keyOf renders key number n as exactly size bytes (zero-padded decimal,
// truncated from the left when size is small).
func keyOf(n, size int) string {
	s := strconv.Itoa(n)
	if len(s) >= size {
		return s[len(s)-size:]
	}
	b := make([]byte, size)
	for i := range b[:size-len(s)] {
		b[i] = '0'
	}
	copy(b[size-len(s):], s)
	return string(b)
}
