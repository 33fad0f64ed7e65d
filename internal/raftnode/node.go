// Package raftnode wires hashicorp/raft to cairn: a pebble log and stable
// store, a batching FSM adapter over the pebble state database, snapshots that
// stream that database, a transport over the peer mux, linearizable reads
// (read index), and forwarding of proposals, reads and membership changes from
// followers to the leader over the node's internal RPC endpoint (peer.RPC,
// service "raft"). See DESIGN.md beside this file.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
)

// Errors returned by Node. ErrTimeout and ErrLeadershipLost leave the outcome
// of a proposal unknown: it may still commit.
var (
	ErrNoLeader       = errors.New("raftnode: no leader")
	ErrNotLeader      = errors.New("raftnode: not the leader")
	ErrTimeout        = errors.New("raftnode: timed out")
	ErrLeadershipLost = errors.New("raftnode: leadership lost while committing")
	ErrShutdown       = errors.New("raftnode: shut down")
	ErrUnknownMember  = errors.New("raftnode: unknown member")
	ErrMemberExists   = errors.New("raftnode: member exists with another address")
	// ErrNoTransferee: leadership cannot be handed over, the leader is the
	// only voter.
	ErrNoTransferee = errors.New("raftnode: no other voter to hand leadership to")
	// ErrQuorumAtRisk: a voter that does not answer would be added while
	// too few of the others answer to make a quorum of the new membership.
	ErrQuorumAtRisk = errors.New("raftnode: the change would leave too few reachable voters for a quorum")
	// ErrPeerUntrusted means a new member's peer port did not complete a
	// mutual-TLS handshake with this cluster's CA.
	ErrPeerUntrusted = errors.New("raftnode: peer certificate not trusted")
	// ErrBadMessage means an internal RPC payload did not decode.
	ErrBadMessage = errors.New("raftnode: malformed internal RPC message")

	errStaleTimeoutNow = errors.New("raftnode: TimeoutNow from a server that is not this node's leader")
)

// Peer is a bootstrap member.
type Peer struct {
	ID   string
	Addr string
}

// Config configures a Node.
type Config struct {
	ID string
	// Dir holds the raft log (Dir/raft) and snapshots (Dir/snapshots).
	Dir string
	// AdvertiseAddr is this node's peer address as the others dial it.
	AdvertiseAddr string
	// Mux is the peer port; the node registers peer.ProtoRaftWire on it for
	// Raft's transport.
	Mux    *peer.Mux
	Dialer *peer.Dialer
	// RPC is the node's internal RPC endpoint, shared with the other
	// components; the node registers its service ("raft") there and
	// removes it in Close. Nil: the node opens an endpoint of its own on
	// Mux (which then must have no other) and closes it in Close.
	RPC *peer.RPC
	// StateDB is the state machine's database; the node records the applied
	// index in it and streams it into snapshots.
	StateDB      *store.DB
	StateMachine StateMachine
	// Bootstrap, when set and there is no state on disk, forms a new cluster.
	Bootstrap []Peer
	// ForceNewCluster rewrites the Raft configuration on disk to this node
	// alone before Raft starts (recover.go): the last resort after losing
	// quorum for good. It needs state on disk.
	ForceNewCluster bool

	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// RequestTimeout bounds waits for a leader when the caller's context has no deadline.
	RequestTimeout   time.Duration
	SnapshotEntries  uint64
	SnapshotInterval time.Duration
	TrailingLogs     uint64
	// MaxValueBytes is the largest value a command may carry (the node's
	// max-value-bytes; 0: 1 MiB); it scales how long the transport waits
	// (transportTimeout). Entries themselves are at most 256 KiB: larger
	// commands travel in chunks (chunk.go).
	MaxValueBytes int64
	// LeaseMaxDrift bounds how much faster one member's clock may run than
	// another's (0.1: 10%; 0: DefaultLeaseMaxDrift); lease reads are
	// linearizable only while it holds (DESIGN.md, "Lease reads").
	LeaseMaxDrift float64
	// LeaseClock is the monotonic clock the lease is measured on (nil: the
	// machine's); tests scale it.
	LeaseClock LeaseClock
	// BeforeStoreLogs, a test hook, runs before each append to the log:
	// blocking in it stalls Raft's leader loop, as a disk that hangs does.
	BeforeStoreLogs func()
	// StoreFailed, when set, is told if the log database fails
	// (store.Options.OnFail: its disk keeps failing); it must not block.
	StoreFailed func(error)
	Logger      *slog.Logger
}

