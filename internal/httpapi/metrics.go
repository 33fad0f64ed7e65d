package httpapi

import "net/http"

// metrics serves the Prometheus metrics (Options.Metrics).
func (a *api) metrics(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }
}
