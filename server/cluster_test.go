package server_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s *kv.Service, key, val string) *kv.Record {
	t.Helper()
	r, err := s.Put(ctx(t), key, []byte(val), kv.PutOptions{})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return r
}

func mustGetValue(t *testing.T, s *kv.Service, key string, o kv.ReadOptions) string {
	t.Helper()
	r, err := s.Get(ctx(t), key, o)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(r.Value)
}

// waitValue polls a serializable read until it shows want.
func waitValue(t *testing.T, s *kv.Service, key, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r, err := s.Get(ctx(t), key, kv.ReadOptions{Serializable: true})
		if err == nil && string(r.Value) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never became %q", key, want)
}

func TestReplicationAndForwarding(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	f := c.Follower()
	// A write on a follower is forwarded to the leader.
	r := mustPut(t, c.Svc(f), "a", "1")
	if r.ModRevision < 1 {
		t.Fatalf("revision %d", r.ModRevision)
	}
	// Linearizable reads on every node see it at once.
	for i := range c.Nodes {
		if got := mustGetValue(t, c.Svc(i), "a", kv.ReadOptions{}); got != "1" {
			t.Fatalf("node %d read %q", i, got)
		}
	}
	c.WaitConverged(10 * time.Second)
	// Members advertise their client URLs to everyone.
	ms, err := c.Svc(f).Members(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members %+v", ms)
	}
	leaders := 0
	for _, m := range ms {
		if m.ClientURL == "" || !m.Voter {
			t.Fatalf("member %+v", m)
		}
		if m.Leader {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in %+v", leaders, ms)
	}
}

func TestLeaderLossKeepsWriting(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	mustPut(t, c.Svc(l), "before", "x")
	c.Stop(l)
	survivor := (l + 1) % 3
	nl := c.WaitLeader(10*time.Second, (l+1)%3, (l+2)%3)
	if nl == l {
		t.Fatal("stopped node still leads")
	}
	mustPut(t, c.Svc(survivor), "after", "y")
	if got := mustGetValue(t, c.Svc(survivor), "before", kv.ReadOptions{}); got != "x" {
		t.Fatalf("lost write: %q", got)
	}
	c.Start(l)
	waitValue(t, c.Svc(l), "after", "y")
	c.WaitConverged(10 * time.Second)
}

func TestMinorityPartition(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	mustPut(t, c.Svc(l), "k", "v1")
	c.WaitConverged(10 * time.Second)
	// Cut the leader away: it is the minority.
	c.Partition(l)
	majority := []int{(l + 1) % 3, (l + 2) % 3}
	nl := c.WaitLeader(10*time.Second, majority...)
	mustPut(t, c.Svc(nl), "k", "v2")

	// The minority cannot write, and fails within a bounded time.
	start := time.Now()
	_, err := c.Svc(l).Put(ctx(t), "k", []byte("lost"), kv.PutOptions{})
	if !errors.Is(err, kv.ErrNoLeader) && !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("minority write: %v", err)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("minority write took %s to fail", d)
	}
	// Its linearizable reads fail; its stale reads work and are marked stale.
	if _, err := c.Svc(l).Get(ctx(t), "k", kv.ReadOptions{}); err == nil {
		t.Fatal("linearizable read on the minority succeeded")
	}
	if got := mustGetValue(t, c.Svc(l), "k", kv.ReadOptions{Serializable: true}); got != "v1" {
		t.Fatalf("stale read %q", got)
	}
	if !c.Svc(l).IsStale() {
		t.Fatal("minority node does not report itself stale")
	}
	c.Heal()
	waitValue(t, c.Svc(l), "k", "v2")
	if got := mustGetValue(t, c.Svc(l), "k", kv.ReadOptions{}); got != "v2" {
		t.Fatalf("after heal %q", got)
	}
	c.WaitConverged(10 * time.Second)
}

