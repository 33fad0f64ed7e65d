package raftnode

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestLeaseDuration(t *testing.T) {
	sec := float64(time.Second)
	for _, c := range []struct {
		hb    time.Duration
		drift float64
		want  time.Duration
	}{
		{time.Second, 0.1, time.Duration(sec/1.1) - 10*time.Millisecond},
		{time.Second, 0, time.Second - 10*time.Millisecond},
		{300 * time.Millisecond, 0.5, 200*time.Millisecond - 3*time.Millisecond},
	} {
		if got := leaseDuration(c.hb, c.drift); got != c.want {
			t.Errorf("leaseDuration(%v, %v) = %v, want %v", c.hb, c.drift, got, c.want)
		}
		// A follower whose clock runs drift faster waits hb on its clock:
		// hb/(1+drift) on the leader's, which the lease must not outlast.
		if got := leaseDuration(c.hb, c.drift); float64(got)*(1+c.drift) > float64(c.hb) {
			t.Errorf("leaseDuration(%v, %v) = %v outlasts a fast follower's timeout", c.hb, c.drift, got)
		}
	}
}

// fakeClock is a LeaseClock the test moves by hand.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Duration             { return time.Duration(c.t.Load()) }
func (c *fakeClock) set(d time.Duration)            { c.t.Store(int64(d)) }
func newLease(c *fakeClock, d time.Duration) *lease { return &lease{now: c.now, duration: d} }

func TestLeaseNeedsAQuorumOfAcks(t *testing.T) {
	clk := &fakeClock{}
	l := newLease(clk, time.Second)
	five := []raft.ServerID{"a", "b", "c", "d", "e"} // a leads; quorum 3
	l.ack("a", "b", 1, 100*time.Millisecond, five)
	if l.valid(1) {
		t.Fatal("a lease from one follower's ack of five voters")
	}
	l.ack("a", "c", 1, 300*time.Millisecond, five)
	if !l.valid(1) {
		t.Fatal("no lease with acks from a quorum")
	}
	// The quorum's oldest ack bounds it: b acked at 100ms.
	clk.set(1100*time.Millisecond - 1)
	if !l.valid(1) {
		t.Fatal("lease ended before 100ms + 1s")
	}
	clk.set(1100 * time.Millisecond)
	if l.valid(1) {
		t.Fatal("lease outlasted the quorum's older ack by more than its duration")
	}
	// A newer ack from b moves the quorum's start to c's 300ms.
	l.ack("a", "b", 1, 900*time.Millisecond, five)
	clk.set(1299 * time.Millisecond)
	if !l.valid(1) {
		t.Fatal("lease not renewed by newer acks")
	}
	if l.valid(2) {
		t.Fatal("lease valid in another term")
	}
	// Acks from a non-voter, or the leader's own, never count.
	l2 := newLease(clk, time.Second)
	l2.ack("a", "x", 1, clk.now(), five)
	l2.ack("a", "a", 1, clk.now(), five)
	l2.ack("a", "b", 1, clk.now(), five)
	if l2.valid(1) {
		t.Fatal("a non-voter's or the leader's own ack counted")
	}
}

func TestLeaseResetsOnTermAndVoters(t *testing.T) {
	clk := &fakeClock{}
	l := newLease(clk, time.Second)
	three := []raft.ServerID{"a", "b", "c"}
	l.ack("a", "b", 1, 0, three)
	if !l.valid(1) {
		t.Fatal("no lease from one ack of three voters")
	}
	// A new configuration forgets every ack: b's ack under the old one
	// does not count for the new quorum.
	four := []raft.ServerID{"a", "b", "c", "d"}
	l.ack("a", "c", 1, 0, four)
	if l.valid(1) {
		t.Fatal("acks from before a configuration change counted after it")
	}
	l.ack("a", "d", 1, 0, four)
	if !l.valid(1) {
		t.Fatal("no lease from two acks of four voters after the change")
	}
	l.drop()
	if l.valid(1) {
		t.Fatal("lease survived drop")
	}
	l.ack("a", "b", 2, 0, three)
	if l.valid(1) || !l.valid(2) {
		t.Fatal("lease not moved to the new term")
	}
}

