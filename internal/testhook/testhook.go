// Package testhook lets this module's tests reach into a node that
// server.Start assembles: the switch that cuts and slows its peer links, and
// its Raft member and strong engine. A test puts a Hooks in the context it
// passes to server.Start; Start fills in the parts it builds. The package is
// internal, so none of this is part of the release API: a program that
// embeds cairn cannot import it.
package testhook

import (
	"context"
	"sync/atomic"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
)

// Hooks are one node's test handles. A Hooks serves one start of a node.
type Hooks struct {
	// Faults, set by the test, cuts and slows this node's outgoing peer
	// links (nil: server.Start makes one the test cannot reach).
	Faults *peer.Faults
	// Raft is the node's hashicorp/raft member, set by server.Start (nil
	// under the experimental etcd raft member).
	Raft *raftnode.Node
	// Member is the node's strong engine as a Raft member, whichever
	// consensus library it runs on, set by server.Start.
	Member interface {
		AppliedIndex() uint64
		IsLeader() bool
	}
	// Digest summarizes the node's replicated state (revision and a hash of
	// every record), set by server.Start: replicas that applied the same log
	// prefix have equal digests.
	Digest func() (revision int64, hash uint64, err error)
	// NoRepair, set by the test, starts the node's eventual engine without
	// anti-entropy, read repair, hints and handoff: the broken build that
	// shows the convergence checker can fail.
	NoRepair bool
	// ClockSkew, set by the test (or by Start when nil), shifts the eventual
	// engine's wall clock by this many nanoseconds; the test may change it
	// while the node runs (the chaos harness's clock-skew fault).
	ClockSkew *atomic.Int64
	// LeaseClockRate, set by the test (or by Start when nil), holds the
	// math.Float64bits of how fast the Raft lease's clock runs against
	// the machine's (0: not scaled); only faultinject builds read it (the
	// chaos harness's clock-rate fault).
	LeaseClockRate *atomic.Uint64
	// StallLog, set by the test, makes the node's Raft log appends wait
	// while it is true (a hung disk: the leader loop stops); only
	// faultinject builds read it.
	StallLog *atomic.Bool
}

type ctxKey struct{}

// With returns ctx carrying h.
func With(ctx context.Context, h *Hooks) context.Context { return context.WithValue(ctx, ctxKey{}, h) }

// From returns the hooks in ctx, or nil.
func From(ctx context.Context) *Hooks {
	h, _ := ctx.Value(ctxKey{}).(*Hooks)
	return h
}
