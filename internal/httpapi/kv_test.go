package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// expiry is a fixed expiry time used by the tests: 2030-01-02T03:04:05.123456789Z.
var expiry = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

const expiryText = "2030-01-02T03:04:05.123456789Z"

func record(key, value string, create, mod, version int64) *kv.Record {
	return &kv.Record{Key: key, Value: []byte(value), CreateRevision: create, ModRevision: mod, Version: version}
}

func TestGetHeadersAndBody(t *testing.T) {
	for _, tc := range []struct {
		name        string
		last        kv.Op // the write at revision 7
		wantExpires string
	}{
		{"no ttl", put("app/a", "hello"), ""},
		{"ttl", putExpiring("app/a", "hello"), expiryText},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, svc := engineHandler(t)
			// Created at revision 3, written again at 7: version 2.
			mustWriteAt(t, svc, 3, put("app/a", "first"))
			mustWriteAt(t, svc, 7, tc.last)
			w := mustServe(t, h, request{method: "GET", target: "/v1/kv/app/a"})
			if w.Code != 200 || w.Body.String() != "hello" {
				t.Fatalf("%d %q", w.Code, w.Body)
			}
			want := map[string]string{
				"Content-Type":            "application/octet-stream",
				"Content-Length":          "5",
				"ETag":                    `"7"`,
				"X-Cairn-Revision":        "7",
				"X-Cairn-Create-Revision": "3",
				"X-Cairn-Version":         "2",
				"X-Cairn-Expires":         tc.wantExpires,
				"X-Cairn-Consistency":     "linearizable",
				"X-Cairn-Stale":           "",
				"X-Content-Type-Options":  "nosniff",
			}
			for k, v := range want {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestGetConsistency(t *testing.T) {
	stale := func(b bool) func() bool { return func() bool { return b } }
	for _, tc := range []struct {
		query       string
		isStale     func() bool
		status      int
		wantSerial  bool
		consistency string
		staleHeader string
		mode        kv.ReadMode
	}{
		{"?consistency=lease", nil, 200, false, "linearizable", "", kv.ReadModeLease},
		{"?consistency=read-index", nil, 200, false, "linearizable", "", kv.ReadModeReadIndex},
		{"?consistency=Lease", nil, 400, false, "", "", 0},
		{"", nil, 200, false, "linearizable", "", 0},
		{"?consistency=linearizable", stale(true), 200, false, "linearizable", "", 0},
		{"?consistency=serializable", stale(true), 200, true, "serializable", "true", 0},
		{"?consistency=serializable", stale(false), 200, true, "serializable", "false", 0},
		{"?consistency=serializable", nil, 200, true, "serializable", "false", 0},
		{"?consistency=eventual", nil, 400, false, "", "", 0},
		{"?consistency=", nil, 200, false, "linearizable", "", 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			f := &fakeService{get: func(_ context.Context, _ string, o kv.ReadOptions) (*kv.Record, error) {
				if o.Serializable != tc.wantSerial {
					t.Errorf("Serializable %v", o.Serializable)
				}
				if o.ReadMode != tc.mode {
					t.Errorf("ReadMode %v, want %v", o.ReadMode, tc.mode)
				}
				return record("k", "v", 1, 1, 1), nil
			}}
			h := New(f, Options{IsStale: tc.isStale, Logger: testLogger(t)})
			w := mustServe(t, h, request{method: "GET", target: "/v1/kv/k" + tc.query})
			if w.Code != tc.status {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if tc.status == 400 {
				mustError(t, w, 400, "bad_request")
				mustNotCall(t, f)
				return
			}
			if got := w.Header().Get("X-Cairn-Consistency"); got != tc.consistency {
				t.Errorf("X-Cairn-Consistency %q", got)
			}
			if got := w.Header().Get("X-Cairn-Stale"); got != tc.staleHeader {
				t.Errorf("X-Cairn-Stale %q", got)
			}
		})
	}
}

// TestKeyPaths checks that the key is the decoded path after /v1/kv/, exactly
// as sent, including paths that http.ServeMux would redirect elsewhere.
func TestKeyPaths(t *testing.T) {
	for _, tc := range []struct{ target, key string }{
		{"/v1/kv/a", "a"},
		{"/v1/kv/a/b/c", "a/b/c"},
		{"/v1/kv/dir/", "dir/"},
		{"/v1/kv/a%2Fb", "a/b"},
		{"/v1/kv/with%20space", "with space"},
		{"/v1/kv/%E2%9C%93", "✓"},
		{"/v1/kv/a//b", "a//b"},
		{"/v1/kv/a%2F%2Fb", "a//b"},
		{"/v1/kv//lead", "/lead"},
		{"/v1/kv/a/./b", "a/./b"},
		{"/v1/kv/a/../b", "a/../b"},
		{"/v1/kv/..", ".."},
		{"/v1/kv/a/.", "a/."},
		{"/v1/kv/q?x=1", "q"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			for _, method := range []string{"GET", "PUT", "DELETE"} {
				var got string
				f := &fakeService{
					get: func(_ context.Context, key string, _ kv.ReadOptions) (*kv.Record, error) {
						got = key
						return record(key, "v", 1, 1, 1), nil
					},
					put: func(_ context.Context, key string, _ []byte, _ kv.PutOptions) (*kv.Record, error) {
						got = key
						return record(key, "v", 1, 1, 1), nil
					},
					txn: func(_ context.Context, t kv.Txn) (*kv.TxnResult, error) { // DELETE
						got = t.Success[0].Key
						return deleted(t, 1, 2), nil
					},
				}
				w := mustServe(t, mustHandler(t, f), request{method: method, target: tc.target})
				if w.Code != 200 || got != tc.key {
					t.Fatalf("%s: status %d, key %q, want %q; %s", method, w.Code, got, tc.key, w.Body)
				}
			}
		})
	}
}

func TestBadKeys(t *testing.T) {
	long := strings.Repeat("k", kv.MaxKeyBytes+1)
	for _, rq := range []request{
		{method: "GET", target: "/v1/kv/"},
		{method: "GET", target: "/v1/kv/a%00b"},
		{method: "GET", target: "/v1/kv/" + long},
		{method: "GET", target: "/v1/kv/" + long + "?list=true"},
		{method: "PUT", target: "/v1/kv/", body: "v"},
		{method: "PUT", target: "/v1/kv/a%00", body: "v"},
		{method: "DELETE", target: "/v1/kv/"},
		{method: "DELETE", target: "/v1/kv/" + long + "?prefix=true"},
		{method: "PATCH", target: "/v1/kv/", body: "{}", hdr: []string{"Content-Type", "application/merge-patch+json"}},
		{method: "PATCH", target: "/v1/kv/a%00", body: "{}", hdr: []string{"Content-Type", "application/merge-patch+json"}},
	} {
		t.Run(rq.method+" "+rq.target[:min(len(rq.target), 30)], func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), rq), 400, "bad_request")
			mustNotCall(t, f)
		})
	}
}