func TestHeardSince(t *testing.T) {
	clk := &fakeClock{}
	l := newLease(clk, time.Second)
	five := []raft.ServerID{"a", "b", "c", "d", "e"} // a leads; quorum 3
	l.ack("a", "b", 1, 100, five)
	l.ack("a", "c", 1, 200, five)
	l.ack("a", "d", 1, 50, five)
	for _, c := range []struct {
		since time.Duration
		want  bool
	}{{50, true}, {100, true}, {101, false}, {200, false}} {
		if got := l.heardSince("a", 1, c.since, five); got != c.want {
			t.Errorf("heardSince(%d) = %v, want %v (acks at 100, 200, 50)", c.since, got, c.want)
		}
	}
	if l.heardSince("a", 2, 0, five) {
		t.Error("acks of term 1 counted for term 2")
	}
	if l.heardSince("a", 1, 0, []raft.ServerID{"a", "b", "c", "d", "e", "f"}) {
		t.Error("acks counted under other voters")
	}
	// A revoked term grants no lease, yet its acks still prove a round.
	l.revoke(1)
	l.ack("a", "e", 1, 300, five)
	if l.valid(1) || !l.heardSince("a", 1, 100, five) {
		t.Error("a revoked term: want no lease and acks still counted")
	}
	// A leader that is not a voter (it removed itself) needs a quorum of
	// the voters without itself, and grants no lease.
	l2 := newLease(clk, time.Second)
	four := []raft.ServerID{"b", "c", "d", "e"}
	l2.ack("a", "b", 1, 10, four)
	l2.ack("a", "c", 1, 10, four)
	if l2.heardSince("a", 1, 0, four) || l2.valid(1) {
		t.Error("2 of 4 voters counted as a quorum for a leader outside them")
	}
	l2.ack("a", "d", 1, 10, four)
	if !l2.heardSince("a", 1, 0, four) || l2.valid(1) {
		t.Error("3 of 4 voters: want a confirmed round and no lease")
	}
	// A lone voter needs nobody.
	if !newLease(clk, time.Second).heardSince("a", 1, 0, []raft.ServerID{"a"}) {
		t.Error("a lone voter's round not confirmed")
	}
}

// TestReadRoundNeedsAcksSentAfterItBegan: hashicorp/raft's VerifyLeader is
// answered by AppendEntries responses that come back while it waits,
// including those of heartbeats sent before it began (this test first shows
// that it happens), so a read round confirms leadership only once a quorum
// accepted one sent after the round began.
func TestReadRoundNeedsAcksSentAfterItBegan(t *testing.T) {
	nodes := startCluster(t, 3, true)
	leader, _ := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := leader.Propose(ctx, []byte{1}); err != nil {
		t.Fatal(err)
	}
	// Every write to the followers waits 60 ms, so a heartbeat is nearly
	// always in flight when a round begins (they go every 30 ms or so).
	for _, n := range nodes {
		if n != leader {
			leader.faults.Delay(n.cfg.AdvertiseAddr, 60*time.Millisecond)
		}
	}
	self := raft.ServerID(leader.cfg.ID)
	term := leader.raft.CurrentTerm()
	stale := 0
	for range 10 {
		since := leader.lease.now()
		if err := leader.await(leader.raft.VerifyLeader()); err != nil {
			t.Fatal(err)
		}
		if !leader.lease.heardSince(self, term, since, leader.voterIDs()) {
			stale++
		}
	}
	t.Logf("VerifyLeader answered by acks of heartbeats sent before it: %d of 10", stale)
	if stale == 0 {
		t.Fatal("VerifyLeader was never answered by a heartbeat from before it: the test shows nothing")
	}
	repeats := leader.m.readRepeats.Load()
	for i := range 10 {
		since := leader.lease.now()
		if _, err := leader.confirmLeadership(); err != nil {
			t.Fatal(err)
		}
		if !leader.lease.heardSince(self, term, since, leader.voterIDs()) {
			t.Fatalf("round %d confirmed leadership without a quorum's ack of an AppendEntries sent after it began", i)
		}
	}
	t.Logf("rounds verified again: %d", leader.m.readRepeats.Load()-repeats)
	// Reads still answer through the delay.
	if err := leader.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseRevokedForTheTerm(t *testing.T) {
	clk := &fakeClock{}
	l := newLease(clk, time.Second)
	three := []raft.ServerID{"a", "b", "c"}
	l.ack("a", "b", 3, 0, three)
	l.revoke(3)
	if l.valid(3) {
		t.Fatal("lease valid after revoke")
	}
	l.ack("a", "c", 3, clk.now(), three)
	if l.valid(3) {
		t.Fatal("lease renewed in the term it was revoked in (a transfer may be in flight)")
	}
	l.ack("a", "c", 4, clk.now(), three)
	if !l.valid(4) {
		t.Fatal("no lease in the next term")
	}
}

func TestScaledClock(t *testing.T) {
	var rate atomic.Uint64
	rate.Store(math.Float64bits(3))
	clk := ScaledClock(func() float64 { return math.Float64frombits(rate.Load()) })
	start := time.Now()
	a := clk()
	time.Sleep(20 * time.Millisecond)
	b := clk()
	real := time.Since(start)
	if d := b - a; d < 3*20*time.Millisecond || d > 3*real {
		t.Fatalf("clock at 3x advanced %v over %v", d, real)
	}
	rate.Store(math.Float64bits(0.25))
	c := clk()
	if c < b {
		t.Fatal("clock went back when its rate changed")
	}
}

func TestGuardRefusesVotesAfterStartAndStaleTimeoutNow(t *testing.T) {
	nodes := startCluster(t, 3, false)
	leader, follower := leaderAndFollower(t, nodes)
	tr := follower.ltrans
	vote := &raft.RequestVoteRequest{Term: 99}
	if refused, resp, _ := tr.refuse(vote, true); !refused || resp.(*raft.RequestVoteResponse).Granted {
		t.Fatal("a fresh node would grant a vote (it forgot the leader it accepted before it restarted)")
	}
	if refused, _, _ := tr.refuse(vote, false); refused {
		t.Fatal("the guard refused a vote after the start window (hashicorp/raft decides then)")
	}
	if refused, _, _ := tr.refuse(&raft.RequestVoteRequest{Term: 99, LeadershipTransfer: true}, true); refused {
		t.Fatal("the guard refused a leadership-transfer vote")
	}
	if refused, resp, _ := tr.refuse(&raft.RequestPreVoteRequest{Term: 99}, true); !refused || resp.(*raft.RequestPreVoteResponse).Granted {
		t.Fatal("a fresh node would grant a pre-vote")
	}
	other := nodes[0]
	for other == leader || other == follower {
		other = nodes[1]
		if other == leader || other == follower {
			other = nodes[2]
		}
	}
	stale := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte(other.cfg.ID)}}
	if refused, _, err := tr.refuse(stale, false); !refused || !errors.Is(err, errStaleTimeoutNow) {
		t.Fatal("a TimeoutNow from a server that is not the leader was let through")
	}
	fromLeader := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte(leader.cfg.ID)}}
	if refused, _, _ := tr.refuse(fromLeader, false); refused {
		t.Fatal("the leader's TimeoutNow was refused")
	}
}

