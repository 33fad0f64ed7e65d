// Package watch fans the changes an engine applies out to the watchers
// subscribed on this node. Publishing never blocks the engine: a watcher
// whose buffer is full is dropped, and resumes from where it was.
package watch

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"sync"

	"github.com/cairnkv/cairn/kv"
)

// ErrSlow ends a subscription whose buffer filled up.
var ErrSlow = fmt.Errorf("%w: watcher fell behind", kv.ErrUnavailable)

// DefaultBuffer is how many groups of events a subscription holds.
const DefaultBuffer = 1024

// Group is the events of one command, delivered together; Revision is the
// command's revision (0 for eventual changes).
type Group struct {
	Revision int64
	Events   []kv.Event
}

// Hub is the set of subscriptions of one engine.
type Hub struct {
	mu     sync.Mutex
	subs   map[*Sub]struct{}
	closed error
}

// Sub is one subscription: its groups arrive on C until Done is closed,
// then Err says why.
type Sub struct {
	hub    *Hub
	prefix string
	c      chan Group
	done   chan struct{}
	err    error // set before done is closed
}

// Subscribe registers a subscription for the keys under prefix.
func (h *Hub) Subscribe(prefix string, buffer int) *Sub {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	s := &Sub{hub: h, prefix: prefix, c: make(chan Group, buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed != nil {
		s.err = h.closed
		close(s.done)
		return s
	}
	if h.subs == nil {
		h.subs = map[*Sub]struct{}{}
	}
	h.subs[s] = struct{}{}
	return s
}

// C delivers the subscription's groups, only the events under its prefix.
func (s *Sub) C() <-chan Group { return s.c }

// Done is closed when the hub dropped the subscription.
func (s *Sub) Done() <-chan struct{} { return s.done }

// Err is why the subscription was dropped (after Done is closed); the
// groups still in C were delivered before it was.
func (s *Sub) Err() error { return s.err }

// Close ends the subscription.
func (s *Sub) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}

// Live is the subscription as a watch from now: its groups' events until
// ctx is done (no error) or the hub drops it (its error). It closes the
// subscription when the sequence ends.
func (s *Sub) Live(ctx context.Context) iter.Seq2[[]kv.Event, error] {
	return func(yield func([]kv.Event, error) bool) {
		defer s.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case g := <-s.C():
				if !yield(g.Events, nil) {
					return
				}
			case <-s.Done():
				yield(nil, s.Err())
				return
			}
		}
	}
}

// Publish hands g to every subscription it concerns, without waiting: a
// subscription whose buffer is full is dropped with ErrSlow.
func (h *Hub) Publish(g Group) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		evs := g.Events
		if s.prefix != "" {
			evs = nil
			for _, ev := range g.Events {
				if strings.HasPrefix(ev.Key, s.prefix) {
					evs = append(evs, ev)
				}
			}
			if len(evs) == 0 {
				continue
			}
		}
		select {
		case s.c <- Group{Revision: g.Revision, Events: evs}:
		default:
			h.dropLocked(s, ErrSlow)
		}
	}
}

// Drop ends every subscription with err (a snapshot replaced the state).
func (h *Hub) Drop(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.dropLocked(s, err)
	}
}

// Close ends every subscription with err and refuses new ones.
func (h *Hub) Close(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = err
	for s := range h.subs {
		h.dropLocked(s, err)
	}
}

func (h *Hub) dropLocked(s *Sub, err error) {
	delete(h.subs, s)
	s.err = err
	close(s.done)
}
