package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// Eventual keys run on a real service whose "ev/" keyspace is eventual,
// served by kvtest's stand-in for the eventual engine: the service routes,
// checks and refuses as it does in a server; the stand-in answers with
// timestamps and acks as the engine does.

// eventualHandler returns the API over a fresh real service with the
// eventual keyspace "ev/".
func eventualHandler(t testing.TB, opts ...kvtest.Option) (http.Handler, *kv.Service, *kvtest.FakeEventual) {
	t.Helper()
	ev := &kvtest.FakeEventual{Members: []string{"n1", "n2", "n3"}}
	h, svc := engineHandler(t, append(opts, kvtest.Eventual(ev))...)
	kvtest.MustEventualKeyspace(t, svc, "ev/")
	return h, svc, ev
}

// mustHeaders checks the answer's headers; "" means absent.
func mustHeaders(t testing.TB, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// revisionHeaders are absent from every answer about an eventual key.
var revisionHeaders = map[string]string{"ETag": "", "X-Cairn-Revision": "", "X-Cairn-Create-Revision": "", "X-Cairn-Version": ""}

func with(m map[string]string, kvs ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kvs); i += 2 {
		out[kvs[i]] = kvs[i+1]
	}
	return out
}

// mustStamp decodes a write's answer and checks its acks.
func mustStamp(t testing.TB, body []byte, acks, replicas int) (ts string, deleted *int64) {
	t.Helper()
	var out struct {
		Deleted   *int64 `json:"deleted"`
		Timestamp string `json:"timestamp"`
		Acks      int    `json:"acks"`
		Replicas  int    `json:"replicas"`
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("write answer %s: %v", body, err)
	}
	if out.Timestamp == "" || out.Acks != acks || out.Replicas != replicas {
		t.Fatalf("write answer %s, want %d of %d acks and a timestamp", body, acks, replicas)
	}
	return out.Timestamp, out.Deleted
}

func TestEventualPutGet(t *testing.T) {
	h, _, _ := eventualHandler(t)
	w := mustServe(t, h, request{method: "PUT", target: "/v1/kv/ev/a?ttl=1h", body: "hello"})
	if w.Code != 200 {
		t.Fatalf("PUT: %d %s", w.Code, w.Body)
	}
	ts, _ := mustStamp(t, w.Body.Bytes(), 3, 3)
	mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Timestamp", ts, "X-Cairn-Origin", "n1", "X-Cairn-Mode", "eventual"))

	w = mustServe(t, h, request{method: "GET", target: "/v1/kv/ev/a"})
	if w.Code != 200 || w.Body.String() != "hello" {
		t.Fatalf("GET: %d %q", w.Code, w.Body)
	}
	mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Timestamp", ts, "X-Cairn-Origin", "n1", "X-Cairn-Mode", "eventual",
		"X-Cairn-Consistency", "quorum", "X-Cairn-Stale", "", "Content-Type", "application/octet-stream"))
	if at, err := time.Parse(time.RFC3339Nano, w.Header().Get("X-Cairn-Expires")); err != nil || time.Until(at) < 59*time.Minute {
		t.Errorf("X-Cairn-Expires %q (%v), want an hour from the write", w.Header().Get("X-Cairn-Expires"), err)
	}

	// A second write has a later timestamp.
	w = mustServe(t, h, request{method: "PUT", target: "/v1/kv/ev/a", body: "again"})
	if ts2, _ := mustStamp(t, w.Body.Bytes(), 3, 3); ts2 <= ts {
		t.Errorf("second write stamped %s, first %s", ts2, ts)
	}

	// A strong key's answers are as they were: no eventual header.
	w = mustServe(t, h, request{method: "PUT", target: "/v1/kv/strong", body: "x"})
	mustEqualJSON(t, w.Body.Bytes(), `{"revision":1}`)
	w = mustServe(t, h, request{method: "GET", target: "/v1/kv/strong"})
	mustHeaders(t, w.Header(), map[string]string{"ETag": `"1"`, "X-Cairn-Revision": "1", "X-Cairn-Mode": "", "X-Cairn-Timestamp": "",
		"X-Cairn-Origin": "", "X-Cairn-Consistency": "linearizable"})
}

