package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/store"
)

// testNode is one member of an in-process cluster.
type testNode struct {
	*Node
	c      *counter
	faults *peer.Faults // on the node's outgoing peer links
	mux    *peer.Mux
	rpc    *peer.RPC // the shared endpoint, nil when the node opened its own
}

// startCluster starts size members on loopback; with shared, each has an RPC
// endpoint of its own that the test also uses (as server.Start will), else
// the nodes open theirs (Config.RPC nil). It stops them when the test ends.
func startCluster(tb testing.TB, size int, shared bool) []*testNode {
	tb.Helper()
	var boot []Peer
	var lns []net.Listener
	for i := 0; i < size; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		boot = append(boot, Peer{ID: fmt.Sprintf("n%d", i), Addr: ln.Addr().String()})
	}
	nodes := make([]*testNode, size)
	for i, ln := range lns {
		dir := tb.TempDir()
		db, err := store.Open(filepath.Join(dir, "state"), store.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		mux := peer.NewMux(ln, nil, nil, nil)
		served := make(chan struct{})
		go func() { defer close(served); _ = mux.Serve() }()
		faults := &peer.Faults{}
		dialer := &peer.Dialer{Faults: faults}
		tn := &testNode{c: &counter{db: db}, faults: faults, mux: mux}
		if shared {
			if tn.rpc, err = peer.NewRPC(mux, dialer, peer.RPCOptions{}); err != nil {
				tb.Fatal(err)
			}
		}
		tn.Node, err = Start(Config{
			ID: boot[i].ID, Dir: dir, AdvertiseAddr: boot[i].Addr, Mux: mux, Dialer: dialer, RPC: tn.rpc,
			StateDB: db, StateMachine: tn.c, Bootstrap: boot,
			HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			SnapshotEntries: 1 << 20, SnapshotInterval: time.Hour, TrailingLogs: 1 << 20,
		})
		if err != nil {
			tb.Fatal(err)
		}
		nodes[i] = tn
		// The order server.Close keeps: the node, its RPC endpoint, the mux.
		tb.Cleanup(func() {
			tn.Close()
			if tn.rpc != nil {
				tn.rpc.Close()
			}
			mux.Close()
			<-served
			db.Close()
		})
	}
	return nodes
}

// unusedAddr is a loopback address nobody listens on: a member that has
// not started.
func unusedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// leaderAndFollower waits for a leader and returns it and another member.
func leaderAndFollower(tb testing.TB, nodes []*testNode) (leader, follower *testNode) {
	tb.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		leader, follower = nil, nil
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
			} else if follower == nil {
				follower = n
			}
		}
		if leader != nil && follower != nil && follower.Status().LeaderAddr != "" {
			return leader, follower
		}
	}
	tb.Fatal("no leader")
	return nil, nil
}

func TestForwardingOverRPC(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			nodes := startCluster(t, 3, shared)
			leader, follower := leaderAndFollower(t, nodes)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			// A follower's proposals reach the leader and bring back the
			// state machine's answer for each.
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 10; i++ {
						out, err := follower.Propose(ctx, []byte{1})
						if err != nil || len(out) != 8 {
							t.Errorf("forwarded propose: %x %v", out, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			// A read index through the follower covers them all.
			if err := follower.ReadIndex(ctx); err != nil {
				t.Fatal(err)
			}
			if got := follower.c.total(); got != 80 {
				t.Fatalf("follower's total after its read index: %d, want 80", got)
			}

			// Membership changes are forwarded too, and the leader's errors
			// come back as this package's sentinels.
			if err := follower.RemoveMember(ctx, "nobody"); !errors.Is(err, ErrUnknownMember) {
				t.Fatalf("forwarded removal of an unknown member: %v, want ErrUnknownMember", err)
			}
			spareAddr := unusedAddr(t) // a member that has not started
			if err := follower.AddMember(ctx, "n9", spareAddr, false); err != nil {
				t.Fatalf("forwarded add: %v", err)
			}
			if err := follower.AddMember(ctx, "n9", "127.0.0.1:1", false); !errors.Is(err, ErrMemberExists) {
				t.Fatalf("forwarded add with another address: %v, want ErrMemberExists", err)
			}
			if err := follower.RemoveMember(ctx, "n9"); err != nil {
				t.Fatalf("forwarded removal: %v", err)
			}
			servers, err := leader.Servers()
			if err != nil || len(servers) != 3 {
				t.Fatalf("members after add and remove: %v %v", servers, err)
			}
		})
	}
}