// TestLeaseReads serves lease reads on a 3-node cluster: the leader answers
// from its lease once heartbeats have been accepted, a follower's lease read
// goes through the leader, both see every write acknowledged before, and a
// revoked lease (a leadership transfer starting) falls back to the quorum
// round.
func TestLeaseReads(t *testing.T) {
	nodes := startCluster(t, 3, false)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !leader.LeaseHeld() {
		if ctx.Err() != nil {
			t.Fatal("the leader never held a lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < 20; i++ {
		if _, err := follower.Propose(ctx, []byte{1}); err != nil {
			t.Fatal(err)
		}
		want := uint64(i + 1)
		for _, n := range []*testNode{leader, follower} {
			if err := n.LeaseReadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			if got := n.c.total(); got != want {
				t.Fatalf("%s read %d after %d acknowledged writes", n.cfg.ID, got, want)
			}
		}
	}
	if leader.m.leaseReads.Load() == 0 {
		t.Fatal("no read was served under the lease")
	}
	leader.revokeLease()
	if leader.LeaseHeld() {
		t.Fatal("lease held after revoke")
	}
	before := leader.m.leaseFallbacks.Load()
	if err := leader.LeaseReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if leader.m.leaseFallbacks.Load() != before+1 {
		t.Fatal("a lease read without a lease did not fall back to the read index")
	}
}

// TestTransferRevokesLease: a leadership transfer revokes the old leader's
// lease for its term before TimeoutNow goes out.
func TestTransferRevokesLease(t *testing.T) {
	nodes := startCluster(t, 3, false)
	leader, _ := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !leader.LeaseHeld() {
		if ctx.Err() != nil {
			t.Fatal("the leader never held a lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	term := leader.raft.CurrentTerm()
	if err := leader.TransferLeadership(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got := leader.lease.revoked.Load(); got != term {
		t.Fatalf("lease revoked for term %d, want the transfer's term %d", got, term)
	}
	if leader.lease.valid(term) {
		t.Fatal("the old leader's lease still holds after the transfer")
	}
}

// A round whose VerifyLeader was answered by an ack from before it waits
// for the acks of the heartbeats it asked for, and gives up after its bound
// or when the node closes.
func TestAwaitHeardSince(t *testing.T) {
	clk := &fakeClock{}
	l := newLease(clk, time.Second)
	three := []raft.ServerID{"a", "b", "c"}
	voters := func() []raft.ServerID { return three }
	l.ack("a", "b", 1, 50, three) // sent before the round began at 100
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.ack("a", "c", 1, 90, three) // still before
		time.Sleep(20 * time.Millisecond)
		l.ack("a", "b", 1, 120, three) // after: a quorum with the leader
	}()
	if !l.awaitHeardSince("a", 1, 100, voters, 10*time.Second, nil) {
		t.Fatal("an ack sent after the round began did not end the wait")
	}
	start := time.Now()
	if l.awaitHeardSince("a", 1, 200, voters, 30*time.Millisecond, nil) {
		t.Fatal("no ack sent after 200, yet the wait reported a quorum")
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Error("the wait ended before its bound")
	}
	done := make(chan struct{})
	close(done)
	if l.awaitHeardSince("a", 1, 200, voters, 10*time.Second, done) {
		t.Fatal("a closed node's wait reported a quorum")
	}
	// An ack of another term counts for nothing.
	go func() {
		time.Sleep(10 * time.Millisecond)
		l.ack("a", "b", 2, 300, three)
	}()
	if l.awaitHeardSince("a", 1, 200, voters, 100*time.Millisecond, nil) {
		t.Fatal("an ack of term 2 confirmed a round of term 1")
	}
}