// transportTimeout is the Raft transport's I/O deadline: 10 s, plus a
// second per 10 MiB that the largest command (two values of maxValue) adds,
// so a slow link still carries an entry of 64 MiB.
func transportTimeout(maxValue int64) time.Duration {
	return 10*time.Second + time.Duration(2*maxValue/(10<<20))*time.Second
}

// Node is one member of a Raft group.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	logDB  *store.DB
	logs   *LogStore
	trans  *Transport
	ltrans *leaseTransport // trans as Raft uses it (lease.go)
	lease  lease
	snaps  *raft.FileSnapshotStore
	rpc    *peer.RPC     // the endpoint the node calls and serves on
	svc    *peer.Service // the node's methods on rpc
	ownRPC bool          // rpc was opened by the node (Config.RPC was nil)

	hadState  bool
	readyTerm atomic.Uint64
	termMu    sync.Mutex

	// caughtUp is set once the state has caught up with what this node may
	// have applied before it last stopped (see awaitReplay).
	caughtUp atomic.Bool

	// gate groups proposals into rounds (see propose.go).
	gate proposeGate
	// m is what the node counts for its metrics (metrics.go).
	m *nodeMetrics

	readMu      sync.Mutex
	readWaiters []chan readResult
	readRunning bool

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup

	// down closes when Raft has shut down, on its own (a leader that
	// removed itself) or in Close; waits on Raft futures end there (see
	// await).
	down     chan struct{}
	downOnce sync.Once

	// removed closes when the node learns it was removed (removal.go).
	removed     chan struct{}
	removedOnce sync.Once
	removedWhy  atomic.Value // string
}

type readResult struct {
	index uint64
	err   error
}

