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
// not change.
const maxProposeRounds = 2

// proposeGate groups the leader's proposals into rounds.
type proposeGate struct {
	mu       sync.Mutex
	inflight int         // rounds handed to Raft whose proposals are not all answered
	queue    []*proposal // proposals waiting for a round
}

// proposal is one command waiting for, or travelling in, a round.
type proposal struct {
	data     []byte
	deadline time.Time             // bounds the wait to enter Raft's apply queue
	fut      chan raft.ApplyFuture // receives the future when the round starts
	round    *proposeRound
}

// proposeRound is a group of proposals handed to Raft back to back.
type proposeRound struct {
	mu        sync.Mutex
	remaining int
}

// proposeLocal replicates data from the leader and returns the state
// machine's result.
func (n *Node) proposeLocal(ctx context.Context, data []byte) ([]byte, error) {
	p := &proposal{
		data:     frame(kindCommand, time.Now(), data),
		deadline: time.Now().Add(n.timeout(ctx)),
		fut:      make(chan raft.ApplyFuture, 1),
	}
	g := &n.gate
	g.mu.Lock()
	g.queue = append(g.queue, p)
	var round []*proposal
	if g.inflight < maxProposeRounds {
		round, g.queue = g.queue, nil
		g.inflight++
	}
	g.mu.Unlock()
	if round != nil {
		n.startRound(round)
	}
	// Rounds end when Raft answers their futures, which it always does
	// (commit, lost leadership or shutdown), so this wait is bounded.
	f := <-p.fut
	err := mapRaftErr(f.Error())
	var resp any
	if err == nil {
		resp = f.Response()
	}
	n.finish(p.round)
	if err != nil {
		return nil, err
	}
	switch v := resp.(type) {
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
// loop finds them together in its apply queue.
func (n *Node) startRound(ps []*proposal) {
	r := &proposeRound{remaining: len(ps)}
	for _, p := range ps {
		p.round = r
		timeout := time.Until(p.deadline)
		if timeout <= 0 {
			timeout = time.Millisecond
		}
		p.fut <- n.raft.Apply(p.data, timeout)
	}
}

// finish records that one proposal of r was answered; the last one ends the
// round and starts the next with whatever queued up meanwhile.
func (n *Node) finish(r *proposeRound) {
	r.mu.Lock()
	r.remaining--
	last := r.remaining == 0
	r.mu.Unlock()
	if !last {
		return
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