func TestHead(t *testing.T) {
	h, svc := engineHandler(t)
	mustWriteAt(t, svc, 4, put("k", "hello"))
	mustWriteAt(t, svc, 5, put("a//k", "hello"))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, tc := range []struct{ path, etag string }{{"/v1/kv/k", `"4"`}, {"/v1/kv/a//k", `"5"`}} {
		resp, err := srv.Client().Head(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("ETag") != tc.etag || resp.ContentLength != 5 {
			t.Fatalf("HEAD %s: %d %v", tc.path, resp.StatusCode, resp.Header)
		}
	}
	resp, err := srv.Client().Head(srv.URL + "/v1/kv/missing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("HEAD of a missing key: %d", resp.StatusCode)
	}
}

func TestList(t *testing.T) {
	_, svc := engineHandler(t)
	// Revision 6: app/a created at 1 and written at 2 and 5, app/b (binary,
	// expiring) at 3, app/c (empty) at 4, other at 6.
	for _, op := range []kv.Op{
		put("app/a", "hello"), put("app/a", "hello"),
		{Type: kv.OpPut, Key: "app/b", Value: []byte{0xff, 0x00}, ExpiresAt: expiry.UnixNano()},
		put("app/c", ""), put("app/a", "hello"), put("other", "x"),
	} {
		kvtest.MustTxn(t, svc, kv.Txn{Success: []kv.Op{op}})
	}
	h := New(svc, Options{MaxValueBytes: testMaxValue, IsStale: func() bool { return true }, Logger: testLogger(t)})
	for _, tc := range []struct {
		name, target string
		stale        string
		want         string
	}{
		{
			name: "values", target: "/v1/kv/app/?list=true&limit=2",
			want: `{"revision":6,"more":true,"items":[
				{"key":"app/a","value":"aGVsbG8=","create_revision":1,"mod_revision":5,"version":3},
				{"key":"app/b","value":"/wA=","create_revision":3,"mod_revision":3,"version":1,"expires":"` + expiryText + `"}]}`,
		},
		{
			name: "keys only", target: "/v1/kv/app/?list=true&keys_only=true&limit=3&after=app/0&consistency=serializable",
			stale: "true",
			want: `{"revision":6,"more":false,"items":[
				{"key":"app/a","create_revision":1,"mod_revision":5,"version":3},
				{"key":"app/b","create_revision":3,"mod_revision":3,"version":1,"expires":"` + expiryText + `"},
				{"key":"app/c","create_revision":4,"mod_revision":4,"version":1}]}`,
		},
		{
			name: "after", target: "/v1/kv/app/?list=true&after=app/a",
			want: `{"revision":6,"more":false,"items":[
				{"key":"app/b","value":"/wA=","create_revision":3,"mod_revision":3,"version":1,"expires":"` + expiryText + `"},
				{"key":"app/c","value":"","create_revision":4,"mod_revision":4,"version":1}]}`,
		},
		{
			name: "everything", target: "/v1/kv/?list=1&limit=0&keys_only=false",
			want: `{"revision":6,"more":false,"items":[
				{"key":"app/a","value":"aGVsbG8=","create_revision":1,"mod_revision":5,"version":3},
				{"key":"app/b","value":"/wA=","create_revision":3,"mod_revision":3,"version":1,"expires":"` + expiryText + `"},
				{"key":"app/c","value":"","create_revision":4,"mod_revision":4,"version":1},
				{"key":"other","value":"eA==","create_revision":6,"mod_revision":6,"version":1}]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mustServe(t, h, request{method: "GET", target: tc.target})
			if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
			}
			if got := w.Header().Get("X-Cairn-Stale"); got != tc.stale {
				t.Errorf("X-Cairn-Stale %q", got)
			}
			mustEqualJSON(t, w.Body.Bytes(), tc.want)
		})
	}
}

// TestListOptions checks what a listing asks the service for.
func TestListOptions(t *testing.T) {
	for _, tc := range []struct {
		target, prefix string
		opts           kv.ListOptions
	}{
		{"/v1/kv/app/?list=true", "app/", kv.ListOptions{}},
		{"/v1/kv/app/?list=true&keys_only=true&limit=3&after=app/0&consistency=serializable", "app/",
			kv.ListOptions{ReadOptions: kv.ReadOptions{Serializable: true}, After: "app/0", Limit: 3, KeysOnly: true}},
		{"/v1/kv/?list=1&limit=0&keys_only=false", "", kv.ListOptions{}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			f := &fakeService{list: func(_ context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error) {
				if prefix != tc.prefix || !reflect.DeepEqual(o, tc.opts) {
					t.Errorf("List(%q, %+v)", prefix, o)
				}
				return &kv.ListResult{Revision: 9}, nil
			}}
			if w := mustServe(t, mustHandler(t, f), request{method: "GET", target: tc.target}); w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
}

func TestListEmpty(t *testing.T) {
	h, svc := engineHandler(t)
	kvtest.MustPut(t, svc, "other", "x", kv.PutOptions{})
	w := mustServe(t, h, request{method: "GET", target: "/v1/kv/none/?list=true"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"revision":1,"items":[],"more":false}`)
}

func TestListBadParams(t *testing.T) {
	for _, q := range []string{
		"list=yes", "list=true&limit=-1", "list=true&limit=x", "list=true&limit=1.5",
		"list=true&limit=99999999999999999999", "list=true&keys_only=maybe", "list=true&consistency=strong",
	} {
		t.Run(q, func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), request{method: "GET", target: "/v1/kv/p/?" + q}), 400, "bad_request")
			mustNotCall(t, f)
		})
	}
}

