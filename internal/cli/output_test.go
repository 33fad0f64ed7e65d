package cli

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/bench"
)

// changeAPI stands in for a three-member cluster led by n1, answering each
// state-changing request as the real API does.
func changeAPI(t *testing.T) string {
	t.Helper()
	const (
		ledByN1 = `{"members":[{"name":"n1","peer_addr":"h:1","voter":true,"leader":true},{"name":"n2","peer_addr":"h:2","voter":true,"leader":false},{"name":"n3","peer_addr":"h:3","voter":false,"leader":false}]}`
		afterN1 = `{"members":[{"name":"n2","peer_addr":"h:2","voter":true,"leader":true},{"name":"n3","peer_addr":"h:3","voter":true,"leader":false}]}`
		withN4  = `{"members":[{"name":"n1","peer_addr":"h:1","voter":true,"leader":true},{"name":"n4","peer_addr":"h:4","voter":false,"leader":false}]}`
		allVote = `{"members":[{"name":"n1","peer_addr":"h:1","voter":true,"leader":true},{"name":"n3","peer_addr":"h:3","voter":true,"leader":false}]}`
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/kv/nl":
			w.Write([]byte("value\n"))
		case "GET /v1/kv/k":
			w.Write([]byte("value"))
		case "PUT /v1/kv/k":
			w.Write([]byte(`{"revision":7}`))
		case "DELETE /v1/kv/logs/":
			w.Write([]byte(`{"deleted":12,"revision":8}`))
		case "DELETE /v1/kv/k":
			w.Write([]byte(`{"deleted":1,"revision":9}`))
		case "GET /v1/cluster/members":
			w.Write([]byte(ledByN1))
		case "POST /v1/cluster/members":
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(withN4))
		case "DELETE /v1/cluster/members/n1":
			w.Write([]byte(afterN1))
		case "DELETE /v1/cluster/members/n2":
			// The node asked could not list the members after the removal.
			w.Write([]byte(`{"removed":"n2","members":null,"message":"removed"}`))
		case "POST /v1/cluster/members/n3/promote":
			w.Write([]byte(allVote))
		case "POST /v1/cluster/leader/transfer":
			w.Write([]byte(`{"leader":"n2"}`))
		case "PUT /v1/auth/users/ci", "DELETE /v1/auth/users/ci", "DELETE /v1/auth/users/ci/tokens/c442":
			w.WriteHeader(http.StatusNoContent)
		case "PUT /v1/auth/rules":
			w.Write([]byte(`{"config":[],"rules":[{"identity":"ci","keys":"app/","actions":["read"]}]}`))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no route"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return "--endpoints=" + srv.URL
}

