package httpapi

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

func TestTxnDecode(t *testing.T) {
	body := `{
	  "compare": [
	    {"key": "a", "target": "value", "op": "=", "value": "v1"},
	    {"key": "b", "target": "value", "op": "!=", "value_base64": "AP8="},
	    {"key": "c", "target": "version", "op": ">", "number": 2},
	    {"key": "d", "target": "create_revision", "op": "<", "number": 10},
	    {"key": "e", "target": "mod_revision", "op": "=", "number": 0},
	    {"key": "f", "target": "exists", "op": "=", "exists": true},
	    {"key": "g", "target": "exists", "op": "!=", "exists": false}
	  ],
	  "success": [
	    {"op": "put", "key": "a", "value": "v2", "ttl": "30s"},
	    {"op": "put", "key": "bin", "value_base64": "AAEC"},
	    {"op": "put", "key": "secs", "value": "", "ttl": "5"},
	    {"op": "get", "key": "a"},
	    {"op": "delete", "key": "c"},
	    {"op": "delete_prefix", "key": "tmp/"},
	    {"op": "delete_prefix", "key": ""},
	    {"op": "patch", "key": "doc", "value": "{\"x\":1}"}
	  ],
	  "failure": [{"op": "get", "key": "a", "value": ""}]
	}`
	want := kv.Txn{
		Compare: []kv.Compare{
			{Key: "a", Target: kv.TargetValue, Op: "=", Value: []byte("v1")},
			{Key: "b", Target: kv.TargetValue, Op: "!=", Value: []byte{0, 0xff}},
			{Key: "c", Target: kv.TargetVersion, Op: ">", Number: 2},
			{Key: "d", Target: kv.TargetCreateRevision, Op: "<", Number: 10},
			{Key: "e", Target: kv.TargetModRevision, Op: "=", Number: 0},
			{Key: "f", Target: kv.TargetExists, Op: "=", Exists: true},
			{Key: "g", Target: kv.TargetExists, Op: "!=", Exists: false},
		},
		Success: []kv.Op{
			{Type: kv.OpPut, Key: "a", Value: []byte("v2"), TTL: 30 * time.Second},
			{Type: kv.OpPut, Key: "bin", Value: []byte{0, 1, 2}},
			{Type: kv.OpPut, Key: "secs", Value: []byte{}, TTL: 5 * time.Second},
			{Type: kv.OpGet, Key: "a"},
			{Type: kv.OpDelete, Key: "c"},
			{Type: kv.OpDeletePrefix, Key: "tmp/"},
			{Type: kv.OpDeletePrefix, Key: ""},
			{Type: kv.OpPatch, Key: "doc", Value: []byte(`{"x":1}`)},
		},
		Failure: []kv.Op{{Type: kv.OpGet, Key: "a", Value: []byte{}}},
	}
	f := &fakeService{txn: func(_ context.Context, got kv.Txn) (*kv.TxnResult, error) {
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Txn got\n%+v\nwant\n%+v", got, want)
		}
		return &kv.TxnResult{Succeeded: true, Revision: 20}, nil
	}}
	w := mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/txn", body: body})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"succeeded":true,"revision":20,"results":[]}`)
}

