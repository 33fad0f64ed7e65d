// Package etcdnode is an experimental Raft member built on go.etcd.io/raft
// (cairn serve --raft-impl etcd), written to measure etcd's raft against
// the hashicorp/raft member in package raftnode through the whole stack. It
// takes the same raftnode.Config and drives the same raftnode.StateMachine,
// with the applied index in the same state batch. It has no snapshots and
// no membership changes yet: see DESIGN.md beside this file.
package etcdnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// ErrUnsupported is returned for what the prototype does not do:
// membership changes, snapshots, leadership transfer.
var ErrUnsupported = errors.New("etcdnode: not supported by the etcd raft prototype")

// Entry frames: kind | leader unix nanos | origin member | sequence | payload.
// origin and sequence name the proposer's waiter: only the member that
// proposed (leader or follower, which raft forwards) answers it.
const (
	kindCommand byte = 1
	frameHeader      = 1 + 8 + 8 + 8
)

var appliedKey = []byte{0x00, 'a', 'p', 'p', 'l', 'i', 'e', 'd'} // as raftnode's adapter

// Node is one member of an etcd-raft group.
type Node struct {
	cfg   raftnode.Config
	log   *slog.Logger
	id    uint64
	peers map[uint64]raftnode.Peer // fixed: no membership changes
	tick  time.Duration

	logDB *store.DB
	logs  *logStore
	ms    *memStorage
	rn    *raft.RawNode // owned by run
	trans *transport

	propc    chan *proposal
	recvc    chan *pb.Message
	readc    chan struct{}
	unreachc chan uint64
	applyc   chan []*pb.Entry

	seq     atomic.Uint64
	waitMu  sync.Mutex
	waiters map[uint64]*proposal

	readMu    sync.Mutex
	readQueue []chan readResult

	applied   atomic.Uint64
	appliedMu sync.Mutex
	changed   chan struct{}

	leader      atomic.Uint64
	term        atomic.Uint64
	commit      atomic.Uint64
	last        atomic.Uint64
	state       atomic.Value // string
	lastContact atomic.Int64 // unix nanos of the last message from the leader

	hadState bool
	caughtUp atomic.Bool

	readies, fsyncs atomic.Uint64

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
	applyWG   sync.WaitGroup
	removed   chan struct{}
}

type proposal struct {
	seq  uint64
	data []byte
	term uint64 // the term it entered the log in (0: not yet)
	res  chan proposeResult
}

type proposeResult struct {
	out []byte
	err error
}

type readResult struct {
	index uint64
	err   error
}