// Every state-changing command says what it did, in a table and as JSON.
func TestChangeOutputs(t *testing.T) {
	ep := changeAPI(t)
	cases := []struct {
		args        []string
		stdin       string
		table, json string
	}{
		{[]string{"put", "k", "v"}, "", "OK revision 7\n", "{\n  \"revision\": 7\n}\n"},
		{[]string{"del", "--prefix", "logs/"}, "", "deleted 12 keys at revision 8\n",
			"{\n  \"deleted\": 12,\n  \"revision\": 8\n}\n"},
		{[]string{"del", "k"}, "", "deleted 1 key at revision 9\n", "{\n  \"deleted\": 1,\n  \"revision\": 9\n}\n"},
		{[]string{"members", "promote", "n3"}, "",
			"promoted n3 to voter\n" +
				"NAME  PEER  CLIENT  RESP  VOTER  LEADER\n" +
				"n1    h:1                 true   true\n" +
				"n3    h:3                 true   false\n",
			`{
  "action": "promoted",
  "member": "n3",
  "voter": true,
  "leader": "n1",
  "members": [
    {
      "name": "n1",
      "peer_addr": "h:1",
      "voter": true,
      "leader": true
    },
    {
      "name": "n3",
      "peer_addr": "h:3",
      "voter": true,
      "leader": false
    }
  ]
}
`},
		{[]string{"members", "remove", "n1"}, "",
			"removed n1 (was leader; leadership moved to n2)\n" +
				"NAME  PEER  CLIENT  RESP  VOTER  LEADER\n" +
				"n2    h:2                 true   true\n" +
				"n3    h:3                 true   false\n",
			`{
  "action": "removed",
  "member": "n1",
  "was_leader": true,
  "leader": "n2",
  "members": [
    {
      "name": "n2",
      "peer_addr": "h:2",
      "voter": true,
      "leader": true
    },
    {
      "name": "n3",
      "peer_addr": "h:3",
      "voter": true,
      "leader": false
    }
  ]
}
`},
		{[]string{"members", "remove", "n2"}, "", "removed n2\n",
			"{\n  \"action\": \"removed\",\n  \"member\": \"n2\",\n  \"leader\": \"\",\n  \"members\": []\n}\n"},
		{[]string{"members", "add", "n4", "h:4", "--non-voter"}, "",
			"added n4 as a non-voter\n" +
				"NAME  PEER  CLIENT  RESP  VOTER  LEADER\n" +
				"n1    h:1                 true   true\n" +
				"n4    h:4                 false  false\n",
			`{
  "action": "added",
  "member": "n4",
  "voter": false,
  "leader": "n1",
  "members": [
    {
      "name": "n1",
      "peer_addr": "h:1",
      "voter": true,
      "leader": true
    },
    {
      "name": "n4",
      "peer_addr": "h:4",
      "voter": false,
      "leader": false
    }
  ]
}
`},
		{[]string{"leader", "transfer", "--to", "n2"}, "", "transferred leadership to n2\n", "{\n  \"leader\": \"n2\"\n}\n"},
		{[]string{"auth", "users", "set", "ci"}, "pw\n", "set the password of user ci\n",
			"{\n  \"password_set\": true,\n  \"user\": \"ci\"\n}\n"},
		{[]string{"auth", "users", "del", "ci"}, "", "deleted user ci and its tokens\n",
			"{\n  \"deleted\": true,\n  \"user\": \"ci\"\n}\n"},
		{[]string{"auth", "tokens", "del", "ci", "c442"}, "", "revoked token c442 of user ci\n",
			"{\n  \"id\": \"c442\",\n  \"revoked\": true,\n  \"user\": \"ci\"\n}\n"},
		{[]string{"auth", "rules", "set", "-"}, "- identity: ci\n  keys: app/\n  actions: [read]\n",
			"replaced the cluster rules with 1 rule\n" +
				"#  SOURCE   IDENTITY  KEYS  ACTIONS  EFFECT\n" +
				"1  cluster  ci        app/  read     allow\n",
			`{
  "rules": [
    {
      "identity": "ci",
      "keys": "app/",
      "actions": [
        "read"
      ]
    }
  ]
}
`},
	}
	for _, tc := range cases {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			if code, out, errOut := run(t, tc.stdin, append([]string{ep}, tc.args...)...); code != ExitOK || out != tc.table {
				t.Errorf("table: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tc.table)
			}
			if code, out, errOut := run(t, tc.stdin, append([]string{ep, "-o", "json"}, tc.args...)...); code != ExitOK || out != tc.json {
				t.Errorf("json: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tc.json)
			}
		})
	}
}

