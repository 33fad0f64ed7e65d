package kv

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/keyspace"
)

// BackupStats is what an engine's Backup wrote.
type BackupStats struct {
	ClusterID string
	Revision  int64
	Applied   uint64
	Pairs     int64
	Keys      int64
	Users     int
	Keyspaces int
}

// Backuper is implemented by the engine that keeps the control plane
// (strong): Backup calls fn with every pair of its state, from one
// consistent snapshot taken after a linearizable barrier (none when
// local).
type Backuper interface {
	Backup(ctx context.Context, local bool, fn func(k, v []byte) error) (BackupStats, error)
}

// SnapshotMeta is what the caller says about the node in a snapshot's
// trailer, and how to read.
type SnapshotMeta struct {
	Node, Version string
	// Local saves this node's own state with no barrier and its own copy
	// of the eventual keys: for a member that lost its quorum (the file
	// may miss the last writes the others acknowledged).
	Local bool
}

// SaveSnapshot writes the whole cluster's state to w as a snapshot file
// (package internal/backup): the strong state (every strong key, revision,
// user, rule and policy) from this node after a linearizable barrier, then
// every key of every eventual keyspace as a read-quorum listing returns it,
// with its version. Admin only. A keyspace that cannot be read on its
// quorum fails the snapshot: it is never silently incomplete.
func (s *Service) SaveSnapshot(ctx context.Context, w io.Writer, meta SnapshotMeta) (*snapfile.Info, error) {
	if err := s.CheckAdmin(ctx); err != nil {
		return nil, err
	}
	b, ok := s.ctl.(Backuper)
	if !ok {
		return nil, fmt.Errorf("%w: this node's control plane cannot be saved", ErrUnsupportedMode)
	}
	sw := snapfile.NewWriter(w)
	info := &snapfile.Info{Format: 1, Created: time.Now().UTC(), Node: meta.Node, Version: meta.Version}
	st, err := b.Backup(ctx, meta.Local, sw.Strong)
	if err != nil {
		return nil, err
	}
	info.ClusterID = st.ClusterID
	info.Revision, info.Applied, info.StrongPairs, info.StrongKeys, info.Users, info.Keyspaces =
		st.Revision, st.Applied, st.Pairs, st.Keys, st.Users, st.Keyspaces
	if s.engines[keyspace.Eventual] != nil {
		for _, prefix := range eventualRoots(s.ctl.Keyspaces().Policies()) {
			n, err := s.snapshotEventual(ctx, sw, prefix, meta.Local)
			if err != nil {
				return nil, fmt.Errorf("eventual keyspace %q: %w", prefix, err)
			}
			info.EventualKeys += n
		}
	}
	if err := sw.Close(*info); err != nil {
		return nil, err
	}
	return info, nil
}

// eventualRoots are the eventual keyspaces not inside another one.
func eventualRoots(ps []keyspace.Policy) []string {
	var out []string
	for _, p := range ps {
		if p.Mode != keyspace.Eventual {
			continue
		}
		nested := false
		for _, q := range ps {
			if q.Mode == keyspace.Eventual && q.Prefix != p.Prefix && strings.HasPrefix(p.Prefix, q.Prefix) {
				nested = true
			}
		}
		if !nested {
			out = append(out, p.Prefix)
		}
	}
	return out
}

func (s *Service) snapshotEventual(ctx context.Context, sw *snapfile.Writer, prefix string, local bool) (int64, error) {
	var n int64
	after := ""
	for {
		page, err := s.List(ctx, prefix, ListOptions{ReadOptions: ReadOptions{Local: local, Serializable: local}, After: after, Limit: 500})
		if err != nil {
			return n, err
		}
		for _, r := range page.Items {
			after = r.Key
			if !r.Eventual() {
				continue // a strong keyspace inside: saved with the strong state
			}
			if err := sw.Eventual(snapfile.EventualRecord{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Origin: r.Origin, Expires: r.Expires}); err != nil {
				return n, err
			}
			n++
		}
		if !page.More || len(page.Items) == 0 {
			return n, nil
		}
	}
}