// Start opens the log, restores state and starts Raft.
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.MaxValueBytes <= 0 {
		cfg.MaxValueBytes = 1 << 20
	}
	if cfg.LeaseMaxDrift < 0 || cfg.LeaseMaxDrift >= 1 {
		return nil, fmt.Errorf("raftnode: lease max drift %v is not in [0, 1)", cfg.LeaseMaxDrift)
	}
	if cfg.LeaseMaxDrift == 0 {
		cfg.LeaseMaxDrift = DefaultLeaseMaxDrift
	}
	started := time.Now()
	if cfg.LeaseClock == nil {
		cfg.LeaseClock = func() time.Duration { return time.Since(started) }
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("subsystem", "raft"), done: make(chan struct{}), down: make(chan struct{}), removed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
		}
	}()

	var err error
	if n.logDB, err = store.Open(filepath.Join(cfg.Dir, "raft"), logDBOptions(cfg.Logger, cfg.StoreFailed)); err != nil {
		return nil, err
	}
	logs, err := NewLogStore(n.logDB)
	if err != nil {
		return nil, err
	}
	n.logs = logs
	logs.beforeStore = cfg.BeforeStoreLogs
	n.m = newNodeMetrics()
	logs.fsync = n.m.fsync
	hlog := hclogFor(n.log, "raft")
	if n.snaps, err = raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, hlog); err != nil {
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	if n.fsm, err = newFSM(cfg.StateDB, cfg.StateMachine); err != nil {
		return nil, err
	}
	n.fsm.m = n.m
	if err := n.catchUpFromSnapshot(); err != nil {
		return nil, err
	}
	raftLn, err := cfg.Mux.Listen(peer.ProtoRaftWire, "raft")
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.trans = NewTransport(TransportConfig{
		Listener: raftLn,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return cfg.Dialer.Dial(ctx, addr, peer.ProtoRaftWire)
		},
		Addr:    cfg.AdvertiseAddr,
		MaxPool: 4,
		Timeout: transportTimeout(cfg.MaxValueBytes),
		Logger:  n.log.With("subsystem", "raft-net"),
	})
	n.lease.now = cfg.LeaseClock
	n.lease.duration = leaseDuration(cfg.HeartbeatTimeout, cfg.LeaseMaxDrift)
	n.ltrans = &leaseTransport{Transport: n.trans, n: n, rpcs: make(chan raft.RPC), stop: make(chan struct{})}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 20 * time.Millisecond
	rc.SnapshotThreshold = cfg.SnapshotEntries
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	// At most 512 × 256 KiB = 128 MiB in one AppendEntries: entries over
	// 256 KiB are chunked (chunk.go).
	rc.MaxAppendEntries = 512
	rc.NoSnapshotRestoreOnStart = true // the pebble state survives restarts
	rc.Logger = hlog
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}

	cached := newLogCache(logs)
	hasState, err := raft.HasExistingState(cached, logs, n.snaps)
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.hadState = hasState
	// The state database is written unsynced, so after a crash it can be
	// behind what this node applied (and served) before; everything it
	// applied is in its durable log, whose last index bounds it.
	replayTo, err := logs.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	if cfg.ForceNewCluster {
		if err := n.forceNewCluster(rc, cached, hasState); err != nil {
			return nil, err
		}
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, cached, logs, n.snaps, n.ltrans); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	// Only now that n.raft is set: the guard and the lease read it.
	n.ltrans.ready.Store(true)
	go n.ltrans.guardRPCs(started, cfg.HeartbeatTimeout)
	n.observeLeaders()
	n.observeMembership()
	if !hasState && len(cfg.Bootstrap) > 0 {
		var conf raft.Configuration
		for _, p := range cfg.Bootstrap {
			conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "members", len(cfg.Bootstrap))
	} else if hasState {
		n.log.Info("restarting from existing state", "applied", n.fsm.applied.Load())
	}

	// The handlers use n.raft: register them only now that it exists.
	if n.rpc = cfg.RPC; n.rpc == nil {
		if n.rpc, err = peer.NewRPC(cfg.Mux, cfg.Dialer, peer.RPCOptions{Logger: cfg.Logger.With("subsystem", "rpc")}); err != nil {
			return nil, fmt.Errorf("raftnode: %w", err)
		}
		n.ownRPC = true
	}
	if n.svc, err = n.registerRPC(); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	shutdowns := make(chan raft.Observation, 1)
	n.raft.RegisterObserver(raft.NewObserver(shutdowns, false, func(o *raft.Observation) bool {
		s, ok := o.Data.(raft.RaftState)
		return ok && s == raft.Shutdown
	}))
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.watchRemoval() }()
	go func() {
		defer n.wg.Done()
		select {
		case <-shutdowns:
			n.log.Info("raft shut down (removed from the cluster?); pending requests fail")
			n.markDown()
		case <-n.done:
		}
	}()
	go func() { defer n.wg.Done(); n.watchLeadership() }()
	go func() { defer n.wg.Done(); n.awaitReplay(replayTo) }()
	ok = true
	return n, nil
}

// awaitReplay sets caughtUp once the applied index reaches target, the last
// index of the durable log at start: nothing this node applied before it
// stopped lies beyond it. Entries at the end of that log may never commit
// (a crashed leader's tail that no one else has), so the node also asks the
// leader for its commit index, which covers every committed entry, and
// waits for whichever of the two it reaches first.
func (n *Node) awaitReplay(target uint64) {
	if n.fsm.applied.Load() >= target {
		n.caughtUp.Store(true)
		return
	}
	n.log.Info("replaying the log before serving local reads", "applied", n.fsm.applied.Load(), "log", target)
	asked := make(chan uint64, 1)
	asking := false
	ask := func() {
		asking = true
		fallback := target // target changes in the loop below
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			defer cancel()
			go func() {
				select {
				case <-n.done: // Close must not wait for the leader's answer
				case <-ctx.Done():
				}
				cancel()
			}()
			idx, err := n.readIndex(ctx)
			if err != nil {
				idx = fallback
			}
			asked <- idx
		}()
	}
	retry := time.NewTicker(n.cfg.ElectionTimeout)
	defer retry.Stop()
	ask()
	for {
		ch := n.fsm.appliedChanged()
		if applied := n.fsm.applied.Load(); applied >= target {
			n.caughtUp.Store(true)
			n.log.Info("caught up with the log", "applied", applied)
			return
		}
		select {
		case <-ch:
		case idx := <-asked:
			asking = false
			target = min(target, idx)
		case <-retry.C:
			if !asking {
				ask()
			}
		case <-n.done:
			return
		}
	}
}

