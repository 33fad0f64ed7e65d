package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/model"
)

// Harness returns c as the fault-injection harness's Cluster: the in-process
// implementation. Link faults go through each node's peer.Faults, a restart
// is server.Close and server.Start on the same data, membership and status
// go through each node's kv.Service, the clock-skew faults through each
// node's testhook.Hooks.ClockSkew, and convergence compares every member's
// applied index and state digest. In-process nodes share the test's
// process, so they cannot be crashed (kill -9), frozen (SIGSTOP) or taken off
// a network: Can says so, and the harness skips those faults. Start the
// cluster with Options.KeepLog for the snapshot fault, and with Spares for
// learner-promote.
func (c *Cluster) Harness() harness.Cluster {
	h := &inProcess{c: c, blocked: map[[2]int]bool{}, delays: map[[2]int]time.Duration{}}
	return h
}

type inProcess struct {
	c *Cluster

	mu      sync.Mutex // guards the link faults the harness wants
	blocked map[[2]int]bool
	delays  map[[2]int]time.Duration
	notes   []string
}

var _ harness.Cluster = (*inProcess)(nil)

func (h *inProcess) Describe() string { return "in-process" }
func (h *inProcess) Size() int        { return h.c.size }
func (h *inProcess) Slots() int       { return len(h.c.Nodes) }

func (h *inProcess) Node(i int) harness.Node {
	nd := h.c.Nodes[i]
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return harness.Node{Name: nd.Name, ClientURL: "http://" + nd.ClientAddr, RESPAddr: nd.RESPAddr,
		Member: nd.member, Running: nd.S != nil, Incarnation: nd.incarnation}
}

func (h *inProcess) Live() []int {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var out []int
	for i, nd := range h.c.Nodes {
		if nd.member && nd.S != nil {
			out = append(out, i)
		}
	}
	return out
}

func (h *inProcess) Targets() []int { return h.Live() }

// svc is node i's service, or an error when the node is stopped.
func (h *inProcess) svc(i int) (*kv.Service, error) {
	s := h.c.Running(i)
	if s == nil {
		return nil, fmt.Errorf("cluster: %s is not running", h.c.Nodes[i].Name)
	}
	return s.Service(), nil
}

func (h *inProcess) Status(i int) (*harness.Status, error) {
	svc, err := h.svc(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := svc.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: status of %s: %w", h.c.Nodes[i].Name, err)
	}
	return &harness.Status{Name: st.Name, State: st.State, Leader: st.Leader, Term: st.Term, CommitIndex: st.CommitIndex,
		AppliedIndex: st.AppliedIndex, LastIndex: st.LastIndex, Revision: st.Revision, Members: st.Members}, nil
}

func (h *inProcess) Leader() int {
	best, term := -1, uint64(0)
	for _, i := range h.Live() {
		if s, err := h.Status(i); err == nil && s.State == "leader" && s.Term >= term {
			best, term = i, s.Term
		}
	}
	return best
}