func TestFullRestartKeepsData(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	var last *kv.Record
	for i := 0; i < 50; i++ {
		last = mustPut(t, c.Svc(i%3), fmt.Sprintf("key/%02d", i), fmt.Sprint(i))
	}
	rev := c.WaitConverged(10 * time.Second)
	for i := range c.Nodes {
		c.Stop(i)
	}
	for i := range c.Nodes {
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	if got := c.WaitConverged(10 * time.Second); got != rev || rev != last.ModRevision {
		t.Fatalf("revision after restart %d, before %d (last write %d)", got, rev, last.ModRevision)
	}
	res, err := c.Svc(0).List(ctx(t), "key/", kv.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 50 {
		t.Fatalf("%d keys after restart", len(res.Items))
	}
	// Nothing was applied twice: every key still has version 1.
	for _, it := range res.Items {
		if it.Version != 1 {
			t.Fatalf("%s has version %d", it.Key, it.Version)
		}
	}
	r := mustPut(t, c.Svc(1), "key/new", "x")
	if r.ModRevision != rev+1 {
		t.Fatalf("revision went from %d to %d", rev, r.ModRevision)
	}
}

func TestLaggingFollowerInstallsSnapshot(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.SnapshotEntries = 64
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 200 * time.Millisecond
	}})
	l := c.WaitLeader(5 * time.Second)
	f := (l + 1) % 3
	mustPut(t, c.Svc(l), "first", "1")
	c.WaitConverged(10 * time.Second)
	behind := c.Raft(f).AppliedIndex()
	c.Stop(f)
	for i := 0; i < 400; i++ {
		mustPut(t, c.Svc(l), fmt.Sprintf("k%03d", i), "v")
	}
	waitCompacted(t, c, l, behind)
	c.Start(f)
	waitValue(t, c.Svc(f), "k399", "v")
	c.WaitConverged(15 * time.Second)
	if got := mustGetValue(t, c.Svc(f), "first", kv.ReadOptions{Serializable: true}); got != "1" {
		t.Fatalf("first = %q", got)
	}
}

func TestCASAndTxn(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	s := c.Svc(c.Follower())
	r := mustPut(t, s, "cas", "a")
	stale := r.ModRevision - 1
	_, err := s.Put(ctx(t), "cas", []byte("b"), kv.PutOptions{IfModRevision: &stale})
	var pe *kv.PreconditionError
	if !errors.As(err, &pe) || pe.Current == nil || pe.Current.ModRevision != r.ModRevision {
		t.Fatalf("stale CAS: %v", err)
	}
	if _, err := s.Put(ctx(t), "cas", []byte("b"), kv.PutOptions{IfModRevision: &r.ModRevision}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx(t), "cas", []byte("c"), kv.PutOptions{IfAbsent: true}); !errors.Is(err, kv.ErrPreconditionFailed) {
		t.Fatalf("if-absent on existing key: %v", err)
	}
	// A transfer between two accounts: atomic, both branches.
	mustPut(t, s, "acct/a", "10")
	txn := kv.Txn{
		Compare: []kv.Compare{{Key: "acct/a", Target: kv.TargetValue, Op: "=", Value: []byte("10")}},
		Success: []kv.Op{{Type: kv.OpPut, Key: "acct/a", Value: []byte("5")}, {Type: kv.OpPut, Key: "acct/b", Value: []byte("5")}},
		Failure: []kv.Op{{Type: kv.OpGet, Key: "acct/a"}},
	}
	res, err := s.Txn(ctx(t), txn)
	if err != nil || !res.Succeeded || len(res.Results) != 2 {
		t.Fatalf("txn: %+v %v", res, err)
	}
	res, err = s.Txn(ctx(t), txn)
	if err != nil || res.Succeeded || string(res.Results[0].Record.Value) != "5" {
		t.Fatalf("second txn must take the failure branch: %+v %v", res, err)
	}
	d, _, err := s.Delete(ctx(t), "acct/", kv.DeleteOptions{Prefix: true})
	if err != nil || d != 2 {
		t.Fatalf("delete prefix: %d %v", d, err)
	}
	doc, err := s.Patch(ctx(t), "doc", []byte(`{"a":{"b":1}}`))
	if err != nil || string(doc.Value) != `{"a":{"b":1}}` {
		t.Fatalf("patch: %v %v", doc, err)
	}
}