func TestTxnEncode(t *testing.T) {
	h, svc := engineHandler(t)
	mustWriteAt(t, svc, 3, put("a", "old"))
	mustWriteAt(t, svc, 4, putExpiring("b", "hello"))
	mustWriteAt(t, svc, 5, put("c", "gone soon"))
	body := `{"compare":[{"key":"a","target":"exists","op":"=","exists":true}],
	  "success":[{"op":"put","key":"a","value_base64":"/wA="},{"op":"get","key":"b"},{"op":"get","key":"missing"},
	    {"op":"delete","key":"c"},{"op":"delete_prefix","key":"p/"},{"op":"patch","key":"doc","value":"{\"z\":true}"}],
	  "failure":[{"op":"get","key":"a"}]}`
	w := mustServe(t, h, request{method: "POST", target: "/v1/txn", body: body})
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// Each write is a revision: the put 6, the delete 7, the patch 8 (a
	// prefix delete that removes nothing writes nothing). The service
	// returns a put's record without its value; the answer shows the value
	// written.
	mustEqualJSON(t, w.Body.Bytes(), `{"succeeded":true,"revision":8,"results":[
	  {"op":"put","key":"a","item":{"key":"a","value":"/wA=","create_revision":3,"mod_revision":6,"version":2}},
	  {"op":"get","key":"b","item":{"key":"b","value":"aGVsbG8=","create_revision":4,"mod_revision":4,"version":1,"expires":"`+expiryText+`"}},
	  {"op":"get","key":"missing","item":null},
	  {"op":"delete","key":"c","item":null,"deleted":1},
	  {"op":"delete_prefix","key":"p/","item":null},
	  {"op":"patch","key":"doc","item":{"key":"doc","value":"eyJ6Ijp0cnVlfQ==","create_revision":8,"mod_revision":8,"version":1}}]}`)
}

