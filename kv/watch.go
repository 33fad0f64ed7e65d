package kv

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"sync"

	"github.com/cairnkv/cairn/auth"
)

// EventType says what happened to a key.
type EventType string

// Event types.
const (
	EventPut    EventType = "put"
	EventDelete EventType = "delete"
)

// Event is one change of one key as a watch delivers it.
type Event struct {
	Type  EventType
	Key   string
	Value []byte // nil for a delete
	// Revision is, for a strong key, the revision of the command that made
	// the change: the events of one transaction share its revision (the
	// one its result reports) and are delivered together. 0 for eventual keys.
	Revision int64
	// Timestamp and Origin are, for an eventual key, the version's hybrid
	// logical clock stamp and the node that coordinated it.
	Timestamp string
	Origin    string
	// Expires is, for an eventual put with a TTL, when the version expires
	// (unix ns; 0: never). An eventual key that expires sends no event of
	// its own; a strong key's expiry is a delete event.
	Expires int64
	// ValueOmitted marks a put whose value is not in the event: a value
	// larger than the strong watch history keeps (1 MiB), replayed after a
	// later write replaced it. A watcher reads the key for its current
	// value; the later change comes as an event of its own.
	ValueOmitted bool
	// Expired marks a delete that a strong key's TTL made (the expiry
	// sweep), not a command: Redis's "expired" keyspace event rather than
	// "del". Eventual keys send no event when they expire.
	Expired bool
}

// Watcher is implemented by engines that have a change feed.
type Watcher interface {
	// Watch returns the changes of keys under prefix, one command's events
	// at a time (a transaction's events together). fromRevision 0 means
	// from now; otherwise the engine replays its history from that
	// revision first (CompactedError when it no longer has it) and goes on
	// live without a gap or a duplicate. The sequence ends when ctx is done
	// (with no error) or with an error: the watcher fell behind, the
	// engine closed.
	Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]Event, error], error)
}

// CompactedError is a watch from a revision older than the history the
// engine keeps. It matches ErrCompacted.
type CompactedError struct {
	From   int64 // the revision asked for
	Oldest int64 // the oldest revision a watch may start from
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("kv: revision compacted: %d is older than the oldest revision kept, %d", e.From, e.Oldest)
}

// Unwrap lets errors.Is(err, ErrCompacted) match.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// Watch returns the changes of the keys under prefix that the caller may
// read (the ACL rules as they stand when each event is delivered, as List
// filters keys). A prefix in strong keyspaces replays from fromRevision (0:
// from now); a prefix in eventual keyspaces is this node's change feed from
// now and refuses a fromRevision. A prefix that spans keyspaces of both
// modes (the empty prefix, once an eventual keyspace exists) merges both
// feeds from now, each engine's batches whole and in its own order, and
// refuses a fromRevision.
func (s *Service) Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]Event, error], error) {
	if fromRevision < 0 {
		return nil, fmt.Errorf("%w: negative from revision", ErrInvalidArgument)
	}
	if strings.IndexByte(prefix, 0) >= 0 {
		return nil, fmt.Errorf("%w: prefix contains a NUL byte", ErrInvalidKey)
	}
	engines, err := s.listEngines(prefix)
	if err != nil {
		return nil, err
	}
	if len(engines) > 1 && fromRevision != 0 {
		return nil, fmt.Errorf("%w: prefix %q spans strong and eventual keyspaces; a watch of it starts from now (from_revision applies to a prefix inside strong keyspaces)", ErrInvalidArgument, prefix)
	}
	var watchers []Watcher
	for _, e := range engines {
		w, ok := e.(Watcher)
		if !ok {
			return nil, fmt.Errorf("%w: the engine of prefix %q has no change feed", ErrUnsupportedMode, prefix)
		}
		watchers = append(watchers, w)
	}
	if _, err := s.authView().caller(ctx); err != nil {
		return nil, err
	}
	var seq iter.Seq2[[]Event, error]
	if len(watchers) == 1 {
		if seq, err = watchers[0].Watch(ctx, prefix, fromRevision); err != nil {
			return nil, err
		}
	} else if seq, err = mergeWatches(ctx, watchers, prefix); err != nil {
		return nil, err
	}
	id := auth.FromContext(ctx)
	return func(yield func([]Event, error) bool) {
		for evs, err := range seq {
			if err != nil {
				yield(nil, err)
				return
			}
			v := s.authView()
			if _, err := v.caller(ctx); err != nil {
				yield(nil, err)
				return
			}
			allowed := evs[:0:0]
			for _, ev := range evs {
				if v.policy.Allow(id, auth.Read, ev.Key) {
					allowed = append(allowed, ev)
				}
			}
			if len(allowed) > 0 && !yield(allowed, nil) {
				return
			}
		}
	}, nil
}

// mergeWatches is one sequence of the feeds of several engines, from now.
// It ends with the first error of any of them.
func mergeWatches(ctx context.Context, ws []Watcher, prefix string) (iter.Seq2[[]Event, error], error) {
	ctx, cancel := context.WithCancel(ctx)
	seqs := make([]iter.Seq2[[]Event, error], 0, len(ws))
	for _, w := range ws {
		seq, err := w.Watch(ctx, prefix, 0)
		if err != nil {
			cancel()
			return nil, err
		}
		seqs = append(seqs, seq)
	}
	type item struct {
		evs []Event
		err error
	}
	return func(yield func([]Event, error) bool) {
		c := make(chan item)
		var wg sync.WaitGroup
		defer func() {
			cancel()
			wg.Wait()
		}()
		for _, seq := range seqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for evs, err := range seq {
					select {
					case c <- item{evs, err}:
					case <-ctx.Done():
						return
					}
					if err != nil {
						return
					}
				}
			}()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case it := <-c:
				if !yield(it.evs, it.err) || it.err != nil {
					return
				}
			}
		}
	}, nil
}
