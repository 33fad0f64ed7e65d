package strong

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/internal/store"
)

// The cluster ID names one cluster for as long as it lives: 16 random bytes
// (hex) the first leader proposes through the log, so every member agrees,
// stored at 0x03 "cid". A cluster restored from a snapshot gets a new one
// (backup.Restore), so a member of the old cluster cannot take part in the
// new one by mistake: the peer port refuses connections between nodes
// whose IDs differ (package peer). A node that does not know the ID yet (a
// joiner, a member of a cluster made before IDs existed) is not refused.

var clusterIDKey = []byte{prefixMeta, 'c', 'i', 'd'}

const cmdClusterID = "cluster_id"

// ClusterIDPair is the state pair that sets the cluster ID (restore).
func ClusterIDPair(id string) (k, v []byte) {
	return append([]byte(nil), clusterIDKey...), []byte(id)
}

// ValidClusterID reports whether id is 32 hex digits.
func ValidClusterID(id string) bool {
	b, err := hex.DecodeString(id)
	return err == nil && len(b) == 16
}

func readClusterID(g getter) (string, error) {
	v, err := g.Get(clusterIDKey)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return string(v), err
}

func (m *Machine) loadClusterID() error {
	id, err := readClusterID(m.db)
	if err != nil {
		return err
	}
	m.clusterID.Store(&id)
	return nil
}

// ClusterID is the cluster's ID, "" until the first leader's proposal is
// applied here.
func (m *Machine) ClusterID() string {
	if p := m.clusterID.Load(); p != nil {
		return *p
	}
	return ""
}

// applyClusterID sets the ID unless one is set: the first proposal wins.
func (ab *applyBatch) applyClusterID(id string) error {
	if !ValidClusterID(id) {
		return fmt.Errorf("cluster ID %q is not 32 hex digits", id)
	}
	if ab.m.ClusterID() != "" || ab.clusterID != "" {
		return nil
	}
	ab.b.Set(clusterIDKey, []byte(id))
	ab.clusterID = id
	return nil
}

// ClusterID is the cluster's ID ("" until known here).
func (e *Engine) ClusterID() string { return e.machine.ClusterID() }

// ensureClusterID has a leader without a cluster ID propose one.
func (e *Engine) ensureClusterID() {
	if e.machine.ClusterID() != "" || !e.node.IsLeader() {
		return
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RequestTimeout)
	defer cancel()
	if _, err := e.propose(ctx, command{Type: cmdClusterID, Name: hex.EncodeToString(b[:])}); err != nil {
		e.log.Debug("cluster ID proposal failed", "err", err)
	}
}
