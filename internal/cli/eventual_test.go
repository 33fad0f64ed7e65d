package cli

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const stamp = "2026-12-01T12:00:00.250Z-00003"

// eventualAPI stands in for a node with an eventual keyspace "ev/" on a
// three-member ring, answering as the real API does. It records the query
// of every request.
func eventualAPI(t *testing.T) (ep string, queries func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		eventual := func() {
			w.Header().Set("X-Cairn-Mode", "eventual")
			w.Header().Set("X-Cairn-Timestamp", stamp)
		}
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/kv/ev/a":
			eventual()
			w.Header().Set("X-Cairn-Origin", "n2")
			w.Write([]byte("value"))
		case "PUT /v1/kv/ev/a":
			eventual()
			w.Write([]byte(`{"timestamp":"` + stamp + `","acks":2,"replicas":3}`))
		case "DELETE /v1/kv/ev/a":
			eventual()
			w.Write([]byte(`{"deleted":1,"timestamp":"` + stamp + `","acks":3,"replicas":3}`))
		case "GET /v1/kv/ev/":
			w.Write([]byte(`{"revision":0,"items":[{"key":"ev/a","value":"dmFsdWU=","timestamp":"` + stamp + `","origin":"n2"}],"more":false}`))
		case "GET /v1/kv/":
			w.Write([]byte(`{"revision":7,"items":[{"key":"app/x","value":"cw==","create_revision":3,"mod_revision":7,"version":2},` +
				`{"key":"ev/a","value":"dmFsdWU=","timestamp":"` + stamp + `","origin":"n2"}],"more":false}`))
		case "GET /v1/ring":
			switch r.URL.Query().Get("key") {
			case "":
				w.Write([]byte(`{"vnodes":2048,"members":[{"name":"n1","health":"self","share":0.334},{"name":"n2","health":"damaged","share":0.333},{"name":"n3","health":"healthy","share":0.333}]}`))
			case "ev/a":
				w.Write([]byte(`{"vnodes":2048,"members":[{"name":"n1","health":"self","share":0.334},{"name":"n2","health":"damaged","share":0.333},{"name":"n3","health":"healthy","share":0.333}],` +
					`"key":"ev/a","hash":"0x8f2c1b7a9e3d4c51","keyspace":"ev/","mode":"eventual","replicas":2,"preference":["n2","n3"]}`))
			default:
				w.Write([]byte(`{"vnodes":2048,"members":[{"name":"n1","health":"self","share":1}],"key":"app/x","hash":"0x0123456789abcdef","keyspace":"","mode":"strong"}`))
			}
		case "GET /v1/cluster/status":
			w.Write([]byte(`{"name":"n1","state":"leader","leader":"n1","term":2,"health":{"n3":"healthy","n1":"self","n2":"damaged"}}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no route"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return "--endpoints=" + srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// Eventual keys show their timestamp where strong keys show revisions, in
// a table and as JSON; cairn ring shows the ring and a key's replicas.
func TestEventualOutputs(t *testing.T) {
	ep, _ := eventualAPI(t)
	for _, tc := range []struct {
		args        []string
		table, json string
	}{
		{[]string{"put", "ev/a", "v"}, "OK timestamp " + stamp + " (2 of 3 replicas)\n",
			"{\n  \"timestamp\": \"" + stamp + "\",\n  \"acks\": 2,\n  \"replicas\": 3\n}\n"},
		{[]string{"del", "ev/a"}, "deleted 1 key at timestamp " + stamp + " (3 of 3 replicas)\n",
			"{\n  \"deleted\": 1,\n  \"timestamp\": \"" + stamp + "\",\n  \"acks\": 3,\n  \"replicas\": 3\n}\n"},
		{[]string{"get", "ev/a"}, "value",
			"{\n  \"key\": \"ev/a\",\n  \"value\": \"value\",\n  \"timestamp\": \"" + stamp + "\",\n  \"origin\": \"n2\"\n}\n"},
		{[]string{"list", "ev/"},
			"KEY   TIMESTAMP                       ORIGIN  EXPIRES  VALUE\n" +
				"ev/a  " + stamp + "  n2               value\n",
			"{\n  \"revision\": 0,\n  \"items\": [\n    {\n      \"key\": \"ev/a\",\n      \"value\": \"value\",\n      \"timestamp\": \"" + stamp + "\",\n      \"origin\": \"n2\"\n    }\n  ],\n  \"more\": false\n}\n"},
		{[]string{"list"},
			"KEY    REVISION  VERSION  TIMESTAMP                       ORIGIN  EXPIRES  VALUE\n" +
				"app/x  7         2                                                         s\n" +
				"ev/a                      " + stamp + "  n2               value\n",
			""},
		{[]string{"ring"},
			"NAME  HEALTH   SHARE\n" +
				"n1    self     33.4%\n" +
				"n2    damaged  33.3%\n" +
				"n3    healthy  33.3%\n",
			`{
  "vnodes": 2048,
  "members": [
    {
      "name": "n1",
      "health": "self",
      "share": 0.334
    },
    {
      "name": "n2",
      "health": "damaged",
      "share": 0.333
    },
    {
      "name": "n3",
      "health": "healthy",
      "share": 0.333
    }
  ]
}
`},
		{[]string{"ring", "ev/a"},
			"key       \"ev/a\"\n" +
				"hash      0x8f2c1b7a9e3d4c51\n" +
				"keyspace  \"ev/\" (eventual)\n" +
				"replicas  2\n" +
				"#  NAME  HEALTH\n" +
				"1  n2    damaged\n" +
				"2  n3    healthy\n",
			""},
		{[]string{"ring", "app/x"},
			"key       \"app/x\"\n" +
				"hash      0x0123456789abcdef\n" +
				"keyspace  \"\" (strong)\n" +
				"replicas  every voter (Raft)\n",
			""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			if code, out, errOut := run(t, "", append([]string{ep}, tc.args...)...); code != ExitOK || out != tc.table {
				t.Errorf("table: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tc.table)
			}
			if tc.json == "" {
				return
			}
			if code, out, errOut := run(t, "", append([]string{ep, "-o", "json"}, tc.args...)...); code != ExitOK || out != tc.json {
				t.Errorf("json: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tc.json)
			}
		})
	}
	if code, out, _ := run(t, "", ep, "-o", "json", "ring", "ev/a"); code != ExitOK || !strings.Contains(out, `"preference": [`) {
		t.Errorf("ring KEY -o json: %d %s", code, out)
	}
	if code, _, errOut := run(t, "", ep, "get", "ev/a", "--print-revision"); code != ExitOK || errOut != "timestamp "+stamp+" (written by n2)\n" {
		t.Errorf("get --print-revision: %d %q", code, errOut)
	}
	if code, out, _ := run(t, "", ep, "status"); code != ExitOK || !strings.Contains(out, "health         n1 self, n2 damaged, n3 healthy\n") {
		t.Errorf("status: %d\n%s", code, out)
	}
}

// The read and write options reach the API as its query parameters.
func TestEventualOptions(t *testing.T) {
	ep, queries := eventualAPI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "ev/a", "--consistency", "local"}, "GET /v1/kv/ev/a?consistency=local"},
		{[]string{"get", "ev/a", "--consistency", "lease"}, "GET /v1/kv/ev/a?consistency=lease"},
		{[]string{"get", "ev/a", "--consistency", "read-index"}, "GET /v1/kv/ev/a?consistency=read-index"},
		{[]string{"get", "ev/a", "--read-quorum", "2"}, "GET /v1/kv/ev/a?r=2"},
		{[]string{"put", "ev/a", "v", "--write-quorum", "2"}, "PUT /v1/kv/ev/a?w=2"},
		{[]string{"del", "ev/a", "--write-quorum", "3"}, "DELETE /v1/kv/ev/a?w=3"},
		{[]string{"list", "ev/", "--local"}, "GET /v1/kv/ev/?consistency=local&list=true"},
		{[]string{"ring", "ev/a"}, "GET /v1/ring?key=ev%2Fa"},
	} {
		if code, _, errOut := run(t, "", append([]string{ep}, tc.args...)...); code != ExitOK {
			t.Errorf("%v: exit %d %s", tc.args, code, errOut)
			continue
		}
		if q := queries(); q[len(q)-1] != tc.want {
			t.Errorf("%v sent %q, want %q", tc.args, q[len(q)-1], tc.want)
		}
	}
	for _, args := range [][]string{
		{"get", "ev/a", "--consistency", "eventual"},
		{"get", "ev/a", "--read-quorum", "-1"},
		{"put", "ev/a", "v", "--write-quorum", "-1"},
		{"ring", "a", "b"},
		{"ring", ""},
	} {
		if code, _, _ := run(t, "", append([]string{ep}, args...)...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
	}
}

// A node without the eventual engine has no ring: the command says why.
func TestRingWithoutEngine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":{"code":"bad_request","message":"kv: keyspace mode not supported: this node has no eventual engine"}}`))
	}))
	t.Cleanup(srv.Close)
	code, _, errOut := run(t, "", "--endpoints="+srv.URL, "ring")
	if code != ExitError || !strings.Contains(errOut, "no eventual engine") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
