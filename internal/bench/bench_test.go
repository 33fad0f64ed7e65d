package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHTTPRunCountsOpsAndErrors(t *testing.T) {
	var puts, gets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/kv/") {
			t.Errorf("path %s", r.URL.Path)
		}
		switch r.Method {
		case http.MethodPut:
			if puts.Add(1)%10 == 0 {
				http.Error(w, "no", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(`{"revision":1}`))
		case http.MethodGet:
			gets.Add(1)
			if r.URL.Query().Get("consistency") != "serializable" {
				t.Errorf("consistency not passed: %s", r.URL.RawQuery)
			}
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Protocol: "http", Endpoints: []string{srv.URL}, Clients: 4, Total: 400,
		KeySize: 8, ValSize: 16, KeySpace: 100, ReadRatio: 0.5, Consistency: "serializable"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.All.Ops + res.All.Errors; got != 400 {
		t.Fatalf("%d ops recorded, want 400", got)
	}
	if res.All.Errors != puts.Load()/10 || res.ByOp["get"].Errors != 0 {
		t.Fatalf("errors %d (puts %d), get errors %d", res.All.Errors, puts.Load(), res.ByOp["get"].Errors)
	}
	if res.All.P50 <= 0 || res.All.Max < res.All.P99 || res.FirstError == "" {
		t.Fatalf("stats %+v", res.All)
	}
}

// fakeRESP answers SET with +OK and GET with a nil bulk, counting commands.
func fakeRESP(t *testing.T, n *atomic.Int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, w := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if !strings.HasPrefix(line, "*") {
						return
					}
					var args []string
					cnt := int(line[1] - '0')
					for i := 0; i < cnt; i++ {
						r.ReadString('\n')
						a, _ := r.ReadString('\n')
						args = append(args, strings.TrimSpace(a))
					}
					n.Add(1)
					if args[0] == "GET" {
						w.WriteString("$-1\r\n")
					} else {
						w.WriteString("+OK\r\n")
					}
					if r.Buffered() == 0 {
						w.Flush()
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRESPPipelinedRun(t *testing.T) {
	var n atomic.Int64
	addr := fakeRESP(t, &n)
	res, err := Run(context.Background(), Config{Protocol: "resp", Endpoints: []string{addr}, Clients: 3, Total: 480,
		KeySize: 8, ValSize: 32, KeySpace: 1000, ReadRatio: 0.25, Pipeline: 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.All.Ops != 480 || res.All.Errors != 0 || n.Load() != 480 {
		t.Fatalf("ops %d errors %d served %d", res.All.Ops, res.All.Errors, n.Load())
	}
}

func TestDurationAndRate(t *testing.T) {
	var n atomic.Int64
	addr := fakeRESP(t, &n)
	var last atomic.Int64
	res, err := Run(context.Background(), Config{Protocol: "resp", Endpoints: []string{addr}, Clients: 2, Duration: 500 * time.Millisecond,
		KeySize: 4, ValSize: 4, KeySpace: 10, Rate: 200}, func(done int64) { last.Store(done) })
	if err != nil {
		t.Fatal(err)
	}
	// 200/s for 0.5 s: about 100 operations, never thousands.
	if res.All.Ops < 40 || res.All.Ops > 160 {
		t.Fatalf("%d ops at 200/s for 0.5 s", res.All.Ops)
	}
	if last.Load() != res.All.Ops+res.All.Errors {
		t.Fatalf("progress ended at %d, ops %d", last.Load(), res.All.Ops)
	}
}

func TestValidate(t *testing.T) {
	bad := []Config{
		{Protocol: "grpc", Endpoints: []string{"x"}, Clients: 1, Total: 1, KeySize: 1, KeySpace: 1},
		{Protocol: "http", Clients: 1, Total: 1, KeySize: 1, KeySpace: 1},
		{Protocol: "http", Endpoints: []string{"http://x"}, Clients: 0, Total: 1, KeySize: 1, KeySpace: 1},
		{Protocol: "http", Endpoints: []string{"http://x"}, Clients: 1, KeySize: 1, KeySpace: 1},
		{Protocol: "http", Endpoints: []string{"http://x"}, Clients: 1, Total: 1, KeySize: 1, KeySpace: 1, Pipeline: 4},
		{Protocol: "resp", Endpoints: []string{"x"}, Clients: 1, Total: 1, KeySize: 1, KeySpace: 1, ReadRatio: 2},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("case %d validated", i)
		}
	}
	if keyOf(42, 8) != "00000042" || keyOf(123456, 3) != "456" {
		t.Fatal("keyOf")
	}
}

// TestRESPReconnects: a server that drops every connection after ten
// commands costs one error per drop, not every operation after the first.
func TestRESPReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for served := 0; served < 10; served++ {
					for i := 0; i < 7; i++ { // *3, $3, SET, $k, key, $v, value
						if _, err := r.ReadString('\n'); err != nil {
							return
						}
					}
					if _, err := c.Write([]byte("+OK\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	res, err := Run(context.Background(), Config{Protocol: "resp", Endpoints: []string{ln.Addr().String()}, Clients: 1, Total: 200,
		KeySize: 8, ValSize: 32, KeySpace: 1000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.All.Ops+res.All.Errors != 200 || res.All.Errors > 25 {
		t.Fatalf("ops %d errors %d", res.All.Ops, res.All.Errors)
	}
}

// The JSON of a run names the unit of every duration (float milliseconds),
// and reads back to the same Result.
func TestResultJSON(t *testing.T) {
	st := Stats{Ops: 3000, Errors: 1, P50: 1500 * time.Microsecond, P90: 3 * time.Millisecond, P99: 6291890 * time.Nanosecond,
		P999: 6 * time.Millisecond, Max: 7500 * time.Microsecond, PerSec: 1500}
	put := st
	res := Result{Protocol: "http", Clients: 64, Pipeline: 1, Elapsed: 2*time.Second + 345678*time.Microsecond, All: st,
		ByOp: map[string]*Stats{"put": &put}, FirstError: "503 unavailable"}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	const want = `{
  "protocol": "http",
  "clients": 64,
  "pipeline": 1,
  "elapsed_ms": 2345.678,
  "all": {
    "ops": 3000,
    "errors": 1,
    "p50_ms": 1.5,
    "p90_ms": 3,
    "p99_ms": 6.29189,
    "p999_ms": 6,
    "max_ms": 7.5,
    "per_sec": 1500
  },
  "by_op": {
    "put": {
      "ops": 3000,
      "errors": 1,
      "p50_ms": 1.5,
      "p90_ms": 3,
      "p99_ms": 6.29189,
      "p999_ms": 6,
      "max_ms": 7.5,
      "per_sec": 1500
    }
  },
  "first_error": "503 unavailable"
}`
	if string(b) != want {
		t.Fatalf("JSON:\n%s\nwant:\n%s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Elapsed != res.Elapsed || back.All != res.All || *back.ByOp["put"] != put || back.FirstError != res.FirstError {
		t.Fatalf("round trip: %+v, want %+v", back, res)
	}
}
