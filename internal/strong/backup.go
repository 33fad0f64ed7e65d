package strong

import (
	"bytes"
	"context"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/kv"
)

// Backup calls fn with every pair of the state database (keys >= 0x01:
// records, TTL index, revision, members, users, rules, policies, watch
// history), read from one consistent snapshot taken after a linearizable
// barrier, so it holds every write acknowledged before the call (with
// local, this node's state as it is, without the barrier). It
// returns the snapshot's revision and applied index.
func (e *Engine) Backup(ctx context.Context, local bool, fn func(k, v []byte) error) (kv.BackupStats, error) {
	var st kv.BackupStats
	if err := e.barrier(ctx, kv.ReadOptions{Serializable: local}); err != nil {
		return st, err
	}
	snap := e.db.NewSnapshot()
	defer snap.Close()
	var err error
	if st.Revision, err = readRevision(snap); err != nil {
		return st, err
	}
	if st.ClusterID, err = readClusterID(snap); err != nil {
		return st, err
	}
	if st.Applied, err = raftnode.ReadApplied(snap.Get); err != nil {
		return st, err
	}
	var ferr error
	err = snap.Scan([]byte{prefixData}, nil, func(k, v []byte) bool {
		st.Pairs++
		switch {
		case k[0] == prefixData:
			st.Keys++
		case k[0] == prefixKeyspace:
			st.Keyspaces++
		case k[0] == prefixAuth && len(k) > 1 && k[1] == 'u':
			st.Users++
		}
		ferr = fn(k, v)
		return ferr == nil
	})
	if ferr != nil {
		return st, ferr
	}
	return st, err
}

// RestoreSkip reports whether a saved state pair is left out of a restore
// into a new cluster: the old members' metadata (the new members publish
// their own) and the old cluster ID (the new cluster gets its own:
// ClusterIDPair).
func RestoreSkip(k []byte) bool {
	return len(k) > 0 && k[0] == prefixMember || bytes.Equal(k, clusterIDKey)
}

// IsRecordKey reports whether a state pair is a key's record.
func IsRecordKey(k []byte) bool { return len(k) > 0 && k[0] == prefixData }

// SavedRecord decodes a saved state pair: the record of a key, or ok false
// for a pair that is not one (tools and tests that read snapshot files).
func SavedRecord(k, v []byte) (r *kv.Record, ok bool, err error) {
	if len(k) == 0 || k[0] != prefixData {
		return nil, false, nil
	}
	r, err = decodeRecord(string(k[1:]), v)
	return r, err == nil, err
}