// CaughtUp reports whether this node has applied at least what it had
// applied before it last stopped. Until then its local state can be older
// than what it served before a crash, so it is neither ready nor fresh.
func (n *Node) CaughtUp() bool { return n.caughtUp.Load() }

// catchUpFromSnapshot restores the newest snapshot when the state database is
// older than it (for example a state directory lost while the log survived).
func (n *Node) catchUpFromSnapshot() error {
	list, err := n.snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	_, rc, err := n.snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot: %w", err)
	}
	applied, err := snapshotApplied(rc)
	_ = rc.Close()
	if err != nil {
		return err
	}
	if n.fsm.applied.Load() >= applied {
		return nil
	}
	n.log.Warn("state is behind the newest snapshot; restoring it", "state", n.fsm.applied.Load(), "snapshot", applied)
	_, rc, err = n.snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot: %w", err)
	}
	return n.fsm.Restore(rc)
}

// watchLeadership makes each new term readable as soon as this node leads it.
func (n *Node) watchLeadership() {
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			if isLeader {
				n.log.Info("became leader", "term", n.raft.CurrentTerm())
				ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
				if err := n.ensureTermReady(ctx); err != nil {
					n.log.Warn("could not commit the term-start entry", "err", err)
				}
				cancel()
			} else {
				n.lease.drop()
			}
		case <-n.done:
			return
		}
	}
}

// ensureTermReady commits an entry of the current term, so the commit index
// covers everything earlier leaders committed and the FSM will reach it.
func (n *Node) ensureTermReady(ctx context.Context) error {
	term := n.raft.CurrentTerm()
	if n.readyTerm.Load() == term {
		return nil
	}
	n.termMu.Lock()
	defer n.termMu.Unlock()
	if n.readyTerm.Load() == term {
		return nil
	}
	f := n.raft.Apply(frame(kindTermStart, time.Now(), nil), n.timeout(ctx))
	if err := n.await(f); err != nil {
		return err
	}
	if n.raft.CurrentTerm() == term {
		n.readyTerm.Store(term)
		return nil
	}
	return ErrLeadershipLost
}

func (n *Node) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return n.cfg.RequestTimeout
}

func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrShutdown, err)
	}
	return err
}

// LogFirstIndex is the oldest entry still in the log (0 when empty); it moves
// forward when the log is compacted behind a snapshot.
func (n *Node) LogFirstIndex() uint64 {
	i, _ := n.logs.FirstIndex()
	return i
}

// HadState reports whether the node started from existing state on disk
// (so bootstrap and join settings were ignored).
func (n *Node) HadState() bool { return n.hadState }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// AppliedIndex is the index of the last entry applied to the state machine.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied.Load() }

// Propose replicates data and returns the state machine's result for it. It
// runs on the leader, or is forwarded there.
func (n *Node) Propose(ctx context.Context, data []byte) ([]byte, error) {
	// On the leader a proposal needs its deadline, not a timer: the deadline
	// bounds the wait to enter Raft's apply queue, and Raft answers every
	// proposal it took. A timer context made and cancelled for every write
	// was 5 % of a loaded leader's CPU. Waiting for a leader and forwarding
	// do wait on ctx, so they get one.
	if n.IsLeader() {
		out, err := n.proposeLocal(ctx, data)
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return out, err
		}
		// Not proposed: wait for the new leader as below.
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	var out []byte
	err := n.onLeader(ctx, func() error {
		var err error
		out, err = n.proposeLocal(ctx, data)
		return err
	}, func(addr string) error {
		var err error
		out, err = n.call(ctx, addr, methodPropose, data)
		return err
	})
	return out, err
}