// Other components register their services on the same endpoint; the
// node's Close takes away only its own.
func TestSharedRPCEndpoint(t *testing.T) {
	nodes := startCluster(t, 1, true)
	n := nodes[0]
	if _, err := n.rpc.Register("raft", map[string]peer.Handler{"Ping": func(context.Context, []byte) ([]byte, error) { return nil, nil }}); !errors.Is(err, peer.ErrServiceTaken) {
		t.Fatalf("a second raft service: %v", err)
	}
	if _, err := n.rpc.Register("other", map[string]peer.Handler{
		"Hello": func(_ context.Context, p []byte) ([]byte, error) { return append([]byte("hello "), p...), nil },
	}); err != nil {
		t.Fatal(err)
	}
	caller := startCluster(t, 1, true)[0].rpc
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := n.mux.Addr().String()
	if out, err := caller.Call(ctx, addr, methodPing, nil); err != nil || string(out) != "n0" {
		t.Fatalf("ping: %q %v", out, err)
	}
	if out, err := caller.Call(ctx, addr, "other.Hello", []byte("n0")); err != nil || string(out) != "hello n0" {
		t.Fatalf("the other service: %q %v", out, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Call(ctx, addr, methodPing, nil); !errors.Is(err, peer.ErrUnknownMethod) {
		t.Fatalf("the closed node's ping: %v, want ErrUnknownMethod", err)
	}
	if out, err := caller.Call(ctx, addr, "other.Hello", []byte("again")); err != nil || string(out) != "hello again" {
		t.Fatalf("the other service after the node closed: %q %v", out, err)
	}
	// The node released the Raft byte: a restarted node can take it.
	ln, err := n.mux.Listen(peer.ProtoRaftWire, "raft")
	if err != nil {
		t.Fatalf("the Raft byte after Close: %v", err)
	}
	ln.Close()
}

// A node whose endpoint is gone hears ErrShutdown, a leader whose service is
// gone or that cannot be dialed is no leader (retried), and a leader's
// errors keep their sentinels.
func TestRemoteErrorsMapToSentinels(t *testing.T) {
	nodes := startCluster(t, 1, true)
	n := nodes[0]
	waitLeader(t, n.Node)
	callerNodes := startCluster(t, 1, true)
	caller := callerNodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := n.mux.Addr().String()
	if _, err := caller.call(ctx, addr, methodMember, []byte{0xff}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("a malformed membership change: %v, want ErrBadMessage", err)
	}
	if _, err := caller.call(ctx, addr, "raft.Nothing", nil); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("a method the leader does not serve: %v, want ErrNoLeader", err)
	}
	// Nothing reached it, so nothing was proposed: no leader (retried
	// until the next one is elected), not an indeterminate timeout.
	if _, err := caller.call(ctx, "127.0.0.1:1", methodPing, nil); !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrTimeout) {
		t.Fatalf("an unreachable leader: %v, want ErrNoLeader", err)
	}
	caller.rpc.Close()
	if _, err := caller.call(ctx, addr, methodPing, nil); !errors.Is(err, ErrShutdown) {
		t.Fatalf("after this node's endpoint closed: %v, want ErrShutdown", err)
	}
}

func TestMembershipCodec(t *testing.T) {
	for _, a := range []MembershipArgs{{}, {Op: opAddVoter, ID: "n1", Addr: "10.0.0.1:7701"}, {Op: opTransfer}} {
		got, err := decodeMembership(encodeMembership(a))
		if err != nil || got != a {
			t.Fatalf("round trip of %+v: %+v %v", a, got, err)
		}
	}
	good := encodeMembership(MembershipArgs{Op: opRemove, ID: "n1"})
	for _, b := range [][]byte{nil, {0x80}, {5, 'a'}, append(good, 0), good[:len(good)-1]} {
		if _, err := decodeMembership(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("decode %x: %v, want ErrBadMessage", b, err)
		}
	}
	if _, err := decodeIndex([]byte{1, 2}); !errors.Is(err, ErrBadMessage) {
		t.Fatal(err)
	}
	if i, err := decodeIndex(binary.BigEndian.AppendUint64(nil, 42)); i != 42 || err != nil {
		t.Fatal(i, err)
	}
}