func TestTxnFailureBranch(t *testing.T) {
	h, svc := engineHandler(t)
	// a: created at 1, written three more times, the last at 9 (version 4).
	mustWriteAt(t, svc, 1, put("a", "old"))
	mustWriteAt(t, svc, 2, put("a", "old"))
	mustWriteAt(t, svc, 3, put("a", "old"))
	mustWriteAt(t, svc, 9, put("a", "old"))
	body := `{"compare":[{"key":"a","target":"mod_revision","op":"=","number":3}],
	  "success":[{"op":"put","key":"a","value":"new"}],
	  "failure":[{"op":"get","key":"a"}]}`
	w := mustServe(t, h, request{method: "POST", target: "/v1/txn", body: body})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"succeeded":false,"revision":9,"results":[
	  {"op":"get","key":"a","item":{"key":"a","value":"b2xk","create_revision":1,"mod_revision":9,"version":4}}]}`)
}

func TestTxnRejected(t *testing.T) {
	long := strings.Repeat("k", kv.MaxKeyBytes+1)
	for _, tc := range []struct {
		name, body string
		status     int
	}{
		{"not json", `not json`, 400},
		{"empty body", ``, 400},
		{"null", `null`, 400},
		{"array", `[]`, 400},
		{"trailing data", `{} {}`, 400},
		{"trailing garbage", `{}x`, 400},
		{"unknown top field", `{"compares":[]}`, 400},
		{"unknown op field", `{"success":[{"op":"get","key":"a","prev":true}]}`, 400},
		{"unknown compare field", `{"compare":[{"key":"a","target":"exists","op":"=","exist":true}]}`, 400},
		{"bad op", `{"success":[{"op":"explode","key":"x"}]}`, 400},
		{"incr is not on the wire", `{"success":[{"op":"incr","key":"x","value":"1"}]}`, 400},
		{"missing op", `{"failure":[{"key":"x"}]}`, 400},
		{"empty key", `{"success":[{"op":"get","key":""}]}`, 400},
		{"nul key", `{"success":[{"op":"put","key":"a\u0000b","value":"v"}]}`, 400},
		{"long key", `{"success":[{"op":"delete","key":"` + long + `"}]}`, 400},
		{"long prefix", `{"success":[{"op":"delete_prefix","key":"` + long + `"}]}`, 400},
		{"compare empty key", `{"compare":[{"key":"","target":"version","op":"=","number":1}]}`, 400},
		{"bad target", `{"compare":[{"key":"a","target":"lease","op":"=","number":1}]}`, 400},
		{"missing target", `{"compare":[{"key":"a","op":"=","number":1}]}`, 400},
		{"bad compare op", `{"compare":[{"key":"a","target":"version","op":"==","number":1}]}`, 400},
		{"exists less", `{"compare":[{"key":"a","target":"exists","op":"<","exists":true}]}`, 400},
		{"number on value", `{"compare":[{"key":"a","target":"value","op":"=","number":3}]}`, 400},
		{"value on version", `{"compare":[{"key":"a","target":"version","op":"=","value":"3"}]}`, 400},
		{"exists on revision", `{"compare":[{"key":"a","target":"mod_revision","op":"=","exists":true}]}`, 400},
		{"value on exists", `{"compare":[{"key":"a","target":"exists","op":"=","value":"x"}]}`, 400},
		{"number as string", `{"compare":[{"key":"a","target":"version","op":"=","number":"1"}]}`, 400},
		{"fractional number", `{"compare":[{"key":"a","target":"version","op":"=","number":1.5}]}`, 400},
		{"both values", `{"success":[{"op":"put","key":"a","value":"x","value_base64":"eA=="}]}`, 400},
		{"both compare values", `{"compare":[{"key":"a","target":"value","op":"=","value":"x","value_base64":"eA=="}]}`, 400},
		{"bad base64", `{"success":[{"op":"put","key":"a","value_base64":"!!"}]}`, 400},
		{"bad compare base64", `{"compare":[{"key":"a","target":"value","op":"=","value_base64":"a"}]}`, 400},
		{"bad ttl", `{"success":[{"op":"put","key":"a","value":"v","ttl":"soon"}]}`, 400},
		{"zero ttl", `{"success":[{"op":"put","key":"a","value":"v","ttl":"0s"}]}`, 400},
		{"negative ttl", `{"success":[{"op":"put","key":"a","value":"v","ttl":"-1s"}]}`, 400},
		{"numeric ttl", `{"success":[{"op":"put","key":"a","value":"v","ttl":30}]}`, 400},
		{"ttl on get", `{"success":[{"op":"get","key":"a","ttl":"1s"}]}`, 400},
		{"value on delete", `{"success":[{"op":"delete","key":"a","value":"v"}]}`, 400},
		{"patch not json", `{"success":[{"op":"patch","key":"a","value":"{"}]}`, 400},
		{"patch without value", `{"success":[{"op":"patch","key":"a"}]}`, 400},
		{"ops not a list", `{"success":{"op":"get","key":"a"}}`, 400},
		{"value too large", `{"success":[{"op":"put","key":"a","value":"` + strings.Repeat("x", 17) + `"}]}`, 413},
		{"base64 value too large", `{"failure":[{"op":"put","key":"a","value_base64":"` + strings.Repeat("eHh4", 6) + `"}]}`, 413},
		{"patch too large", `{"success":[{"op":"patch","key":"a","value":"{\"a\":\"` + strings.Repeat("x", 17) + `\"}"}]}`, 413},
		{"body too large", `{"success":[` + strings.Repeat(`{"op":"get","key":"a"},`, 4000) + `{"op":"get","key":"a"}]}`, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeService{}
			code := "bad_request"
			if tc.status == 413 {
				code = "value_too_large"
			}
			mustError(t, mustServe(t, mustHandler(t, f), request{method: "POST", target: "/v1/txn", body: tc.body}), tc.status, code)
			mustNotCall(t, f)
		})
	}
}

func TestTxnMaxValue(t *testing.T) {
	h, svc := engineHandler(t)
	value := strings.Repeat("x", testMaxValue)
	body := `{"success":[{"op":"put","key":"a","value":"` + value + `"}]}`
	if w := mustServe(t, h, request{method: "POST", target: "/v1/txn", body: body}); w.Code != 200 {
		t.Fatalf("a value at the limit: %d %s", w.Code, w.Body)
	}
	if r, err := svc.Get(kvtest.Ctx(t), "a", kv.ReadOptions{}); err != nil || string(r.Value) != value {
		t.Fatalf("the value at the limit was not written: %v %v", r, err)
	}
}
