package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

func sha(v string) string {
	s := sha256.Sum256([]byte(v))
	return "sha256:" + hex.EncodeToString(s[:])
}

// ?hashes=true adds each value's SHA-256; with keys_only=true the hash is
// sent and the value is not.
func TestListHashes(t *testing.T) {
	h, svc := engineHandler(t)
	for _, op := range []kv.Op{put("app/a", "hello"), {Type: kv.OpPut, Key: "app/b", Value: []byte{0xff, 0x00}}, put("app/c", "")} {
		kvtest.MustTxn(t, svc, kv.Txn{Success: []kv.Op{op}})
	}
	for _, tc := range []struct{ name, target, want string }{
		{"with values", "/v1/kv/app/?list=true&hashes=true&limit=2",
			`{"revision":3,"more":true,"items":[
				{"key":"app/a","value":"aGVsbG8=","create_revision":1,"mod_revision":1,"version":1,"hash":"` + sha("hello") + `"},
				{"key":"app/b","value":"/wA=","create_revision":2,"mod_revision":2,"version":1,"hash":"` + sha("\xff\x00") + `"}]}`},
		{"keys only", "/v1/kv/app/?list=true&hashes=true&keys_only=true&after=app/a",
			`{"revision":3,"more":false,"items":[
				{"key":"app/b","create_revision":2,"mod_revision":2,"version":1,"hash":"` + sha("\xff\x00") + `"},
				{"key":"app/c","create_revision":3,"mod_revision":3,"version":1,"hash":"` + sha("") + `"}]}`},
		{"hashes=false", "/v1/kv/app/?list=true&hashes=false&keys_only=true&limit=1",
			`{"revision":3,"more":true,"items":[{"key":"app/a","create_revision":1,"mod_revision":1,"version":1}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := mustServe(t, h, request{method: "GET", target: tc.target})
			if w.Code != 200 {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			mustEqualJSON(t, w.Body.Bytes(), tc.want)
		})
	}
}

// Hashes need the values: a keys-only listing with hashes reads them from
// the service (and leaves them out of the answer).
func TestListHashesReadValues(t *testing.T) {
	f := &fakeService{list: func(_ context.Context, _ string, o kv.ListOptions) (*kv.ListResult, error) {
		if o.KeysOnly {
			t.Errorf("keys_only with hashes asked the service for no values: %+v", o)
		}
		return &kv.ListResult{Revision: 9, Items: []*kv.Record{record("k", "v", 1, 2, 1)}}, nil
	}}
	w := mustServe(t, mustHandler(t, f), request{method: "GET", target: "/v1/kv/?list=true&keys_only=true&hashes=true"})
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	mustEqualJSON(t, w.Body.Bytes(), `{"revision":9,"more":false,"items":[{"key":"k","create_revision":1,"mod_revision":2,"version":1,"hash":"`+sha("v")+`"}]}`)
	f = &fakeService{}
	mustError(t, mustServe(t, mustHandler(t, f), request{method: "GET", target: "/v1/kv/p/?list=true&hashes=maybe"}), 400, "bad_request")
	mustNotCall(t, f)
}
