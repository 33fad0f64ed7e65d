package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/test/cluster"
)

type httpResp struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, body string, hdr ...string) httpResp {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	cl := &http.Client{Timeout: 15 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResp{resp.StatusCode, resp.Header, string(b)}
}

func jsonField(t *testing.T, body, field string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %q", body)
	}
	return m[field]
}

func TestHTTPAPIEndToEnd(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	f := c.Follower()
	fu := "http://" + c.Nodes[f].ClientAddr
	lu := "http://" + c.Nodes[c.Leader()].ClientAddr

	r := do(t, "PUT", fu+"/v1/kv/app/config", "v1")
	if r.status != 200 {
		t.Fatalf("PUT on follower: %d %s", r.status, r.body)
	}
	rev := jsonField(t, r.body, "revision").(float64)
	r = do(t, "GET", lu+"/v1/kv/app/config", "")
	if r.status != 200 || r.body != "v1" || r.header.Get("ETag") == "" || r.header.Get("X-Cairn-Version") != "1" {
		t.Fatalf("GET: %d %q %v", r.status, r.body, r.header)
	}
	// CAS with a stale revision: 412 with the current revision.
	r = do(t, "PUT", fu+"/v1/kv/app/config", "v2", "If-Match", `"1234567"`)
	if r.status != 412 || !strings.Contains(r.body, "precondition_failed") {
		t.Fatalf("stale CAS: %d %s", r.status, r.body)
	}
	r = do(t, "PUT", fu+"/v1/kv/app/config", "v2", "If-Match", `"`+strings.TrimSuffix(strings.TrimSuffix(jsonNumber(rev), ".0"), ".")+`"`)
	if r.status != 200 {
		t.Fatalf("CAS with the right revision: %d %s", r.status, r.body)
	}
	r = do(t, "PUT", fu+"/v1/kv/app/config", "v3", "If-None-Match", "*")
	if r.status != 412 {
		t.Fatalf("If-None-Match on an existing key: %d", r.status)
	}
	if r = do(t, "GET", fu+"/v1/kv/app/missing", ""); r.status != 404 || !strings.Contains(r.body, "key_not_found") {
		t.Fatalf("missing: %d %s", r.status, r.body)
	}
	// TTL header, list, serializable read.
	if r = do(t, "PUT", fu+"/v1/kv/app/session?ttl=30s", "s"); r.status != 200 {
		t.Fatalf("PUT ttl: %d %s", r.status, r.body)
	}
	if r = do(t, "GET", fu+"/v1/kv/app/session", ""); r.header.Get("X-Cairn-Expires") == "" {
		t.Fatalf("no X-Cairn-Expires: %v", r.header)
	}
	r = do(t, "GET", fu+"/v1/kv/app/?list=true&limit=1", "")
	if r.status != 200 || jsonField(t, r.body, "more") != true || len(jsonField(t, r.body, "items").([]any)) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	// Merge patch creates, then merges.
	r = do(t, "PATCH", fu+"/v1/kv/doc", `{"a":1}`, "Content-Type", "application/merge-patch+json")
	if r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	r = do(t, "PATCH", fu+"/v1/kv/doc", `{"b":2}`, "Content-Type", "application/merge-patch+json")
	if r.status != 200 || !strings.Contains(r.body, `"a":1`) || !strings.Contains(r.body, `"b":2`) {
		t.Fatalf("patch merge: %d %s", r.status, r.body)
	}
	// Transaction.
	txn := `{"compare":[{"key":"app/config","target":"value","op":"=","value":"v2"}],
	  "success":[{"op":"put","key":"app/flag","value":"on"},{"op":"get","key":"app/config"}],
	  "failure":[{"op":"get","key":"app/config"}]}`
	r = do(t, "POST", fu+"/v1/txn", txn)
	if r.status != 200 || jsonField(t, r.body, "succeeded") != true {
		t.Fatalf("txn: %d %s", r.status, r.body)
	}
	// Bad input changes nothing.
	for _, bad := range []struct{ method, path, body string }{
		{"POST", "/v1/txn", `{"success":[{"op":"explode","key":"x"}]}`},
		{"POST", "/v1/txn", `not json`},
		{"PUT", "/v1/kv/app/x?ttl=banana", "v"},
		{"GET", "/v1/kv/app/x?consistency=eventual", ""},
	} {
		if r = do(t, bad.method, fu+bad.path, bad.body); r.status != 400 {
			t.Fatalf("%s %s: %d %s", bad.method, bad.path, r.status, r.body)
		}
	}
	if r = do(t, "PUT", fu+"/v1/kv/big", strings.Repeat("x", 1<<20+1)); r.status != 413 {
		t.Fatalf("oversize value: %d", r.status)
	}
	// Delete a prefix.
	r = do(t, "DELETE", fu+"/v1/kv/app/?prefix=true", "")
	if r.status != 200 || jsonField(t, r.body, "deleted").(float64) != 3 {
		t.Fatalf("delete prefix: %d %s", r.status, r.body)
	}
	// Cluster endpoints.
	r = do(t, "GET", fu+"/v1/cluster/status", "")
	if r.status != 200 || jsonField(t, r.body, "leader") == "" {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	r = do(t, "GET", fu+"/v1/cluster/members", "")
	if r.status != 200 || strings.Count(r.body, "client_url") != 3 {
		t.Fatalf("members: %d %s", r.status, r.body)
	}
	if r = do(t, "GET", fu+"/readyz", ""); r.status != 200 {
		t.Fatalf("readyz: %d", r.status)
	}
	// A node cut off from the others answers writes with 503 and Retry-After.
	c.Partition(f)
	r = do(t, "PUT", fu+"/v1/kv/app/lost", "x")
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("minority write: %d %s %v", r.status, r.body, r.header)
	}
	// Once the election timeout passes without a leader, its local reads are marked stale.
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = do(t, "GET", fu+"/v1/kv/doc?consistency=serializable", "")
		if r.status != 200 {
			t.Fatalf("stale read on the minority: %d %s", r.status, r.body)
		}
		if r.header.Get("X-Cairn-Stale") == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("minority reads never marked stale: %v", r.header)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Heal()
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