// BenchmarkForwardedPropose proposes through a follower of a 3-member
// cluster from 16 goroutines: Raft, fsync and the forwarding RPC together.
func BenchmarkForwardedPropose(b *testing.B) {
	nodes := startCluster(b, 3, false)
	_, follower := leaderAndFollower(b, nodes)
	ctx := context.Background()
	payload := make([]byte, 128)
	payload[0] = 1
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := follower.Propose(ctx, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestAddVoterKeepsAQuorum: a voter that does not answer is added only
// while the voters that answer make a quorum of the membership with it;
// otherwise the change is refused (ErrQuorumAtRisk) and the membership and
// the writes are as they were. A learner can always be added; promoting it
// while it does not answer is held to the same rule.
func TestAddVoterKeepsAQuorum(t *testing.T) {
	nodes := startCluster(t, 3, true)
	leader, follower := leaderAndFollower(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nobody := unusedAddr(t)

	// All three answer: 3 of 4 is a quorum, the unstarted voter is taken.
	if err := leader.AddMember(ctx, "n9", nobody, true); err != nil {
		t.Fatalf("add an unstarted fourth voter to three healthy ones: %v", err)
	}
	if err := leader.RemoveMember(ctx, "n9"); err != nil {
		t.Fatal(err)
	}

	// One member down: 2 of 4 would answer, and 3 are needed.
	follower.Close()
	follower.rpc.Close()
	follower.mux.Close()
	err := leader.AddMember(ctx, "n9", nobody, true)
	if !errors.Is(err, ErrQuorumAtRisk) || !strings.Contains(err.Error(), "2 of the 4 voters") {
		t.Fatalf("add an unstarted voter with a member down: %v, want ErrQuorumAtRisk naming 2 of 4", err)
	}
	servers, err := leader.Servers()
	if err != nil || len(servers) != 3 {
		t.Fatalf("members after the refused add: %v %v", servers, err)
	}
	if _, err := leader.Propose(ctx, []byte{1}); err != nil {
		t.Fatalf("a write after the refused add: %v", err)
	}
	// Forwarded from the other follower, the refusal keeps its identity.
	var other *testNode
	for _, n := range nodes {
		if n != leader && n != follower {
			other = n
		}
	}
	if err := other.AddMember(ctx, "n9", nobody, true); !errors.Is(err, ErrQuorumAtRisk) {
		t.Fatalf("forwarded: %v, want ErrQuorumAtRisk", err)
	}
	// A learner does not vote, so it is taken; promoting it is not.
	if err := leader.AddMember(ctx, "n9", nobody, false); err != nil {
		t.Fatalf("add an unstarted learner with a member down: %v", err)
	}
	if err := leader.PromoteMember(ctx, "n9"); !errors.Is(err, ErrQuorumAtRisk) {
		t.Fatalf("promote an unstarted learner with a member down: %v, want ErrQuorumAtRisk", err)
	}
	if _, err := leader.Propose(ctx, []byte{1}); err != nil {
		t.Fatalf("a write after the refused promotion: %v", err)
	}
}

// TestLoneVoterMayAddASecond: a single-member cluster can grow by adding a
// member before starting it, as etcd allows (it has no failure to survive);
// until the second starts, nothing commits.
func TestLoneVoterMayAddASecond(t *testing.T) {
	nodes := startCluster(t, 1, true)
	n := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !n.IsLeader() {
		select {
		case <-ctx.Done():
			t.Fatal("no leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
	nobody := unusedAddr(t)
	if err := n.AddMember(ctx, "n9", nobody, true); err != nil {
		t.Fatalf("a lone voter adding an unstarted second: %v", err)
	}
	if servers, err := n.Servers(); err != nil || len(servers) != 2 {
		t.Fatalf("members: %v %v", servers, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	defer pcancel()
	// Until the second starts there is no quorum: 1 of 2 commits nothing.
	if _, err := n.Propose(pctx, []byte{1}); err == nil {
		t.Fatal("a write committed with 1 of 2 voters")
	}
}