// ReadIndex waits until this node's state reflects every write committed
// before the call: the leader confirms its leadership with a quorum (one
// confirmation serves all reads waiting at the time) and names its commit
// index, and this node waits until it has applied that far.
func (n *Node) ReadIndex(ctx context.Context) error {
	// On the leader, as in Propose, no timer: the confirmation round that
	// answers the read is bounded by its own timeout (and ends when the
	// leader steps down), and waiting to apply gets a timer only if it
	// must wait.
	if n.IsLeader() {
		idx, err := n.leaderReadIndex(ctx)
		if err == nil {
			return n.waitAppliedBounded(ctx, idx)
		}
		if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader) {
			return err
		}
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, idx)
}

// readIndex is the leader's commit index once it has confirmed its
// leadership: every write committed before the call is at or below it.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	var idx uint64
	err := n.onLeader(ctx, func() error {
		var err error
		idx, err = n.leaderReadIndex(ctx)
		return err
	}, func(addr string) error {
		out, err := n.call(ctx, addr, methodReadIndex, nil)
		if err != nil {
			return err
		}
		idx, err = decodeIndex(out)
		return err
	})
	return idx, err
}

// WaitApplied blocks until the applied index reaches idx or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := n.fsm.appliedChanged()
		if n.fsm.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting to apply index %d", ErrTimeout, idx)
		case <-n.done:
			return ErrShutdown
		}
	}
}

// waitAppliedBounded is WaitApplied bounded by the request timeout when
// ctx has no deadline, with a timer made only if it has to wait.
func (n *Node) waitAppliedBounded(ctx context.Context, idx uint64) error {
	if n.fsm.applied.Load() >= idx {
		return nil
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	return n.WaitApplied(ctx, idx)
}

func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	w := make(chan readResult, 1)
	n.readMu.Lock()
	n.readWaiters = append(n.readWaiters, w)
	start := !n.readRunning
	n.readRunning = true
	n.readMu.Unlock()
	if start {
		go n.runReadRounds()
	}
	select {
	case r := <-w:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: confirming leadership", ErrTimeout)
	}
}

// runReadRounds confirms leadership once per round for every read waiting
// when the round began.
func (n *Node) runReadRounds() {
	for {
		n.readMu.Lock()
		ws := n.readWaiters
		n.readWaiters = nil
		if len(ws) == 0 {
			n.readRunning = false
			n.readMu.Unlock()
			return
		}
		n.readMu.Unlock()
		n.m.readRounds.Add(1)
		n.m.readRoundReads.Add(uint64(len(ws)))
		idx, err := n.confirmLeadership()
		for _, w := range ws {
			w <- readResult{idx, err}
		}
	}
}

// confirmLeadership is the commit index once a quorum has accepted this
// leader after the round began (every read it answers began before).
// VerifyLeader alone does not prove that: hashicorp/raft counts a vote from
// any AppendEntries response that comes back while the verify waits,
// including one sent before it began, which a follower may have accepted
// just before voting for a newer leader that has committed since. So the
// round also checks the lease's evidence (the send time of each voter's
// newest accepted AppendEntries) and verifies again until a quorum accepted
// one sent after the round began; VerifyLeader's own heartbeats are those.
func (n *Node) confirmLeadership() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	if err := n.ensureTermReady(ctx); err != nil {
		return 0, err
	}
	term := n.raft.CurrentTerm()
	since := n.lease.now()
	idx := n.raft.CommitIndex()
	self := raft.ServerID(n.cfg.ID)
	for {
		if err := n.await(n.raft.VerifyLeader()); err != nil {
			return 0, err
		}
		if n.raft.CurrentTerm() != term {
			return 0, ErrNotLeader
		}
		// VerifyLeader may have been answered by an AppendEntries already on
		// its way when the round began; the heartbeats it asked for are on
		// their way now, so wait for their answers before asking for more.
		if n.lease.awaitHeardSince(self, term, since, n.voterIDs, n.cfg.HeartbeatTimeout, n.done) {
			if n.raft.CurrentTerm() != term {
				return 0, ErrNotLeader
			}
			return idx, nil
		}
		n.m.readRepeats.Add(1)
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w: confirming leadership", ErrTimeout)
		}
	}
}