// memberID is the raft ID of a member name.
func memberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// Start opens the log (Dir/etcdraft) and starts the member: a new cluster
// of cfg.Bootstrap when there is no state on disk, else the state on disk.
func Start(cfg raftnode.Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = time.Second
	}
	if cfg.ForceNewCluster {
		return nil, fmt.Errorf("%w: --force-new-cluster", ErrUnsupported)
	}
	n := &Node{
		cfg: cfg, log: cfg.Logger.With("subsystem", "etcdraft"), id: memberID(cfg.ID),
		tick:  min(max(cfg.ElectionTimeout/10, 5*time.Millisecond), 100*time.Millisecond),
		propc: make(chan *proposal, 4096), recvc: make(chan *pb.Message, 4096), readc: make(chan struct{}, 1),
		unreachc: make(chan uint64, 64), applyc: make(chan []*pb.Entry, 256),
		waiters: map[uint64]*proposal{}, changed: make(chan struct{}), done: make(chan struct{}), removed: make(chan struct{}),
	}
	n.seq.Store(uint64(time.Now().UnixNano()))
	n.state.Store("follower")
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
		}
	}()
	var err error
	if n.logDB, err = store.Open(filepath.Join(cfg.Dir, "etcdraft"), store.Options{Logger: cfg.Logger, CacheBytes: 16 << 20, NoCompression: true}); err != nil {
		return nil, err
	}
	n.logs = &logStore{db: n.logDB}
	members, err := n.members()
	if err != nil {
		return nil, err
	}
	n.peers = map[uint64]raftnode.Peer{}
	cs := &pb.ConfState{}
	for _, p := range members {
		id := memberID(p.ID)
		if _, dup := n.peers[id]; dup {
			return nil, fmt.Errorf("etcdnode: members %q and %q have the same raft ID", p.ID, n.peers[id].ID)
		}
		n.peers[id] = p
		cs.Voters = append(cs.Voters, id)
	}
	if _, ok := n.peers[n.id]; !ok {
		return nil, fmt.Errorf("etcdnode: %s is not among the members %v", cfg.ID, members)
	}
	n.ms = &memStorage{MemoryStorage: raft.NewMemoryStorage(), cs: cs}
	hs, err := n.logs.load(n.ms.MemoryStorage)
	if err != nil {
		return nil, err
	}
	applied, err := readApplied(cfg.StateDB)
	if err != nil {
		return nil, err
	}
	// The state database and a commit-only hard state are written
	// unsynced: after a crash the state may record more applied than the
	// hard state's commit. Everything applied was committed and is in the
	// synced log.
	if applied > n.logs.last {
		return nil, fmt.Errorf("etcdnode: the state has applied %d but the log ends at %d", applied, n.logs.last)
	}
	if applied > hs.GetCommit() {
		hs.Commit = &applied
	}
	if err := n.ms.SetHardState(hs); err != nil {
		return nil, err
	}
	n.applied.Store(applied)
	n.commit.Store(hs.GetCommit())
	n.last.Store(n.logs.last)
	n.term.Store(hs.GetTerm())
	n.hadState = n.logs.last > 0 || hs.GetTerm() > 0

	n.rn, err = raft.NewRawNode(&raft.Config{
		ID:                        n.id,
		ElectionTick:              10,
		HeartbeatTick:             1,
		Storage:                   n.ms,
		Applied:                   applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  16 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    raftLogger{n.log},
	})
	if err != nil {
		return nil, fmt.Errorf("etcdnode: %w", err)
	}
	ln, err := cfg.Mux.Listen(peer.ProtoEtcdRaft, "etcdraft")
	if err != nil {
		return nil, fmt.Errorf("etcdnode: %w", err)
	}
	n.trans = newTransport(n, ln, cfg.Dialer)
	replayTo := n.logs.last
	n.applyWG.Add(1)
	go func() { defer n.applyWG.Done(); n.applyLoop() }()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.run() }()
	go func() { defer n.wg.Done(); n.awaitReplay(replayTo) }()
	if n.hadState {
		n.log.Info("restarting from existing state", "applied", applied, "log", n.logs.last, "term", hs.GetTerm())
	} else {
		n.log.Info("bootstrapped a new cluster", "members", len(members))
	}
	ok = true
	return n, nil
}

