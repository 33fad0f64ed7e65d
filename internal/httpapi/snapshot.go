package httpapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/kv"
)

// snapshotter is the part of the service that saves snapshots (kv.Service;
// test fakes may lack it).
type snapshotter interface {
	SaveSnapshot(ctx context.Context, w io.Writer, meta kv.SnapshotMeta) (*snapfile.Info, error)
}

// snapshot serves GET /v1/snapshot: the whole cluster's state as a
// snapshot file (docs/BACKUP.md), streamed as it is written; with
// ?consistency=local this node's own state, for a member without quorum.
// Admin only.
// An error before the first byte is an ordinary JSON answer; one after it
// aborts the response, and the file's missing checksum tells the client.
func (a *api) snapshot(w http.ResponseWriter, r *http.Request) {
	ss, ok := a.svc.(snapshotter)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this node cannot save snapshots", nil)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a large state takes longer than one answer may
	meta := kv.SnapshotMeta{Version: a.version}
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "linearizable":
	case "local":
		meta.Local = true
	default:
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("consistency %q: want linearizable (the default) or local", c), nil)
		return
	}
	if st, err := a.svc.Status(r.Context()); err == nil {
		meta.Node = st.Name
	}
	sw := &startWriter{w: w, start: func() {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", `attachment; filename="cairn.snapshot"`)
		w.WriteHeader(http.StatusOK)
	}}
	info, err := ss.SaveSnapshot(r.Context(), sw, meta)
	if err != nil {
		if !sw.started {
			a.fail(w, r, err)
			return
		}
		a.log.Warn("snapshot stream failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	a.log.Info("snapshot saved", "revision", info.Revision, "strong_keys", info.StrongKeys, "eventual_keys", info.EventualKeys,
		"remote", r.RemoteAddr)
}

// startWriter writes the response header before its first byte.
type startWriter struct {
	w       io.Writer
	start   func()
	started bool
}

func (s *startWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.start()
	}
	n, err := s.w.Write(p)
	if err != nil {
		err = fmt.Errorf("snapshot: write to the client: %w", err)
	}
	return n, err
}