// TestPut checks what a PUT asks the service for and how its answer is
// written; TestPutOnEngine checks what the writes do.
func TestPut(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		body   string
		hdr    []string
		want   kv.PutOptions
	}{
		{name: "plain", target: "/v1/kv/k", body: "value"},
		{name: "empty value", target: "/v1/kv/k", body: ""},
		{name: "max size", target: "/v1/kv/k", body: strings.Repeat("x", 16)},
		{name: "ttl duration", target: "/v1/kv/k?ttl=30s", body: "v", want: kv.PutOptions{TTL: 30 * time.Second}},
		{name: "ttl compound", target: "/v1/kv/k?ttl=1h30m", body: "v", want: kv.PutOptions{TTL: 90 * time.Minute}},
		{name: "ttl seconds", target: "/v1/kv/k?ttl=45", body: "v", want: kv.PutOptions{TTL: 45 * time.Second}},
		{name: "ttl fraction", target: "/v1/kv/k?ttl=1.5s", body: "v", want: kv.PutOptions{TTL: 1500 * time.Millisecond}},
		{name: "if-match quoted", target: "/v1/kv/k", body: "v", hdr: []string{"If-Match", `"42"`}, want: kv.PutOptions{IfModRevision: ptr(int64(42))}},
		{name: "if-match bare", target: "/v1/kv/k", body: "v", hdr: []string{"If-Match", " 42 "}, want: kv.PutOptions{IfModRevision: ptr(int64(42))}},
		{name: "if-match zero", target: "/v1/kv/k", body: "v", hdr: []string{"If-Match", `"0"`}, want: kv.PutOptions{IfModRevision: ptr(int64(0))}},
		{name: "if-none-match", target: "/v1/kv/k", body: "v", hdr: []string{"If-None-Match", "*"}, want: kv.PutOptions{IfAbsent: true}},
		{
			name: "all", target: "/v1/kv/k?ttl=2m", body: "v", hdr: []string{"If-Match", `"7"`, "If-None-Match", "*"},
			want: kv.PutOptions{TTL: 2 * time.Minute, IfModRevision: ptr(int64(7)), IfAbsent: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{put: func(_ context.Context, key string, value []byte, o kv.PutOptions) (*kv.Record, error) {
				if key != "k" || string(value) != tc.body || !reflect.DeepEqual(o, tc.want) {
					t.Errorf("Put(%q, %q, %+v)", key, value, o)
				}
				return &kv.Record{Key: key, CreateRevision: 3, ModRevision: 12, Version: 4}, nil
			}}
			w := mustServe(t, mustHandler(t, f), request{method: "PUT", target: tc.target, body: tc.body, hdr: tc.hdr})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			mustEqualJSON(t, w.Body.Bytes(), `{"revision":12}`)
			if w.Header().Get("ETag") != `"12"` || w.Header().Get("X-Cairn-Revision") != "12" {
				t.Errorf("headers %v", w.Header())
			}
		})
	}
}

