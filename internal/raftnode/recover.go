package raftnode

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// ErrNothingToRecover means ForceNewCluster was asked of a node with no Raft
// state on disk: there is no cluster to recover.
var ErrNothingToRecover = errors.New("raftnode: --force-new-cluster needs this node's existing data directory; it is empty")

// forceNewCluster makes this node the only voter of its cluster, from the
// log and snapshots on disk (hashicorp/raft's RecoverCluster): every entry
// in the local log counts as committed, the state machine applies what it
// had not, a snapshot with the new one-member configuration replaces the
// log. Entries the lost members had committed and this node never received
// are gone for good. The fsm stays usable: its state lives in the state
// database at the snapshot's index, which is what NewRaft then starts from
// (NoSnapshotRestoreOnStart).
func (n *Node) forceNewCluster(rc *raft.Config, logs raft.LogStore, hasState bool) error {
	if !hasState {
		return ErrNothingToRecover
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.cfg.AdvertiseAddr),
	}}}
	before := n.fsm.applied.Load()
	if err := raft.RecoverCluster(rc, releasingFSM{n.fsm}, logs, n.logs, n.snaps, n.trans, conf); err != nil {
		return fmt.Errorf("raftnode: force new cluster: %w", err)
	}
	n.log.Warn("forced a new cluster: this node is now the only member; add the others back with --join",
		"applied_before", before, "applied", n.fsm.applied.Load())
	return nil
}

// releasingFSM is the fsm as RecoverCluster gets it: RecoverCluster
// persists the snapshot it takes but never releases it, which would leave a
// state database snapshot open for as long as the node runs.
type releasingFSM struct{ *fsm }

func (f releasingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return &releaseOnPersist{FSMSnapshot: s}, nil
}

type releaseOnPersist struct {
	raft.FSMSnapshot
	released bool
}

func (s *releaseOnPersist) Persist(sink raft.SnapshotSink) error {
	defer s.Release()
	return s.FSMSnapshot.Persist(sink)
}

func (s *releaseOnPersist) Release() {
	if !s.released {
		s.released = true
		s.FSMSnapshot.Release()
	}
}
