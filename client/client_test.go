package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestFailoverOn503AndConnectionErrors(t *testing.T) {
	var unavailableHits, goodHits atomic.Int32
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unavailableHits.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(503)
		w.Write([]byte(`{"error":{"code":"no_leader","message":"kv: no leader"}}`))
	}))
	defer unavailable.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodHits.Add(1)
		if r.URL.Path != "/v1/kv/a%20b/c" && r.URL.EscapedPath() != "/v1/kv/a%20b/c" {
			t.Errorf("path %s", r.URL.EscapedPath())
		}
		w.Header().Set("X-Cairn-Revision", "7")
		w.Header().Set("X-Cairn-Version", "2")
		w.Write([]byte("v"))
	}))
	defer good.Close()
	c, err := New(Config{Endpoints: []string{"http://127.0.0.1:1", unavailable.URL, good.URL}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := c.Get(context.Background(), "a b/c")
	if err != nil || string(it.Value) != "v" || it.ModRevision != 7 || it.Version != 2 {
		t.Fatalf("get: %+v %v", it, err)
	}
	// The endpoint that worked is tried first next time.
	before := unavailableHits.Load()
	if _, err := c.Get(context.Background(), "a b/c"); err != nil {
		t.Fatal(err)
	}
	if unavailableHits.Load() != before {
		t.Fatal("did not start from the endpoint that worked")
	}
	// When every endpoint fails, the last error is returned and matches.
	c2, _ := New(Config{Endpoints: []string{unavailable.URL}})
	_, err = c2.Get(context.Background(), "x")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("all unavailable: %v", err)
	}
	var ae *APIError
	if !errors.As(err, &ae) || ae.Code != "no_leader" {
		t.Fatalf("api error: %v", err)
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.WriteHeader(412)
			w.Write([]byte(`{"error":{"code":"precondition_failed","message":"m","revision":9}}`))
			return
		}
		w.WriteHeader(404)
		w.Write([]byte(`{"error":{"code":"key_not_found","message":"m"}}`))
	}))
	defer srv.Close()
	c, _ := New(Config{Endpoints: []string{srv.URL}})
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("404: %v", err)
	}
	rev := int64(3)
	_, err := c.Put(context.Background(), "k", []byte("v"), PutOptions{IfRevision: &rev})
	var ae *APIError
	if !errors.Is(err, ErrPreconditionFailed) || !errors.As(err, &ae) || ae.Revision != 9 {
		t.Fatalf("412: %v", err)
	}
	if _, err := New(Config{Endpoints: []string{"ftp://x"}}); err == nil {
		t.Fatal("bad endpoint accepted")
	}
}
