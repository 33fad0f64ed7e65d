package httpapi

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

const objects = "/powerapi/dist-datastore/objects/"

// TestRepose walks the Repose datastore API through a real service: the
// statuses Repose answers, raw bodies, X-TTL, PATCH creating then merging.
func TestRepose(t *testing.T) {
	h, svc := engineHandler(t)
	steps := []struct {
		rq     request
		status int
		body   string
	}{
		{request{method: "PUT", target: objects + "object-key", body: "blob-1"}, 202, ""},
		{request{method: "GET", target: objects + "object-key"}, 200, "blob-1"},
		{request{method: "PUT", target: objects + "object-key", body: "blob-2"}, 202, ""},
		{request{method: "GET", target: objects + "object-key"}, 200, "blob-2"},
		{request{method: "GET", target: objects + "missing"}, 404, ""},
		{request{method: "PATCH", target: objects + "doc", body: `{"a":1}`, hdr: []string{"Content-Type", "application/json"}}, 200, `{"a":1}`},
		{request{method: "PATCH", target: objects + "doc", body: `{"b":2}`}, 200, `{"a":1,"b":2}`},
		{request{method: "PATCH", target: objects + "doc", body: `{"a":null}`, hdr: []string{"Content-Type", "application/merge-patch+json"}}, 200, `{"b":2}`},
		{request{method: "DELETE", target: objects + "object-key"}, 204, ""},
		{request{method: "GET", target: objects + "object-key"}, 404, ""},
		{request{method: "DELETE", target: objects + "object-key"}, 204, ""},
		{request{method: "PUT", target: objects + "a//b/../c", body: "odd"}, 202, ""},
	}
	for i, st := range steps {
		w := mustServe(t, h, st.rq)
		if st.status == 404 {
			mustError(t, w, 404, "key_not_found")
			continue
		}
		if w.Code != st.status || w.Body.String() != st.body {
			t.Fatalf("step %d, %s %s: %d %q, want %d %q", i, st.rq.method, st.rq.target, w.Code, w.Body, st.status, st.body)
		}
		switch st.rq.method {
		case "GET":
			mustHeaders(t, w.Header(), map[string]string{"Content-Type": "application/octet-stream", "X-Content-Type-Options": "nosniff"})
		case "PATCH":
			mustHeaders(t, w.Header(), map[string]string{"Content-Type": "application/json"})
		}
	}
	// Objects are keys under the Repose prefix, as written.
	for key, want := range map[string]string{"dist-datastore/doc": `{"b":2}`, "dist-datastore/a//b/../c": "odd"} {
		r, err := svc.Get(kvtest.Ctx(t), key, kv.ReadOptions{})
		if err != nil || string(r.Value) != want {
			t.Errorf("key %q: %v %v, want %q", key, r, err, want)
		}
	}
	if _, err := svc.Get(kvtest.Ctx(t), "dist-datastore/object-key", kv.ReadOptions{}); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Errorf("the deleted object is still a key: %v", err)
	}
}

func TestReposeTTL(t *testing.T) {
	h, _ := engineHandler(t)
	w := mustServe(t, h, request{method: "PUT", target: objects + "t", body: "v", hdr: []string{"X-TTL", "30"}})
	if w.Code != 202 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w = mustServe(t, h, request{method: "GET", target: objects + "t"})
	at, err := time.Parse(time.RFC3339Nano, w.Header().Get("X-Cairn-Expires"))
	if left := time.Until(at); err != nil || left < 25*time.Second || left > 30*time.Second {
		t.Errorf("X-Cairn-Expires %q (%v), want 30 s from the write", w.Header().Get("X-Cairn-Expires"), err)
	}
}

func TestReposeRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"ttl zero", request{method: "PUT", target: objects + "k", body: "v", hdr: []string{"X-TTL", "0"}}, 400, "bad_request"},
		{"ttl negative", request{method: "PUT", target: objects + "k", body: "v", hdr: []string{"X-TTL", "-5"}}, 400, "bad_request"},
		{"ttl duration", request{method: "PUT", target: objects + "k", body: "v", hdr: []string{"X-TTL", "30s"}}, 400, "bad_request"},
		{"ttl fraction", request{method: "PUT", target: objects + "k", body: "v", hdr: []string{"X-TTL", "1.5"}}, 400, "bad_request"},
		{"ttl overflow", request{method: "PUT", target: objects + "k", body: "v", hdr: []string{"X-TTL", "99999999999999999999"}}, 400, "bad_request"},
		{"ttl on patch", request{method: "PATCH", target: objects + "k", body: "{}", hdr: []string{"X-TTL", "5"}}, 400, "bad_request"},
		{"patch not json", request{method: "PATCH", target: objects + "k", body: `{"a":`}, 400, "bad_request"},
		{"patch empty", request{method: "PATCH", target: objects + "k"}, 400, "bad_request"},
		{"no name", request{method: "GET", target: objects}, 400, "bad_request"},
		{"no name put", request{method: "PUT", target: objects, body: "v"}, 400, "bad_request"},
		{"nul", request{method: "GET", target: objects + "a%00b"}, 400, "bad_request"},
		{"too long", request{method: "GET", target: objects + strings.Repeat("k", kv.MaxKeyBytes-len(DefaultReposePrefix)+1)}, 400, "bad_request"},
		{"too large", request{method: "PUT", target: objects + "k", body: strings.Repeat("x", testMaxValue+1)}, 413, "value_too_large"},
		{"method", request{method: "POST", target: objects + "k"}, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{}
			w := mustServe(t, mustHandler(t, f), tc.rq)
			mustError(t, w, tc.status, tc.code)
			mustNotCall(t, f)
			if tc.status == 405 && w.Header().Get("Allow") != "DELETE, GET, HEAD, PATCH, PUT" {
				t.Errorf("Allow %q", w.Header().Get("Allow"))
			}
		})
	}
	// The longest name that fits is a key.
	h, _ := engineHandler(t)
	if w := mustServe(t, h, request{method: "PUT", target: objects + strings.Repeat("k", kv.MaxKeyBytes-len(DefaultReposePrefix))}); w.Code != 202 {
		t.Errorf("longest name: %d %s", w.Code, w.Body)
	}
	// PATCH of an object that is not a JSON document is refused and leaves it.
	mustServe(t, h, request{method: "PUT", target: objects + "text", body: "plain"})
	mustError(t, mustServe(t, h, request{method: "PATCH", target: objects + "text", body: "{}"}), 409, "not_json")
	if w := mustServe(t, h, request{method: "GET", target: objects + "text"}); w.Body.String() != "plain" {
		t.Errorf("after the refused patch: %s", w.Body)
	}
}

