package raftnode

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// A removed member learns of its removal in one of two ways, both watched by
// watchRemoval:
//
//   - a leader that removes itself shuts its Raft down on its own once the
//     change commits (hashicorp/raft's ShutdownOnRemove); nothing else shuts
//     Raft down while the node is not closing;
//   - a follower receives the configuration entry that drops it (the leader
//     replicates up to that entry before it stops replicating to the member),
//     then hears from no leader again. A configuration that lacks the node is
//     not enough by itself: an uncommitted one can still be replaced by a new
//     leader's log, which would then contact the node; nor is silence alone
//     (a partitioned member hears nothing, but its configuration still lists
//     it). Both together, for removalQuiet, mean removed.
//
// A node that never appeared in a configuration it applied (a new member
// still catching up on the log, whose older entries predate it) is never
// considered removed. A member removed while it was partitioned or stopped
// never receives the entry and keeps waiting for a leader, like any member
// cut off from the cluster.

// removalPoll is how often the watcher looks at the configuration.
const removalPoll = 200 * time.Millisecond

// removalQuiet is how long a node missing from its latest configuration must
// go without hearing from a leader before it counts itself removed: a few
// heartbeat timeouts, at least 2 s.
func removalQuiet(heartbeat time.Duration) time.Duration {
	return max(3*heartbeat, 2*time.Second)
}

// Removed is closed when this node learns that it was removed from the
// cluster's configuration; RemovedReason then says how.
func (n *Node) Removed() <-chan struct{} { return n.removed }

// RemovedReason describes how this node learned of its removal ("" before
// Removed is closed).
func (n *Node) RemovedReason() string {
	if r, ok := n.removedWhy.Load().(string); ok {
		return r
	}
	return ""
}

func (n *Node) markRemoved(why string) {
	n.removedOnce.Do(func() {
		n.removedWhy.Store(why)
		n.log.Warn("removed from the cluster", "how", why)
		close(n.removed)
	})
}

// watchRemoval runs until the node closes or learns it was removed.
func (n *Node) watchRemoval() {
	t := time.NewTicker(removalPoll)
	defer t.Stop()
	quiet := removalQuiet(n.cfg.HeartbeatTimeout)
	var seen bool             // this node appeared in a configuration it holds
	var absentSince time.Time // when the latest configuration first lacked it
	for {
		select {
		case <-n.done:
			return
		case <-n.removed:
			return
		case <-t.C:
		}
		if n.raft.State() == raft.Shutdown {
			select {
			case <-n.done: // closing: Close shut Raft down
				return
			default:
			}
			n.markRemoved("this node, the leader, committed its own removal and Raft shut down")
			return
		}
		f := n.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		servers := f.Configuration().Servers
		in := false
		for _, s := range servers {
			if string(s.ID) == n.cfg.ID {
				in = true
				break
			}
		}
		switch {
		case in:
			seen, absentSince = true, time.Time{}
			continue
		case !seen || len(servers) == 0:
			continue
		case absentSince.IsZero():
			absentSince = time.Now()
		}
		lc := n.raft.LastContact()
		if time.Since(absentSince) >= quiet && (lc.IsZero() || time.Since(lc) >= quiet) {
			n.markRemoved(fmt.Sprintf("the latest configuration (%d members) no longer lists %s and no leader has contacted it for %s",
				len(servers), n.cfg.ID, quiet))
			return
		}
	}
}
