package server_test

import (
	"testing"
	"time"

	"github.com/cairnkv/cairn/keyspace"
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
