package server_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairnkv/cairn/server"
	"github.com/cairnkv/cairn/test/cluster"
)

// TestRemovedMemberExits: a follower removed from the cluster reports
// server.ErrRemoved on Err (it does not answer 503 forever), refuses to
// start again on the same data directory, and comes back only wiped and
// joined anew.
func TestRemovedMemberExits(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	mustPut(t, c.Svc(0), "before", "1")
	l := c.WaitLeader(5 * time.Second)
	f := c.Follower()
	start := time.Now()
	if err := c.Svc(l).RemoveMember(ctx(t), c.Nodes[f].Name); err != nil {
		t.Fatal(err)
	}
	err := c.WaitFailed(f, 15*time.Second)
	if !errors.Is(err, server.ErrRemoved) {
		t.Fatalf("removed follower %s: Err %v after %s, want ErrRemoved", c.Nodes[f].Name, err, time.Since(start))
	}
	t.Logf("%s reported its removal after %s: %v", c.Nodes[f].Name, time.Since(start).Round(time.Millisecond), err)
	for i := range c.Nodes {
		if i != f {
			if err := c.WaitFailed(i, 0); err != nil {
				t.Fatalf("%s, still a member, failed: %v", c.Nodes[i].Name, err)
			}
		}
	}
	c.Stop(f)
	err = c.StartErr(f)
	if !errors.Is(err, server.ErrRemoved) || !strings.Contains(err.Error(), "--join") {
		t.Fatalf("restarting removed %s on its data: %v, want ErrRemoved that says to wipe and --join", c.Nodes[f].Name, err)
	}
	c.Rejoin(f, l)
	c.WaitReady(30 * time.Second)
	waitValue(t, c.Svc(f), "before", "1")
	mustPut(t, c.Svc(f), "after", "2")
}

// TestRemovedLeaderExits: a leader removed through itself shuts its Raft
// down once the change commits, and reports ErrRemoved too; the rest elect
// a new leader and keep serving.
func TestRemovedLeaderExits(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	if err := c.Svc(l).RemoveMember(ctx(t), c.Nodes[l].Name); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFailed(l, 15*time.Second); !errors.Is(err, server.ErrRemoved) {
		t.Fatalf("removed leader %s: Err %v, want ErrRemoved", c.Nodes[l].Name, err)
	}
	c.Stop(l)
	var rest []int
	for i := range c.Nodes {
		if i != l {
			rest = append(rest, i)
		}
	}
	nl := c.WaitLeader(10*time.Second, rest...)
	mustPut(t, c.Svc(nl), "after", "1")
}

// TestPartitionedMemberStays: a member cut off from the others for many
// times the removal detector's quiet period hears from no leader, but its
// configuration still lists it: it must not exit, and serves again once
// healed. A learner that joins and is promoted must not exit either.
func TestPartitionedMemberStays(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{Spares: 1})
	f := c.Follower()
	c.Partition(f)
	if err := c.WaitFailed(f, 8*time.Second); err != nil {
		t.Fatalf("partitioned %s exited: %v", c.Nodes[f].Name, err)
	}
	c.Heal()
	c.WaitReady(30 * time.Second)
	mustPut(t, c.Svc(f), "healed", "1")

	j := c.StartJoiner(c.WaitLeader(5*time.Second), true, nil)
	c.WaitReady(30 * time.Second)
	if err := c.Svc(j).PromoteMember(ctx(t), c.Nodes[j].Name); err != nil {
		t.Fatal(err)
	}
	for i := range c.Nodes {
		if err := c.WaitFailed(i, 0); err != nil {
			t.Fatalf("%s failed: %v", c.Nodes[i].Name, err)
		}
	}
	if err := c.WaitFailed(j, 4*time.Second); err != nil {
		t.Fatalf("promoted learner %s exited: %v", c.Nodes[j].Name, err)
	}
	waitValue(t, c.Svc(j), "healed", "1")
}

// TestRemovedWhilePartitioned: a member removed while it was cut off never
// receives the configuration that drops it; once the partition heals, the
// leader tells it it is not listed, and it reports ErrRemoved.
func TestRemovedWhilePartitioned(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	f := c.Follower()
	c.Partition(f)
	var rest []int
	for i := range c.Nodes {
		if i != f {
			rest = append(rest, i)
		}
	}
	l := c.WaitLeader(10*time.Second, rest...)
	if err := c.Svc(l).RemoveMember(ctx(t), c.Nodes[f].Name); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitFailed(f, 5*time.Second); err != nil {
		t.Fatalf("%s exited while still cut off (it cannot know yet): %v", c.Nodes[f].Name, err)
	}
	c.Heal()
	start := time.Now()
	if err := c.WaitFailed(f, 20*time.Second); !errors.Is(err, server.ErrRemoved) {
		t.Fatalf("%s removed while partitioned, healed: Err %v, want ErrRemoved", c.Nodes[f].Name, err)
	}
	t.Logf("%s learned of its removal %s after the heal", c.Nodes[f].Name, time.Since(start).Round(time.Millisecond))
	mustPut(t, c.Svc(l), "after", "1")
}
