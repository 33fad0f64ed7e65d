package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// The keyspace commands send one flag per field of the policy and say what
// they did, naming the members that have not applied a change yet.
func TestKeyspaceCommands(t *testing.T) {
	var got []string // method, path and body of each request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.EscapedPath()+" "+string(body))
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/keyspaces":
			w.Write([]byte(`{"keyspaces":[{"prefix":"","mode":"strong"},{"prefix":"certs/","mode":"eventual","replicas":"all","write_quorum":1,"sloppy_quorum":true}]}`))
		case r.Method == http.MethodGet:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"kv: not found"}}`))
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/keyspaces/full/"):
			w.WriteHeader(409)
			w.Write([]byte(`{"error":{"code":"conflict","message":"kv: conflict: it holds keys"}}`))
		case r.Method == http.MethodPut:
			var p map[string]any
			json.Unmarshal(body, &p)
			p["pending"] = []string{"n3"}
			json.NewEncoder(w).Encode(p)
		case r.Method == http.MethodDelete:
			w.Write([]byte(`{"prefix":"old/","mode":"strong","pending":[]}`))
		}
	}))
	t.Cleanup(srv.Close)
	ep := "--endpoints=" + srv.URL

	code, out, errOut := run(t, "", ep, "keyspace", "create", "cache/", "--mode", "eventual", "--replicas", "3",
		"--write-quorum", "2", "--read-quorum", "1", "--default-ttl", "60s", "--max-value-bytes", "100", "--sloppy-quorum=false")
	if code != ExitOK || out != "created keyspace \"cache/\" (eventual)\nnot yet applied on: n3\n" {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(got[len(got)-1], " ", 3)[2]), &sent); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"prefix": "cache/", "mode": "eventual", "replicas": 3.0, "write_quorum": 2.0, "read_quorum": 1.0,
		"default_ttl": "60s", "max_value_bytes": 100.0, "sloppy_quorum": false}
	if !reflect.DeepEqual(sent, want) {
		t.Fatalf("create sent %v, want %v", sent, want)
	}
	// Defaults are left to the server; "all" is a string.
	run(t, "", ep, "keyspace", "create", "certs/", "--mode", "eventual", "--replicas", "all")
	if last := got[len(got)-1]; last != `PUT /v1/keyspaces/certs/ {"prefix":"certs/","mode":"eventual","replicas":"all"}` {
		t.Fatalf("create with defaults sent %s", last)
	}
	if code, _, _ := run(t, "", ep, "keyspace", "create", "x/", "--replicas", "most"); code != ExitUsage {
		t.Fatalf("bad --replicas: exit %d", code)
	}
	if code, _, errOut := run(t, "", ep, "keyspace", "create", "full/"); code != ExitError || !strings.Contains(errOut, "409 conflict") {
		t.Fatalf("conflict: %d %q", code, errOut)
	}
	code, out, _ = run(t, "", ep, "keyspace", "list")
	if code != ExitOK || !strings.Contains(out, "PREFIX") || !strings.Contains(out, `"certs/"  eventual  all`) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out, _ := run(t, "", ep, "keyspace", "list", "-o", "json"); code != ExitOK || !strings.Contains(out, `"replicas": "all"`) {
		t.Fatalf("list json: %d\n%s", code, out)
	}
	if code, out, _ := run(t, "", ep, "keyspace", "delete", "old/"); code != ExitOK || out != "deleted keyspace \"old/\" (strong)\n" {
		t.Fatalf("delete: %d %q", code, out)
	}
	// The empty prefix is the path /v1/keyspaces/.
	run(t, "", ep, "keyspace", "get", "")
	if last := got[len(got)-1]; last != "GET /v1/keyspaces/ " {
		t.Fatalf("get of the empty prefix: %s", last)
	}
}

// keyspace create --materialize sends a materialize policy the server
// takes, and list shows it.
func TestKeyspaceCreateMaterialize(t *testing.T) {
	ep, _, _ := realAPI(t)
	code, _, errOut := run(t, "", ep, "keyspace", "create", "certs/", "--materialize", "/srv/certs", "--file-mode", "0640",
		"--on-change", "systemctl reload 'nginx web'", "--debounce", "2s")
	if code != ExitOK {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	code, out, _ := run(t, "", ep, "-o", "json", "keyspace", "get", "certs/")
	var k struct {
		Materialize struct {
			Dir      string   `json:"dir"`
			FileMode string   `json:"file_mode"`
			OnChange []string `json:"on_change"`
			Debounce string   `json:"debounce"`
		} `json:"materialize"`
	}
	if err := json.Unmarshal([]byte(out), &k); code != ExitOK || err != nil || k.Materialize.Dir != "/srv/certs" || k.Materialize.FileMode != "0640" ||
		!reflect.DeepEqual(k.Materialize.OnChange, []string{"systemctl", "reload", "nginx web"}) || k.Materialize.Debounce != "2s" {
		t.Fatalf("get: exit %d: %s", code, out)
	}
	if _, out, _ := run(t, "", ep, "keyspace", "list"); !strings.Contains(out, "/srv/certs (on_change systemctl reload nginx web)") {
		t.Fatalf("list: %s", out)
	}
	for _, bad := range [][]string{
		{"keyspace", "create", "x/", "--on-change", "true"},
		{"keyspace", "create", "x/", "--materialize", "relative"},
		{"keyspace", "create", "x/", "--materialize", "/x", "--on-change", "'unterminated"},
	} {
		if code, _, _ := run(t, "", append([]string{ep}, bad...)...); code == ExitOK {
			t.Errorf("%v accepted", bad)
		}
	}
}