func TestReposePrefixOption(t *testing.T) {
	svc := kvtest.NewService(t, kvtest.MaxValueBytes(testMaxValue))
	h := New(svc, Options{MaxValueBytes: testMaxValue, Logger: testLogger(t), ReposePrefix: "repose/objs/"})
	if w := mustServe(t, h, request{method: "PUT", target: objects + "k", body: "v"}); w.Code != 202 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if r, err := svc.Get(kvtest.Ctx(t), "repose/objs/k", kv.ReadOptions{}); err != nil || string(r.Value) != "v" {
		t.Fatalf("repose/objs/k: %v %v", r, err)
	}
	if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/repose/objs/k"}); w.Code != 200 || w.Body.String() != "v" {
		t.Fatalf("the object through /v1/kv: %d %s", w.Code, w.Body)
	}
}

// TestReposeACL: the Repose API is checked against the same rules as
// /v1/kv, on the keys under the prefix.
func TestReposeACL(t *testing.T) {
	basic := func(user string) []string {
		return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw"))}
	}
	h, svc := engineHandler(t,
		kvtest.Users(kvtest.User(t, "root", "pw"), kvtest.User(t, "cache", "pw")),
		kvtest.Rules(
			auth.Rule{Identity: "root", Actions: []string{"read", "write", "admin"}},
			auth.Rule{Identity: "cache", Keys: DefaultReposePrefix + "sessions/", Actions: []string{"read", "write"}},
		))
	for _, tc := range []struct {
		name   string
		rq     request
		status int
		code   string
	}{
		{"anonymous put", request{method: "PUT", target: objects + "sessions/a", body: "v"}, 401, "unauthenticated"},
		{"anonymous get", request{method: "GET", target: objects + "sessions/a"}, 401, "unauthenticated"},
		{"outside the rule", request{method: "PUT", target: objects + "other", body: "v", hdr: basic("cache")}, 403, "permission_denied"},
		{"patch outside", request{method: "PATCH", target: objects + "other", body: "{}", hdr: basic("cache")}, 403, "permission_denied"},
		{"delete outside", request{method: "DELETE", target: objects + "other", hdr: basic("cache")}, 403, "permission_denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustError(t, mustServe(t, h, tc.rq), tc.status, tc.code)
		})
	}
	if w := mustServe(t, h, request{method: "PUT", target: objects + "sessions/a", body: "v", hdr: basic("cache")}); w.Code != 202 {
		t.Fatalf("allowed put: %d %s", w.Code, w.Body)
	}
	if w := mustServe(t, h, request{method: "GET", target: objects + "sessions/a", hdr: basic("cache")}); w.Code != 200 || w.Body.String() != "v" {
		t.Fatalf("allowed get: %d %s", w.Code, w.Body)
	}
	for _, k := range []string{"dist-datastore/other"} {
		if _, err := svc.Get(kvtest.Ctx(t), k, kv.ReadOptions{}); !errors.Is(err, kv.ErrKeyNotFound) {
			t.Errorf("a refused write made %q: %v", k, err)
		}
	}
}

// TestReposeEventual: on an eventual keyspace (as a server configures the
// Repose prefix) the answers carry the version's timestamp.
func TestReposeEventual(t *testing.T) {
	ev := &kvtest.FakeEventual{Replicas: 1}
	h, svc := engineHandler(t, kvtest.Eventual(ev))
	kvtest.MustEventualKeyspace(t, svc, DefaultReposePrefix)
	w := mustServe(t, h, request{method: "PUT", target: objects + "k", body: "v"})
	if w.Code != 202 || w.Body.Len() != 0 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	ts := w.Header().Get("X-Cairn-Timestamp")
	mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Mode", "eventual", "X-Cairn-Origin", "n1"))
	w = mustServe(t, h, request{method: "GET", target: objects + "k"})
	mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Mode", "eventual", "X-Cairn-Timestamp", ts))
	w = mustServe(t, h, request{method: "PATCH", target: objects + "doc", body: `{"a":1}`})
	if w.Code != 200 || w.Body.String() != `{"a":1}` || w.Header().Get("X-Cairn-Timestamp") <= ts {
		t.Fatalf("PATCH: %d %s %v", w.Code, w.Body, w.Header())
	}
	w = mustServe(t, h, request{method: "DELETE", target: objects + "k"})
	if w.Code != 204 || w.Header().Get("X-Cairn-Timestamp") == "" {
		t.Fatalf("DELETE: %d %v", w.Code, w.Header())
	}
	mustError(t, mustServe(t, h, request{method: "GET", target: objects + "k"}), 404, "key_not_found")
}
