package store

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// ErrFailed marks every error of a database that has failed (see DB.Failed).
var ErrFailed = errors.New("store: database failed")

// FailAfter is how long a database's background flushes or compactions may
// keep failing, with no success of the same kind in between, before the
// database counts as failed. pebble retries a failed flush at once and
// forever (v1.1.5), and while it does, Flush, Close and, once the memtables
// are full, every commit wait for it: a full or broken disk would hang the
// node instead of stopping it. A short outage (a disk briefly full) that
// clears within FailAfter costs nothing.
const FailAfter = 10 * time.Second

// health follows a database's background writes.
type health struct {
	now    func() time.Time
	onFail func(error)

	mu sync.Mutex
	// flushSince and compactSince are when the current run of failed
	// flushes or compactions began (zero: the last one succeeded).
	flushSince, compactSince time.Time
	// failing is set by the observer that declares the failure; err is set
	// and failed closed only after onFail returned, so whoever sees either
	// knows the owner was told.
	failing bool
	err     error
	failed  chan struct{}
}

func newHealth(onFail func(error)) *health {
	return &health{now: time.Now, onFail: onFail, failed: make(chan struct{})}
}

// listener reports pebble's flushes and compactions to h.
func (h *health) listener() *pebble.EventListener {
	return &pebble.EventListener{
		FlushEnd: func(info pebble.FlushInfo) {
			h.observe(&h.flushSince, "flush", info.Err)
		},
		CompactionEnd: func(info pebble.CompactionInfo) {
			h.observe(&h.compactSince, "compaction", info.Err)
		},
	}
}

func (h *health) observe(since *time.Time, what string, err error) {
	h.mu.Lock()
	if err == nil {
		*since = time.Time{}
		h.mu.Unlock()
		return
	}
	now := h.now()
	if since.IsZero() {
		*since = now
	}
	var failed error
	if !h.failing && now.Sub(*since) >= FailAfter {
		h.failing = true
		failed = fmt.Errorf("%w: every %s for %s failed, the last with: %w", ErrFailed, what, now.Sub(*since).Round(time.Second), err)
	}
	h.mu.Unlock()
	if failed == nil {
		return
	}
	if h.onFail != nil {
		h.onFail(failed)
	}
	h.mu.Lock()
	h.err = failed
	h.mu.Unlock()
	close(h.failed)
}

// Failed is closed when the database has failed: its flushes or its
// compactions have kept failing for FailAfter (a full or broken disk).
// Nothing written since its last successful flush is then sure to reach
// the disk; the owner should stop using it (Err says why).
func (d *DB) Failed() <-chan struct{} { return d.health.failed }

// Err is why the database failed, nil while it has not.
func (d *DB) Err() error {
	d.health.mu.Lock()
	defer d.health.mu.Unlock()
	return d.health.err
}
