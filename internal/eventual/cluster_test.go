package eventual

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/keyspace"
)

// testNode is one member of an in-process cluster: its engine and the
// faults of its outgoing links.
type testNode struct {
	*Engine
	faults *peer.Faults
	addr   string
}

// staticCluster is a fixed membership and policy table.
type staticCluster struct {
	members []Member
	table   *keyspace.Table
}

func (c staticCluster) Members() []Member          { return c.members }
func (c staticCluster) Keyspaces() *keyspace.Table { return c.table }

// mustCluster starts n engines (n1…) over real peer endpoints on
// loopback, sharing the policies of table, each configured by cfg (Name,
// DataDir, RPC and Cluster are filled in), and waits until every engine is
// ready. Block a link with node.faults.Block(other.addr). Goroutines the
// cluster started must all end with it.
func mustCluster(t *testing.T, n int, table *keyspace.Table, cfg Config) []*testNode {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs after the nodes' cleanups
	var lns []net.Listener
	var members []Member
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		members = append(members, Member{Name: fmt.Sprintf("n%d", i+1), PeerAddr: ln.Addr().String()})
	}
	nodes := make([]*testNode, n)
	for i, ln := range lns {
		faults := &peer.Faults{}
		log := slog.New(slog.DiscardHandler)
		mux := peer.NewMux(ln, nil, faults, log)
		served := make(chan struct{})
		go func() { defer close(served); _ = mux.Serve() }()
		rpc, err := peer.NewRPC(mux, &peer.Dialer{Faults: faults}, peer.RPCOptions{Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Name, c.DataDir, c.RPC, c.Cluster = members[i].Name, t.TempDir(), rpc, staticCluster{members, table}
		e, err := Open(c)
		if err != nil {
			t.Fatal(err)
		}
		nodes[i] = &testNode{Engine: e, faults: faults, addr: members[i].PeerAddr}
		// The order server.Close keeps: the engine, its RPC endpoint, the mux.
		t.Cleanup(func() {
			_ = e.Close()
			_ = rpc.Close()
			_ = mux.Close()
			<-served
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range nodes {
		for nd.Ready() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready: %v", nd.cfg.Name, nd.Ready())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// waitFor polls cond until it holds or 10 s passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
