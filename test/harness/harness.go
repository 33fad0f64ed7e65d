// Package harness is cairn's fault-injection harness: one workload (HTTP
// and Redis-protocol clients), one nemesis (partitions, one-way drops,
// latency, stops, kill -9, SIGSTOP, membership changes, leadership
// transfer, a follower kept away until it needs a snapshot, clock skew of
// the eventual engine) and one Run
// that drives them against a Cluster, heals it, waits for the replicas to
// agree and checks the history with test/model.
//
// Cluster is the one interface the harness needs from a cluster; it has
// two implementations, as etcd's tests/framework has: test/cluster (nodes
// started with server.Start inside the test process; Harness() adapts it)
// and test/process (real cairn processes, or containers with a Docker
// engine). The same Run, on either, is the in-process sweep (server/, make
// chaos) and the process sweep (test/chaos). An implementation that cannot
// make a fault says so through Can, and Run skips the fault kinds that
// need it with a note in the report.
//
// With Workload.Watchers, Run also has watchers follow the run's prefix
// through the faults, resuming on another node whenever a stream breaks,
// and checks them with test/model's watch model (watch.go).
//
// RunEventual is the same nemesis against eventual keyspaces: writers and
// deletes on every node, then, once the faults stop, the replicas of every
// key read locally until test/model's convergence check passes or three
// anti-entropy intervals have gone by (eventual.go).
package harness

