package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/kv"
)

// checkTxn returns what is wrong with a transaction that reached the service.
func checkTxn(t kv.Txn, maxValue int64) error {
	for i, c := range t.Compare {
		if err := kv.ValidateKey(c.Key); err != nil {
			return fmt.Errorf("compare[%d]: %w", i, err)
		}
		switch c.Target {
		case kv.TargetValue, kv.TargetVersion, kv.TargetCreateRevision, kv.TargetModRevision:
		case kv.TargetExists:
			if c.Op != "=" && c.Op != "!=" {
				return fmt.Errorf("compare[%d]: op %q on exists", i, c.Op)
			}
		default:
			return fmt.Errorf("compare[%d]: target %q", i, c.Target)
		}
		switch c.Op {
		case "=", "!=", "<", ">":
		default:
			return fmt.Errorf("compare[%d]: op %q", i, c.Op)
		}
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			switch op.Type {
			case kv.OpGet, kv.OpDelete:
				if err := kv.ValidateKey(op.Key); err != nil {
					return err
				}
			case kv.OpDeletePrefix:
				if len(op.Key) > kv.MaxKeyBytes {
					return fmt.Errorf("prefix of %d bytes", len(op.Key))
				}
			case kv.OpPut, kv.OpPatch:
				if err := kv.ValidateKey(op.Key); err != nil {
					return err
				}
				if int64(len(op.Value)) > maxValue {
					return fmt.Errorf("value of %d bytes", len(op.Value))
				}
				if op.Type == kv.OpPatch && !json.Valid(op.Value) {
					return fmt.Errorf("patch %q is not JSON", op.Value)
				}
			default:
				return fmt.Errorf("op %q", op.Type)
			}
			if op.TTL < 0 || (op.TTL > 0 && op.Type != kv.OpPut) {
				return fmt.Errorf("ttl %v on %s", op.TTL, op.Type)
			}
		}
	}
	return nil
}

func FuzzTxnRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"compare":[{"key":"a","target":"value","op":"=","value":"v1"}],"success":[{"op":"put","key":"a","value":"v2","ttl":"30s"}],"failure":[{"op":"get","key":"a"}]}`,
		`{"compare":[{"key":"a","target":"exists","op":"!=","exists":true},{"key":"b","target":"mod_revision","op":"<","number":9}],"success":[{"op":"delete_prefix","key":""}]}`,
		`{"success":[{"op":"put","key":"bin","value_base64":"AAEC"},{"op":"patch","key":"doc","value":"{\"x\":null}"},{"op":"delete","key":"c"}]}`,
		`{"compare":[{"key":"a","target":"value","op":"=","value_base64":"/w=="}]}`,
		`{"success":[{"op":"put","key":"a","ttl":"10"}]}`,
		`{"success":[{"op":"explode","key":"x"}]}`,
		`{"success":[{"op":"get","key":"a\u0000"}]}`,
		`{"compare":[{"key":"a","target":"version","op":"=","number":1.5}]}`,
		`{} trailing`, `null`, `[]`, ``, `{"success":`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var got *kv.Txn
		svc := &fakeService{txn: func(_ context.Context, tx kv.Txn) (*kv.TxnResult, error) {
			got = &tx
			return &kv.TxnResult{Succeeded: true, Revision: 1}, nil
		}}
		h := New(svc, Options{MaxValueBytes: 64})
		r := httptest.NewRequest("POST", "/v1/txn", bytes.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if got == nil {
				t.Fatalf("200 without a call: %s", w.Body)
			}
			if err := checkTxn(*got, 64); err != nil {
				t.Fatalf("the service got an invalid txn (%v) from %q", err, body)
			}
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("answer is not JSON: %q", w.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if got != nil {
				t.Fatalf("%d after calling the service", w.Code)
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}

func FuzzKeyPath(f *testing.F) {
	for _, seed := range []struct{ method, path, query string }{
		{"GET", "/v1/kv/a", ""},
		{"GET", "/v1/kv/a/b/", "list=true"},
		{"GET", "/v1/kv/", "list=true&limit=3&after=a"},
		{"PUT", "/v1/kv/a//b", "ttl=5s"},
		{"DELETE", "/v1/kv/../x", "prefix=true"},
		{"PATCH", "/v1/kv/a/./b", ""},
		{"HEAD", "/v1/kv/\x00", ""},
		{"GET", "/v1/kv", ""},
		{"POST", "/v1/kv/a", ""},
		{"GET", "//v1/kv/a", ""},
		{"GET", "/v1/cluster/members/n1/promote", ""},
		{"GET", "", ""},
		{"GET", "relative", "consistency=serializable"},
	} {
		f.Add(seed.method, seed.path, seed.query)
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		switch method {
		case "GET", "HEAD", "PUT", "DELETE", "PATCH", "POST":
		default:
			method = "GET"
		}
		var keys []string
		rec := record("k", "v", 1, 1, 1)
		svc := &fakeService{
			get: func(_ context.Context, key string, _ kv.ReadOptions) (*kv.Record, error) {
				keys = append(keys, key)
				return rec, nil
			},
			list: func(_ context.Context, prefix string, _ kv.ListOptions) (*kv.ListResult, error) {
				keys = append(keys, prefix)
				return &kv.ListResult{Items: []*kv.Record{rec}}, nil
			},
			put: func(_ context.Context, key string, _ []byte, _ kv.PutOptions) (*kv.Record, error) {
				keys = append(keys, key)
				return rec, nil
			},
			txn: func(_ context.Context, t kv.Txn) (*kv.TxnResult, error) { // DELETE
				keys = append(keys, t.Success[0].Key)
				return deleted(t, 0, 1), nil
			},
			patch: func(_ context.Context, key string, _ []byte) (*kv.Record, error) {
				keys = append(keys, key)
				return rec, nil
			},
		}
		h := New(svc, Options{MaxValueBytes: 64})
		r := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Header:     http.Header{"Content-Type": {"application/merge-patch+json"}},
			Body:       http.NoBody,
			Host:       "example.com",
			Proto:      "HTTP/1.1",
			ProtoMajor: 1,
			ProtoMinor: 1,
		}
		r = r.WithContext(t.Context())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q?%q: %d %s", method, path, query, w.Code, w.Body)
		}
		if len(svc.calls) > 1 {
			t.Fatalf("calls %v", svc.calls)
		}
		for _, k := range keys {
			// The key the service sees is the path after /v1/kv/, as sent
			// (or a Repose object's name after the Repose prefix).
			want, _ := strings.CutPrefix(path, kvPrefix)
			if name, ok := strings.CutPrefix(path, reposeObjects); ok {
				want = DefaultReposePrefix + name
			}
			if k != want {
				t.Fatalf("%s %q: key %q, want %q", method, path, k, want)
			}
			if len(k) > kv.MaxKeyBytes {
				t.Fatalf("key of %d bytes reached the service", len(k))
			}
		}
	})
}
