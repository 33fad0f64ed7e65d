package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// DefaultLeaseMaxDrift is the clock-rate difference between any two members
// that lease reads assume at most when Config.LeaseMaxDrift is 0: one clock
// may run 10% faster than another. See DESIGN.md, "Lease reads".
const DefaultLeaseMaxDrift = 0.1

// LeaseClock is a monotonic clock for the lease arithmetic: the time since
// some fixed point. Tests scale it to play a clock that runs fast or slow.
type LeaseClock func() time.Duration

// ScaledClock is a LeaseClock that advances rate() times as fast as the
// machine's monotonic clock; rate may change while it runs (the chaos
// harness's clock-rate fault), and the clock stays continuous and monotonic
// when it does.
func ScaledClock(rate func() float64) LeaseClock {
	var mu sync.Mutex
	base := time.Now()
	var lastReal, scaled time.Duration
	return func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		real := time.Since(base)
		if r := rate(); r > 0 {
			scaled += time.Duration(float64(real-lastReal) * r)
		}
		lastReal = real
		return scaled
	}
}

// leaseGrant is a lease the leader holds: in term, reads need no quorum
// round until the lease clock reads until.
type leaseGrant struct {
	term  uint64
	until time.Duration
}

// lease is the leader's record of which voters accepted it, and when.
type lease struct {
	now      LeaseClock
	duration time.Duration

	grant atomic.Pointer[leaseGrant]
	// revoked is a term in which a leadership transfer was started: no
	// lease in it (a TimeoutNow makes a follower's votes bypass the
	// "known leader" rule).
	revoked atomic.Uint64

	mu      sync.Mutex
	term    uint64
	voters  []raft.ServerID                 // the voters acks were counted for, sorted
	acks    map[raft.ServerID]time.Duration // when the newest accepted AppendEntries was sent
	scratch []time.Duration
	// acked is closed, and replaced, by every ack: a read-index round
	// waiting for its heartbeats' answers wakes on it (ackSignal).
	acked chan struct{}
}

// leaseDuration is how long a quorum's acceptance of a leader keeps every
// other server from being elected, measured on the leader's clock: a
// follower that accepted an AppendEntries refuses votes and pre-votes for
// anyone else (it has a known leader) until a heartbeat timeout passes on
// its own clock without contact, and that clock may run up to drift faster
// than the leader's. A hundredth of the timeout is kept back for timer
// granularity.
func leaseDuration(heartbeat time.Duration, drift float64) time.Duration {
	return time.Duration(float64(heartbeat)/(1+drift)) - heartbeat/100
}

// drop forgets the lease at once (leadership lost, membership changed).
func (l *lease) drop() {
	l.grant.Store(nil)
	l.mu.Lock()
	clear(l.acks)
	l.voters = nil
	l.mu.Unlock()
}

// revoke ends the lease for the rest of term and keeps it from being renewed
// in that term: a leadership transfer is about to send TimeoutNow.
func (l *lease) revoke(term uint64) {
	l.revoked.Store(term)
	l.grant.Store(nil)
}

// valid reports whether the lease of term holds now.
func (l *lease) valid(term uint64) bool {
	g := l.grant.Load()
	return g != nil && g.term == term && l.revoked.Load() != term && l.now() < g.until
}

// ack records that voter id accepted an AppendEntries of term sent at sent
// (lease clock), and extends the lease to the time a quorum (this leader
// included) has accepted since, plus the lease duration. voters is the latest
// configuration's voters; a change resets every ack, so each one counted was
// made under the configuration the quorum is counted in.
func (l *lease) ack(self, id raft.ServerID, term uint64, sent time.Duration, voters []raft.ServerID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acked != nil {
		close(l.acked)
		l.acked = nil
	}
	if term != l.term || !slices.Equal(voters, l.voters) {
		l.term = term
		l.voters = voters
		if l.acks == nil {
			l.acks = make(map[raft.ServerID]time.Duration)
		}
		clear(l.acks)
		l.grant.Store(nil)
	}
	if id == self || !slices.Contains(voters, id) {
		return
	}
	if prev, ok := l.acks[id]; !ok || sent > prev {
		l.acks[id] = sent
	}
	// Acks are recorded in a revoked term, and by a leader that is not a
	// voter, too: read-index rounds check them (heardSince), and they need
	// no "known leader" rule. A lease needs both.
	if l.revoked.Load() == term || !slices.Contains(voters, self) {
		return
	}
	need := len(voters)/2 + 1 - 1 // the leader itself is one of the quorum
	if need <= 0 || len(l.acks) < need {
		return
	}
	l.scratch = l.scratch[:0]
	for _, t := range l.acks {
		l.scratch = append(l.scratch, t)
	}
	slices.Sort(l.scratch)
	// The need-th newest ack: a quorum accepted this leader at or after it.
	start := l.scratch[len(l.scratch)-need]
	g := &leaseGrant{term: term, until: start + l.duration}
	if old := l.grant.Load(); old != nil && old.term == term && old.until >= g.until {
		return
	}
	if l.revoked.Load() == term {
		return
	}
	l.grant.Store(g)
}

