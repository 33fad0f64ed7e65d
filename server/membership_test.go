package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairnkv/cairn/kv"
	"github.com/cairnkv/cairn/test/cluster"
)

// TestRemoveLeaderThroughItself removes the leader by asking the leader
// itself. Once a leader has removed itself from the configuration it can no
// longer propose, nor find a leader to forward to, so any work left after the
// configuration change (deleting the member's metadata) must not turn a
// removal that took effect into an error; a retry must then say the member
// is gone.
func TestRemoveLeaderThroughItself(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%dnodes", n), func(t *testing.T) { testRemoveLeaderThroughItself(t, n) })
	}
}

func testRemoveLeaderThroughItself(t *testing.T, size int) {
	c := cluster.New(t, size, cluster.Options{})
	mustPut(t, c.Svc(0), "before", "1")
	l := c.WaitLeader(5 * time.Second)
	name := c.Nodes[l].Name
	if err := c.Svc(l).RemoveMember(ctx(t), name); err != nil {
		t.Fatalf("removing the leader %s through itself: %v", name, err)
	}
	c.Stop(l)
	var rest []int
	for i := range c.Nodes {
		if i != l {
			rest = append(rest, i)
		}
	}
	nl := c.WaitLeader(10*time.Second, rest...)
	ms, err := c.Svc(nl).Members(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != size-1 {
		t.Fatalf("members after removing %s: %+v", name, ms)
	}
	for _, m := range ms {
		if m.Name == name {
			t.Fatalf("removed leader still listed: %+v", m)
		}
		if m.ClientURL == "" {
			t.Fatalf("member %s lost its metadata: %+v", m.Name, m)
		}
	}
	if err := c.Svc(nl).RemoveMember(ctx(t), name); !errors.Is(err, kv.ErrMemberNotFound) {
		t.Fatalf("removing %s again: %v, want member not found", name, err)
	}
	mustPut(t, c.Svc(rest[0]), "after", "2")
	waitValue(t, c.Svc(rest[1]), "after", "2")
}

// TestRemoveLeaderThroughFollower removes the leader through a follower: the
// follower forwards the change to the leader, which steps down.
func TestRemoveLeaderThroughFollower(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	f := c.Follower()
	name := c.Nodes[l].Name
	if err := c.Svc(f).RemoveMember(ctx(t), name); err != nil {
		t.Fatalf("removing the leader %s through follower %s: %v", name, c.Nodes[f].Name, err)
	}
	c.Stop(l)
	var rest []int
	for i := range c.Nodes {
		if i != l {
			rest = append(rest, i)
		}
	}
	nl := c.WaitLeader(10*time.Second, rest...)
	ms, err := c.Svc(nl).Members(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name {
			t.Fatalf("removed leader still listed: %+v", m)
		}
	}
	mustPut(t, c.Svc(f), "after", "2")
}

// Over HTTP, removing the leader through itself answers 200: the removal
// took effect even though the removed node cannot list the members after it.
func TestRemoveLeaderThroughItselfHTTP(t *testing.T) {
	c := cluster.New(t, 3, cluster.Options{})
	l := c.WaitLeader(5 * time.Second)
	r := do(t, "DELETE", "http://"+c.Nodes[l].ClientAddr+"/v1/cluster/members/"+c.Nodes[l].Name, "")
	if r.status != 200 {
		t.Fatalf("DELETE of the leader on the leader: %d %s", r.status, r.body)
	}
	c.Stop(l)
	var rest []int
	for i := range c.Nodes {
		if i != l {
			rest = append(rest, i)
		}
	}
	nl := c.WaitLeader(15*time.Second, rest...)
	if ms, err := c.Svc(nl).Members(ctx(t)); err != nil || len(ms) != 2 {
		t.Fatalf("members after the removal: %v %v", ms, err)
	}
}
