// Package cluster starts in-process cairn clusters for tests: N nodes through
// server.Start on loopback ports chosen by the kernel, with helpers to find
// the leader, stop and restart nodes, and cut or heal peer links (the
// peer.Faults hook on every node's dialer). It is the one way tests get a
// cluster, in the spirit of hashicorp/raft's MakeCluster and etcd's
// integration.NewCluster. Harness adapts a Cluster to the fault-injection
// harness's interface (test/harness), whose other implementation runs real
// processes (test/process).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/testhook"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/server"
)

// Cluster is a set of in-process nodes.
type Cluster struct {
	t     testing.TB
	Nodes []*Node
	opts  Options
	size  int        // the nodes that bootstrapped the cluster
	mu    sync.Mutex // guards Node.S, Node.hooks and the harness fields against concurrent Start/Stop and readers
	// crashes are nodes whose server failed on its own (Server.Err).
	crashes []string
}

// Node is one member; S is nil while the node is stopped.
type Node struct {
	Name       string
	Dir        string
	PeerAddr   string
	ClientAddr string
	RESPAddr   string
	S          *server.Server
	cfg        config.Config
	// hooks reach into the running server (nil while stopped).
	hooks *testhook.Hooks
	// Listeners opened when the node was created and handed to its first
	// start, so no other process can take the ports in between.
	peerLn, clientLn, respLn net.Listener
	// stopped is closed when this start of the node is stopped; failed
	// when its server fails on its own, with the error in failErr.
	stopped, failed chan struct{}
	failErr         error
	// incarnation counts starts; member is whether the node is in the
	// configuration as far as the cluster knows (the harness keeps it).
	incarnation int
	member      bool
	// log keeps what the node logged at info and above (Options.KeepLog).
	log *logBuf
	// skew is the offset of the node's eventual clock (SkewClock), handed
	// to every start as testhook.Hooks.ClockSkew, so that it survives
	// restarts as a machine's clock would.
	skew atomic.Int64
	// leaseRate and stallLog are the node's testhook.Hooks.LeaseClockRate
	// and StallLog, kept across restarts (SetLeaseClockRate, StallLog).
	leaseRate atomic.Uint64
	stallLog  atomic.Bool
}

// Options shape a cluster.
type Options struct {
	// Configure, when set, edits each node's config before it starts.
	Configure func(i int, c *config.Config)
	// LogLevel for node logs routed to t.Log (default: warn).
	LogLevel slog.Level
	// Spares are extra node slots, with their ports held, that are neither
	// started nor in the initial cluster: a test (or the harness's
	// learner-promote fault) starts them as joiners.
	Spares int
	// KeepLog keeps every node's log lines at info and above in memory, so
	// that the harness can look for what a node logged (a snapshot
	// install); t.Log still gets only LogLevel and above.
	KeepLog bool
	// NoRepair starts every node's eventual engine without anti-entropy,
	// read repair, hints and handoff (testhook.Hooks.NoRepair): the broken
	// build the convergence checker must catch.
	NoRepair bool
}