// heardSince reports whether a quorum of voters, self included, accepted
// this leader in term by an AppendEntries sent at or after since (lease
// clock): each of those followers was still in term, so had voted for no
// one newer, after since. voters is the latest configuration's voters, as
// for ack; acks counted under other voters or another term do not count.
func (l *lease) heardSince(self raft.ServerID, term uint64, since time.Duration, voters []raft.ServerID) bool {
	need := len(voters)/2 + 1
	if slices.Contains(voters, self) {
		need--
	}
	if need <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if term != l.term || !slices.Equal(voters, l.voters) {
		return false
	}
	for id, sent := range l.acks {
		if id != self && sent >= since {
			need--
		}
	}
	return need <= 0
}

// ackSignal is closed by the next ack after it is called.
func (l *lease) ackSignal() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acked == nil {
		l.acked = make(chan struct{})
	}
	return l.acked
}

// awaitHeardSince waits, at most d, until heardSince holds, and reports
// whether it does.
func (l *lease) awaitHeardSince(self raft.ServerID, term uint64, since time.Duration, voters func() []raft.ServerID, d time.Duration, done <-chan struct{}) bool {
	var timeout <-chan time.Time
	for {
		signal := l.ackSignal()
		if l.heardSince(self, term, since, voters()) {
			return true
		}
		if timeout == nil {
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-signal:
		case <-timeout:
			return false
		case <-done:
			return false
		}
	}
}

// leaseTransport is the Raft transport with what lease reads need from it:
// the time each AppendEntries that a follower accepted was sent (the lease's
// evidence), and, on the receiving side, a guard on votes (see guardRPCs).
type leaseTransport struct {
	*Transport
	n    *Node
	rpcs chan raft.RPC
	stop chan struct{}
	// ready is set once Node.raft is: Raft sends before NewRaft returns.
	ready atomic.Bool
}

// Raft enables pre-vote and closes the transport only when these hold.
var (
	_ raft.WithPreVote = (*leaseTransport)(nil)
	_ raft.WithClose   = (*leaseTransport)(nil)
)

// AppendEntries sends like the network transport and records an accepted
// request for the lease: the follower set its last contact with this leader
// after the send began.
func (t *leaseTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := t.n.lease.now()
	err := t.Transport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success && resp.Term == args.Term && t.ready.Load() {
		t.n.leaseAck(id, args.Term, sent)
	}
	return err
}

// AppendEntriesPipeline opens a pipeline that records accepted requests for
// the lease as AppendEntries does.
func (t *leaseTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	return t.openPipeline(target, &pipelineAcks{
		now: t.n.lease.now,
		accepted: func(term uint64, sent time.Duration) {
			if t.ready.Load() {
				t.n.leaseAck(id, term, sent)
			}
		},
	})
}

// Consumer is the stream of RPCs Raft handles, after the guard.
func (t *leaseTransport) Consumer() <-chan raft.RPC { return t.rpcs }

// guardRPCs passes Raft the RPCs it receives, except two that would let a
// new leader be elected while a lease holds:
//
//   - a vote or pre-vote, not part of a leadership transfer, in the first
//     heartbeat timeout after this process started: a restarted follower
//     forgets the leader it accepted just before, and hashicorp/raft would
//     grant at once what it refuses while it knows a leader;
//   - a TimeoutNow from anyone but the leader this node follows: a late one
//     from an earlier leader would make it a candidate whose votes bypass
//     the "known leader" rule.
func (t *leaseTransport) guardRPCs(started time.Time, heartbeat time.Duration) {
	in := t.Transport.Consumer()
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-t.stop:
			return
		}
		if refused, resp, err := t.refuse(rpc.Command, time.Since(started) < heartbeat); refused {
			rpc.Respond(resp, err)
			continue
		}
		select {
		case t.rpcs <- rpc:
		case <-t.stop:
			return
		}
	}
}

