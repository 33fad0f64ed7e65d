package kvtest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

func TestNewService(t *testing.T) {
	start := time.Now()
	svc := kvtest.NewService(t)
	t.Logf("ready in %s", time.Since(start))
	ctx := kvtest.Ctx(t)
	r := kvtest.MustPut(t, svc, "a", "1", kv.PutOptions{})
	if r.ModRevision != 1 || r.Version != 1 {
		t.Errorf("first put: %+v", r)
	}
	got, err := svc.Get(ctx, "a", kv.ReadOptions{})
	if err != nil || string(got.Value) != "1" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	if _, err := svc.Get(ctx, "b", kv.ReadOptions{}); !errors.Is(err, kv.ErrKeyNotFound) {
		t.Errorf("get missing: %v", err)
	}
	ms, err := svc.Members(ctx)
	if err != nil || len(ms) != 1 || ms[0].Name != kvtest.Name || !ms[0].Leader || !ms[0].Voter {
		t.Errorf("members %+v, %v", ms, err)
	}
}

func TestMaxValueBytes(t *testing.T) {
	svc := kvtest.NewService(t, kvtest.MaxValueBytes(4))
	if _, err := svc.Put(kvtest.Ctx(t), "k", []byte("12345"), kv.PutOptions{}); !errors.Is(err, kv.ErrValueTooLarge) {
		t.Errorf("put over the limit: %v", err)
	}
}