// members is the member list on disk, or cfg.Bootstrap written there.
func (n *Node) members() ([]raftnode.Peer, error) {
	v, err := n.logDB.Get([]byte{keyPeers})
	if err == nil {
		return decodePeers(v)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if len(n.cfg.Bootstrap) == 0 {
		return nil, fmt.Errorf("%w: joining an existing cluster (only bootstrap peers)", ErrUnsupported)
	}
	ps := append([]raftnode.Peer(nil), n.cfg.Bootstrap...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	b := n.logDB.NewBatch() // Commit releases it
	b.Set([]byte{keyPeers}, encodePeers(ps))
	if err := b.Commit(true); err != nil {
		return nil, err
	}
	return ps, nil
}

func readApplied(db *store.DB) (uint64, error) {
	v, err := db.Get(appliedKey)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("etcdnode: applied index has %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// run is the Ready loop; it alone touches n.rn. Each pass steps in every
// queued message and proposal (so one Ready carries them all), then
// handles the Ready: the leader sends first and writes its log while the
// followers write theirs (Raft thesis §10.2.1); a follower writes first
// (its acknowledgement must follow its own write). One batch, at most one
// fsync, per Ready.
func (n *Node) run() {
	t := time.NewTicker(n.tick)
	defer t.Stop()
	var readSeq uint64
	var inflight []chan readResult // waiters of the read request in flight
	var inflightCtx []byte
	var inflightAt time.Time
	startRead := func() {
		n.readMu.Lock()
		ws := n.readQueue
		n.readQueue = nil
		n.readMu.Unlock()
		inflight = append(inflight, ws...)
		if len(inflight) == 0 {
			return
		}
		readSeq++
		inflightCtx = binary.BigEndian.AppendUint64(nil, readSeq)
		inflightAt = time.Now()
		n.rn.ReadIndex(inflightCtx)
	}
	prevLeader := uint64(0)
	for {
		select {
		case <-t.C:
			n.rn.Tick()
			if inflight != nil && time.Since(inflightAt) > n.cfg.ElectionTimeout {
				startRead() // lost (no leader, a leader change): ask again
			}
		case m := <-n.recvc:
			n.step(m)
		case p := <-n.propc:
			n.propose(p)
		case <-n.readc:
			if inflight == nil {
				startRead()
			}
		case id := <-n.unreachc:
			n.rn.ReportUnreachable(id)
		case <-n.done:
			n.failAll(raftnode.ErrShutdown)
			for _, w := range inflight {
				w <- readResult{err: raftnode.ErrShutdown}
			}
			return
		}
		// Take everything else that is queued into the same Ready.
	drain:
		for range 4096 {
			select {
			case m := <-n.recvc:
				n.step(m)
			case p := <-n.propc:
				n.propose(p)
			default:
				break drain
			}
		}
		if !n.rn.HasReady() {
			continue
		}
		rd := n.rn.Ready()
		n.readies.Add(1)
		if rd.SoftState != nil {
			n.leader.Store(rd.SoftState.Lead)
			n.state.Store(stateName(rd.SoftState.RaftState))
		}
		if rd.HardState != nil && rd.HardState.GetTerm() != n.term.Load() {
			n.term.Store(rd.HardState.GetTerm())
		}
		if l := n.leader.Load(); l != prevLeader {
			// Proposals in the log under an earlier leader may or may
			// not commit: their outcome is unknown.
			n.failProposed(n.term.Load())
			prevLeader = l
		}
		leading := n.rn.BasicStatus().RaftState == raft.StateLeader
		if leading {
			n.trans.send(rd.Messages)
		}
		sync := rd.HardState != nil && raft.MustSync(rd.HardState, n.lastHS(), len(rd.Entries))
		if len(rd.Entries) > 0 {
			sync = true
		}
		if err := n.logs.save(rd.HardState, rd.Entries, sync); err != nil {
			// Raft cannot go on without its log.
			panic(fmt.Sprintf("etcdnode: write the log: %v", err))
		}
		if sync {
			n.fsyncs.Add(1)
		}
		if rd.HardState != nil {
			_ = n.ms.SetHardState(rd.HardState)
			n.commit.Store(rd.HardState.GetCommit())
		}
		if len(rd.Entries) > 0 {
			if err := n.ms.Append(rd.Entries); err != nil {
				panic(fmt.Sprintf("etcdnode: append to the log: %v", err))
			}
			n.last.Store(rd.Entries[len(rd.Entries)-1].GetIndex())
		}
		if !leading {
			n.trans.send(rd.Messages)
		}
		if len(rd.CommittedEntries) > 0 {
			select {
			case n.applyc <- rd.CommittedEntries:
			case <-n.done:
			}
		}
		for _, rs := range rd.ReadStates {
			if inflight != nil && string(rs.RequestCtx) == string(inflightCtx) {
				for _, w := range inflight {
					w <- readResult{index: rs.Index}
				}
				inflight = nil
				startRead()
			}
		}
		n.rn.Advance(rd)
	}
}

func (n *Node) lastHS() *pb.HardState {
	hs, _, _ := n.ms.MemoryStorage.InitialState()
	return hs
}

func (n *Node) step(m *pb.Message) {
	if m.GetFrom() == n.leader.Load() {
		n.lastContact.Store(time.Now().UnixNano())
	}
	if err := n.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		n.log.Debug("raft refused a message", "type", m.GetType().String(), "from", m.GetFrom(), "err", err)
	}
}

// propose hands p to raft (the leader appends it; a follower forwards it).
func (n *Node) propose(p *proposal) {
	if err := n.rn.Propose(p.data); err != nil {
		n.finish(p.seq, proposeResult{err: fmt.Errorf("%w: %w", raftnode.ErrNoLeader, err)})
		return
	}
	term := n.rn.BasicStatus().GetTerm()
	n.waitMu.Lock()
	p.term = term
	n.waitMu.Unlock()
}

// failProposed ends every proposal that entered the log before term.
func (n *Node) failProposed(term uint64) {
	n.waitMu.Lock()
	var out []*proposal
	for seq, p := range n.waiters {
		if p.term != 0 && p.term < term {
			out = append(out, p)
			delete(n.waiters, seq)
		}
	}
	n.waitMu.Unlock()
	for _, p := range out {
		p.res <- proposeResult{err: raftnode.ErrLeadershipLost}
	}
}

func (n *Node) failAll(err error) {
	n.waitMu.Lock()
	ws := n.waiters
	n.waiters = map[uint64]*proposal{}
	n.waitMu.Unlock()
	for _, p := range ws {
		p.res <- proposeResult{err: err}
	}
}

func (n *Node) finish(seq uint64, r proposeResult) {
	n.waitMu.Lock()
	p := n.waiters[seq]
	delete(n.waiters, seq)
	n.waitMu.Unlock()
	if p != nil {
		p.res <- r
	}
}

func (n *Node) reportUnreachable(id uint64) {
	select {
	case n.unreachc <- id:
	default:
	}
}

// recv hands an incoming message to the Ready loop; false once closed.
func (n *Node) recv(m *pb.Message) bool {
	select {
	case n.recvc <- m:
		return true
	case <-n.done:
		return false
	}
}

// applyLoop applies committed entries, every batch queued at once in one
// state batch that also records the applied index (as raftnode's adapter).
func (n *Node) applyLoop() {
	for {
		var ents []*pb.Entry
		select {
		case ents = <-n.applyc:
		case <-n.done:
			return
		}
	more:
		for {
			select {
			case e := <-n.applyc:
				ents = append(ents, e...)
			default:
				break more
			}
		}
		n.apply(ents)
	}
}

func (n *Node) apply(ents []*pb.Entry) {
	applied := n.applied.Load()
	last := ents[len(ents)-1].GetIndex()
	if last <= applied {
		return
	}
	b := n.cfg.StateDB.NewBatch() // Commit releases it
	entries := make([]raftnode.Entry, 0, len(ents))
	owners := make([]uint64, 0, len(ents))
	for _, e := range ents {
		if e.GetIndex() <= applied || e.GetType() != pb.EntryNormal || len(e.Data) == 0 {
			continue // applied before a restart, or raft's own empty entry of a new term
		}
		d := e.Data
		if len(d) < frameHeader || d[0] != kindCommand {
			n.log.Error("skipping a malformed log entry", "index", e.GetIndex())
			continue
		}
		entries = append(entries, raftnode.Entry{Index: e.GetIndex(), Time: int64(binary.BigEndian.Uint64(d[1:])), Data: d[frameHeader:]})
		seq := uint64(0)
		if binary.BigEndian.Uint64(d[9:]) == n.id {
			seq = binary.BigEndian.Uint64(d[17:])
		}
		owners = append(owners, seq)
	}
	var res [][]byte
	if len(entries) > 0 {
		res = n.cfg.StateMachine.Apply(b, entries)
	}
	b.Set(appliedKey, binary.BigEndian.AppendUint64(nil, last))
	if err := b.Commit(false); err != nil {
		panic(fmt.Sprintf("etcdnode: commit applied batch: %v", err))
	}
	if c, ok := n.cfg.StateMachine.(raftnode.Committer); ok && len(entries) > 0 {
		c.Committed()
	}
	n.applied.Store(last)
	n.appliedMu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.appliedMu.Unlock()
	for i, seq := range owners {
		if seq != 0 {
			n.finish(seq, proposeResult{out: res[i]})
		}
	}
}

func (n *Node) appliedChanged() <-chan struct{} {
	n.appliedMu.Lock()
	defer n.appliedMu.Unlock()
	return n.changed
}

func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

// Propose replicates data and returns the state machine's result for it.
// A follower proposes through raft, which forwards to the leader; the
// result is the follower's own application of the entry. A proposal raft
// dropped (no leader yet) is retried until ctx ends.
func (n *Node) Propose(ctx context.Context, data []byte) ([]byte, error) {
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	framed := make([]byte, frameHeader+len(data))
	framed[0] = kindCommand
	binary.BigEndian.PutUint64(framed[1:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint64(framed[9:], n.id)
	copy(framed[frameHeader:], data)
	for {
		seq := n.seq.Add(1)
		binary.BigEndian.PutUint64(framed[17:], seq)
		p := &proposal{seq: seq, data: framed, res: make(chan proposeResult, 1)}
		n.waitMu.Lock()
		n.waiters[seq] = p
		n.waitMu.Unlock()
		select {
		case n.propc <- p:
		case <-ctx.Done():
			n.finish(seq, proposeResult{})
			return nil, fmt.Errorf("%w: queueing the proposal", raftnode.ErrTimeout)
		case <-n.done:
			return nil, raftnode.ErrShutdown
		}
		select {
		case r := <-p.res:
			if errors.Is(r.err, raftnode.ErrNoLeader) {
				if err := n.pause(ctx); err != nil {
					return nil, err
				}
				// raft dropped it: nothing is in the log; a fresh copy of
				// the frame, since raft may hold the old slice.
				framed = append([]byte(nil), framed...)
				binary.BigEndian.PutUint64(framed[1:], uint64(time.Now().UnixNano()))
				continue
			}
			return r.out, r.err
		case <-ctx.Done():
			n.waitMu.Lock()
			delete(n.waiters, seq)
			n.waitMu.Unlock()
			return nil, fmt.Errorf("%w: waiting for the proposal to apply", raftnode.ErrTimeout)
		case <-n.done:
			return nil, raftnode.ErrShutdown
		}
	}
}

// pause waits a tick before a retry, or fails as ctx says.
func (n *Node) pause(ctx context.Context) error {
	select {
	case <-time.After(n.tick):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", raftnode.ErrNoLeader, ctx.Err())
	case <-n.done:
		return raftnode.ErrShutdown
	}
}

// ReadIndex waits until this node's state reflects every write committed
// before the call (raft's ReadIndex, ReadOnlySafe: the leader confirms its
// leadership with a quorum of heartbeats). One request is in flight per
// node at a time and serves every reader queued when it was sent.
func (n *Node) ReadIndex(ctx context.Context) error {
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	idx, err := n.readIndex(ctx)
	if err != nil {
		return err
	}
	return n.WaitApplied(ctx, idx)
}

// LeaseReadIndex is ReadIndex: the prototype holds no lease (etcd raft's
// ReadOnlyLeaseBased is not wired), so a lease read pays the quorum round and
// stays linearizable whatever the clocks do.
func (n *Node) LeaseReadIndex(ctx context.Context) error { return n.ReadIndex(ctx) }

func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	w := make(chan readResult, 1)
	n.readMu.Lock()
	n.readQueue = append(n.readQueue, w)
	n.readMu.Unlock()
	select {
	case n.readc <- struct{}{}:
	default:
	}
	select {
	case r := <-w:
		return r.index, r.err
	case <-ctx.Done():
		if n.leader.Load() == 0 {
			return 0, fmt.Errorf("%w: read index", raftnode.ErrNoLeader)
		}
		return 0, fmt.Errorf("%w: confirming leadership", raftnode.ErrTimeout)
	case <-n.done:
		return 0, raftnode.ErrShutdown
	}
}

// WaitApplied blocks until the applied index reaches idx or ctx ends.
func (n *Node) WaitApplied(ctx context.Context, idx uint64) error {
	for {
		ch := n.appliedChanged()
		if n.applied.Load() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting to apply index %d", raftnode.ErrTimeout, idx)
		case <-n.done:
			return raftnode.ErrShutdown
		}
	}
}

// awaitReplay sets caughtUp once the applied index reaches the end of the
// durable log at start, or the leader's read index if that comes first
// (a tail of the log may never commit); see raftnode's CaughtUp.
func (n *Node) awaitReplay(target uint64) {
	for n.applied.Load() < target {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ElectionTimeout)
		go func() {
			select {
			case <-n.done:
			case <-ctx.Done():
			}
			cancel()
		}()
		if idx, err := n.readIndex(ctx); err == nil {
			target = min(target, idx)
		}
		_ = n.WaitApplied(ctx, target)
		cancel()
		select {
		case <-n.done:
			return
		default:
		}
	}
	n.caughtUp.Store(true)
}

// CaughtUp reports whether this node has applied at least what it had
// applied before it last stopped.
func (n *Node) CaughtUp() bool { return n.caughtUp.Load() }

// HadState reports whether the node started from state on disk.
func (n *Node) HadState() bool { return n.hadState }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.leader.Load() == n.id && n.state.Load() == "leader" }

// AppliedIndex is the index of the last entry applied to the state machine.
func (n *Node) AppliedIndex() uint64 { return n.applied.Load() }

// IsStale reports whether local reads may be out of date: no leader, or
// (on a follower) no word from it for an election timeout. A leader with
// check quorum steps down when it loses its quorum.
func (n *Node) IsStale() bool {
	if n.IsLeader() {
		return false
	}
	if n.leader.Load() == 0 {
		return true
	}
	return time.Since(time.Unix(0, n.lastContact.Load())) > n.cfg.ElectionTimeout
}

// Status reports this node's Raft state.
func (n *Node) Status() raftnode.Status {
	s := raftnode.Status{
		ID: n.cfg.ID, State: n.state.Load().(string), Term: n.term.Load(),
		CommitIndex: n.commit.Load(), AppliedIndex: n.applied.Load(), LastIndex: n.last.Load(),
	}
	if p, ok := n.peers[n.leader.Load()]; ok {
		s.LeaderID, s.LeaderAddr = p.ID, p.Addr
	}
	if !n.IsLeader() && n.lastContact.Load() != 0 {
		s.LastContact = time.Since(time.Unix(0, n.lastContact.Load()))
	}
	return s
}

// Servers returns the members (all voters: the prototype has no learners).
func (n *Node) Servers() ([]raftnode.Server, error) {
	out := make([]raftnode.Server, 0, len(n.peers))
	for _, p := range n.peers {
		out = append(out, raftnode.Server{ID: p.ID, Addr: p.Addr, Voter: true})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AddMember is not supported by the prototype.
func (n *Node) AddMember(context.Context, string, string, bool) error {
	return fmt.Errorf("%w: adding a member", ErrUnsupported)
}

// RemoveMember is not supported by the prototype.
func (n *Node) RemoveMember(context.Context, string) error {
	return fmt.Errorf("%w: removing a member", ErrUnsupported)
}

// PromoteMember is not supported by the prototype.
func (n *Node) PromoteMember(context.Context, string) error {
	return fmt.Errorf("%w: promoting a member", ErrUnsupported)
}

// TransferLeadership is not supported by the prototype.
func (n *Node) TransferLeadership(context.Context, string) error {
	return fmt.Errorf("%w: leadership transfer", ErrUnsupported)
}

// Snapshot is not supported by the prototype (the log is never compacted).
func (n *Node) Snapshot() error { return fmt.Errorf("%w: snapshots", ErrUnsupported) }

// Removed never closes: the prototype has no removal.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// RemovedReason is empty: the prototype has no removal.
func (n *Node) RemovedReason() string { return "" }

// Close stops the member: the Ready loop (failing what waits on it), the
// transport, the applier, then the log.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.done)
		n.wg.Wait()
		n.trans.close()
		n.applyWG.Wait()
		n.failAll(raftnode.ErrShutdown)
		n.closeResources()
	})
	return nil
}