// New starts n nodes that bootstrap together and waits until all are ready.
func New(t testing.TB, n int, o Options) *Cluster {
	t.Helper()
	if o.LogLevel == 0 {
		o.LogLevel = slog.LevelWarn
	}
	c := &Cluster{t: t, opts: o, size: n}
	var spec []string
	for i := 0; i < n+o.Spares; i++ {
		nd := c.newNode(i)
		if i < n {
			nd.member = true
			spec = append(spec, nd.Name+"="+nd.PeerAddr)
		}
	}
	for i, nd := range c.Nodes {
		if i < n {
			nd.cfg.InitialCluster = strings.Join(spec, ",")
		}
		if o.Configure != nil {
			o.Configure(i, &nd.cfg)
		}
	}
	t.Cleanup(c.Close)
	for i := 0; i < n; i++ {
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	return c
}

func (c *Cluster) newNode(i int) *Node {
	name := fmt.Sprintf("n%d", i+1)
	dir := filepath.Join(c.t.TempDir(), name)
	nd := &Node{Name: name, Dir: dir}
	if c.opts.KeepLog {
		nd.log = &logBuf{}
	}
	nd.peerLn, nd.PeerAddr = listen(c.t, "127.0.0.1:0")
	nd.clientLn, nd.ClientAddr = listen(c.t, "127.0.0.1:0")
	nd.respLn, nd.RESPAddr = listen(c.t, "127.0.0.1:0")
	cfg := config.Default()
	cfg.Name = name
	cfg.DataDir = dir
	cfg.ListenPeer = nd.PeerAddr
	cfg.ListenClient = nd.ClientAddr
	cfg.ListenResp = nd.RESPAddr
	cfg.HeartbeatTimeout = raftTimeout
	cfg.ElectionTimeout = raftTimeout
	cfg.RequestTimeout = 3 * time.Second
	nd.cfg = cfg
	c.Nodes = append(c.Nodes, nd)
	return nd
}

// listen opens addr, retrying for a while: after a stop, the port of a
// restarting node may linger for a moment.
func listen(t testing.TB, addr string) (net.Listener, string) {
	t.Helper()
	ln, err := tryListen(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln, ln.Addr().String()
}

func tryListen(addr string) (net.Listener, error) {
	var err error
	for try := 0; try < 100; try++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("cluster: listen %s: %w", addr, err)
}

// AddNode creates a node that joins the running cluster through node via,
// as a voter or a non-voter, and waits until it is ready.
func (c *Cluster) AddNode(via int, nonVoter bool) *Node {
	c.t.Helper()
	i := c.StartJoiner(via, nonVoter, nil)
	c.waitNodeReady(i, 30*time.Second)
	return c.Nodes[i]
}

// StartJoiner starts a new node that asks node via to add it, without waiting
// for it; configure may edit its config. It returns the node's index.
func (c *Cluster) StartJoiner(via int, nonVoter bool, configure func(*config.Config)) int {
	c.t.Helper()
	nd := c.newNode(len(c.Nodes))
	nd.cfg.Join = "http://" + c.Nodes[via].ClientAddr
	nd.cfg.JoinAsNonVoter = nonVoter
	nd.member = true
	i := len(c.Nodes) - 1
	if c.opts.Configure != nil {
		c.opts.Configure(i, &nd.cfg)
	}
	if configure != nil {
		configure(&nd.cfg)
	}
	c.Start(i)
	return i
}

// Start (re)starts node i on its addresses and data directory.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) start(i int) error {
	nd := c.Nodes[i]
	c.mu.Lock()
	running := nd.S != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("cluster: node %s already running", nd.Name)
	}
	cfg := nd.cfg
	cfg.Logger = slog.New(&testHandler{t: c.t, level: c.opts.LogLevel, name: nd.Name, keep: nd.log})
	if nd.peerLn == nil { // a restart: the old listeners closed with the server
		var err error
		if nd.peerLn, err = tryListen(nd.PeerAddr); err != nil {
			return err
		}
		if nd.clientLn, err = tryListen(nd.ClientAddr); err != nil {
			nd.peerLn.Close()
			nd.peerLn = nil
			return err
		}
		if nd.respLn, err = tryListen(nd.RESPAddr); err != nil {
			nd.peerLn.Close()
			nd.clientLn.Close()
			nd.peerLn, nd.clientLn = nil, nil
			return err
		}
	}
	cfg.PeerListener, cfg.ClientListener, cfg.RESPListener = nd.peerLn, nd.clientLn, nd.respLn
	nd.peerLn, nd.clientLn, nd.respLn = nil, nil, nil // the server owns them now
	hooks := &testhook.Hooks{Faults: &peer.Faults{}, NoRepair: c.opts.NoRepair, ClockSkew: &nd.skew, LeaseClockRate: &nd.leaseRate, StallLog: &nd.stallLog}
	s, err := server.Start(testhook.With(context.Background(), hooks), cfg)
	if err != nil {
		return fmt.Errorf("cluster: start %s: %w", nd.Name, err)
	}
	stopped, failed := make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	nd.S, nd.hooks, nd.stopped, nd.failed, nd.failErr = s, hooks, stopped, failed, nil
	nd.incarnation++
	inc := nd.incarnation
	c.mu.Unlock()
	go func() {
		// A server that fails on its own while the cluster counts it as
		// running crashed: waiting for it fails, and so does a harness run.
		select {
		case err := <-s.Err():
			c.mu.Lock()
			nd.failErr = err
			// A removed member exits by design (server.ErrRemoved): not a crash.
			if !errors.Is(err, server.ErrRemoved) {
				c.crashes = append(c.crashes, fmt.Sprintf("%s (incarnation %d) failed at %s: %v", nd.Name, inc, time.Now().Format("15:04:05.000"), err))
			}
			c.mu.Unlock()
			close(failed)
		case <-stopped:
		}
	}()
	return nil
}