// TestPutOnEngine checks what PUTs do to the keys: values, TTLs and
// conditions, through a real service.
func TestPutOnEngine(t *testing.T) {
	h, _ := engineHandler(t)
	steps := []struct {
		rq     request
		status int
		body   string // the answer, when 200
	}{
		{request{method: "PUT", target: "/v1/kv/k", body: "value"}, 200, `{"revision":1}`},
		{request{method: "PUT", target: "/v1/kv/k", body: ""}, 200, `{"revision":2}`},
		{request{method: "PUT", target: "/v1/kv/k", body: strings.Repeat("x", 16)}, 200, `{"revision":3}`},
		{request{method: "PUT", target: "/v1/kv/k", body: "cas", hdr: []string{"If-Match", `"3"`}}, 200, `{"revision":4}`},
		{request{method: "PUT", target: "/v1/kv/k", body: "stale", hdr: []string{"If-Match", `"3"`}}, 412, ""},
		{request{method: "PUT", target: "/v1/kv/new", body: "v", hdr: []string{"If-Match", `"0"`}}, 200, `{"revision":5}`},
		{request{method: "PUT", target: "/v1/kv/new", body: "w", hdr: []string{"If-Match", `"0"`}}, 412, ""},
		{request{method: "PUT", target: "/v1/kv/lock", body: "first", hdr: []string{"If-None-Match", "*"}}, 200, `{"revision":6}`},
		{request{method: "PUT", target: "/v1/kv/lock", body: "second", hdr: []string{"If-None-Match", "*"}}, 412, ""},
		{request{method: "PUT", target: "/v1/kv/ttl?ttl=30s", body: "v"}, 200, `{"revision":7}`},
	}
	for i, st := range steps {
		w := mustServe(t, h, st.rq)
		if st.status != 200 {
			mustError(t, w, st.status, "precondition_failed")
			continue
		}
		if w.Code != 200 {
			t.Fatalf("step %d: %d %s", i, w.Code, w.Body)
		}
		mustEqualJSON(t, w.Body.Bytes(), st.body)
	}
	for key, want := range map[string]string{"k": "cas", "new": "v", "lock": "first", "ttl": "v"} {
		w := mustServe(t, h, request{method: "GET", target: "/v1/kv/" + key})
		if w.Code != 200 || w.Body.String() != want {
			t.Errorf("GET %s: %d %q, want %q", key, w.Code, w.Body, want)
		}
		if key == "k" && w.Header().Get("X-Cairn-Version") != "4" {
			t.Errorf("k: version %s after four writes", w.Header().Get("X-Cairn-Version"))
		}
		exp := w.Header().Get("X-Cairn-Expires")
		if key != "ttl" {
			if exp != "" {
				t.Errorf("GET %s: X-Cairn-Expires %q without a TTL", key, exp)
			}
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, exp)
		if left := time.Until(at); err != nil || left < 25*time.Second || left > 30*time.Second {
			t.Errorf("GET ttl: X-Cairn-Expires %q (%v), want 30s from the write", exp, err)
		}
	}
}

func TestPutRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"ttl zero", request{method: "PUT", target: "/v1/kv/k?ttl=0"}, 400, "bad_request"},
		{"ttl zero duration", request{method: "PUT", target: "/v1/kv/k?ttl=0s"}, 400, "bad_request"},
		{"ttl negative", request{method: "PUT", target: "/v1/kv/k?ttl=-5s"}, 400, "bad_request"},
		{"ttl negative seconds", request{method: "PUT", target: "/v1/kv/k?ttl=-5"}, 400, "bad_request"},
		{"ttl words", request{method: "PUT", target: "/v1/kv/k?ttl=banana"}, 400, "bad_request"},
		{"ttl overflow", request{method: "PUT", target: "/v1/kv/k?ttl=99999999999999999"}, 400, "bad_request"},
		{"if-match star", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-Match", "*"}}, 400, "bad_request"},
		{"if-match list", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-Match", `"1", "2"`}}, 400, "bad_request"},
		{"if-match weak", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-Match", `W/"1"`}}, 400, "bad_request"},
		{"if-match negative", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-Match", `"-1"`}}, 400, "bad_request"},
		{"if-match text", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-Match", `"abc"`}}, 400, "bad_request"},
		{"if-none-match etag", request{method: "PUT", target: "/v1/kv/k", hdr: []string{"If-None-Match", `"3"`}}, 400, "bad_request"},
		{"too large", request{method: "PUT", target: "/v1/kv/k", body: strings.Repeat("x", 17)}, 413, "value_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), tc.rq), tc.status, tc.code)
			mustNotCall(t, f)
		})
	}
}

// TestPutTooLargeStreamed sends a body without Content-Length, so the limit
// is enforced while reading.
func TestPutTooLargeStreamed(t *testing.T) {
	f := &fakeService{}
	r := httptest.NewRequest("PUT", "/v1/kv/k", struct{ *strings.Reader }{strings.NewReader(strings.Repeat("x", 1000))})
	r.ContentLength = -1
	w := httptest.NewRecorder()
	mustHandler(t, f).ServeHTTP(w, r)
	mustError(t, w, 413, "value_too_large")
	mustNotCall(t, f)
}

func TestPreconditionFailed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		exists bool // k written at revision 9
		rev    string
	}{
		{"exists", true, "9"},
		{"absent", false, "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, svc := engineHandler(t)
			var current *kv.Record
			if tc.exists {
				current = mustWriteAt(t, svc, 9, put("k", "v"))
			}
			pe := &kv.PreconditionError{Key: "k", Current: current}
			for _, method := range []string{"PUT", "DELETE"} {
				w := mustServe(t, h, request{method: method, target: "/v1/kv/k", hdr: []string{"If-Match", `"5"`}})
				mustError(t, w, 412, "precondition_failed")
				mustEqualJSON(t, w.Body.Bytes(), `{"error":{"code":"precondition_failed","message":`+jsonString(pe.Error())+`,"revision":`+tc.rev+`}}`)
				if got := w.Header().Get("X-Cairn-Revision"); got != tc.rev {
					t.Fatalf("%s: X-Cairn-Revision %q, want %q", method, got, tc.rev)
				}
			}
			// Nothing changed.
			w := mustServe(t, h, request{method: "GET", target: "/v1/kv/k"})
			if tc.exists && (w.Code != 200 || w.Body.String() != "v" || w.Header().Get("ETag") != `"9"`) {
				t.Errorf("after the failed writes: %d %q %v", w.Code, w.Body, w.Header())
			}
			if !tc.exists && w.Code != 404 {
				t.Errorf("after the failed writes: %d %q", w.Code, w.Body)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		hdr          []string
		setup        []string // keys written first, one revision each
		body         string
		gone, kept   []string
	}{
		{name: "one", target: "/v1/kv/a/b", setup: []string{"a/b", "a/c"}, body: `{"deleted":1,"revision":3}`,
			gone: []string{"a/b"}, kept: []string{"a/c"}},
		{name: "missing", target: "/v1/kv/nope", setup: []string{"x"}, body: `{"deleted":0,"revision":1}`, kept: []string{"x"}},
		{name: "prefix", target: "/v1/kv/a/?prefix=true", setup: []string{"a/1", "a/2", "a/3", "b"}, body: `{"deleted":3,"revision":5}`,
			gone: []string{"a/1", "a/2", "a/3"}, kept: []string{"b"}},
		{name: "everything", target: "/v1/kv/?prefix=true", setup: []string{"a", "b", "c/1", "c/2", "d"}, body: `{"deleted":5,"revision":6}`,
			gone: []string{"a", "b", "c/1", "c/2", "d"}},
		{name: "prefix false", target: "/v1/kv/a?prefix=false", setup: []string{"a", "ab"}, body: `{"deleted":1,"revision":3}`,
			gone: []string{"a"}, kept: []string{"ab"}},
		{name: "if-match", target: "/v1/kv/a", hdr: []string{"If-Match", `"2"`}, setup: []string{"b", "a"}, body: `{"deleted":1,"revision":3}`,
			gone: []string{"a"}, kept: []string{"b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, svc := engineHandler(t)
			for _, k := range tc.setup {
				kvtest.MustPut(t, svc, k, "v", kv.PutOptions{})
			}
			w := mustServe(t, h, request{method: "DELETE", target: tc.target, hdr: tc.hdr})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			mustEqualJSON(t, w.Body.Bytes(), tc.body)
			for _, k := range tc.gone {
				if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/" + k}); w.Code != 404 {
					t.Errorf("GET %s after the delete: %d", k, w.Code)
				}
			}
			for _, k := range tc.kept {
				if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/" + k}); w.Code != 200 {
					t.Errorf("GET %s after the delete: %d", k, w.Code)
				}
			}
		})
	}
}

