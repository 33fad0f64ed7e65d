// Package webui is cairn's web dashboard: static HTML, JavaScript and CSS
// embedded in the binary and served under /ui/ of the client port. The page
// holds no server-side state and reaches no internal interface: it reads and
// writes the cluster through the public HTTP API v1 (docs/API.md) with the
// credentials its user signs in with, so the dashboard is subject to the same
// identities and ACL rules as every other client. docs/DASHBOARD.md says what
// it shows.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy is the policy every answer of the handler carries.
// Scripts and styles come only from the page's own origin (no inline code,
// no eval), so text from the cluster that reaches the page can never run.
// connect-src also allows other origins because the page asks every member
// (at its client URL) for its status.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes maps the extensions of the embedded files to their types, so
// that the answer does not depend on the host's mime.types (a scratch
// container has none).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// file is one embedded file, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

type handler struct {
	files map[string]file // by path below /ui, "/" being the index
}

// Handler returns the handler of the dashboard's files, to be mounted with
// the /ui prefix stripped (httpapi.Options.UI): "/" is the page, and the
// other paths are its scripts, styles and images. It answers GET and HEAD;
// an unknown path is a 404. Every answer has the Content-Security-Policy
// above, X-Content-Type-Options: nosniff and Cache-Control: no-cache with
// a strong ETag, so a browser revalidates (a 304) and never runs a page of
// one version with the scripts of another after an upgrade.
func Handler() http.Handler {
	h, err := newHandler(static)
	if err != nil {
		panic(err) // the embedded tree is fixed at build time; the tests load it
	}
	return h
}

func newHandler(fsys fs.FS) (*handler, error) {
	sub, err := fs.Sub(fsys, "static")
	if err != nil {
		return nil, fmt.Errorf("webui: %w", err)
	}
	h := &handler{files: map[string]file{}}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("webui: no content type for %q", p)
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return fmt.Errorf("webui: %w", err)
		}
		sum := sha256.Sum256(body)
		f := file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		h.files["/"+p] = f
		if p == "index.html" {
			h.files["/"] = f
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := h.files["/"]; !ok {
		return nil, fmt.Errorf("webui: no index.html")
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard's files take GET or HEAD, not "+r.Method, http.StatusMethodNotAllowed)
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok {
		http.Error(w, "no dashboard file "+r.URL.Path, http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", f.ctype)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("ETag", f.etag)
	// ServeContent answers If-None-Match with 304, ranges and HEAD; the
	// zero time leaves out Last-Modified, which would differ between nodes.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
