package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"testing"

	"github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// ListOptions.Hashes brings each value's SHA-256, with or without values.
func TestListHashes(t *testing.T) {
	svc := kvtest.NewService(t)
	srv := httptest.NewServer(httpapi.New(svc, httpapi.Options{}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Endpoints: []string{srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	kvtest.MustPut(t, svc, "p/a", "alpha", kv.PutOptions{})
	kvtest.MustPut(t, svc, "p/b", "", kv.PutOptions{})
	sum := func(v string) string {
		s := sha256.Sum256([]byte(v))
		return "sha256:" + hex.EncodeToString(s[:])
	}
	ctx := context.Background()
	for _, o := range []client.ListOptions{{Hashes: true}, {Hashes: true, KeysOnly: true}} {
		res, err := c.List(ctx, "p/", o)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Items) != 2 || res.Items[0].Hash != sum("alpha") || res.Items[1].Hash != sum("") {
			t.Fatalf("%+v: %+v", o, res.Items)
		}
		if o.KeysOnly != (res.Items[0].Value == nil) {
			t.Fatalf("%+v: value %q", o, res.Items[0].Value)
		}
	}
	res, err := c.List(ctx, "p/", client.ListOptions{})
	if err != nil || res.Items[0].Hash != "" {
		t.Fatalf("without Hashes: %+v %v", res, err)
	}
}
