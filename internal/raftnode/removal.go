package raftnode

import (
	"context"
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
//   - a member removed while it was partitioned or stopped never receives
//     that entry: its configuration still lists it, and it only hears no
//     leader. After removalQuiet of that silence it asks the members of its
//     configuration (MemberOf); a leader that twice, removalQuiet apart,
//     answers that it does not list the node settles it. A member that is
//     only cut off reaches no leader, or one that lists it.
//
// A node that never appeared in a configuration it applied (a new member
// still catching up on the log, whose older entries predate it) is never
// considered removed.

const methodMemberOf = rpcService + ".MemberOf"

// MemberOf answers, one byte: the callee is not the leader and cannot say,
// or it leads and lists the caller, or it leads and does not.
const (
	memberOfNotLeader byte = iota
	memberOfListed
	memberOfNotListed
)

// serveMemberOf tells a member that hears from no leader whether this
// node, if it leads, still lists it.
func (n *Node) serveMemberOf(_ context.Context, id []byte) ([]byte, error) {
	if !n.IsLeader() {
		return []byte{memberOfNotLeader}, nil
	}
	servers, err := n.Servers()
	if err != nil {
		return []byte{memberOfNotLeader}, nil
	}
	for _, s := range servers {
		if s.ID == string(id) {
			return []byte{memberOfListed}, nil
		}
	}
	return []byte{memberOfNotListed}, nil
}

// leaderDropped asks the other members of servers whether one of them leads
// and no longer lists this node; it returns that leader's ID, or "".
func (n *Node) leaderDropped(servers []raft.Server) string {
	for _, s := range servers {
		if string(s.ID) == n.cfg.ID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		out, err := n.rpc.Call(ctx, string(s.Address), methodMemberOf, []byte(n.cfg.ID))
		cancel()
		if err != nil || len(out) != 1 {
			continue // unreachable, or a version without MemberOf
		}
		switch out[0] {
		case memberOfListed:
			return ""
		case memberOfNotListed:
			return string(s.ID)
		}
	}
	return ""
}

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
	var asked time.Time       // when it last asked the others (MemberOf)
	var strikes int           // leaders in a row that did not list it
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
		lc := n.raft.LastContact()
		// A leader hears from none: it is the one that calls.
		silent := n.raft.State() != raft.Leader && (lc.IsZero() || time.Since(lc) >= quiet)
		switch {
		case in && !silent:
			seen, absentSince, strikes = true, time.Time{}, 0
			continue
		case in:
			seen, absentSince = true, time.Time{}
			if time.Since(asked) < quiet {
				continue
			}
			asked = time.Now()
			leader := n.leaderDropped(servers)
			if leader == "" {
				strikes = 0
				continue
			}
			if strikes++; strikes >= 2 {
				n.markRemoved(fmt.Sprintf("the leader %s no longer lists %s (removed while this node was unreachable?) and no leader has contacted it for %s",
					leader, n.cfg.ID, quiet))
				return
			}
			continue
		case !seen || len(servers) == 0:
			continue
		case absentSince.IsZero():
			absentSince = time.Now()
		}
		if time.Since(absentSince) >= quiet && silent {
			n.markRemoved(fmt.Sprintf("the latest configuration (%d members) no longer lists %s and no leader has contacted it for %s",
				len(servers), n.cfg.ID, quiet))
			return
		}
	}
}