// refuse decides whether guardRPCs answers cmd itself, and with what;
// fresh is whether this process started less than a heartbeat timeout ago.
func (t *leaseTransport) refuse(cmd any, fresh bool) (bool, any, error) {
	switch req := cmd.(type) {
	case *raft.RequestVoteRequest:
		if fresh && !req.LeadershipTransfer {
			return true, &raft.RequestVoteResponse{RPCHeader: t.header(), Term: 0, Granted: false}, nil
		}
	case *raft.RequestPreVoteRequest:
		if fresh {
			return true, &raft.RequestPreVoteResponse{RPCHeader: t.header(), Term: 0, Granted: false}, nil
		}
	case *raft.TimeoutNowRequest:
		if _, leader := t.n.raft.LeaderWithID(); leader == "" || string(leader) != string(req.ID) {
			return true, nil, errStaleTimeoutNow
		}
	}
	return false, nil, nil
}

func (t *leaseTransport) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(t.n.cfg.ID), Addr: t.EncodePeer(raft.ServerID(t.n.cfg.ID), t.LocalAddr())}
}

// leaseAck counts an accepted AppendEntries toward the lease.
func (n *Node) leaseAck(id raft.ServerID, term uint64, sent time.Duration) {
	if n.raft.State() != raft.Leader {
		return
	}
	n.lease.ack(raft.ServerID(n.cfg.ID), id, term, sent, n.voterIDs())
}

// voterIDs is the latest configuration's voters, sorted.
func (n *Node) voterIDs() []raft.ServerID {
	conf := n.raft.GetConfiguration().Configuration()
	voters := make([]raft.ServerID, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s.ID)
		}
	}
	slices.Sort(voters)
	return voters
}

// leaseReadIndexLocal is the leader's commit index when its lease holds and
// an entry of its term is committed: no quorum round is needed. The index is
// taken before the lease is checked, so the read is as of that moment, when
// no other leader can have committed anything.
func (n *Node) leaseReadIndexLocal() (uint64, bool) {
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() != term {
		return 0, false
	}
	idx := n.raft.CommitIndex()
	if !n.lease.valid(term) || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return 0, false
	}
	return idx, true
}

// leaderLeaseReadIndex is the read index on the leader under the lease, or,
// when the lease does not hold, the ordinary read index (a quorum round).
func (n *Node) leaderLeaseReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	if idx, ok := n.leaseReadIndexLocal(); ok {
		n.m.leaseReads.Add(1)
		return idx, nil
	}
	n.m.leaseFallbacks.Add(1)
	return n.leaderReadIndex(ctx)
}

// LeaseReadIndex is ReadIndex under the leader's lease: the leader names its
// commit index without a quorum round while its lease holds (DESIGN.md,
// "Lease reads"), and falls back to the ordinary read index when it does not.
// It relies on bounded clock drift between members (Config.LeaseMaxDrift).
func (n *Node) LeaseReadIndex(ctx context.Context) error {
	if n.IsLeader() { // no timer, as in ReadIndex
		idx, err := n.leaderLeaseReadIndex(ctx)
		if err == nil {
			return n.waitAppliedBounded(ctx, idx)
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return err
		}
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	var idx uint64
	err := n.onLeader(ctx, func() error {
		var err error
		idx, err = n.leaderLeaseReadIndex(ctx)
		return err
	}, func(addr string) error {
		out, err := n.call(ctx, addr, methodLeaseReadIndex, nil)
		if err != nil {
			return err
		}
		idx, err = decodeIndex(out)
		return err
	})
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, idx)
}

// serveLeaseReadIndex answers a follower's lease read: the commit index
// under the lease, or after a quorum round.
func (n *Node) serveLeaseReadIndex(ctx context.Context, _ []byte) ([]byte, error) {
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	idx, err := n.leaderLeaseReadIndex(ctx)
	if err != nil {
		return nil, remoteErr(err)
	}
	return binary.BigEndian.AppendUint64(nil, idx), nil
}

// LeaseHeld reports whether this node is the leader and its lease holds now.
func (n *Node) LeaseHeld() bool {
	_, ok := n.leaseReadIndexLocal()
	return ok && n.IsLeader()
}

// revokeLease ends the lease for this term before a leadership transfer.
func (n *Node) revokeLease() { n.lease.revoke(n.raft.CurrentTerm()) }

// observeMembership drops the lease when the leader adds or removes a peer:
// be conservative about quorums across configurations (ack also resets on
// any change of the voters it sees).
func (n *Node) observeMembership() {
	n.raft.RegisterObserver(raft.NewObserver(nil, false, func(o *raft.Observation) bool {
		if _, ok := o.Data.(raft.PeerObservation); ok {
			n.lease.drop()
		}
		return false
	}))
}

// LeaseReads is how many lease reads this node answered as leader under its
// lease (cairn_raft_lease_reads_total).
func (n *Node) LeaseReads() uint64 { return n.m.leaseReads.Load() }
