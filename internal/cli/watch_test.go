package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// A watch from a revision replays the writes since then, one line each (a
// transaction's events share its revision), as text and as JSON lines.
func TestWatchPrintsEvents(t *testing.T) {
	ep, _, svc := realAPI(t)
	first := kvtest.MustPut(t, svc, "app/a", "hello", kv.PutOptions{}).ModRevision
	kvtest.MustTxn(t, svc, kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: "app/b", Value: []byte("B")},
		{Type: kv.OpPut, Key: "app/bin", Value: []byte{0xff, 0xfe}}}})
	kvtest.MustPut(t, svc, "app/ctl", "\x00\x01", kv.PutOptions{})
	kvtest.MustTxn(t, svc, kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: "app/a"}}})
	want := []string{
		fmt.Sprintf("put app/a rev=%d hello", first),
		fmt.Sprintf("put app/b rev=%d B", first+2), // each op bumps the revision; the events share the last
		fmt.Sprintf("put app/bin rev=%d <2 bytes>", first+2),
		fmt.Sprintf("put app/ctl rev=%d <2 bytes>", first+3),
		fmt.Sprintf("delete app/a rev=%d", first+4),
	}

	var out, errb syncBuffer
	stop := background(t, Env{Stdout: &out, Stderr: &errb}, ep, "watch", "app/", "--from-revision", fmt.Sprint(first))
	waitFor(t, "five events", func() bool { return strings.Count(out.String(), "\n") >= 5 })
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d after Ctrl-C, stderr %s", code, errb.String())
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("watch printed\n%s\nwant\n%s", out.String(), strings.Join(want, "\n"))
	}

	var jout syncBuffer
	stop = background(t, Env{Stdout: &jout, Stderr: &errb}, ep, "-o", "json", "watch", "app/", "--from-revision", fmt.Sprint(first))
	waitFor(t, "five JSON events", func() bool { return strings.Count(jout.String(), "\n") >= 5 })
	if code := stop(); code != ExitOK {
		t.Fatalf("json: exit %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(jout.String(), "\n"), "\n")
	var ev struct {
		Type     string  `json:"type"`
		Key      string  `json:"key"`
		Value    *[]byte `json:"value"`
		Revision int64   `json:"revision"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &ev); err != nil || ev.Key != "app/bin" || ev.Value == nil ||
		string(*ev.Value) != "\xff\xfe" || ev.Revision != first+2 || !strings.Contains(lines[2], `"value":"//4="`) {
		t.Fatalf("json line %q: %+v %v", lines[2], ev, err)
	}
	if err := json.Unmarshal([]byte(lines[4]), &ev); err != nil || ev.Type != "delete" || strings.Contains(lines[4], "value") {
		t.Fatalf("json delete %q: %v", lines[4], err)
	}
}

// A strong key's expiry prints as a delete marked expired, in both formats.
func TestWatchPrintsExpiry(t *testing.T) {
	ep, _, svc := realAPI(t)
	rev := kvtest.MustPut(t, svc, "exp/t", "v", kv.PutOptions{TTL: 50 * time.Millisecond}).ModRevision
	var out, errb syncBuffer
	stop := background(t, Env{Stdout: &out, Stderr: &errb}, ep, "watch", "exp/", "--from-revision", fmt.Sprint(rev))
	waitFor(t, "the expiry", func() bool { return strings.Count(out.String(), "\n") >= 2 })
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if !strings.HasPrefix(lines[1], "delete exp/t rev=") || !strings.HasSuffix(lines[1], " (expired)") {
		t.Fatalf("watch printed\n%s", out.String())
	}
	var jout syncBuffer
	stop = background(t, Env{Stdout: &jout, Stderr: &errb}, ep, "-o", "json", "watch", "exp/", "--from-revision", fmt.Sprint(rev))
	waitFor(t, "two JSON events", func() bool { return strings.Count(jout.String(), "\n") >= 2 })
	if code := stop(); code != ExitOK {
		t.Fatalf("json: exit %d", code)
	}
	if lines := strings.Split(strings.TrimSuffix(jout.String(), "\n"), "\n"); !strings.Contains(lines[1], `"type":"delete"`) ||
		!strings.Contains(lines[1], `"expired":true`) || strings.Contains(lines[0], "expired") {
		t.Fatalf("json\n%s", jout.String())
	}
}

// A stream the server drops is resumed from the revision after the last
// write printed: the writes made meanwhile arrive, each once.
func TestWatchResumesAfterDrop(t *testing.T) {
	ep, srv, svc := realAPI(t)
	var out, errb syncBuffer
	stop := background(t, Env{Stdout: &out, Stderr: &errb}, ep, "watch", "app/")
	// The watch starts from the revision it read at its start: a write
	// made after that arrives even if the stream is not up yet.
	waitFor(t, "the watch to start", func() bool {
		kvtest.MustPut(t, svc, "app/probe", "p", kv.PutOptions{})
		return strings.Contains(out.String(), "put app/probe")
	})
	r1 := kvtest.MustPut(t, svc, "app/k", "1", kv.PutOptions{}).ModRevision
	waitFor(t, "the first event", func() bool { return strings.Contains(out.String(), "app/k rev") })
	srv.CloseClientConnections()
	r2 := kvtest.MustPut(t, svc, "app/k", "2", kv.PutOptions{}).ModRevision
	r3 := kvtest.MustPut(t, svc, "app/k", "3", kv.PutOptions{}).ModRevision
	waitFor(t, "the events after the drop", func() bool { return strings.Contains(out.String(), fmt.Sprintf("rev=%d 3", r3)) })
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	for _, l := range []string{fmt.Sprintf("put app/k rev=%d 1", r1), fmt.Sprintf("put app/k rev=%d 2", r2), fmt.Sprintf("put app/k rev=%d 3", r3)} {
		if n := countLines(out.String(), l); n != 1 {
			t.Errorf("%q printed %d times:\n%s", l, n, out.String())
		}
	}
	if !strings.Contains(errb.String(), "resuming from revision") {
		t.Errorf("stderr does not say the watch resumed: %q", errb.String())
	}
}

// A revision the history no longer keeps ends the watch with the oldest
// revision available; an eventual keyspace's events show their timestamp.
func TestWatchCompactedAndEventual(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/keyspaces":
			fmt.Fprint(w, `{"keyspaces":[{"prefix":"","mode":"strong"},{"prefix":"ev/","mode":"eventual"}]}`)
		case r.URL.Path == "/v1/watch/app/":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"compacted","message":"kv: revision compacted: 1 is older than the oldest revision kept, 1011","oldest_revision":1011}}`)
		case r.URL.Path == "/v1/watch/ev/":
			if r.URL.RawQuery != "" {
				t.Errorf("eventual watch with %q", r.URL.RawQuery)
			}
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, ": watching\n\ndata: {\"type\":\"put\",\"key\":\"ev/a\",\"value\":\"dg==\",\"timestamp\":\""+stamp+"\",\"origin\":\"n2\"}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.WriteHeader(404)
			fmt.Fprint(w, `{"error":{"code":"not_found","message":"no route"}}`)
		}
	}))
	defer srv.Close()
	ep := "--endpoints=" + srv.URL
	code, _, errOut := run(t, "", ep, "watch", "app/", "--from-revision", "1")
	if code != ExitError || !strings.Contains(errOut, "oldest revision available is 1011") || !strings.Contains(errOut, "--from-revision 1011") {
		t.Fatalf("410: exit %d, stderr %q", code, errOut)
	}
	var out, errb syncBuffer
	stop := background(t, Env{Stdout: &out, Stderr: &errb}, ep, "watch", "ev/")
	waitFor(t, "the eventual event", func() bool { return strings.Contains(out.String(), "\n") })
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if got, want := out.String(), "put ev/a ts="+stamp+" origin=n2 v\n"; got != want {
		t.Fatalf("eventual event %q, want %q", got, want)
	}
}

func TestWatchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"watch", "--bogus", "app/"},
		{"watch", "a/", "b/"},
		{"watch", "app/", "--from-revision", "-1"},
		{"watch", "app/", "--from-revision", "x"},
	} {
		if code, _, errOut := run(t, "", append([]string{"--endpoints=http://127.0.0.1:1"}, args...)...); code != ExitUsage {
			t.Errorf("cairn %v: exit %d, stderr %q", args, code, errOut)
		}
	}
}

// A write cut off midway by a drop is printed once, whole, from the
// resumed stream.
func TestWatchCutWriteOnce(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/keyspaces" {
			fmt.Fprint(w, `{"keyspaces":[{"prefix":"","mode":"strong"}]}`)
			return
		}
		if got, want := r.URL.Query().Get("from_revision"), fmt.Sprint(5+2*min(calls.Load(), 1)); got != want {
			t.Errorf("watch %d from %q, want %s", calls.Load(), got, want)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		a := "data: {\"type\":\"put\",\"key\":\"t/a\",\"value\":\"MQ==\",\"revision\":7}\n\n"
		b := "id: 7\ndata: {\"type\":\"put\",\"key\":\"t/b\",\"value\":\"Mg==\",\"revision\":7}\n\n"
		if calls.Add(1) == 1 {
			fmt.Fprint(w, ": watching\n\nid: 6\ndata: {\"type\":\"put\",\"key\":\"t/big\",\"revision\":6,\"value_omitted\":true}\n\n")
			fmt.Fprint(w, a) // and the stream ends
			return
		}
		fmt.Fprint(w, ": watching\n\n"+a+b)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	var out, errb syncBuffer
	stop := background(t, Env{Stdout: &out, Stderr: &errb}, "--endpoints="+srv.URL, "watch", "t/", "--from-revision", "5")
	waitFor(t, "the whole write", func() bool { return strings.Contains(out.String(), "put t/b ") })
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if got := out.String(); got != "put t/big rev=6 <value omitted: get the key>\nput t/a rev=7 1\nput t/b rev=7 2\n" {
		t.Fatalf("printed %q", got)
	}
}