func TestEventualReadOptions(t *testing.T) {
	h, svc, ev := eventualHandler(t)
	kvtest.MustPut(t, svc, "ev/a", "v", kv.PutOptions{})
	kvtest.MustPut(t, svc, "strong", "s", kv.PutOptions{})
	for _, tc := range []struct {
		target      string
		want        kv.ReadOptions
		consistency string
		stale       string
	}{
		{"/v1/kv/ev/a", kv.ReadOptions{}, "quorum", ""},
		{"/v1/kv/ev/a?consistency=local", kv.ReadOptions{Local: true}, "local", "true"},
		{"/v1/kv/ev/a?r=2", kv.ReadOptions{ReadQuorum: 2}, "quorum", ""},
		{"/v1/kv/ev/a?consistency=serializable&r=3", kv.ReadOptions{Serializable: true, ReadQuorum: 3}, "quorum", ""},
		{"/v1/kv/ev/?list=true&consistency=local", kv.ReadOptions{Local: true}, "local", "true"},
		{"/v1/kv/ev/?list=true&r=2", kv.ReadOptions{ReadQuorum: 2}, "quorum", ""},
	} {
		t.Run(tc.target, func(t *testing.T) {
			n := len(ev.Reads())
			w := mustServe(t, h, request{method: "GET", target: tc.target})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			reads := ev.Reads()
			if len(reads) != n+1 || !reflect.DeepEqual(reads[n], tc.want) {
				t.Fatalf("the engine read with %+v, want %+v", reads[n:], tc.want)
			}
			mustHeaders(t, w.Header(), map[string]string{"X-Cairn-Consistency": tc.consistency, "X-Cairn-Stale": tc.stale})
		})
	}
	// The headers say how a read of an eventual key is served even when it
	// finds nothing.
	w := mustServe(t, h, request{method: "GET", target: "/v1/kv/ev/missing"})
	mustError(t, w, 404, "key_not_found")
	mustHeaders(t, w.Header(), map[string]string{"X-Cairn-Consistency": "quorum", "X-Cairn-Stale": ""})
	w = mustServe(t, h, request{method: "GET", target: "/v1/kv/missing"})
	mustHeaders(t, w.Header(), map[string]string{"X-Cairn-Consistency": "linearizable"})

	// consistency=local on a strong key is a read of this node's replica.
	w = mustServe(t, h, request{method: "GET", target: "/v1/kv/strong?consistency=local"})
	if w.Code != 200 || w.Body.String() != "s" {
		t.Fatalf("local read of a strong key: %d %s", w.Code, w.Body)
	}
	mustHeaders(t, w.Header(), map[string]string{"X-Cairn-Consistency": "local", "X-Cairn-Stale": "true", "X-Cairn-Revision": "1"})
}

// TestQuorumParams checks that bad ?r= and ?w= are refused before the
// service is called, and good ones reach it.
func TestQuorumParams(t *testing.T) {
	for _, rq := range []request{
		{method: "GET", target: "/v1/kv/ev/a?r=0"},
		{method: "GET", target: "/v1/kv/ev/a?r=-1"},
		{method: "GET", target: "/v1/kv/ev/a?r=two"},
		{method: "GET", target: "/v1/kv/ev/a?r=1.5"},
		{method: "GET", target: "/v1/kv/ev/a?r=99999999999999999999"},
		{method: "GET", target: "/v1/kv/ev/a?r=1&consistency=local"},
		{method: "GET", target: "/v1/kv/ev/?list=true&r=0"},
		{method: "PUT", target: "/v1/kv/ev/a?w=0", body: "v"},
		{method: "PUT", target: "/v1/kv/ev/a?w=all", body: "v"},
		{method: "DELETE", target: "/v1/kv/ev/a?w=-2"},
		{method: "POST", target: "/v1/txn?w=x", body: `{"success":[{"op":"put","key":"ev/a","value":"v"}]}`},
	} {
		t.Run(rq.method+" "+rq.target, func(t *testing.T) {
			f := &fakeService{}
			w := mustServe(t, mustHandler(t, f), rq)
			mustError(t, w, 400, "bad_request")
			mustNotCall(t, f)
		})
	}

	h, _, ev := eventualHandler(t)
	for _, rq := range []request{
		{method: "PUT", target: "/v1/kv/ev/a?w=2", body: "v"},
		{method: "DELETE", target: "/v1/kv/ev/a?w=2"},
		{method: "POST", target: "/v1/txn?w=2", body: `{"success":[{"op":"put","key":"ev/b","value":"v"}]}`},
	} {
		if w := mustServe(t, h, rq); w.Code != 200 {
			t.Fatalf("%s %s: %d %s", rq.method, rq.target, w.Code, w.Body)
		}
	}
	for i, txn := range ev.Writes() {
		if txn.WriteQuorum != 2 {
			t.Errorf("write %d reached the engine with write quorum %d, want 2", i, txn.WriteQuorum)
		}
	}
}

