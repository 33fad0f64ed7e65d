package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Event is one change a watch delivers.
type Event struct {
	Type  string // "put" or "delete"
	Key   string
	Value []byte // nil for a delete
	// Revision is, for a strong key, the revision of the write; the events
	// of one transaction share it. Timestamp and Origin are set instead for
	// an eventual key.
	Revision  int64
	Timestamp string
	Origin    string
	// Last is set on the last event of a strong write (the SSE id line): a
	// watch resumed from its Revision + 1 misses nothing and repeats nothing.
	Last bool
	// ValueOmitted marks a put replayed from the history without its value
	// (a large value, replaced since): Value is nil; Get the key for its
	// current value.
	ValueOmitted bool
	// Expired marks a delete that a strong key's TTL made, not a command.
	Expired bool
}

// ErrWatchEnded is returned by Watch when the server closed the stream
// without an error (the node shut down).
var ErrWatchEnded = errors.New("client: the watch stream ended")

// Watch streams the changes under prefix from fromRevision (0: from now)
// from the first endpoint that accepts the watch, calling fn for each event
// in order. It returns when ctx is done (ctx's error), when fn returns an
// error (that error), or when the stream fails or ends; then resume from the
// Revision + 1 of the last event with Last set. A revision the history no
// longer has is an *APIError with StatusCode 410.
func (c *Client) Watch(ctx context.Context, prefix string, fromRevision int64, fn func(Event) error) error {
	parts := strings.Split(prefix, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	path := "/v1/watch/" + strings.Join(parts, "/")
	if fromRevision > 0 {
		path += "?from_revision=" + strconv.FormatInt(fromRevision, 10)
	}
	stream := *c.hc
	stream.Timeout = 0 // the stream lasts as long as ctx
	var lastErr error
	for _, ep := range c.endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep+path, nil)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		req.Header.Set("Accept", "text/event-stream")
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := stream.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			lastErr = fmt.Errorf("client: %s: %w", ep, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			lastErr = apiError(&response{status: resp.StatusCode, header: resp.Header, body: body})
			if resp.StatusCode == http.StatusServiceUnavailable {
				continue
			}
			return lastErr
		}
		err = readEvents(resp.Body, fn)
		resp.Body.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return fmt.Errorf("client: every endpoint failed: %w", lastErr)
}

// readEvents parses a text/event-stream body.
func readEvents(r io.Reader, fn func(Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 128<<20) // a data line holds a whole value, base64
	var (
		kind, data string
		hasID      bool
	)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data == "" {
				kind, hasID = "", false
				continue
			}
			if kind == "error" {
				return apiError(&response{status: http.StatusOK, body: []byte(data)})
			}
			var w struct {
				Type      string `json:"type"`
				Key       string `json:"key"`
				Value     []byte `json:"value"`
				Revision  int64  `json:"revision"`
				Timestamp string `json:"timestamp"`
				Origin    string `json:"origin"`
				Omitted   bool   `json:"value_omitted"`
				Expired   bool   `json:"expired"`
			}
			if err := json.Unmarshal([]byte(data), &w); err != nil {
				return fmt.Errorf("client: a watch event: %w", err)
			}
			if err := fn(Event{Type: w.Type, Key: w.Key, Value: w.Value, Revision: w.Revision,
				Timestamp: w.Timestamp, Origin: w.Origin, Last: hasID, ValueOmitted: w.Omitted, Expired: w.Expired}); err != nil {
				return err
			}
			kind, data, hasID = "", "", false
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data: "):
			data += line[len("data: "):]
		case strings.HasPrefix(line, "event: "):
			kind = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			hasID = true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("client: reading the watch stream: %w", err)
	}
	return ErrWatchEnded
}