import (
	"errors"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

var (
	// ErrUnsupported is returned by a Cluster method whose action the
	// implementation cannot perform (see Cluster.Can).
	ErrUnsupported = errors.New("harness: not supported by this cluster")
	// ErrNoEventualEngine: the cluster refused an eventual keyspace because
	// it has no engine for one (see CreateKeyspaces).
	ErrNoEventualEngine = errors.New("harness: the cluster has no eventual engine")
)

// Action is a fault primitive a Cluster may or may not offer.
type Action string

// The actions behind the fault kinds.
const (
	// ActLinks: Block, Delay, Partition and Heal act on single peer links.
	ActLinks Action = "links"
	// ActStop: Stop shuts a node down cleanly; Start brings it back.
	ActStop Action = "stop"
	// ActKill: Kill crashes a node without any shutdown (kill -9).
	ActKill Action = "kill"
	// ActPause: Pause freezes a node, sockets open (SIGSTOP); Resume thaws it.
	ActPause Action = "pause"
	// ActDisconnect: Disconnect takes a node off the network for peers and
	// clients alike; Reconnect puts it back.
	ActDisconnect Action = "disconnect"
	// ActLog: LogMark and LogContains search what a node logged.
	ActLog Action = "log"
	// ActClock: SkewClock shifts a node's eventual-engine clock.
	ActClock Action = "clock"
)

// Node is what the harness knows about one node slot at a moment.
type Node struct {
	Name      string
	ClientURL string // http://host:port, as the harness reaches it
	RESPAddr  string // host:port of the Redis protocol
	// Member: in the configuration, as far as the harness knows.
	Member bool
	// Running: the node has a process (or server) now, possibly paused.
	Running bool
	Paused  bool
	// Incarnation counts the node's starts; a restart is a new one.
	Incarnation int
}

// Status is a node's view of the cluster (GET /v1/cluster/status).
type Status struct {
	Name         string `json:"name"`
	State        string `json:"state"` // leader, follower, candidate, shutdown
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	Revision     int64  `json:"revision"`
	Members      int    `json:"members"`
}

// Member is one entry of the configuration.
type Member struct {
	Name     string `json:"name"`
	PeerAddr string `json:"peer_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// State is what every replica holds once they agree.
type State struct {
	AppliedIndex uint64
	Revision     int64
	Items        map[string]model.Item
	Hash         string // a hash of the replicated state, equal on every member
	Nodes        []string
}

// Cluster is a running cairn cluster as the workload and the nemesis use
// it. Nodes are slots 0..Slots()-1: the Size() voters that bootstrapped the
// cluster first, then spares that are not started until a fault adds them
// (learner-promote). A slot keeps its name, addresses and data across
// restarts. Methods are safe for concurrent use.
type Cluster interface {
	// Describe names the implementation for reports: "in-process",
	// "processes", "docker".
	Describe() string
	// Size is the number of bootstrap voters.
	Size() int
	// Slots is the number of node slots, spares included.
	Slots() int
	// Node describes slot i now.
	Node(i int) Node
	// Live are the member slots that run, are not paused and are on the
	// network: those a fault may aim at.
	Live() []int
	// Targets are the member slots clients may send requests to: every
	// member that runs, paused or not (a paused node is a fault clients
	// must live with).
	Targets() []int

	// Status asks node i for its view (within a second or so).
	Status(i int) (*Status, error)
	// Leader is the live node that says it leads (the highest term wins),
	// or -1.
	Leader() int
	// WaitLeader waits up to d for a leader.
	WaitLeader(d time.Duration) (int, error)
	// WaitReady waits up to d until node i is ready (/readyz).
	WaitReady(i int, d time.Duration) error

	// Can reports whether the cluster offers action a and says how it does
	// it ("kill -9", "docker pause") or, when it does not, why not.
	Can(a Action) (how string, ok bool)
	// Start starts node i on its data (a new incarnation) and puts back the
	// link faults the harness still wants on it; it does nothing when the
	// node runs.
	Start(i int) error
	// Stop shuts node i down cleanly (its data stays).
	Stop(i int) error
	// Kill crashes node i with no shutdown at all.
	Kill(i int) error
	// Pause freezes node i; Resume thaws a paused node (and does nothing
	// otherwise).
	Pause(i int) error
	Resume(i int) error
	// Disconnect takes node i off the network; Reconnect puts back a
	// disconnected node (and does nothing otherwise).
	Disconnect(i int) error
	Reconnect(i int) error

	// Block makes node from stop reaching node to (one way).
	Block(from, to int)
	// Delay adds d to every write node from makes on its links to node to.
	Delay(from, to int, d time.Duration)
	// Partition cuts every link between the nodes in group and all the
	// others, both ways.
	Partition(group ...int)
	// Heal removes every link fault on every node.
	Heal()
	// SkewClock sets node i's eventual-engine clock d ahead of the
	// machine's (behind when d is negative; 0 restores it). The skew holds
	// across restarts of the node until it is set again; a node that is
	// down or paused gets it when it is back.
	SkewClock(i int, d time.Duration) error

	// Members lists the configuration as the leader (or any live node) sees it.
	Members() ([]Member, error)
	// RemoveMember removes node i from the configuration, stops it and
	// wipes its data, so it can come back only as a new member. A removal
	// that took effect although the API answered an error is done; note
	// then says what the API answered.
	RemoveMember(i int) (note string, err error)
	// JoinMember starts node i empty, asking a live member to add it (as a
	// non-voter when nonVoter), and waits up to wait until it is ready.
	JoinMember(i int, nonVoter bool, wait time.Duration) error
	// Promote makes non-voter i a voter.
	Promote(i int) error
	// TransferLeadership asks the leader to hand over to node to, and
	// returns the leader it reports afterwards.
	TransferLeadership(to int) (string, error)

	// WaitConverged waits up to d until every member runs and every one has
	// applied the same index and holds the same state, and returns that state.
	WaitConverged(d time.Duration) (*State, error)
	// LogMark is a position in node i's log; LogContains reports whether
	// the node logged s after it.
	LogMark(i int) int64
	LogContains(i int, from int64, s string) bool
	// Drain returns and forgets what the cluster saw since the last call:
	// notes worth reporting, and nodes that stopped without the harness
	// stopping them (a crash fails the run).
	Drain() (notes, crashes []string)
	// Close stops every node. It is safe to call more than once.
	Close()
}