func TestEventualTooFewAcks(t *testing.T) {
	ev := &kvtest.FakeEventual{Reachable: 1}
	h, svc := engineHandler(t, kvtest.Eventual(ev))
	kvtest.MustEventualKeyspace(t, svc, "ev/")
	w := mustServe(t, h, request{method: "PUT", target: "/v1/kv/ev/a?w=2", body: "v"})
	mustError(t, w, 503, "unavailable")
	if !strings.Contains(w.Body.String(), "1 of 3") {
		t.Errorf("the answer does not say how many acked: %s", w.Body)
	}
	if w := mustServe(t, h, request{method: "PUT", target: "/v1/kv/ev/a", body: "v"}); w.Code != 200 {
		t.Errorf("W=1 with one replica reachable: %d %s", w.Code, w.Body)
	}
}

func TestEventualDelete(t *testing.T) {
	h, svc, _ := eventualHandler(t)
	kvtest.MustPut(t, svc, "ev/a", "v", kv.PutOptions{})
	for _, want := range []int64{1, 0} {
		w := mustServe(t, h, request{method: "DELETE", target: "/v1/kv/ev/a"})
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		ts, n := mustStamp(t, w.Body.Bytes(), 3, 3)
		if n == nil || *n != want {
			t.Fatalf("deleted %v, want %d: %s", n, want, w.Body)
		}
		mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Timestamp", ts, "X-Cairn-Mode", "eventual"))
	}
	if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/ev/a"}); w.Code != 404 {
		t.Fatalf("GET after the delete: %d %s", w.Code, w.Body)
	}
	kvtest.MustPut(t, svc, "ev/p/1", "v", kv.PutOptions{})
	kvtest.MustPut(t, svc, "ev/p/2", "v", kv.PutOptions{})
	w := mustServe(t, h, request{method: "DELETE", target: "/v1/kv/ev/p/?prefix=true"})
	if _, n := mustStamp(t, w.Body.Bytes(), 3, 3); n == nil || *n != 2 {
		t.Fatalf("prefix delete: %s", w.Body)
	}
}

// TestEventualRefusals: what needs agreement among replicas reaches the
// service as on a strong key, is refused there with a message that says
// the keyspace is eventual, and changes nothing.
func TestEventualRefusals(t *testing.T) {
	h, svc, _ := eventualHandler(t)
	kvtest.MustPut(t, svc, "ev/a", "v", kv.PutOptions{})
	for _, rq := range []request{
		{method: "PUT", target: "/v1/kv/ev/a", body: "x", hdr: []string{"If-Match", `"3"`}},
		{method: "PUT", target: "/v1/kv/ev/new", body: "x", hdr: []string{"If-Match", `"0"`}},
		{method: "PUT", target: "/v1/kv/ev/new", body: "x", hdr: []string{"If-None-Match", "*"}},
		{method: "DELETE", target: "/v1/kv/ev/a", hdr: []string{"If-Match", `"3"`}},
		{method: "POST", target: "/v1/txn", body: `{"compare":[{"key":"ev/a","target":"exists","op":"=","exists":true}],"success":[{"op":"put","key":"ev/a","value":"x"}]}`},
		{method: "POST", target: "/v1/txn", body: `{"success":[{"op":"put","key":"ev/a","value":"x"},{"op":"put","key":"strong","value":"x"}]}`},
	} {
		t.Run(rq.method+" "+rq.target+" "+strings.Join(rq.hdr, " "), func(t *testing.T) {
			w := mustServe(t, h, rq)
			mustError(t, w, 400, "bad_request")
			if !strings.Contains(w.Body.String(), "mode not supported") {
				t.Errorf("the refusal does not say why: %s", w.Body)
			}
		})
	}
	if w := mustServe(t, h, request{method: "PUT", target: "/v1/kv/ev/b", hdr: []string{"If-Match", `"1"`}}); !strings.Contains(w.Body.String(), "eventual") {
		t.Errorf("the refusal of If-Match does not name the keyspace as eventual: %s", w.Body)
	}
	for key, want := range map[string]int{"ev/a": 200, "ev/new": 404, "strong": 404} {
		if w := mustServe(t, h, request{method: "GET", target: "/v1/kv/" + key}); w.Code != want || (want == 200 && w.Body.String() != "v") {
			t.Errorf("GET %s after the refusals: %d %s", key, w.Code, w.Body)
		}
	}
}

