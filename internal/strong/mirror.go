package strong

import (
	"context"
	"encoding/binary"
	"fmt"
)

// The mirror cursor of a prefix is how far the leader has copied the
// prefix's writes into its backup bucket (package backup/mirror): every
// write of revision <= the cursor is in the bucket. The leader proposes it
// through the log, so a new leader resumes the mirror from where the old
// one stopped instead of comparing the whole bucket; it is stored at
// 0x03 "mc" prefix (be64), and only ever moves forward.

func mirrorCursorKey(prefix string) []byte { return append([]byte{prefixMeta, 'm', 'c'}, prefix...) }

const cmdMirrorCursor = "mirror_cursor"

// MirrorCursor is the revision the prefix's mirror has copied up to, as
// applied on this node (0: never mirrored).
func (e *Engine) MirrorCursor(prefix string) (int64, error) {
	return readInt64(e.machine.db, mirrorCursorKey(prefix))
}

// SaveMirrorCursor proposes that the prefix is mirrored up to rev; a
// cursor never moves back.
func (e *Engine) SaveMirrorCursor(ctx context.Context, prefix string, rev int64) error {
	_, err := e.propose(ctx, command{Type: cmdMirrorCursor, Name: prefix, Revision: rev})
	return err
}

func (ab *applyBatch) applyMirrorCursor(prefix string, rev int64) error {
	if rev < 0 {
		return fmt.Errorf("mirror cursor %d is negative", rev)
	}
	// The batch's own cursor is newer than the stored one.
	if cur, ok := ab.mirrorCursors[prefix]; ok {
		if cur >= rev {
			return nil
		}
	} else if stored, err := readInt64(ab.m.db, mirrorCursorKey(prefix)); err != nil {
		return err
	} else if stored >= rev {
		return nil
	}
	if ab.mirrorCursors == nil {
		ab.mirrorCursors = map[string]int64{}
	}
	ab.mirrorCursors[prefix] = rev
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(rev))
	ab.b.Set(mirrorCursorKey(prefix), b[:])
	return nil
}

// IsLeader reports whether this node leads the cluster now.
func (e *Engine) IsLeader() bool { return e.node.IsLeader() }

// Revision is the last cluster revision applied on this node.
func (e *Engine) Revision() int64 { return e.machine.Revision() }

// PoliciesLoaded reports whether this node has applied at least what it
// had applied before it last stopped, so its keyspace policies are the
// ones it acted on before (not an older table being replayed).
func (e *Engine) PoliciesLoaded() bool { return e.node.CaughtUp() }