// StartErr is Start that returns the error (a node that must refuse to
// start) instead of failing the test.
func (c *Cluster) StartErr(i int) error { return c.start(i) }

// WaitFailed waits up to d for node i's server to fail on its own (Err)
// and returns that error; nil if it is still running (or was stopped) then.
func (c *Cluster) WaitFailed(i int, d time.Duration) error {
	c.mu.Lock()
	nd := c.Nodes[i]
	failed, stopped := nd.failed, nd.stopped
	c.mu.Unlock()
	select {
	case <-failed:
		c.mu.Lock()
		defer c.mu.Unlock()
		return nd.failErr
	case <-stopped:
	case <-time.After(d):
	}
	return nil
}

// Running returns node i's server, or nil while it is stopped; safe to call
// while another goroutine starts and stops nodes.
func (c *Cluster) Running(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i].S
}

// Hooks returns node i's test hooks (its peer-link faults, Raft member and
// state digest), or nil while it is stopped.
func (c *Cluster) Hooks(i int) *testhook.Hooks {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i].hooks
}

// Raft returns node i's Raft member, or nil while it is stopped.
func (c *Cluster) Raft(i int) *raftnode.Node {
	if h := c.Hooks(i); h != nil {
		return h.Raft
	}
	return nil
}

// Faults returns the switch on node i's outgoing peer links, or nil while it
// is stopped.
func (c *Cluster) Faults(i int) *peer.Faults {
	if h := c.Hooks(i); h != nil {
		return h.Faults
	}
	return nil
}

// SkewClock sets node i's eventual-engine clock d ahead of the machine's
// (behind when negative, right again at 0), now if it runs and in every
// later start.
func (c *Cluster) SkewClock(i int, d time.Duration) { c.Nodes[i].skew.Store(int64(d)) }

// Rejoin wipes node i's data and starts it again as a new member that joins
// through node via (after it was removed from the cluster).
func (c *Cluster) Rejoin(i, via int) { c.rejoin(i, via, false) }

// RejoinAsLearner is Rejoin as a non-voter.
func (c *Cluster) RejoinAsLearner(i, via int) { c.rejoin(i, via, true) }

func (c *Cluster) rejoin(i, via int, learner bool) {
	c.t.Helper()
	if err := c.rejoinErr(i, c.Nodes[via].ClientAddr, learner); err != nil {
		c.t.Fatal(err)
	}
}

func (c *Cluster) rejoinErr(i int, viaAddr string, learner bool) error {
	c.stop(i)
	nd := c.Nodes[i]
	if err := os.RemoveAll(nd.Dir); err != nil {
		return err
	}
	nd.cfg.InitialCluster = ""
	nd.cfg.Join = "http://" + viaAddr
	nd.cfg.JoinAsNonVoter = learner
	c.mu.Lock()
	nd.member = true
	c.mu.Unlock()
	return c.start(i)
}

// Stop closes node i (its data stays on disk).
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	if err := c.stop(i); err != nil {
		c.t.Logf("stop %s: %v", c.Nodes[i].Name, err)
	}
}

func (c *Cluster) stop(i int) error {
	c.mu.Lock()
	nd := c.Nodes[i]
	s, stopped := nd.S, nd.stopped
	nd.S, nd.hooks, nd.stopped = nil, nil, nil
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	close(stopped)
	return s.Close()
}

// Close stops every node.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		c.Stop(i)
	}
	for _, nd := range c.Nodes { // spares never started hold their ports
		for _, ln := range []net.Listener{nd.peerLn, nd.clientLn, nd.respLn} {
			if ln != nil {
				ln.Close()
			}
		}
		nd.peerLn, nd.clientLn, nd.respLn = nil, nil, nil
	}
}

// WaitReady waits for every running node to be ready.
func (c *Cluster) WaitReady(d time.Duration) {
	c.t.Helper()
	for i := range c.Nodes {
		if c.Running(i) != nil {
			c.waitNodeReady(i, d)
		}
	}
}

func (c *Cluster) waitNodeReady(i int, d time.Duration) {
	c.t.Helper()
	c.mu.Lock()
	nd := c.Nodes[i]
	s, failed := nd.S, nd.failed
	c.mu.Unlock()
	select {
	case <-s.Ready():
	case <-failed:
		c.mu.Lock()
		err := nd.failErr
		c.mu.Unlock()
		c.t.Fatalf("%s failed: %v", nd.Name, err)
	case <-time.After(d):
		c.t.Fatalf("%s not ready after %s", c.Nodes[i].Name, d)
	}
}

