package etcdnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/store"
)

// counter is a StateMachine that adds each command's first byte to a total
// and answers with the total after it.
type counter struct{ db *store.DB }

var totalKey = []byte{0x01, 't'}

func (c *counter) Apply(b *store.Batch, entries []raftnode.Entry) [][]byte {
	total := c.total()
	out := make([][]byte, len(entries))
	for i, e := range entries {
		total += uint64(e.Data[0])
		out[i] = binary.BigEndian.AppendUint64(nil, total)
	}
	b.Set(totalKey, binary.BigEndian.AppendUint64(nil, total))
	return out
}

func (c *counter) total() uint64 {
	v, err := c.db.Get(totalKey)
	if err != nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (c *counter) Restored() error { return nil }

// member is one node of a test cluster, over a real loopback peer port.
type member struct {
	name, dir, addr string
	n               *Node
	c               *counter
	db              *store.DB
	mux             *peer.Mux
}

type cluster struct {
	t       *testing.T
	members []*member
	boot    []raftnode.Peer
}

// newCluster starts size members that bootstrap one cluster.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	cl := &cluster{t: t}
	for i := range size {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &member{name: fmt.Sprintf("n%d", i), dir: t.TempDir(), addr: ln.Addr().String()}
		_ = ln.Close()
		cl.members = append(cl.members, m)
		cl.boot = append(cl.boot, raftnode.Peer{ID: m.name, Addr: m.addr})
	}
	for _, m := range cl.members {
		cl.start(m)
	}
	t.Cleanup(func() {
		for _, m := range cl.members {
			cl.stop(m)
		}
	})
	return cl
}