// onLeader runs local on the leader or remote with the leader's address,
// waiting for a leader and retrying on stale leadership until ctx ends.
func (n *Node) onLeader(ctx context.Context, local func() error, remote func(addr string) error) error {
	backoff := 10 * time.Millisecond
	// A failover elects a leader within a couple of election timeouts; past
	// that, the cluster has no quorum and the caller should hear so quickly.
	giveUp := time.Now().Add(2*n.cfg.ElectionTimeout + n.cfg.HeartbeatTimeout)
	for {
		var err error
		if n.IsLeader() {
			err = local()
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			err = remote(string(addr))
		} else {
			err = ErrNoLeader
		}
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)) {
			return err
		}
		// Not proposed anywhere yet: safe to wait for a leader and retry.
		if time.Now().After(giveUp) {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		case <-n.done:
			return ErrShutdown
		}
		if backoff < 100*time.Millisecond {
			backoff *= 2
		}
	}
}

func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// Server is one member of the Raft configuration.
type Server struct {
	ID    string
	Addr  string
	Voter bool
}

// Servers returns the latest Raft configuration known to this node.
func (n *Node) Servers() ([]Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapRaftErr(err)
	}
	var out []Server
	for _, s := range f.Configuration().Servers {
		out = append(out, Server{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Membership operations.
const (
	opAddVoter    = "add_voter"
	opAddNonvoter = "add_nonvoter"
	opRemove      = "remove"
	opPromote     = "promote"
	opTransfer    = "transfer"
)

// AddMember adds a voter (or a non-voter) to the cluster. Adding a member that
// is already present with the same address succeeds, so joins can be retried.
func (n *Node) AddMember(ctx context.Context, id, addr string, voter bool) error {
	op := opAddVoter
	if !voter {
		op = opAddNonvoter
	}
	return n.membership(ctx, MembershipArgs{Op: op, ID: id, Addr: addr})
}

// RemoveMember removes a member.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	return n.membership(ctx, MembershipArgs{Op: opRemove, ID: id})
}

// PromoteMember turns a non-voter into a voter.
func (n *Node) PromoteMember(ctx context.Context, id string) error {
	return n.membership(ctx, MembershipArgs{Op: opPromote, ID: id})
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// follower when id is empty.
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	return n.membership(ctx, MembershipArgs{Op: opTransfer, ID: id})
}

func (n *Node) membership(ctx context.Context, a MembershipArgs) error {
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	return n.onLeader(ctx, func() error {
		return n.membershipLocal(ctx, a)
	}, func(addr string) error {
		_, err := n.call(ctx, addr, methodMember, encodeMembership(a))
		return err
	})
}

func (n *Node) membershipLocal(ctx context.Context, a MembershipArgs) error {
	servers, err := n.Servers()
	if err != nil {
		return err
	}
	var cur *Server
	for i := range servers {
		if servers[i].ID == a.ID {
			cur = &servers[i]
		}
	}
	t := n.timeout(ctx)
	switch a.Op {
	case opAddVoter, opAddNonvoter:
		if cur != nil {
			if cur.Addr != a.Addr {
				return fmt.Errorf("%w: %s is at %s", ErrMemberExists, a.ID, cur.Addr)
			}
			if cur.Voter || a.Op == opAddNonvoter {
				return nil
			}
		}
		answered, err := n.probe(ctx, a.Addr)
		if err != nil {
			return err
		}
		if a.Op == opAddVoter {
			if !answered {
				if err := n.quorumWithout(ctx, servers, a.ID, a.Addr); err != nil {
					return err
				}
			}
			return mapRaftErr(n.raft.AddVoter(raft.ServerID(a.ID), raft.ServerAddress(a.Addr), 0, t).Error())
		}
		return mapRaftErr(n.raft.AddNonvoter(raft.ServerID(a.ID), raft.ServerAddress(a.Addr), 0, t).Error())
	case opRemove:
		if cur == nil {
			return fmt.Errorf("%w: %s", ErrUnknownMember, a.ID)
		}
		return mapRaftErr(n.raft.RemoveServer(raft.ServerID(a.ID), 0, t).Error())
	case opPromote:
		if cur == nil {
			return fmt.Errorf("%w: %s", ErrUnknownMember, a.ID)
		}
		if cur.Voter {
			return nil
		}
		answered, err := n.probe(ctx, cur.Addr)
		if err != nil {
			return err
		}
		if !answered {
			if err := n.quorumWithout(ctx, servers, a.ID, cur.Addr); err != nil {
				return err
			}
		}
		return mapRaftErr(n.raft.AddVoter(raft.ServerID(a.ID), raft.ServerAddress(cur.Addr), 0, t).Error())
	case opTransfer:
		if a.ID != "" && cur == nil {
			return fmt.Errorf("%w: %s", ErrUnknownMember, a.ID)
		}
		if a.ID == n.cfg.ID {
			return nil // already the leader
		}
		others := 0
		for _, sv := range servers {
			if sv.Voter && sv.ID != n.cfg.ID {
				others++
			}
		}
		if others == 0 {
			return fmt.Errorf("%w: %s is the only voter (add a member first)", ErrNoTransferee, n.cfg.ID)
		}
		// TimeoutNow lets the target's votes bypass every follower's
		// "known leader" rule, on which the lease rests: no lease for
		// the rest of this term.
		n.revokeLease()
		if a.ID == "" {
			return transferErr(n.await(n.raft.LeadershipTransfer()))
		}
		return transferErr(n.await(n.raft.LeadershipTransferToServer(raft.ServerID(a.ID), raft.ServerAddress(cur.Addr))))
	}
	return fmt.Errorf("raftnode: unknown membership op %q", a.Op)
}

// probe checks that a new member's peer port, if it is already up, completes
// a handshake with this node's peer TLS settings: a node whose certificate is
// not from the cluster's CA cannot join. A port that is not listening yet is
// accepted (members may be added before they start, as with etcd), a voter
// only while the others keep a quorum (quorumWithout).
//
// answered reports whether the port answered within probeWait.
func (n *Node) probe(ctx context.Context, addr string) (answered bool, err error) {
	pctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	_, err = n.rpc.Call(pctx, addr, methodPing, nil)
	var re *peer.Error
	switch {
	case err == nil, errors.As(err, &re):
		return true, nil // it answered, so it accepted our certificate
	case errors.Is(err, peer.ErrHandshake):
		return false, fmt.Errorf("%w: %s: %w", ErrPeerUntrusted, addr, err)
	case errors.Is(err, peer.ErrConnLost) && n.cfg.Dialer.TLS != nil:
		// The server verifies our certificate after the handshake; a
		// rejection shows up as a connection closed under the call.
		return false, fmt.Errorf("%w: %s: %w", ErrPeerUntrusted, addr, err)
	}
	return false, nil // not listening yet, or slow to answer
}

// probeWait bounds how long a membership change waits for a peer port.
const probeWait = 3 * time.Second

// quorumWithout refuses to make id (at addr, which did not answer) a voter
// unless the voters that do answer make a quorum of the membership with it,
// as etcd's strict reconfiguration check does: a three-member cluster with
// one member down that took a fourth voter it cannot reach would stop
// taking writes at once (3 of 4 needed, 2 reachable). The leader counts
// itself and pings the other voters at once. A lone voter may add a second
// (as etcd allows too): it has no failure to survive, and growing by
// adding a member, then starting it, needs that step.
func (n *Node) quorumWithout(ctx context.Context, servers []Server, id, addr string) error {
	voters := 1 // id
	var (
		answered atomic.Int32 // the other voters that answer
		wg       sync.WaitGroup
	)
	self := 0
	for _, sv := range servers {
		if !sv.Voter || sv.ID == id {
			continue
		}
		voters++
		if sv.ID == n.cfg.ID {
			self = 1
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := n.probe(ctx, sv.Addr); ok {
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	up := self + int(answered.Load())
	if voters == 2 && up == 1 {
		return nil
	}
	if quorum := voters/2 + 1; up < quorum {
		return fmt.Errorf("%w: %s at %s does not answer, and %d of the %d voters with it would (a quorum is %d); start %s first (cairn serve --join) or add it as a non-voter and promote it once it has caught up",
			ErrQuorumAtRisk, id, addr, up, voters, quorum, id)
	}
	return nil
}

// Status is a node's view of the group.
type Status struct {
	ID           string
	State        string
	LeaderID     string
	LeaderAddr   string
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64
	LastIndex    uint64
	LastContact  time.Duration
}

// Status reports this node's Raft state.
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	s := Status{
		ID:           n.cfg.ID,
		State:        stateName(n.raft.State()),
		LeaderID:     string(id),
		LeaderAddr:   string(addr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.applied.Load(),
		LastIndex:    n.raft.LastIndex(),
	}
	if s.State != "leader" {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			s.LastContact = time.Since(lc)
		}
	}
	return s
}

func stateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	}
	return s.String()
}

// IsStale reports whether this node's local data may be out of date: it is not
// the leader and has not heard from one within the election timeout.
func (n *Node) IsStale() bool {
	if n.IsLeader() {
		return false
	}
	if addr, _ := n.raft.LeaderWithID(); addr == "" {
		return true
	}
	return time.Since(n.raft.LastContact()) > n.cfg.ElectionTimeout
}

// Snapshot takes a snapshot now (and compacts the log behind it).
func (n *Node) Snapshot() error { return mapRaftErr(n.raft.Snapshot().Error()) }

// Close hands leadership away when leading, then stops Raft and releases the
// log. The state database belongs to the caller.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		if n.IsLeader() {
			if len(n.voters()) > 1 {
				n.revokeLease()
				_ = n.await(n.raft.LeadershipTransfer())
			}
		}
		close(n.done)
		n.markDown() // forwarded requests still waiting answer ErrShutdown
		// Before Raft stops: the handlers use it. Followers calling after
		// this hear the method is gone (ErrNoLeader, retried elsewhere).
		n.svc.Close()
		if n.ownRPC {
			_ = n.rpc.Close()
		}
		err = n.raft.Shutdown().Error()
		n.wg.Wait()
		n.closeResources()
	})
	return err
}

