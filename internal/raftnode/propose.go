package raftnode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// maxProposeRounds is how many rounds of proposals the leader hands to Raft
// at once. hashicorp/raft appends whatever waits in its apply queue as one
// batch (one fsync), and sends each follower what it has not acknowledged
// yet in one AppendEntries (one fsync there). Left to itself, under load it
// cuts a new batch every time its loop comes round, so 64 concurrent writers
// became batches of about 13 entries and an fsync on every member for each:
// on small machines fsync and the RPCs around it were a third of the CPU.
// Holding proposals back while this many rounds are in flight lets the next
// round collect everything that arrives meanwhile. A lone proposal, or the
// first after a pause, goes out at once, so an idle cluster's latency does
// not change. One round at a time (the largest rounds) took 14 % less CPU
// per SET than two and more SETs per second, in six alternating pairs on a
// quiet machine (docs/BENCHMARKS.md, "Performance round 4"); on busy
// machines the two were within noise.
const maxProposeRounds = 1

// proposeGate groups the leader's proposals into rounds.
type proposeGate struct {
	mu       sync.Mutex
	inflight int         // rounds handed to Raft whose proposals are not all answered
	queue    []*proposal // proposals waiting for a round
}

// proposal is one command waiting for, or travelling in, a round.
type proposal struct {
	data     []byte
	deadline time.Time          // bounds the wait to enter Raft's apply queue
	result   chan proposeResult // receives Raft's answer
}

type proposeResult struct {
	resp any
	err  error
}

// proposeLocal replicates data from the leader and returns the state
// machine's result.
func (n *Node) proposeLocal(ctx context.Context, data []byte) ([]byte, error) {
	now := time.Now()
	frames := [][]byte{nil}
	if 9+len(data) > maxEntryData {
		frames = chunkFrames(now, data) // see chunk.go
	} else {
		frames[0] = frame(kindCommand, now, data)
	}
	ps := make([]*proposal, len(frames))
	for i, f := range frames {
		ps[i] = &proposal{data: f, deadline: now.Add(n.timeout(ctx)), result: make(chan proposeResult, 1)}
	}
	// A chunked command's chunks queue together, in order; its answer is
	// its last chunk's, the entry that applies it. A chunk that failed
	// leaves the command unapplied or its outcome unknown, as a failed
	// entry does.
	var out []byte
	var failed error
	for i, p := range ps {
		var res []byte
		var err error
		if i == 0 {
			res, err = n.enqueue(p, ps)
		} else {
			res, err = n.awaitResult(p)
		}
		if err != nil && failed == nil {
			failed = err
		}
		out = res
	}
	if failed != nil {
		return nil, failed
	}
	return out, nil
}

// enqueue queues ps, starting a round if fewer than maxProposeRounds are in
// flight, and waits for p's answer.
func (n *Node) enqueue(p *proposal, ps []*proposal) ([]byte, error) {
	g := &n.gate
	g.mu.Lock()
	g.queue = append(g.queue, ps...)
	var round []*proposal
	if g.inflight < maxProposeRounds {
		round, g.queue = g.queue, nil
		g.inflight++
	}
	g.mu.Unlock()
	if round != nil {
		n.startRound(round)
	}
	return n.awaitResult(p)
}

// awaitResult waits for p's answer.
func (n *Node) awaitResult(p *proposal) ([]byte, error) {
	// Raft answers every future it took (commit, lost leadership), except
	// those still in its apply queue when it shuts down: a leader that
	// removed itself must not leave its callers waiting.
	var r proposeResult
	select {
	case r = <-p.result:
	case <-n.down:
		t := time.NewTimer(shutdownGrace)
		defer t.Stop()
		select {
		case r = <-p.result:
		case <-t.C:
			return nil, fmt.Errorf("%w: %w", ErrShutdown, raft.ErrRaftShutdown)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	switch v := r.resp.(type) {
	case []byte:
		return v, nil
	case error:
		return nil, v
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("raftnode: unexpected FSM response %T", v)
	}
}

// startRound hands a round's proposals to Raft back to back, so its leader
// loop finds them together in its apply queue, and collects their answers
// in one goroutine (they commit in order).
func (n *Node) startRound(ps []*proposal) {
	n.m.observeBatch(len(ps))
	futs := make([]raft.ApplyFuture, len(ps))
	for i, p := range ps {
		timeout := time.Until(p.deadline)
		if timeout <= 0 {
			timeout = time.Millisecond
		}
		futs[i] = n.raft.Apply(p.data, timeout)
	}
	go n.collect(ps, futs)
}

// collect answers each proposal of a round, then ends the round and starts
// the next with whatever queued up meanwhile. After Raft shuts down it may
// wait forever on a future Raft dropped; the proposers do not (see
// proposeLocal).
func (n *Node) collect(ps []*proposal, futs []raft.ApplyFuture) {
	for i, f := range futs {
		var r proposeResult
		if r.err = mapRaftErr(f.Error()); r.err == nil {
			r.resp = f.Response()
		}
		ps[i].result <- r
	}
	g := &n.gate
	g.mu.Lock()
	g.inflight--
	var next []*proposal
	if len(g.queue) > 0 && g.inflight < maxProposeRounds {
		next, g.queue = g.queue, nil
		g.inflight++
	}
	g.mu.Unlock()
	if next != nil {
		n.startRound(next)
	}
}
