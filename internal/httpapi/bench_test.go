package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/kv"
)

// BenchmarkGet measures the front end alone on a key read (the service
// answers from memory), without and with the request metrics: what the
// metrics cost each request.
func BenchmarkGet(b *testing.B) {
	for _, bc := range []struct {
		name string
		reg  prometheus.Registerer
	}{{"metrics=off", nil}, {"metrics=on", prometheus.NewRegistry()}} {
		b.Run(bc.name, func(b *testing.B) {
			rec := &kv.Record{Key: "bench/a", Value: []byte("value"), CreateRevision: 1, ModRevision: 1, Version: 1}
			f := &fakeService{get: func(context.Context, string, kv.ReadOptions) (*kv.Record, error) { return rec, nil }}
			h := New(f, Options{Registerer: bc.reg})
			req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/a", nil)
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body.String())
				}
				f.calls = f.calls[:0]
			}
		})
	}
}