// markDown records that Raft has shut down or the node is closing.
func (n *Node) markDown() { n.downOnce.Do(func() { close(n.down) }) }

// shutdownGrace is how long a wait on Raft still expects an answer after
// Raft went down: futures Raft answered just before shutting down (the
// removal that made a leader shut itself down, for one) have their result
// ready and only need their goroutine to run.
const shutdownGrace = 250 * time.Millisecond

// await waits for f like f.Error(), mapped to this package's errors, but
// gives up with ErrShutdown once Raft has shut down or the node is closing.
// hashicorp/raft never answers a future still queued in one of its buffered
// channels (apply, verify, leadership transfer) when it shuts down
// (hashicorp/raft#498), and a leader that removes itself shuts down on its
// own; without this, a forwarded request waiting there held Close, which
// waits for RPC handlers, forever. Futures sent on unbuffered channels
// (membership changes, snapshots) are always answered and need no await.
func (n *Node) await(f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return mapRaftErr(err)
	case <-n.down:
	}
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case err := <-ch:
		return mapRaftErr(err)
	case <-t.C:
		return fmt.Errorf("%w: %w", ErrShutdown, raft.ErrRaftShutdown)
	}
}

// transferErr classifies the outcome of a leadership transfer. Besides the
// exported errors, hashicorp/raft answers a transfer that did not complete
// (the target did not win in time, could not be reached, or has no
// replication state yet) with unexported errors; each means "not done, try
// again", so they are ErrTimeout, never matched by their text.
func transferErr(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrNotLeader), errors.Is(err, ErrLeadershipLost),
		errors.Is(err, ErrShutdown), errors.Is(err, ErrTimeout):
		return err
	}
	return fmt.Errorf("%w: leadership transfer did not complete: %w", ErrTimeout, err)
}

func (n *Node) voters() []Server {
	servers, _ := n.Servers()
	var out []Server
	for _, s := range servers {
		if s.Voter {
			out = append(out, s)
		}
	}
	return out
}

func (n *Node) closeResources() {
	if n.svc != nil {
		n.svc.Close()
	}
	if n.ownRPC {
		_ = n.rpc.Close()
	}
	if n.ltrans != nil {
		close(n.ltrans.stop)
	}
	if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.logDB != nil {
		_ = n.logDB.Close()
	}
}
