package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/cairnkv/cairn/client"
)

// Reconnection backoff of cairn watch: it doubles from watchBackoffMin up to
// watchBackoffMax after each failed attempt, and starts over once an event
// arrives. Variables so that tests can shorten them.
var (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// watchEventJSON is an event as `cairn watch -o json` prints it: the API's
// shape (docs/API.md, "Watching keys"), value in base64, one object a line.
type watchEventJSON struct {
	Type      string  `json:"type"`
	Key       string  `json:"key"`
	Value     *[]byte `json:"value,omitempty"`
	Revision  int64   `json:"revision,omitempty"`
	Timestamp string  `json:"timestamp,omitempty"`
	Origin    string  `json:"origin,omitempty"`
	// ValueOmitted: a put replayed without its value (see docs/API.md).
	ValueOmitted bool `json:"value_omitted,omitempty"`
	Expired      bool `json:"expired,omitempty"`
}

func watchCmd(g *globals, env *Env) *cobra.Command {
	var from int64
	cmd := &cobra.Command{
		Use:   "watch [PREFIX]",
		Short: "print the changes of the keys under a prefix as they happen",
		Long: `Print one line per change of a key under PREFIX (every key without it):
"put KEY rev=N VALUE" or "delete KEY rev=N" for a strong keyspace, with
ts=TIMESTAMP origin=NODE instead of rev= for an eventual one. A value that
is not UTF-8 shows as <N bytes>, a long one is cut short. -o json prints
each event as one JSON object a line, the value in base64 as the API sends
it.

--from-revision N replays a strong keyspace's history from revision N
first. Without it the watch starts from now. When the connection drops, the
watch reconnects (backing off up to 5s) from the revision after the last
whole write it printed, so a strong keyspace's watch loses no event and
repeats none. An eventual keyspace has no history: changes made while the
watch was disconnected are not replayed (a note on stderr says so; list the
prefix to catch up).

Ctrl-C ends the watch with status 0. A revision older than the history
keeps ends it with status 1 and names the oldest revision available.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			if from < 0 {
				return usagef("--from-revision must not be negative")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			w := &watcher{c: c, prefix: prefix, from: from, print: eventPrinter(g, env), env: env}
			return w.run(cmd.Context())
		},
	}
	cmd.Flags().Int64Var(&from, "from-revision", 0, "replay a strong keyspace's history from this revision (0: from now)")
	return cmd
}

// eventPrinter returns what prints one event in the chosen output format.
func eventPrinter(g *globals, env *Env) func(client.Event) error {
	if g.json() {
		return func(ev client.Event) error {
			j := watchEventJSON{Type: ev.Type, Key: ev.Key, Revision: ev.Revision, Timestamp: ev.Timestamp, Origin: ev.Origin,
				ValueOmitted: ev.ValueOmitted, Expired: ev.Expired}
			if ev.Type != "delete" && !ev.ValueOmitted {
				v := ev.Value
				if v == nil {
					v = []byte{}
				}
				j.Value = &v
			}
			b, err := json.Marshal(j)
			if err != nil {
				return err
			}
			_, err = env.Stdout.Write(append(b, '\n'))
			return err
		}
	}
	return func(ev client.Event) error {
		parts := []string{ev.Type, ev.Key}
		if ev.Timestamp != "" {
			parts = append(parts, "ts="+ev.Timestamp, "origin="+ev.Origin)
		} else {
			parts = append(parts, "rev="+strconv.FormatInt(ev.Revision, 10))
		}
		switch {
		case ev.ValueOmitted:
			parts = append(parts, "<value omitted: get the key>")
		case ev.Expired:
			parts = append(parts, "(expired)")
		case ev.Type != "delete":
			parts = append(parts, eventPreview(ev.Value))
		}
		_, err := fmt.Fprintln(env.Stdout, strings.Join(parts, " "))
		return err
	}
}

// eventPreview is preview, but a value with control characters (other
// than newlines and tabs) shows as its size: a watch prints to a terminal.
func eventPreview(v []byte) string {
	for _, r := range string(v) {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return fmt.Sprintf("<%d bytes>", len(v))
		}
	}
	return preview(v)
}

// watcher runs one `cairn watch`: a client watch, resumed after each drop.
type watcher struct {
	c      *client.Client
	prefix string
	// from is where the next connection starts: for a strong keyspace the
	// revision after the last whole write printed; 0 means from now.
	from  int64
	print func(client.Event) error
	env   *Env
}

// permanent reports whether a watch that failed with err must not be
// retried: the server refused the request itself.
func permanent(err error) bool {
	var ae *client.APIError
	if !errors.As(err, &ae) {
		return false
	}
	// An error event of a stream that had started comes with status 200:
	// the watcher fell behind, or the node was restored; resume.
	switch ae.StatusCode {
	case http.StatusOK, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusGatewayTimeout:
		return false
	}
	return true
}

func (w *watcher) run(ctx context.Context) error {
	eventual, err := w.startingPoint(ctx)
	if err != nil {
		return err
	}
	backoff := watchBackoffMin
	for {
		got := false
		// The events of a strong write are printed once its last one has
		// arrived: a write cut off by a drop comes again whole on the
		// resumed stream, and is printed once.
		var pending []client.Event
		err := w.c.Watch(ctx, w.prefix, w.from, func(ev client.Event) error {
			got = true
			if ev.Timestamp != "" {
				eventual = true
			}
			if ev.Revision > 0 && !ev.Last {
				pending = append(pending, ev)
				return nil
			}
			for _, e := range append(pending, ev) {
				if err := w.print(e); err != nil {
					return outputError{err}
				}
			}
			pending = pending[:0]
			if ev.Last && ev.Revision > 0 {
				w.from = ev.Revision + 1
			}
			return nil
		})
		if ctx.Err() != nil {
			return nil // Ctrl-C: a clean end
		}
		if errors.Is(err, client.ErrCompacted) {
			var ae *client.APIError
			errors.As(err, &ae)
			return fmt.Errorf("revision %d is no longer in the watch history; the oldest revision available is %d (start again with --from-revision %d, or without it to watch from now): %w",
				w.from, ae.OldestRevision, ae.OldestRevision, err)
		}
		var oe outputError
		if errors.As(err, &oe) || permanent(err) {
			return err
		}
		if got {
			backoff = watchBackoffMin
		}
		switch {
		case eventual:
			fmt.Fprintf(w.env.Stderr, "watch: %v; reconnecting in %s (an eventual keyspace has no history: changes until then are not replayed)\n", err, backoff)
		case w.from > 0:
			fmt.Fprintf(w.env.Stderr, "watch: %v; resuming from revision %d in %s\n", err, w.from, backoff)
		default:
			fmt.Fprintf(w.env.Stderr, "watch: %v; reconnecting in %s\n", err, backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

// outputError is a failure to print an event (stdout closed): the end of
// the watch, not a reason to reconnect.
type outputError struct{ err error }

func (o outputError) Error() string { return "writing the event: " + o.err.Error() }
func (o outputError) Unwrap() error { return o.err }

// startingPoint decides where a watch from now starts, and whether the
// prefix is eventual. For a strong prefix it reads the current revision,
// so that a drop before the first event resumes without a gap. When the
// keyspaces cannot be read (an ACL without that right), the watch starts
// from now and resumes from its events; when no endpoint answers at all,
// the watch fails (a wrong --endpoints should not retry forever).
func (w *watcher) startingPoint(ctx context.Context) (eventual bool, err error) {
	mode, err := prefixMode(ctx, w.c, w.prefix)
	var ae *client.APIError
	switch {
	case err != nil && !errors.As(err, &ae):
		return false, err
	case err != nil:
		return false, nil
	case mode.eventual():
		return true, nil
	}
	if w.from == 0 && !mode.mixed() {
		if res, err := w.c.List(ctx, w.prefix, client.ListOptions{KeysOnly: true, Limit: 1}); err == nil && res.Revision > 0 {
			w.from = res.Revision + 1
		}
	}
	return false, nil
}

// keyspaceModes are the modes of the keyspaces a prefix's keys fall in:
// the one governing the prefix itself, and those of keyspaces under it.
type keyspaceModes struct {
	governing string // keyspace prefix that governs PREFIX
	modes     map[string]string
}

// String lists the keyspaces and their modes: "" strong, "a/ev/" eventual.
func (m keyspaceModes) String() string {
	keys := make([]string, 0, len(m.modes))
	for k := range m.modes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = strconv.Quote(k) + " " + m.modes[k]
	}
	return strings.Join(keys, ", ")
}

func (m keyspaceModes) eventual() bool { return !m.mixed() && m.modes[m.governing] == "eventual" }

func (m keyspaceModes) mixed() bool {
	want := m.modes[m.governing]
	for _, mode := range m.modes {
		if mode != want {
			return true
		}
	}
	return false
}

// prefixMode reads the keyspaces and says which modes the keys under
// prefix have (an empty mode is the default, strong).
func prefixMode(ctx context.Context, c *client.Client, prefix string) (keyspaceModes, error) {
	ks, err := c.Keyspaces(ctx)
	if err != nil {
		return keyspaceModes{}, err
	}
	m := keyspaceModes{modes: map[string]string{"": "strong"}}
	for _, k := range ks {
		mode := k.Mode
		if mode == "" {
			mode = "strong"
		}
		switch {
		case strings.HasPrefix(prefix, k.Prefix):
			if len(k.Prefix) >= len(m.governing) {
				delete(m.modes, m.governing)
				m.governing = k.Prefix
				m.modes[k.Prefix] = mode
			}
		case strings.HasPrefix(k.Prefix, prefix):
			m.modes[k.Prefix] = mode
		}
	}
	return m, nil
}