func (h *inProcess) WaitLeader(d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		if l := h.Leader(); l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("cluster: no leader after %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *inProcess) WaitReady(i int, d time.Duration) error {
	deadline := time.Now().Add(d)
	last := errors.New("not started")
	for time.Now().Before(deadline) {
		h.c.mu.Lock()
		nd := h.c.Nodes[i]
		s, failed := nd.S, nd.failed
		h.c.mu.Unlock()
		if s == nil {
			return fmt.Errorf("cluster: %s is not running", nd.Name)
		}
		select {
		case <-failed:
			h.c.mu.Lock()
			err := nd.failErr
			h.c.mu.Unlock()
			return fmt.Errorf("cluster: %s failed: %w", nd.Name, err)
		case <-s.Ready():
			if last = s.Service().Ready(); last == nil {
				return nil
			}
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cluster: %s not ready after %s: %w", h.c.Nodes[i].Name, d, last)
}

// errShared is why the in-process cluster cannot crash, freeze or
// disconnect a node.
const errShared = "in-process nodes share the test's process"

func (h *inProcess) Can(a harness.Action) (string, bool) {
	switch a {
	case harness.ActLinks:
		return "peer.Faults on the node's dialer", true
	case harness.ActStop:
		return "server.Close", true
	case harness.ActKill:
		return errShared + ": no crash without a shutdown (the restart fault stops and starts a node)", false
	case harness.ActPause:
		return errShared + ": nothing can freeze one of them", false
	case harness.ActDisconnect:
		return errShared + " and its loopback network", false
	case harness.ActClock:
		return "testhook.Hooks.ClockSkew", true
	case harness.ActLog:
		if h.c.opts.KeepLog {
			return "log lines kept in memory", true
		}
		return "the cluster was started without Options.KeepLog", false
	}
	return "unknown action", false
}

func (h *inProcess) Start(i int) error {
	if h.c.Running(i) != nil {
		return nil
	}
	if err := h.c.start(i); err != nil {
		return err
	}
	h.applyFaults(i)
	return nil
}

// applyFaults gives node i, which starts with no link faults of its own,
// the harness's.
func (h *inProcess) applyFaults(i int) {
	f := h.c.Faults(i)
	h.mu.Lock()
	defer h.mu.Unlock()
	for l := range h.blocked {
		if l[0] == i && f != nil {
			f.Block(h.c.Nodes[l[1]].PeerAddr)
		}
	}
	for l, d := range h.delays {
		if l[0] == i && f != nil {
			f.Delay(h.c.Nodes[l[1]].PeerAddr, d)
		}
	}
}

func (h *inProcess) Stop(i int) error { return h.c.stop(i) }

func (h *inProcess) unsupported(a harness.Action) error {
	why, _ := h.Can(a)
	return fmt.Errorf("%w: %s", harness.ErrUnsupported, why)
}

func (h *inProcess) Kill(int) error       { return h.unsupported(harness.ActKill) }
func (h *inProcess) Pause(int) error      { return h.unsupported(harness.ActPause) }
func (h *inProcess) Resume(int) error     { return nil } // nothing is ever paused
func (h *inProcess) Disconnect(int) error { return h.unsupported(harness.ActDisconnect) }
func (h *inProcess) Reconnect(int) error  { return nil } // nothing is ever disconnected

func (h *inProcess) Block(from, to int) {
	h.mu.Lock()
	h.blocked[[2]int{from, to}] = true
	h.mu.Unlock()
	if f := h.c.Faults(from); f != nil {
		f.Block(h.c.Nodes[to].PeerAddr)
	}
}

func (h *inProcess) Delay(from, to int, d time.Duration) {
	h.mu.Lock()
	h.delays[[2]int{from, to}] = d
	h.mu.Unlock()
	if f := h.c.Faults(from); f != nil {
		f.Delay(h.c.Nodes[to].PeerAddr, d)
	}
}

func (h *inProcess) Partition(group ...int) {
	for i := range h.c.Nodes {
		for j := range h.c.Nodes {
			if i != j && slices.Contains(group, i) != slices.Contains(group, j) {
				h.Block(i, j)
			}
		}
	}
}

func (h *inProcess) SkewClock(i int, d time.Duration) error {
	h.c.SkewClock(i, d)
	return nil
}

func (h *inProcess) Heal() {
	h.mu.Lock()
	clear(h.blocked)
	clear(h.delays)
	h.mu.Unlock()
	h.c.Heal()
}

// admin runs a membership or leadership call on the leader first and then
// on every other live node, retrying while the cluster is unavailable (no
// leader, a timeout) for up to 10 s.
func (h *inProcess) admin(call func(ctx context.Context, svc *kv.Service) error) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		order := h.Live()
		if l := h.Leader(); l >= 0 {
			order = append([]int{l}, order...)
		}
		for _, i := range order {
			svc, err := h.svc(i)
			if err != nil {
				last = err
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = call(ctx, svc)
			cancel()
			switch {
			case err == nil:
				return nil
			case errors.Is(err, kv.ErrUnavailable), errors.Is(err, kv.ErrNoLeader), errors.Is(err, context.DeadlineExceeded):
				last = fmt.Errorf("on %s: %w", h.c.Nodes[i].Name, err)
			default:
				return fmt.Errorf("on %s: %w", h.c.Nodes[i].Name, err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

func (h *inProcess) Members() ([]harness.Member, error) {
	var ms []kv.Member
	err := h.admin(func(ctx context.Context, svc *kv.Service) error {
		var err error
		ms, err = svc.Members(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: members: %w", err)
	}
	out := make([]harness.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, harness.Member{Name: m.Name, PeerAddr: m.PeerAddr, Voter: m.Voter, Leader: m.Leader})
	}
	return out, nil
}

func (h *inProcess) RemoveMember(i int) (note string, err error) {
	nd := h.c.Nodes[i]
	if err := h.admin(func(ctx context.Context, svc *kv.Service) error { return svc.RemoveMember(ctx, nd.Name) }); err != nil {
		ms, merr := h.Members()
		if merr != nil || slices.ContainsFunc(ms, func(m harness.Member) bool { return m.Name == nd.Name }) {
			return "", fmt.Errorf("cluster: remove %s: %w", nd.Name, err)
		}
		note = fmt.Sprintf("the removal of %s took effect, but the service answered: %v", nd.Name, err)
		h.mu.Lock()
		h.notes = append(h.notes, note)
		h.mu.Unlock()
	}
	h.c.mu.Lock()
	nd.member = false
	h.c.mu.Unlock()
	_ = h.c.stop(i) // a removed node may fail to hand over what it no longer has
	return note, os.RemoveAll(nd.Dir)
}

func (h *inProcess) JoinMember(i int, nonVoter bool, wait time.Duration) error {
	live := h.Live()
	if len(live) == 0 {
		return errors.New("cluster: no live member to join through")
	}
	via := live[0]
	if l := h.Leader(); l >= 0 {
		via = l
	}
	if err := h.c.rejoinErr(i, h.c.Nodes[via].ClientAddr, nonVoter); err != nil {
		return err
	}
	h.applyFaults(i)
	return h.WaitReady(i, wait)
}

func (h *inProcess) Promote(i int) error {
	name := h.c.Nodes[i].Name
	return h.admin(func(ctx context.Context, svc *kv.Service) error { return svc.PromoteMember(ctx, name) })
}

func (h *inProcess) TransferLeadership(to int) (string, error) {
	name := h.c.Nodes[to].Name
	if err := h.admin(func(ctx context.Context, svc *kv.Service) error { return svc.TransferLeadership(ctx, name) }); err != nil {
		return "", err
	}
	// The new leader's name reaches its status once it has won the election.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if st, err := h.Status(to); err == nil && st.Leader != "" {
			return st.Leader, nil
		}
	}
	return "", nil
}

func (h *inProcess) WaitConverged(d time.Duration) (*harness.State, error) {
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		st, why := h.converged()
		if st != nil {
			return st, nil
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("cluster: replicas did not converge in %s: %s", d, last)
}

// digests are the applied index and state digest of every member, in slot
// order.
func (h *inProcess) digests() (members []int, applied []uint64, digests []string, rev int64, why string) {
	for i, nd := range h.c.Nodes {
		if !h.Node(i).Member {
			continue
		}
		hk := h.c.Hooks(i)
		if hk == nil {
			return nil, nil, nil, 0, nd.Name + " is not running"
		}
		r, sum, err := hk.Digest()
		if err != nil {
			return nil, nil, nil, 0, fmt.Sprintf("digest of %s: %v", nd.Name, err)
		}
		members = append(members, i)
		applied = append(applied, hk.Member.AppliedIndex())
		digests = append(digests, fmt.Sprintf("%d/%016x", r, sum))
		rev = r
	}
	return members, applied, digests, rev, ""
}

func (h *inProcess) converged() (*harness.State, string) {
	members, applied, digests, rev, why := h.digests()
	if why != "" {
		return nil, why
	}
	if len(members) == 0 {
		return nil, "no member"
	}
	if !allEqual(applied) || !allEqual(digests) {
		return nil, fmt.Sprintf("applied indexes %v, digests %v", applied, digests)
	}
	svc, err := h.svc(members[0])
	if err != nil {
		return nil, err.Error()
	}
	st := &harness.State{AppliedIndex: applied[0], Revision: rev, Items: map[string]model.Item{}, Hash: digests[0]}
	after := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		page, err := svc.List(ctx, "", kv.ListOptions{ReadOptions: kv.ReadOptions{Serializable: true}, After: after, Limit: 1000})
		cancel()
		if err != nil {
			return nil, fmt.Sprintf("list on %s: %v", h.c.Nodes[members[0]].Name, err)
		}
		for _, r := range page.Items {
			st.Items[r.Key] = model.Item{Key: r.Key, Value: r.Value, CreateRevision: r.CreateRevision, ModRevision: r.ModRevision, Version: r.Version}
			after = r.Key
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
	}
	_, applied2, digests2, _, why := h.digests()
	if why != "" {
		return nil, why
	}
	if !slices.Equal(applied, applied2) || !slices.Equal(digests, digests2) {
		return nil, fmt.Sprintf("applied indexes moved from %v to %v", applied, applied2)
	}
	for _, i := range members {
		st.Nodes = append(st.Nodes, h.c.Nodes[i].Name)
	}
	sort.Strings(st.Nodes)
	return st, ""
}

func (h *inProcess) LogMark(i int) int64 {
	if b := h.c.Nodes[i].log; b != nil {
		return b.mark()
	}
	return 0
}

func (h *inProcess) LogContains(i int, from int64, s string) bool {
	if b := h.c.Nodes[i].log; b != nil {
		return b.contains(from, s)
	}
	return false
}

func (h *inProcess) Drain() (notes, crashes []string) {
	h.mu.Lock()
	notes, h.notes = h.notes, nil
	h.mu.Unlock()
	h.c.mu.Lock()
	crashes, h.c.crashes = h.c.crashes, nil
	h.c.mu.Unlock()
	return notes, crashes
}

func (h *inProcess) Close() { h.c.Close() }