func TestTTLExpiresEverywhereAtOnePoint(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	s := c.Svc(0)
	r, err := s.Put(ctx(t), "ttl", []byte("x"), kv.PutOptions{TTL: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Expires == 0 {
		t.Fatal("no expiry recorded")
	}
	mustPut(t, s, "keep", "x")
	start := time.Now()
	// The expiry is a write of its own (put, put, expiry): every replica
	// applies it, removing the key from its state within TTL + 1 s.
	want := r.ModRevision + 2
	for i := range c.Nodes {
		for {
			rev, _, err := c.Hooks(i).Digest()
			if err != nil {
				t.Fatal(err)
			}
			if rev == want {
				break
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Fatalf("node %d at revision %d (want %d) %s after a 500ms TTL", i, rev, want, time.Since(start))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := c.Svc(i).Get(ctx(t), "ttl", kv.ReadOptions{Serializable: true}); !errors.Is(err, kv.ErrKeyNotFound) {
			t.Fatalf("node %d still serves the key: %v", i, err)
		}
	}
	// Every replica deleted it at the same log position: same state, same revision.
	if rev := c.WaitConverged(10 * time.Second); rev != want {
		t.Fatalf("revision %d, want %d (put, put, expiry)", rev, want)
	}
}

func TestMembershipChanges(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	mustPut(t, c.Svc(0), "m", "1")
	// Join a learner through a follower, then promote it.
	nd := c.AddNode(c.Follower(), true)
	i := len(c.Nodes) - 1
	waitValue(t, c.Svc(i), "m", "1")
	member := func(name string) *kv.Member {
		ms, err := c.Svc(c.Follower()).Members(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == name {
				return &m
			}
		}
		return nil
	}
	if m := member(nd.Name); m == nil || m.Voter {
		t.Fatalf("learner: %+v", m)
	}
	if err := c.Svc(1).PromoteMember(ctx(t), nd.Name); err != nil {
		t.Fatal(err)
	}
	if m := member(nd.Name); m == nil || !m.Voter {
		t.Fatalf("after promote: %+v", m)
	}
	// Remove a follower that is not the new one.
	l := c.WaitLeader(5 * time.Second)
	victim := -1
	for j := 0; j < 3; j++ {
		if j != l {
			victim = j
			break
		}
	}
	if err := c.Svc(l).RemoveMember(ctx(t), c.Nodes[victim].Name); err != nil {
		t.Fatal(err)
	}
	c.Stop(victim)
	if m := member(c.Nodes[victim].Name); m != nil {
		t.Fatalf("removed member still listed: %+v", m)
	}
	if err := c.Svc(l).RemoveMember(ctx(t), "nobody"); !errors.Is(err, kv.ErrMemberNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
	mustPut(t, c.Svc(i), "after", "x")
	// Leadership transfer to the promoted node.
	if err := c.Svc(0+boolToInt(victim == 0)).TransferLeadership(ctx(t), nd.Name); err != nil {
		t.Fatal(err)
	}
	if got := c.WaitLeader(10*time.Second, i); got != i {
		t.Fatalf("leader is %d", got)
	}
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestPeerMutualTLS(t *testing.T) {
	dir := t.TempDir()
	good := cluster.WriteCerts(t, dir, "cluster-ca", "n1", "n2", "n3", "n4")
	foreign := cluster.WriteCerts(t, dir, "other-ca", "n4")
	c := cluster.New(t, 3, cluster.Options{Configure: func(i int, cfg *config.Config) {
		name := fmt.Sprintf("n%d", i+1)
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile = good.Cert[name], good.Key[name], good.CAFile
	}})
	mustPut(t, c.Svc(c.Follower()), "secure", "yes")
	for i := range c.Nodes {
		if got := mustGetValue(t, c.Svc(i), "secure", kv.ReadOptions{}); got != "yes" {
			t.Fatalf("node %d: %q", i, got)
		}
	}
	// A node with a certificate from another CA cannot join.
	j := c.StartJoiner(0, false, func(cfg *config.Config) {
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile = foreign.Cert["n4"], foreign.Key["n4"], foreign.CAFile
	})
	select {
	case <-c.Nodes[j].S.Ready():
		t.Fatal("a node with a foreign certificate became ready")
	case <-time.After(3 * time.Second):
	}
	ms, err := c.Svc(0).Members(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("members after a foreign join attempt: %+v", ms)
	}
	c.Stop(j)
	// The same name with the cluster's CA joins.
	c.Nodes = c.Nodes[:j]
	i := c.StartJoiner(0, false, func(cfg *config.Config) {
		cfg.PeerCertFile, cfg.PeerKeyFile, cfg.PeerTrustedCAFile = good.Cert["n4"], good.Key["n4"], good.CAFile
	})
	c.WaitReady(30 * time.Second)
	waitValue(t, c.Svc(i), "secure", "yes")
}

// waitCompacted waits until leader l has compacted its log past index
// behind (where a stopped follower is), so the follower can only catch up
// by a snapshot.
func waitCompacted(t *testing.T, c *cluster.Cluster, l int, behind uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for c.Raft(l).LogFirstIndex() <= behind+1 {
		if time.Now().After(deadline) {
			t.Fatalf("leader log not compacted (first index %d, follower at %d)", c.Raft(l).LogFirstIndex(), behind)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
