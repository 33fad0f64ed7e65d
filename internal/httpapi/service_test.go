package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// Tests of what the API answers about data run on a real single-node service
// (kvtest: real Raft, state machine and pebble). The function-field fake
// (fake_test.go) is for what a real node cannot show on demand: how each
// service error maps to a status, and what exactly the handler passes to the
// service.

// testMaxValue is the value limit of the handlers under test (and of the
// service behind engineHandler, as a server configures both).
const testMaxValue = 16

// engineHandler returns the API over a fresh real service, wired as a server
// wires it.
func engineHandler(t testing.TB, opts ...kvtest.Option) (http.Handler, *kv.Service) {
	t.Helper()
	svc := kvtest.NewService(t, append([]kvtest.Option{kvtest.MaxValueBytes(testMaxValue)}, opts...)...)
	return New(svc, Options{
		MaxValueBytes: testMaxValue,
		Logger:        testLogger(t),
		IsStale:       svc.IsStale,
		Authenticator: svc,
		Admin:         svc,
	}), svc
}

// mustWriteAt writes filler keys (under "filler/") until the service's
// revision is rev-1, then applies op, so that the record op writes has mod
// revision rev. It returns the record as a read returns it.
func mustWriteAt(t testing.TB, svc *kv.Service, rev int64, op kv.Op) *kv.Record {
	t.Helper()
	for i := kvtest.MustRevision(t, svc); i < rev-1; i++ {
		kvtest.MustPut(t, svc, fmt.Sprintf("filler/%d", i), "", kv.PutOptions{})
	}
	res := kvtest.MustTxn(t, svc, kv.Txn{Success: []kv.Op{op}})
	if res.Revision != rev {
		t.Fatalf("setup: %s %q at revision %d, want %d", op.Type, op.Key, res.Revision, rev)
	}
	r, err := svc.Get(kvtest.Ctx(t), op.Key, kv.ReadOptions{})
	if err != nil {
		t.Fatalf("setup: read %q back: %v", op.Key, err)
	}
	return r
}

func put(key, value string) kv.Op { return kv.Op{Type: kv.OpPut, Key: key, Value: []byte(value)} }

// putExpiring is put with the fixed test expiry.
func putExpiring(key, value string) kv.Op {
	op := put(key, value)
	op.ExpiresAt = expiry.UnixNano()
	return op
}
