package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
)

// fakeAPI is a tiny stand-in for the HTTP API: one key "k", CAS at revision 5.
func fakeAPI(t *testing.T) *httptest.Server {
	t.Helper()
	var stored []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/kv/k":
			w.Header().Set("X-Cairn-Revision", "5")
			w.Write([]byte("value"))
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"key_not_found","message":"kv: key not found"}}`))
		case r.Method == http.MethodPut:
			if m := r.Header.Get("If-Match"); m != "" && m != `"5"` {
				w.WriteHeader(412)
				w.Write([]byte(`{"error":{"code":"precondition_failed","message":"no","revision":5}}`))
				return
			}
			stored, _ = io.ReadAll(r.Body)
			w.Write([]byte(`{"revision":6}`))
		case r.URL.Path == "/v1/cluster/status":
			w.Write([]byte(`{"name":"n1","state":"leader","leader":"n1","term":2}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no route"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = stored })
	return srv
}

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }, Version: "test"})
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	srv := fakeAPI(t)
	dead := "http://127.0.0.1:1" // nothing listens: failover must skip it
	ep := "--endpoints=" + dead + "," + srv.URL
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{ep, "get", "k"}, ExitOK, "value"},
		{[]string{ep, "get", "missing"}, ExitNotFound, ""},
		{[]string{ep, "put", "k", "v"}, ExitOK, "OK revision 6"},
		{[]string{ep, "put", "k", "v", "--if-revision", "4"}, ExitPrecondition, ""},
		{[]string{ep, "put", "k", "v", "--if-revision", "5"}, ExitOK, ""},
		{[]string{ep, "put", "k"}, ExitUsage, ""},
		{[]string{ep, "get"}, ExitUsage, ""},
		{[]string{ep, "--bogus", "get", "k"}, ExitUsage, ""},
		{[]string{ep, "frobnicate"}, ExitUsage, ""},
		{[]string{ep, "-o", "yaml", "get", "k"}, ExitUsage, ""},
		{[]string{"--endpoints", "not a url", "get", "k"}, ExitUsage, ""},
		{[]string{"--endpoints", dead, "get", "k"}, ExitError, ""},
		{[]string{ep, "status", "-o", "json"}, ExitOK, `"leader": "n1"`},
		{[]string{"version"}, ExitOK, "cairn test"},
	}
	for _, tc := range cases {
		code, out, errOut := run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("cairn %v: exit %d (want %d), stdout %q, stderr %q", tc.args, code, tc.code, out, errOut)
		}
	}
}

func TestPutSources(t *testing.T) {
	srv := fakeAPI(t)
	ep := "--endpoints=" + srv.URL
	if code, _, e := run(t, "from stdin", ep, "put", "k", "-"); code != 0 {
		t.Fatalf("stdin: %d %s", code, e)
	}
	f := filepath.Join(t.TempDir(), "v")
	os.WriteFile(f, []byte("from file"), 0o600)
	if code, _, e := run(t, "", ep, "put", "k", "--file", f); code != 0 {
		t.Fatalf("file: %d %s", code, e)
	}
	if code, _, _ := run(t, "", ep, "put", "k", "v", "--file", f); code != ExitUsage {
		t.Fatalf("two sources: %d", code)
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	called := false
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"serve", "--initial-cluster-state", "sideways", "--log-level", "loud"}, Env{
		Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		Start: func(context.Context, config.Config) (Server, error) { called = true; return nil, nil },
	})
	if code != ExitUsage || called {
		t.Fatalf("exit %d, started %v", code, called)
	}
	if !strings.Contains(errb.String(), "initial-cluster-state") || !strings.Contains(errb.String(), "log-level") {
		t.Fatalf("message does not name every problem: %s", errb.String())
	}
}

// hangingServer never finishes closing, as a node whose disk failed may not.
type hangingServer struct{ errc chan error }

func (h hangingServer) Ready() <-chan struct{} { return nil }
func (h hangingServer) Err() <-chan error      { return h.errc }
func (h hangingServer) Close() error           { select {} }

func TestCloseWithinBoundsAHangingClose(t *testing.T) {
	err := closeWithin(hangingServer{make(chan error)}, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not close within") {
		t.Fatalf("closeWithin: %v", err)
	}
}
