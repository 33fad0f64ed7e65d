package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// realAPI serves the real HTTP API over a real single-node service
// (kvtest: Raft and pebble in t.TempDir()), so the commands are checked
// against what the server does. It returns the --endpoints flag.
func realAPI(t *testing.T, opts ...kvtest.Option) (ep string, srv *httptest.Server, svc *kv.Service) {
	t.Helper()
	return realAPIWith(t, httpapi.Options{}, opts...)
}

// realAPIWith is realAPI with the HTTP API's options (IsStale and Closing
// are filled in).
func realAPIWith(t *testing.T, ho httpapi.Options, opts ...kvtest.Option) (ep string, srv *httptest.Server, svc *kv.Service) {
	t.Helper()
	svc = kvtest.NewService(t, opts...)
	closing := make(chan struct{})
	ho.IsStale, ho.Closing = svc.IsStale, closing
	srv = httptest.NewServer(httpapi.New(svc, ho))
	t.Cleanup(srv.Close)
	// Runs before srv.Close: watch streams end, so Close need not wait.
	t.Cleanup(func() { close(closing) })
	return "--endpoints=" + srv.URL, srv, svc
}

// syncBuffer is a bytes.Buffer that a command running in a goroutine
// writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs a command until the returned stop is called; stop
// cancels its context and returns its exit code.
func background(t *testing.T, env Env, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	go func() { done <- Main(ctx, args, env) }()
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("cairn %v did not end after its context was cancelled", args)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop
}

// waitFor polls until cond holds, or fails the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countLines(out, line string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if l == line {
			n++
		}
	}
	return n
}
