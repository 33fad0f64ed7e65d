package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairnkv/cairn/config"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/test/cluster"
)

// A policy survives a restart and a snapshot: a node that stops after its
// log was compacted behind the change reloads it from its state database.
func TestKeyspacePolicySurvivesRestart(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	p := keyspace.Policy{Prefix: "sessions/", Mode: keyspace.Strong, DefaultTTL: time.Hour, MaxValueBytes: 512}
	if _, err := c.Svc(c.Follower()).PutKeyspace(ctx(t), p); err != nil {
		t.Fatal(err)
	}
	mustPut(t, c.Svc(0), "after", "1") // every node applies past the change
	for i := range 3 {
		waitValue(t, c.Svc(i), "after", "1")
		if err := c.Svc(i).Snapshot(); err != nil {
			t.Fatalf("snapshot on node %d: %v", i, err)
		}
	}
	for i := range 3 {
		c.Stop(i)
	}
	for i := range 3 {
		c.Start(i)
	}
	c.WaitReady(30 * time.Second)
	for i := range 3 {
		got, err := c.Svc(i).Keyspace(ctx(t), "sessions/")
		if err != nil || *got != p {
			t.Errorf("node %d after the restart: %+v %v", i, got, err)
		}
		if got := c.Svc(i).Keyspaces().Lookup("sessions/x"); got != p {
			t.Errorf("node %d routes sessions/x by %+v", i, got)
		}
	}
}

// A policy set on one node is in force on every node when the call returns:
// a put with no TTL under a prefix whose default_ttl is 1s expires on all of
// them, and a refused change (409) changes nothing anywhere.
func TestKeyspacePolicyInForceEverywhere(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	f := c.Follower()
	p := keyspace.Policy{Prefix: "short/", Mode: keyspace.Strong, DefaultTTL: time.Second}
	ch, err := c.Svc(f).PutKeyspace(ctx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Pending) != 0 {
		t.Fatalf("members not caught up: %v", ch.Pending)
	}
	for i := range 3 {
		// No wait: the call returned after every member applied it.
		if got := c.Svc(i).Keyspaces().Lookup("short/k"); got != p {
			t.Fatalf("node %d routes short/k by %+v right after the call", i, got)
		}
	}
	// Any node's put takes the default TTL.
	r, err := c.Svc((f+1)%3).Put(ctx(t), "short/k", []byte("v"), kv.PutOptions{})
	if err != nil || r.Expires == 0 {
		t.Fatalf("put under short/: %+v %v", r, err)
	}
	for i := range 3 {
		waitValue(t, c.Svc(i), "short/k", "v")
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := range 3 {
		for {
			_, err := c.Svc(i).Get(ctx(t), "short/k", kv.ReadOptions{Serializable: true})
			if errors.Is(err, kv.ErrKeyNotFound) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("short/k has not expired on node %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Refused: a policy over keys that exist, and deleting a keyspace that
	// holds keys.
	mustPut(t, c.Svc(0), "full/a", "1")
	if _, err := c.Svc(f).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "full/", Mode: keyspace.Strong, MaxValueBytes: 10}); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("policy over existing keys: %v", err)
	}
	mustPut(t, c.Svc(0), "short/kept", "1")
	if _, err := c.Svc(f).DeleteKeyspace(ctx(t), "short/"); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("delete of a keyspace with keys: %v", err)
	}
	mustPut(t, c.Svc(0), "after", "1")
	for i := range 3 {
		waitValue(t, c.Svc(i), "after", "1")
		if got := c.Svc(i).Keyspaces().Lookup("full/a"); got.Prefix != "" {
			t.Errorf("node %d has the refused policy %+v", i, got)
		}
		if got := c.Svc(i).Keyspaces().Lookup("short/kept"); got != p {
			t.Errorf("node %d lost short/: %+v", i, got)
		}
		if r, err := c.Svc(i).Get(ctx(t), "full/a", kv.ReadOptions{Serializable: true}); err != nil || r.Expires != 0 {
			t.Errorf("node %d: full/a after the refusal: %+v %v", i, r, err)
		}
	}

	// A member that is down is named, once the wait has run out.
	down := (f + 1) % 3
	c.Stop(down)
	start := time.Now()
	ch, err = c.Svc(f).PutKeyspace(ctx(t), keyspace.Policy{Prefix: "other/", Mode: keyspace.Strong})
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Pending) != 1 || ch.Pending[0] != c.Nodes[down].Name {
		t.Fatalf("pending %v, want [%s]", ch.Pending, c.Nodes[down].Name)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the call waited %s for a member that is down", d)
	}
}

// The config file's keyspaces are a bootstrap: created once the cluster is
// ready if it has no policy for their prefix; afterwards the cluster's
// policy stays in force, whatever the file says.
func TestKeyspaceBootstrapFromConfig(t *testing.T) {
	boot := keyspace.Policy{Prefix: "sessions/", Mode: keyspace.Strong, DefaultTTL: time.Minute}
	c := cluster.New(t, 3, cluster.Options{Configure: func(_ int, cfg *config.Config) {
		cfg.Keyspaces = []keyspace.Policy{boot}
	}})
	waitPolicy := func(i int, want keyspace.Policy) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for c.Svc(i).Keyspaces().Lookup("sessions/x") != want {
			if time.Now().After(deadline) {
				t.Fatalf("node %d routes sessions/x by %+v, want %+v", i, c.Svc(i).Keyspaces().Lookup("sessions/x"), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for i := range 3 {
		waitPolicy(i, boot)
	}
	changed := boot
	changed.DefaultTTL = time.Hour
	if _, err := c.Svc(0).PutKeyspace(ctx(t), changed); err != nil {
		t.Fatal(err)
	}
	c.Stop(1)
	c.Start(1)
	c.WaitReady(30 * time.Second)
	time.Sleep(500 * time.Millisecond) // the restarted node's bootstrap runs after it is ready
	mustPut(t, c.Svc(1), "after", "1")
	for i := range 3 {
		waitValue(t, c.Svc(i), "after", "1")
		if got := c.Svc(i).Keyspaces().Lookup("sessions/x"); got != changed {
			t.Errorf("node %d: %+v, want the cluster's %+v", i, got, changed)
		}
	}

	// An eventual keyspace in the file is in force when the node is ready.
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	for _, l := range []*string{&cfg.ListenClient, &cfg.ListenPeer, &cfg.ListenResp} {
		*l = "127.0.0.1:0"
	}
	cfg.Keyspaces = []keyspace.Policy{{Prefix: "cache/", Mode: keyspace.Eventual, Replicas: 1, SloppyQuorum: true}}
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start with an eventual keyspace: %v", err)
	}
	defer s.Close()
	<-s.Ready()
	if got := s.Service().Keyspaces().Lookup("cache/x"); got.Mode != keyspace.Eventual {
		t.Fatalf("cache/x is in %+v once the node is ready", got)
	}
	r, err := s.Service().Put(ctx(t), "cache/x", []byte("1"), kv.PutOptions{})
	if err != nil || r.Timestamp == "" {
		t.Fatalf("eventual put: %+v %v", r, err)
	}
}