// `get` ends the line on a terminal only; elsewhere, or with --raw, it
// writes the exact bytes.
func TestGetNewline(t *testing.T) {
	ep := changeAPI(t)
	cases := []struct {
		terminal bool
		args     []string
		want     string
	}{
		{true, []string{"get", "k"}, "value\n"},
		{true, []string{"get", "nl"}, "value\n"}, // already ends the line
		{true, []string{"get", "k", "--raw"}, "value"},
		{false, []string{"get", "k"}, "value"},
		{false, []string{"get", "nl"}, "value\n"},
		{true, []string{"-o", "json", "get", "k"}, "{\n  \"key\": \"k\",\n  \"value\": \"value\",\n  \"create_revision\": 0,\n  \"mod_revision\": 0,\n  \"version\": 0\n}\n"},
	}
	for _, tc := range cases {
		var out, errb bytes.Buffer
		code := Main(context.Background(), append([]string{ep}, tc.args...), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb,
			Getenv: func(string) string { return "" }, StdoutIsTerminal: tc.terminal})
		if code != ExitOK || out.String() != tc.want {
			t.Errorf("terminal %v, cairn %v: exit %d, stdout %q (want %q), stderr %q", tc.terminal, tc.args, code, out.String(), tc.want, errb.String())
		}
	}
	if _, out, _ := run(t, "", "get", "--help"); !strings.Contains(out, "--raw") || !strings.Contains(out, "byte-exact") {
		t.Errorf("get --help does not document the newline rule:\n%s", out)
	}
}

// The bench table is unchanged by the units in its JSON.
func TestBenchTable(t *testing.T) {
	st := func(ops int64, p50 time.Duration) *bench.Stats {
		return &bench.Stats{Ops: ops, Errors: 1, P50: p50, P90: 2 * p50, P99: 3 * p50, P999: 4 * p50, Max: 5 * p50, PerSec: float64(ops) / 2}
	}
	res := &bench.Result{Protocol: "http", Clients: 64, Pipeline: 1, Elapsed: 2*time.Second + 345678*time.Microsecond,
		All: *st(3000, 1500*time.Microsecond), ByOp: map[string]*bench.Stats{"put": st(1000, 2*time.Millisecond), "get": st(2000, time.Millisecond)},
		FirstError: "503 unavailable"}
	var out bytes.Buffer
	if err := printBench(&out, res); err != nil {
		t.Fatal(err)
	}
	const want = "http, 64 clients, pipeline 1, 2.346s\n" +
		"   op   ops  errors  ops/s     p50     p90     p99   p99.9      max\n" +
		"  put  1000       1    500  2.00ms  4.00ms  6.00ms  8.00ms  10.00ms\n" +
		"  get  2000       1   1000  1.00ms  2.00ms  3.00ms  4.00ms   5.00ms\n" +
		"  all  3000       1   1500  1.50ms  3.00ms  4.50ms  6.00ms   7.50ms\n" +
		"first error: 503 unavailable\n"
	if out.String() != want {
		t.Fatalf("bench table:\n%s\nwant:\n%s", out.String(), want)
	}
}

// A leader that removes itself answers with no member list; the command
// then asks again until another member leads, and names it.
func TestRemoveLeaderAwaitsNewLeader(t *testing.T) {
	var removed atomic.Bool
	var lists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete:
			removed.Store(true)
			w.Write([]byte(`{"removed":"n1","members":null,"message":"removed; this node cannot list the members now"}`))
		case !removed.Load():
			w.Write([]byte(`{"members":[{"name":"n1","peer_addr":"h:1","voter":true,"leader":true},{"name":"n2","peer_addr":"h:2","voter":true,"leader":false}]}`))
		case lists.Add(1) < 3: // an election is under way
			w.Write([]byte(`{"members":[{"name":"n2","peer_addr":"h:2","voter":true,"leader":false}]}`))
		default:
			w.Write([]byte(`{"members":[{"name":"n2","peer_addr":"h:2","voter":true,"leader":true}]}`))
		}
	}))
	t.Cleanup(srv.Close)
	code, out, errOut := run(t, "", "--endpoints="+srv.URL, "members", "remove", "n1")
	const want = "removed n1 (was leader; leadership moved to n2)\n" +
		"NAME  PEER  CLIENT  RESP  VOTER  LEADER\n" +
		"n2    h:2                 true   true\n"
	if code != ExitOK || out != want {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, want)
	}
}