func TestDeleteRejected(t *testing.T) {
	for _, rq := range []request{
		{method: "DELETE", target: "/v1/kv/a/?prefix=true", hdr: []string{"If-Match", `"3"`}},
		{method: "DELETE", target: "/v1/kv/a", hdr: []string{"If-Match", `"0"`}},
		{method: "DELETE", target: "/v1/kv/a", hdr: []string{"If-Match", `*`}},
		{method: "DELETE", target: "/v1/kv/a?prefix=yes"},
	} {
		t.Run(rq.target+" "+strings.Join(rq.hdr, " "), func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), rq), 400, "bad_request")
			mustNotCall(t, f)
		})
	}
}

func TestPatch(t *testing.T) {
	for _, ct := range []string{"application/merge-patch+json", "application/merge-patch+json; charset=utf-8", "Application/Merge-Patch+JSON"} {
		t.Run(ct, func(t *testing.T) {
			h, svc := engineHandler(t)
			// Created at revision 2 with an expiry; the patch is revision 5.
			mustWriteAt(t, svc, 2, putExpiring("doc", `{"a":1}`))
			mustWriteAt(t, svc, 4, put("other", ""))
			w := mustServe(t, h, request{method: "PATCH", target: "/v1/kv/doc", body: `{"b":2}`, hdr: []string{"Content-Type", ct}})
			if w.Code != 200 || w.Body.String() != `{"a":1,"b":2}` {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			for k, v := range map[string]string{
				"Content-Type": "application/json", "ETag": `"5"`, "X-Cairn-Revision": "5",
				"X-Cairn-Create-Revision": "2", "X-Cairn-Version": "2", "X-Cairn-Expires": expiryText,
			} {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/doc"}); w.Body.String() != `{"a":1,"b":2}` {
				t.Errorf("GET after the patch: %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestPatchRejected(t *testing.T) {
	mp := []string{"Content-Type", "application/merge-patch+json"}
	for _, tc := range []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"no content type", request{method: "PATCH", target: "/v1/kv/doc", body: "{}"}, 415, "unsupported_media_type"},
		{"json", request{method: "PATCH", target: "/v1/kv/doc", body: "{}", hdr: []string{"Content-Type", "application/json"}}, 415, "unsupported_media_type"},
		{"json patch", request{method: "PATCH", target: "/v1/kv/doc", body: "[]", hdr: []string{"Content-Type", "application/json-patch+json"}}, 415, "unsupported_media_type"},
		{"garbled type", request{method: "PATCH", target: "/v1/kv/doc", body: "{}", hdr: []string{"Content-Type", ";;"}}, 415, "unsupported_media_type"},
		{"invalid json", request{method: "PATCH", target: "/v1/kv/doc", body: `{"a":`, hdr: mp}, 400, "bad_request"},
		{"empty", request{method: "PATCH", target: "/v1/kv/doc", body: ``, hdr: mp}, 400, "bad_request"},
		{"too large", request{method: "PATCH", target: "/v1/kv/doc", body: `{"a":"` + strings.Repeat("x", 20) + `"}`, hdr: mp}, 413, "value_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{}
			mustError(t, mustServe(t, mustHandler(t, f), tc.rq), tc.status, tc.code)
			mustNotCall(t, f)
		})
	}
}

func TestPatchNotJSON(t *testing.T) {
	h, svc := engineHandler(t)
	kvtest.MustPut(t, svc, "doc", "plain text", kv.PutOptions{})
	w := mustServe(t, h, request{method: "PATCH", target: "/v1/kv/doc", body: `{}`,
		hdr: []string{"Content-Type", "application/merge-patch+json"}})
	mustError(t, w, http.StatusConflict, "not_json")
	if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/doc"}); w.Body.String() != "plain text" {
		t.Errorf("GET after the refused patch: %d %s", w.Code, w.Body)
	}
}

// TestRequestContext checks that the service gets the request's context.
func TestRequestContext(t *testing.T) {
	type ctxKey struct{}
	check := func(ctx context.Context) {
		if ctx.Value(ctxKey{}) != "marker" {
			t.Error("the service did not get the request's context")
		}
	}
	f := &fakeService{
		get: func(ctx context.Context, _ string, _ kv.ReadOptions) (*kv.Record, error) {
			check(ctx)
			return record("k", "", 1, 1, 1), nil
		},
		list: func(ctx context.Context, _ string, _ kv.ListOptions) (*kv.ListResult, error) {
			check(ctx)
			return &kv.ListResult{}, nil
		},
		put: func(ctx context.Context, _ string, _ []byte, _ kv.PutOptions) (*kv.Record, error) {
			check(ctx)
			return record("k", "", 1, 1, 1), nil
		},
		patch: func(ctx context.Context, _ string, _ []byte) (*kv.Record, error) {
			check(ctx)
			return record("k", "{}", 1, 1, 1), nil
		},
		txn: func(ctx context.Context, t kv.Txn) (*kv.TxnResult, error) {
			check(ctx)
			if len(t.Success) == 1 && t.Success[0].Type == kv.OpDelete { // DELETE
				return deleted(t, 0, 1), nil
			}
			return &kv.TxnResult{}, nil
		},
		ring:               func(ctx context.Context, _ string) (*kv.RingInfo, error) { check(ctx); return &kv.RingInfo{}, nil },
		members:            func(ctx context.Context) ([]kv.Member, error) { check(ctx); return nil, nil },
		addMember:          func(ctx context.Context, _ kv.MemberSpec) error { check(ctx); return nil },
		removeMember:       func(ctx context.Context, _ string) error { check(ctx); return nil },
		promoteMember:      func(ctx context.Context, _ string) error { check(ctx); return nil },
		transferLeadership: func(ctx context.Context, _ string) error { check(ctx); return nil },
		status:             func(ctx context.Context) (*kv.Status, error) { check(ctx); return &kv.Status{Leader: "n1"}, nil },
	}
	h := mustHandler(t, f)
	for _, rq := range []request{
		{method: "GET", target: "/v1/kv/k"},
		{method: "GET", target: "/v1/kv/k?list=true"},
		{method: "PUT", target: "/v1/kv/k"},
		{method: "DELETE", target: "/v1/kv/k"},
		{method: "PATCH", target: "/v1/kv/k", body: "{}", hdr: []string{"Content-Type", "application/merge-patch+json"}},
		{method: "POST", target: "/v1/txn", body: "{}"},
		{method: "GET", target: "/v1/cluster/members"},
		{method: "POST", target: "/v1/cluster/members", body: `{"name":"n","peer_addr":"a:1"}`},
		{method: "DELETE", target: "/v1/cluster/members/n"},
		{method: "POST", target: "/v1/cluster/members/n/promote"},
		{method: "POST", target: "/v1/cluster/leader/transfer"},
		{method: "GET", target: "/v1/cluster/status"},
		{method: "GET", target: "/v1/ring"},
		{method: "GET", target: reposeObjects + "k"},
		{method: "PUT", target: reposeObjects + "k"},
		{method: "DELETE", target: reposeObjects + "k"},
		{method: "PATCH", target: reposeObjects + "k", body: "{}"},
	} {
		r := httptest.NewRequest(rq.method, rq.target, strings.NewReader(rq.body))
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, "marker"))
		for i := 0; i+1 < len(rq.hdr); i += 2 {
			r.Header.Set(rq.hdr[i], rq.hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code/100 != 2 {
			t.Errorf("%s %s: %d %s", rq.method, rq.target, w.Code, w.Body)
		}
	}
}
