package httpapi

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/internal/kvtest"
)

// Keyspace policies over HTTP, on the real engine: create, read, list,
// change, delete, and every refusal, each of which changes nothing.
func TestKeyspaceEndpoints(t *testing.T) {
	h, _ := engineHandler(t)
	do := func(method, target, body string) (int, string) {
		t.Helper()
		w := mustServe(t, h, request{method: method, target: target, body: body})
		return w.Code, w.Body.String()
	}
	code, body := do("PUT", "/v1/keyspaces/sessions/", `{"mode":"strong","default_ttl":"60s","max_value_bytes":10}`)
	if code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	mustEqualJSON(t, []byte(body), `{"prefix":"sessions/","mode":"strong","default_ttl":"1m0s","max_value_bytes":10,"pending":[]}`)
	code, body = do("GET", "/v1/keyspaces/sessions/", "")
	if code != 200 {
		t.Fatalf("get: %d %s", code, body)
	}
	mustEqualJSON(t, []byte(body), `{"prefix":"sessions/","mode":"strong","default_ttl":"1m0s","max_value_bytes":10}`)
	// The empty prefix is /v1/keyspaces/ with nothing after the slash.
	code, body = do("GET", "/v1/keyspaces/", "")
	if code != 200 {
		t.Fatalf("get the default: %d %s", code, body)
	}
	mustEqualJSON(t, []byte(body), `{"prefix":"","mode":"strong"}`)
	// A put with no TTL takes the default.
	if code, body := do("PUT", "/v1/kv/sessions/a", "v"); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	w := mustServe(t, h, request{method: "GET", target: "/v1/kv/sessions/a"})
	if w.Code != 200 || w.Header().Get("X-Cairn-Expires") == "" {
		t.Fatalf("the default TTL was not applied: %d %v", w.Code, w.Header())
	}
	if code, body := do("PUT", "/v1/kv/app/x", "v"); code != 200 {
		t.Fatalf("put: %d %s", code, body)
	}
	// Other fields may change while the keyspace holds keys.
	if code, body := do("PUT", "/v1/keyspaces/sessions/", `{"prefix":"sessions/","mode":"strong","default_ttl":"2m"}`); code != 200 {
		t.Fatalf("change: %d %s", code, body)
	}
	for _, tc := range []struct {
		name, method, target, body string
		status                     int
		code                       string
	}{
		{"unknown field", "PUT", "/v1/keyspaces/x/", `{"mode":"strong","replica":3}`, 400, "bad_request"},
		{"bad ttl", "PUT", "/v1/keyspaces/x/", `{"mode":"strong","default_ttl":"soon"}`, 400, "bad_request"},
		{"bad replicas", "PUT", "/v1/keyspaces/x/", `{"mode":"eventual","replicas":"most"}`, 400, "bad_request"},
		{"another prefix", "PUT", "/v1/keyspaces/x/", `{"prefix":"y/","mode":"strong"}`, 400, "bad_request"},
		{"no body", "PUT", "/v1/keyspaces/x/", ``, 400, "bad_request"},
		{"eventual", "PUT", "/v1/keyspaces/cache/", `{"mode":"eventual","replicas":3,"write_quorum":2}`, 400, "bad_request"},
		{"default eventual", "PUT", "/v1/keyspaces/", `{"mode":"eventual"}`, 400, "bad_request"},
		{"over keys", "PUT", "/v1/keyspaces/ap", `{"mode":"strong"}`, 409, "conflict"},
		{"delete with keys", "DELETE", "/v1/keyspaces/sessions/", ``, 409, "conflict"},
		{"delete the default", "DELETE", "/v1/keyspaces/", ``, 400, "bad_request"},
		{"get missing", "GET", "/v1/keyspaces/nothing/", ``, 404, "not_found"},
		{"delete missing", "DELETE", "/v1/keyspaces/nothing/", ``, 404, "not_found"},
		{"post", "POST", "/v1/keyspaces/x/", `{}`, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mustError(t, mustServe(t, h, request{method: tc.method, target: tc.target, body: tc.body}), tc.status, tc.code)
		})
	}
	code, body = do("GET", "/v1/keyspaces", "")
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	mustEqualJSON(t, []byte(body), `{"keyspaces":[{"prefix":"","mode":"strong"},{"prefix":"sessions/","mode":"strong","default_ttl":"2m0s"}]}`)
	// Emptied, the keyspace can go.
	if code, body := do("DELETE", "/v1/kv/sessions/a", ""); code != 200 {
		t.Fatalf("delete key: %d %s", code, body)
	}
	code, body = do("DELETE", "/v1/keyspaces/sessions/", "")
	if code != 200 {
		t.Fatalf("delete: %d %s", code, body)
	}
	mustEqualJSON(t, []byte(body), `{"prefix":"sessions/","mode":"strong","default_ttl":"2m0s","pending":[]}`)
	// A prefix the mux would clean is taken as sent.
	if code, body := do("PUT", "/v1/keyspaces/a//b/", `{"mode":"strong"}`); code != 200 || !strings.Contains(body, `"prefix":"a//b/"`) {
		t.Fatalf("unclean prefix: %d %s", code, body)
	}
}

// Policies are cluster configuration: reading them needs admin too.
func TestKeyspaceEndpointsNeedAdmin(t *testing.T) {
	h, _ := engineHandler(t,
		kvtest.Users(kvtest.User(t, "bob", "pw"), kvtest.User(t, "root", "pw")),
		kvtest.Rules(
			auth.Rule{Identity: "root", Actions: []string{"read", "write", "admin"}},
			auth.Rule{Identity: "bob", Actions: []string{"read", "write"}},
		))
	bob := []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("bob:pw"))}
	for _, rq := range []request{
		{method: "GET", target: "/v1/keyspaces", hdr: bob},
		{method: "GET", target: "/v1/keyspaces/", hdr: bob},
		{method: "PUT", target: "/v1/keyspaces/x/", body: `{"mode":"strong"}`, hdr: bob},
		{method: "DELETE", target: "/v1/keyspaces/x/", hdr: bob},
	} {
		mustError(t, mustServe(t, h, rq), 403, "permission_denied")
	}
	mustError(t, mustServe(t, h, request{method: "GET", target: "/v1/keyspaces"}), 401, "unauthenticated")
}
