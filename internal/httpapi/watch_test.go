package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// feed is a fake watch: it yields groups, then an error if set, else waits
// for the request to end.
func feed(groups [][]kv.Event, end error, from *int64, prefix *string) func(context.Context, string, int64) (iter.Seq2[[]kv.Event, error], error) {
	return func(ctx context.Context, p string, f int64) (iter.Seq2[[]kv.Event, error], error) {
		*from, *prefix = f, p
		if f == 1 {
			return nil, &kv.CompactedError{From: 1, Oldest: 40}
		}
		return func(yield func([]kv.Event, error) bool) {
			for _, g := range groups {
				if !yield(g, nil) {
					return
				}
			}
			if end != nil {
				yield(nil, end)
				return
			}
			<-ctx.Done()
		}, nil
	}
}

// readStream reads an SSE body until it has n blank-line-terminated
// events (comments included) or the body ends.
func readStream(t *testing.T, resp *http.Response, n int) []string {
	t.Helper()
	var (
		out []string
		cur []string
	)
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		if line := sc.Text(); line != "" {
			cur = append(cur, line)
			continue
		}
		out = append(out, strings.Join(cur, "\n"))
		cur = nil
	}
	return out
}

func TestWatchStream(t *testing.T) {
	var (
		from   int64
		prefix string
	)
	f := &fakeService{watch: feed([][]kv.Event{
		{{Type: kv.EventPut, Key: "w/a", Value: []byte("1"), Revision: 7}, {Type: kv.EventDelete, Key: "w/b", Revision: 7}},
		{{Type: kv.EventPut, Key: "ev/x", Value: []byte("2"), Timestamp: "2026-12-01T00:00:00.000Z-00000", Origin: "n2"}},
		{{Type: kv.EventDelete, Key: "w/t", Revision: 9, Expired: true}},
	}, nil, &from, &prefix)}
	closing := make(chan struct{})
	h := New(f, Options{Logger: testLogger(t), Closing: closing})
	h.(*api).heartbeat = 20 * time.Millisecond
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/watch/w/?from_revision=5")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("%d %q", resp.StatusCode, ct)
	}
	got := readStream(t, resp, 6)
	want := []string{
		": watching",
		`data: {"type":"put","key":"w/a","value":"MQ==","revision":7}`,
		"id: 7\n" + `data: {"type":"delete","key":"w/b","revision":7}`,
		`data: {"type":"put","key":"ev/x","value":"Mg==","timestamp":"2026-12-01T00:00:00.000Z-00000","origin":"n2"}`,
		"id: 9\n" + `data: {"type":"delete","key":"w/t","revision":9,"expired":true}`,
		": heartbeat",
	}
	if strings.Join(got, "\n\n") != strings.Join(want, "\n\n") {
		t.Fatalf("stream\n%s\nwant\n%s", strings.Join(got, "\n\n"), strings.Join(want, "\n\n"))
	}
	if from != 5 || prefix != "w/" {
		t.Fatalf("asked for %q from %d", prefix, from)
	}
	// The node closing ends the stream.
	close(closing)
	done := make(chan struct{})
	go func() { readStream(t, resp, 1000); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the node closed")
	}
}

func TestWatchResumeAndErrors(t *testing.T) {
	var (
		from   int64
		prefix string
	)
	f := &fakeService{watch: feed(nil, kv.ErrUnavailable, &from, &prefix)}
	h := mustHandler(t, f)
	srv := httptest.NewServer(h)
	defer srv.Close()

	// EventSource's Last-Event-ID wins over the URL it reconnects to.
	req, _ := http.NewRequest("GET", srv.URL+"/v1/watch/?from_revision=3", nil)
	req.Header.Set("Last-Event-ID", "41")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := readStream(t, resp, 10)
	resp.Body.Close()
	if from != 42 || prefix != "" {
		t.Fatalf("Last-Event-ID 41: asked for %q from %d, want 42", prefix, from)
	}
	if len(got) != 2 || !strings.HasPrefix(got[1], "event: error\ndata: ") || !strings.Contains(got[1], `"code":"unavailable"`) {
		t.Fatalf("an error after the stream started: %q", got)
	}

	w := mustServe(t, h, request{method: "GET", target: "/v1/watch/a/?from_revision=1"})
	var body struct {
		Error struct {
			Code           string
			OldestRevision int64 `json:"oldest_revision"`
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != http.StatusGone || body.Error.Code != "compacted" || body.Error.OldestRevision != 40 {
		t.Fatalf("compacted: %d %s", w.Code, w.Body)
	}
	for _, target := range []string{"/v1/watch/a?from_revision=x", "/v1/watch/a?from_revision=-2"} {
		if w := mustServe(t, h, request{method: "GET", target: target}); w.Code != http.StatusBadRequest {
			t.Fatalf("%s: %d %s", target, w.Code, w.Body)
		}
	}
	if w := mustServe(t, h, request{method: "GET", target: "/v1/watch/a", hdr: []string{"Last-Event-ID", "x"}}); w.Code != http.StatusBadRequest {
		t.Fatalf("a bad Last-Event-ID: %d", w.Code)
	}
	if w := mustServe(t, h, request{method: "POST", target: "/v1/watch/a"}); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}

// TestWatchOutlivesServerTimeouts: a stream lasts longer than the server's
// read and write timeouts.
func TestWatchOutlivesServerTimeouts(t *testing.T) {
	var (
		from   int64
		prefix string
	)
	h := mustHandler(t, &fakeService{watch: feed(nil, nil, &from, &prefix)})
	h.(*api).heartbeat = 50 * time.Millisecond
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/watch/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	got := readStream(t, resp, 21) // ": watching", then 20 heartbeats: about a second
	if len(got) != 21 || got[20] != ": heartbeat" {
		t.Fatalf("the stream ended after %v: %q", time.Since(start), got)
	}
}