func (cl *cluster) start(m *member) {
	t := cl.t
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port was just released
		if ln, err = net.Listen("tcp", m.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	m.mux = peer.NewMux(ln, nil, nil, nil)
	go func() { _ = m.mux.Serve() }()
	if m.db, err = store.Open(filepath.Join(m.dir, "state"), store.Options{}); err != nil {
		t.Fatal(err)
	}
	m.c = &counter{db: m.db}
	m.n, err = Start(raftnode.Config{
		ID: m.name, Dir: m.dir, AdvertiseAddr: m.addr, Mux: m.mux, Dialer: &peer.Dialer{},
		StateDB: m.db, StateMachine: m.c, Bootstrap: cl.boot,
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		RequestTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (cl *cluster) stop(m *member) {
	if m.n == nil {
		return
	}
	_ = m.n.Close()
	_ = m.mux.Close()
	_ = m.db.Close()
	m.n = nil
}

func (cl *cluster) leader() *member {
	cl.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range cl.members {
			if m.n != nil && m.n.IsLeader() {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	cl.t.Fatal("no leader")
	return nil
}

func (cl *cluster) follower() *member {
	l := cl.leader()
	for _, m := range cl.members {
		if m != l && m.n != nil {
			return m
		}
	}
	cl.t.Fatal("no follower")
	return nil
}

func mustPropose(t *testing.T, n *Node, b byte) uint64 {
	t.Helper()
	out, err := n.Propose(context.Background(), []byte{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 8 {
		t.Fatalf("result %x", out)
	}
	return binary.BigEndian.Uint64(out)
}

// writeConcurrently proposes n commands of 1 from writers goroutines on
// node and fails the test on any error: every write is acknowledged.
func writeConcurrently(t *testing.T, node *Node, writers, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / writers {
				if _, err := node.Propose(context.Background(), []byte{1}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// readTotal is the total on m after a linearizable read barrier.
func readTotal(t *testing.T, m *member) uint64 {
	t.Helper()
	if err := m.n.ReadIndex(context.Background()); err != nil {
		t.Fatalf("%s: read index: %v", m.name, err)
	}
	return m.c.total()
}

func TestProposalsApplyOnEveryMember(t *testing.T) {
	cl := newCluster(t, 3)
	l := cl.leader()
	writeConcurrently(t, l.n, 16, 400)
	for _, m := range cl.members {
		if got := readTotal(t, m); got != 400 {
			t.Fatalf("%s: total %d, want 400", m.name, got)
		}
	}
	// Results are the state machine's, in log order: the next write sees 400.
	if got := mustPropose(t, l.n, 2); got != 402 {
		t.Fatalf("result %d, want 402", got)
	}
}

func TestFollowerProposalIsForwarded(t *testing.T) {
	cl := newCluster(t, 3)
	f := cl.follower()
	if f.n.IsLeader() {
		t.Fatal("picked the leader")
	}
	if got := mustPropose(t, f.n, 7); got != 7 {
		t.Fatalf("result %d, want 7", got)
	}
	writeConcurrently(t, f.n, 8, 80)
	if got := readTotal(t, cl.leader()); got != 87 {
		t.Fatalf("leader total %d, want 87", got)
	}
}

func TestFollowerReadIndexSeesLatestWrite(t *testing.T) {
	cl := newCluster(t, 3)
	l, f := cl.leader(), cl.follower()
	for i := range 50 {
		want := mustPropose(t, l.n, 1)
		if want != uint64(i+1) {
			t.Fatalf("write %d: total %d", i, want)
		}
		// The follower may not have applied it yet: only the read index
		// makes the read see it.
		if got := readTotal(t, f); got < want {
			t.Fatalf("follower read %d after the leader acknowledged %d", got, want)
		}
	}
}

func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	cl := newCluster(t, 3)
	writeConcurrently(t, cl.leader().n, 8, 200)
	for _, m := range cl.members {
		cl.stop(m)
	}
	// The state database is written unsynced: lose one member's whole
	// state, as a crash could lose its unsynced tail. The synced log
	// must bring it back.
	if err := os.RemoveAll(filepath.Join(cl.members[0].dir, "state")); err != nil {
		t.Fatal(err)
	}
	for _, m := range cl.members {
		cl.start(m)
		if !m.n.HadState() {
			t.Fatalf("%s did not restart from its log", m.name)
		}
	}
	for _, m := range cl.members {
		if got := readTotal(t, m); got != 200 {
			t.Fatalf("%s after restart: total %d, want 200", m.name, got)
		}
	}
	if got := mustPropose(t, cl.leader().n, 1); got != 201 {
		t.Fatalf("write after restart: total %d, want 201", got)
	}
	for _, m := range cl.members {
		if !waitCaughtUp(m.n) {
			t.Fatalf("%s never caught up", m.name)
		}
	}
}

func TestFollowerRestartCatchesUp(t *testing.T) {
	cl := newCluster(t, 3)
	f := cl.follower()
	writeConcurrently(t, cl.leader().n, 4, 40)
	cl.stop(f)
	writeConcurrently(t, cl.leader().n, 4, 40) // a quorum of two
	cl.start(f)
	if got := readTotal(t, f); got != 80 {
		t.Fatalf("restarted follower: total %d, want 80", got)
	}
}

func waitCaughtUp(n *Node) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !n.CaughtUp() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

func TestUnsupportedSaySo(t *testing.T) {
	cl := newCluster(t, 3)
	n := cl.leader().n
	ctx := context.Background()
	for name, err := range map[string]error{
		"add":      n.AddMember(ctx, "x", "127.0.0.1:1", true),
		"remove":   n.RemoveMember(ctx, "n1"),
		"promote":  n.PromoteMember(ctx, "n1"),
		"transfer": n.TransferLeadership(ctx, "n1"),
		"snapshot": n.Snapshot(),
	} {
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	// A node with no state and no bootstrap list would have to join.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := peer.NewMux(ln, nil, nil, nil)
	go func() { _ = mux.Serve() }()
	defer mux.Close()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "state"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Start(raftnode.Config{ID: "j", Dir: dir, Mux: mux, Dialer: &peer.Dialer{}, StateDB: db, StateMachine: &counter{db: db}})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("join: %v, want ErrUnsupported", err)
	}
}