// Leader returns the index of the node that leads now, or -1.
func (c *Cluster) Leader() int {
	for i := range c.Nodes {
		if h := c.Hooks(i); h != nil && h.Member != nil && h.Member.IsLeader() {
			return i
		}
	}
	return -1
}

// WaitLeader waits until one of the given nodes (all running nodes when none
// are given) leads, and returns its index.
func (c *Cluster) WaitLeader(d time.Duration, among ...int) int {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if l := c.Leader(); l >= 0 && (len(among) == 0 || contains(among, l)) {
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader among %v after %s", among, d)
	return -1
}

// Follower returns the index of some running node that does not lead.
func (c *Cluster) Follower() int {
	l := c.Leader()
	for i := range c.Nodes {
		if i != l && c.Running(i) != nil {
			return i
		}
	}
	return -1
}

// Svc is node i's kv service.
func (c *Cluster) Svc(i int) *kv.Service { return c.Nodes[i].S.Service() }

// Partition cuts every link between the nodes in group and the others.
func (c *Cluster) Partition(group ...int) {
	for i := range c.Nodes {
		for j, b := range c.Nodes {
			if f := c.Faults(i); contains(group, i) != contains(group, j) && f != nil {
				f.Block(b.PeerAddr)
			}
		}
	}
}

// Heal restores every link.
func (c *Cluster) Heal() {
	for i := range c.Nodes {
		if f := c.Faults(i); f != nil {
			f.Reset()
		}
	}
}

// WaitConverged waits until every running node has applied the same index and
// holds the same state digest, and returns that revision.
func (c *Cluster) WaitConverged(d time.Duration) int64 {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		var applied []uint64
		var digests []string
		var rev int64
		for i := range c.Nodes {
			hk := c.Hooks(i)
			if hk == nil {
				continue
			}
			applied = append(applied, hk.Member.AppliedIndex())
			r, h, err := hk.Digest()
			if err != nil {
				c.t.Fatal(err)
			}
			rev = r
			digests = append(digests, fmt.Sprintf("%d/%x", r, h))
		}
		if allEqual(applied) && allEqual(digests) {
			return rev
		}
		last = fmt.Sprintf("applied %v digests %v", applied, digests)
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("replicas did not converge in %s: %s", d, last)
	return 0
}

func allEqual[T comparable](xs []T) bool {
	for _, x := range xs {
		if x != xs[0] {
			return false
		}
	}
	return true
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

type testHandler struct {
	t     testing.TB
	level slog.Level
	name  string
	attrs []slog.Attr
	keep  *logBuf // nil: lines below level are dropped
}

func (h *testHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level || (h.keep != nil && l >= slog.LevelInfo)
}

func (h *testHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", h.name, r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s", a)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s", a); return true })
	if h.keep != nil {
		h.keep.add(b.String())
	}
	if r.Level < h.level {
		return nil
	}
	defer func() { _ = recover() }() // the test may have finished
	h.t.Log(b.String())
	return nil
}

// logBuf keeps the last lines a node logged, across its restarts.
type logBuf struct {
	mu    sync.Mutex
	lines []string
	first int64 // the number of lines dropped from the front
}

// logKeep bounds a node's kept lines.
const logKeep = 20000

func (b *logBuf) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	if len(b.lines) > logKeep {
		drop := len(b.lines) - logKeep/2
		b.lines = append([]string(nil), b.lines[drop:]...)
		b.first += int64(drop)
	}
}

// mark is the number of lines logged so far.
func (b *logBuf) mark() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.first + int64(len(b.lines))
}

// contains reports whether a line logged after mark from holds s.
func (b *logBuf) contains(from int64, s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := max(from-b.first, 0); k < int64(len(b.lines)); k++ {
		if strings.Contains(b.lines[k], s) {
			return true
		}
	}
	return false
}

func (h *testHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *testHandler) WithGroup(string) slog.Handler { return h }

// SetLeaseClockRate makes node i's Raft lease clock run rate times as fast
// as the machine's (the clock-rate fault; faultinject builds only).
func (c *Cluster) SetLeaseClockRate(i int, rate float64) {
	c.Nodes[i].leaseRate.Store(math.Float64bits(rate))
}

// StallLog holds node i's Raft log appends while on (a hung disk: its
// leader loop stops; faultinject builds only).
func (c *Cluster) StallLog(i int, on bool) { c.Nodes[i].stallLog.Store(on) }