func (n *Node) closeResources() {
	if n.trans != nil {
		n.trans.close()
	}
	if n.logDB != nil {
		_ = n.logDB.Close()
		n.logDB = nil
	}
}

func stateName(s raft.StateType) string {
	switch s {
	case raft.StateLeader:
		return "leader"
	case raft.StateFollower:
		return "follower"
	case raft.StateCandidate, raft.StatePreCandidate:
		return "candidate"
	}
	return s.String()
}

// Collector exports the Ready loop's counters.
func (n *Node) Collector() prometheus.Collector { return collector{n} }

var (
	descReadies = prometheus.NewDesc("cairn_etcdraft_readies_total", "Ready batches the etcd raft prototype handled.", nil, nil)
	descFsyncs  = prometheus.NewDesc("cairn_etcdraft_fsyncs_total", "Synced log writes of the etcd raft prototype (at most one per Ready).", nil, nil)
)

type collector struct{ n *Node }

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- descReadies; ch <- descFsyncs }
func (c collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descReadies, prometheus.CounterValue, float64(c.n.readies.Load()))
	ch <- prometheus.MustNewConstMetric(descFsyncs, prometheus.CounterValue, float64(c.n.fsyncs.Load()))
}

// raftLogger routes raft's log to slog; raft's Info is chatty, so it
// goes to Debug, except leadership news.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)              { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...any)   { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...any)               { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...any)    { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Warning(v ...any)            { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...any) { r.l.Warn(fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...any)              { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...any)   { r.l.Error(fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...any)              { r.l.Error(fmt.Sprint(v...)); panic(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any)   { r.Fatal(fmt.Sprintf(f, v...)) }
func (r raftLogger) Panic(v ...any)              { r.Fatal(v...) }
func (r raftLogger) Panicf(f string, v ...any)   { r.Fatal(fmt.Sprintf(f, v...)) }
