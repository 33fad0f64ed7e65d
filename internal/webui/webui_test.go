package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// TestFiles checks that every file the page needs is served with its type
// and the security headers, and that the index is HTML.
func TestFiles(t *testing.T) {
	h := Handler()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", "<html"},
		{"/index.html", "text/html; charset=utf-8", "<html"},
		{"/app.js", "text/javascript; charset=utf-8", "/v1/cluster/status"},
		{"/xxhash64.js", "text/javascript; charset=utf-8", "xxh64"},
		{"/style.css", "text/css; charset=utf-8", "body"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	} {
		t.Run(c.path, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, c.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != c.ctype {
				t.Errorf("Content-Type %q, want %q", got, c.ctype)
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control %q", got)
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if !strings.Contains(string(body), c.contains) {
				t.Errorf("body lacks %q", c.contains)
			}
		})
	}
}

// TestRevalidate checks that a browser holding the current file gets a 304.
func TestRevalidate(t *testing.T) {
	h := Handler()
	etag := get(t, h, http.MethodGet, "/app.js", nil).Header.Get("ETag")
	resp := get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": etag})
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("status %d, want 304", resp.StatusCode)
	}
	if resp := get(t, h, http.MethodGet, "/app.js", map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != http.StatusOK {
		t.Fatalf("stale ETag: status %d, want 200", resp.StatusCode)
	}
}

func TestRefused(t *testing.T) {
	h := Handler()
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/missing.js", http.StatusNotFound},
		{http.MethodGet, "/static/app.js", http.StatusNotFound},
		{http.MethodGet, "/../webui.go", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/app.js", http.StatusMethodNotAllowed},
	} {
		resp := get(t, h, c.method, c.path, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: security headers missing", c.method, c.path)
		}
	}
	if resp := get(t, h, http.MethodHead, "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: status %d", resp.StatusCode)
	}
}

// TestNoInlineScript keeps the page within its own policy: scripts come
// from files, and no element carries an inline handler or style.
func TestNoInlineScript(t *testing.T) {
	body, _ := io.ReadAll(get(t, Handler(), http.MethodGet, "/", nil).Body)
	page := string(body)
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(page, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("inline script: %q", m[0])
		}
	}
	if m := regexp.MustCompile(`(?i)\s(on[a-z]+|style)=`).FindString(page); m != "" {
		t.Errorf("inline attribute %q in index.html", m)
	}
}
