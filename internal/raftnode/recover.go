package raftnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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
//
// A flag left on the command line would do that again at every start,
// dropping every member that joined since. So the first force leaves a
// mark in the data directory (forcedMarkFile), and a later start with the
// flag is refused while the configuration on disk has other members;
// with this node alone in it, forcing again changes nothing and goes on.
func (n *Node) forceNewCluster(rc *raft.Config, logs raft.LogStore, hasState bool) error {
	if !hasState {
		return ErrNothingToRecover
	}
	if err := n.refuseForcingAgain(rc, logs); err != nil {
		return err
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
	return writeForcedMark(n.cfg.Dir, forcedMark{At: time.Now().UTC(), Applied: n.fsm.applied.Load()})
}

// forcedMarkFile, in the node's directory (Config.Dir), records that
// --force-new-cluster rewrote its configuration, and when.
const forcedMarkFile = "forced-new-cluster.json"

type forcedMark struct {
	At      time.Time `json:"at"`
	Applied uint64    `json:"applied"`
}

// ErrForcedBefore means --force-new-cluster was given to a node that was
// forced before and has been joined by other members since.
var ErrForcedBefore = errors.New("raftnode: --force-new-cluster was already used on this data directory and members have joined since")

// refuseForcingAgain is ErrForcedBefore when this node was forced before
// and its configuration on disk (read without starting Raft) now has
// members other than itself.
func (n *Node) refuseForcingAgain(rc *raft.Config, logs raft.LogStore) error {
	path := filepath.Join(n.cfg.Dir, forcedMarkFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	var mark forcedMark
	if err := json.Unmarshal(b, &mark); err != nil {
		return fmt.Errorf("raftnode: %s: %w", path, err)
	}
	// A copy: GetConfiguration marks the config it gets as not to start,
	// and a transport of its own, which it only registers a handler on.
	c := *rc
	_, tr := raft.NewInmemTransport("")
	conf, err := raft.GetConfiguration(&c, n.fsm, logs, n.logs, n.snaps, tr)
	if err != nil {
		return fmt.Errorf("raftnode: reading the configuration on disk: %w", err)
	}
	var others []string
	for _, s := range conf.Servers {
		if string(s.ID) != n.cfg.ID {
			others = append(others, string(s.ID))
		}
	}
	if len(others) == 0 {
		n.log.Warn("--force-new-cluster is still set; this node is its cluster's only member, so it changes nothing: remove the flag",
			"forced_at", mark.At)
		return nil
	}
	slices.Sort(others)
	return fmt.Errorf("%w (forced at %s; members now: %s and this node): remove the flag from its command line; "+
		"if the cluster lost its quorum again and this is the survivor to force, delete %s first",
		ErrForcedBefore, mark.At.Format(time.RFC3339), strings.Join(others, ", "), path)
}

// writeForcedMark writes the mark durably: to a temporary file, synced,
// renamed over the old one, and the directory synced.
func writeForcedMark(dir string, m forcedMark) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, forcedMarkFile+".tmp*")
	if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("raftnode: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("raftnode: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, forcedMarkFile)); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	defer d.Close()
	return d.Sync()
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
