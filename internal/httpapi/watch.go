package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cairnkv/cairn/kv"
)

const watchPrefix = "/v1/watch/"

// heartbeatInterval is how often an idle watch stream sends a comment, so
// proxies and clients see the connection is alive.
const heartbeatInterval = 15 * time.Second

// watchEvent is one event as a watch stream sends it (docs/API.md).
type watchEvent struct {
	Type      kv.EventType `json:"type"`
	Key       string       `json:"key"`
	Value     []byte       `json:"value,omitempty"`
	Revision  int64        `json:"revision,omitempty"`
	Timestamp string       `json:"timestamp,omitempty"`
	Origin    string       `json:"origin,omitempty"`
	// ValueOmitted: a put replayed without its value (over the history's
	// 1 MiB, and replaced since); GET the key for its current value.
	ValueOmitted bool `json:"value_omitted,omitempty"`
	// Expired: a delete that a strong key's TTL made, not a command.
	Expired bool `json:"expired,omitempty"`
}

// watch serves GET /v1/watch/{prefix} as Server-Sent Events: one "data:"
// line of JSON per event; the last event of each strong command carries an
// "id:" line with its revision, so a client that resumes from the last id
// + 1 (EventSource sends it as Last-Event-ID) gets every command whole,
// none twice. Errors before the stream starts are ordinary JSON answers
// (410 for a compacted revision); an error after it is an "error" event,
// and ends the stream.
func (a *api) watch(w http.ResponseWriter, r *http.Request) {
	from, err := watchFrom(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	seq, err := a.svc.Watch(ctx, r.PathValue("prefix"), from)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer a.reqs.watchOpened()()
	rc := http.NewResponseController(w)
	// The server's timeouts are for requests and answers, not for a stream:
	// the read deadline would even cancel the request's context.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	send := func(b []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		if _, err := w.Write(b); err != nil {
			cancel()
			return false
		}
		if err := rc.Flush(); err != nil {
			cancel()
			return false
		}
		return true
	}
	if !send([]byte(": watching\n\n")) {
		return
	}
	// The heartbeat writes to w too: it must have stopped before the
	// handler returns and the server finishes the response.
	var beats sync.WaitGroup
	defer func() {
		cancel()
		beats.Wait()
	}()
	beats.Add(1)
	go func() {
		defer beats.Done()
		t := time.NewTicker(a.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.closing:
				cancel()
				return
			case <-t.C:
				send([]byte(": heartbeat\n\n"))
			}
		}
	}()
	var buf []byte
	for evs, err := range seq {
		if err != nil {
			if ctx.Err() == nil {
				send(watchErrorEvent(err))
			}
			return
		}
		buf = buf[:0]
		for i, ev := range evs {
			b, _ := json.Marshal(watchEvent{Type: ev.Type, Key: ev.Key, Value: ev.Value, Revision: ev.Revision,
				Timestamp: ev.Timestamp, Origin: ev.Origin, ValueOmitted: ev.ValueOmitted, Expired: ev.Expired})
			if ev.Revision != 0 && i == len(evs)-1 {
				buf = append(buf, "id: "...)
				buf = strconv.AppendInt(buf, ev.Revision, 10)
				buf = append(buf, '\n')
			}
			buf = append(buf, "data: "...)
			buf = append(buf, b...)
			buf = append(buf, "\n\n"...)
		}
		if !send(buf) {
			return
		}
	}
}

// watchFrom is the revision a watch starts from: Last-Event-ID + 1 when an
// EventSource reconnects, else ?from_revision (0: from now).
func watchFrom(r *http.Request) (int64, error) {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil || n < 0 {
			return 0, badRequest("Last-Event-ID %q is not a revision", id)
		}
		return n + 1, nil
	}
	s := r.URL.Query().Get("from_revision")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("from_revision %q is not a revision", s)
	}
	return n, nil
}

// watchErrorEvent is the "error" event that ends a stream: the JSON error
// body the same error would get as an answer.
func watchErrorEvent(err error) []byte {
	code := kv.CodeOf(err)
	e, ok := httpErrors[code]
	if !ok {
		e = httpErrors[kv.CodeInternal]
	}
	b, _ := json.Marshal(errorBody{errorDetail{Code: e.code, Message: err.Error()}})
	return fmt.Appendf(nil, "event: error\ndata: %s\n\n", b)
}

// compactedDetail fills the oldest revision into the 410 answer.
func compactedDetail(err error) *int64 {
	var ce *kv.CompactedError
	if errors.As(err, &ce) {
		return &ce.Oldest
	}
	return nil
}
