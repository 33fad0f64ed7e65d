package eventual

import (
	"context"
	"fmt"
	"iter"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/kv"
)

var _ kv.Watcher = (*Engine)(nil)

var errFeedClosed = fmt.Errorf("%w: the node is closing", kv.ErrUnavailable)

// publish is the committer's onApply hook: every record that replaced this
// node's stored version (a write it coordinated or received, a read repair,
// a hint handed over, an anti-entropy exchange) is one event of the feed,
// and the records of one committed batch are one group, delivered
// together: the puts of one transaction that reach this node in one
// message (as a coordinator sends them) arrive as one batch.
func (e *Engine) publish(applied []put) {
	evs := make([]kv.Event, 0, len(applied))
	for _, p := range applied {
		r := p.rec
		ev := kv.Event{Type: kv.EventPut, Key: p.key, Value: r.value, Timestamp: hlc.Format(r.stamp), Origin: r.origin, Expires: r.expires}
		if r.tombstone {
			ev.Type, ev.Value, ev.Expires = kv.EventDelete, nil, 0
		}
		evs = append(evs, ev)
	}
	e.feed.Publish(watch.Group{Events: evs})
}

// Watch implements kv.Watcher: this node's change feed for the keys under
// prefix, from now. Eventual keys have no revisions, so a fromRevision is
// refused. A watcher that falls behind is dropped with an error.
func (e *Engine) Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error) {
	if fromRevision != 0 {
		return nil, fmt.Errorf("%w: from_revision applies to strong keyspaces; the watch of an eventual keyspace is this node's change feed from now", kv.ErrInvalidArgument)
	}
	return e.feed.Subscribe(prefix, 0).Live(ctx), nil
}