func TestEventualListAndTxn(t *testing.T) {
	h, svc, _ := eventualHandler(t)
	a := kvtest.MustPut(t, svc, "ev/a", "hello", kv.PutOptions{})
	w := mustServe(t, h, request{method: "GET", target: "/v1/kv/ev/?list=true"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"revision":0,"more":false,"items":[
		{"key":"ev/a","value":"aGVsbG8=","timestamp":"`+a.Timestamp+`","origin":"n1"}]}`)

	w = mustServe(t, h, request{method: "POST", target: "/v1/txn", body: `{"success":[
		{"op":"put","key":"ev/cert","value":"C"},{"op":"put","key":"ev/key","value":"K"},{"op":"delete","key":"ev/a"}]}`})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var res struct {
		Timestamp string `json:"timestamp"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || res.Timestamp == "" {
		t.Fatalf("txn answer %s: %v", w.Body, err)
	}
	ts := res.Timestamp
	mustEqualJSON(t, w.Body.Bytes(), `{"succeeded":true,"timestamp":"`+ts+`","acks":3,"replicas":3,"results":[
		{"op":"put","key":"ev/cert","item":{"key":"ev/cert","value":"Qw==","timestamp":"`+ts+`","origin":"n1"}},
		{"op":"put","key":"ev/key","item":{"key":"ev/key","value":"Sw==","timestamp":"`+ts+`","origin":"n1"}},
		{"op":"delete","key":"ev/a","item":null,"deleted":1}]}`)
	mustHeaders(t, w.Header(), map[string]string{"X-Cairn-Timestamp": ts, "X-Cairn-Mode": "eventual"})
}

func TestEventualPatch(t *testing.T) {
	h, _, _ := eventualHandler(t)
	mp := []string{"Content-Type", "application/merge-patch+json"}
	mustServe(t, h, request{method: "PATCH", target: "/v1/kv/ev/doc", body: `{"a":1}`, hdr: mp})
	w := mustServe(t, h, request{method: "PATCH", target: "/v1/kv/ev/doc", body: `{"b":2}`, hdr: mp})
	if w.Code != 200 || w.Body.String() != `{"a":1,"b":2}` {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustHeaders(t, w.Header(), with(revisionHeaders, "X-Cairn-Mode", "eventual", "X-Cairn-Origin", "n1", "Content-Type", "application/json"))
	if w.Header().Get("X-Cairn-Timestamp") == "" {
		t.Error("no X-Cairn-Timestamp")
	}
}

func TestRing(t *testing.T) {
	h, _, _ := eventualHandler(t)
	share := 1.0 / 3
	for _, tc := range []struct {
		target string
		want   kv.RingInfo
	}{
		{"/v1/ring", kv.RingInfo{}},
		{"/v1/ring?key=ev/a", kv.RingInfo{Key: "ev/a", Hash: "0000000000000000", Keyspace: ptr("ev/"), Mode: "eventual",
			Replicas: 3, Preference: []string{"n1", "n2", "n3"}}},
		{"/v1/ring?key=strong", kv.RingInfo{Key: "strong", Hash: "0000000000000000", Keyspace: ptr(""), Mode: "strong"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			w := mustServe(t, h, request{method: "GET", target: tc.target})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			var got kv.RingInfo
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			tc.want.Vnodes = 2048
			tc.want.Members = []kv.RingMember{{Name: "n1", Health: "self", Share: share}, {Name: "n2", Health: "healthy", Share: share},
				{Name: "n3", Health: "healthy", Share: share}}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	mustError(t, mustServe(t, h, request{method: "GET", target: "/v1/ring?key=a%00b"}), 400, "bad_request")
	mustError(t, mustServe(t, h, request{method: "POST", target: "/v1/ring"}), 405, "method_not_allowed")

	// A node without an eventual engine has no ring.
	strong, _ := engineHandler(t)
	w := mustServe(t, strong, request{method: "GET", target: "/v1/ring"})
	mustError(t, w, 400, "bad_request")
	if !strings.Contains(w.Body.String(), "no eventual engine") {
		t.Errorf("the answer does not say why: %s", w.Body)
	}
}

func TestStatusHealth(t *testing.T) {
	h, _, _ := eventualHandler(t)
	w := mustServe(t, h, request{method: "GET", target: "/v1/cluster/status"})
	var st struct {
		Health map[string]string `json:"health"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || !reflect.DeepEqual(st.Health, map[string]string{"n1": "self", "n2": "healthy", "n3": "healthy"}) {
		t.Fatalf("status %s: %v", w.Body, err)
	}
}
