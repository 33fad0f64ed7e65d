// Package backup restores snapshot files (package snapfile) into new
// members, and (next) takes scheduled backups and mirrors keyspaces to S3.
package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/eventual"
	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/internal/strong"
)

// Restore writes the snapshot file at path into dataDir, for one member of
// a new cluster whose members (all voters, this one among them) are given:
// the strong state as a Raft snapshot at the saved index with the new
// configuration (the old members' metadata left out), and every eventual
// key into the replica database. dataDir must not exist or be empty. The
// file is checked whole first: a truncated or damaged one is refused
// before anything is written, and a restore that fails leaves nothing.
// `cairn serve` with the same name and --initial-cluster then starts from
// it; every member restored from the same file agrees on the log.
//
// An encrypted (age) file is decrypted with ids.
func Restore(path, dataDir string, members []raftnode.Peer, ids ...age.Identity) (snapfile.Info, error) {
	info, err := verifyFile(path, ids)
	if err != nil {
		return snapfile.Info{}, err
	}
	if entries, err := os.ReadDir(dataDir); err == nil && len(entries) > 0 {
		return snapfile.Info{}, fmt.Errorf("backup: data directory %s is not empty: restore into a new one", dataDir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return snapfile.Info{}, fmt.Errorf("backup: %w", err)
	}
	tmp := filepath.Clean(dataDir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return snapfile.Info{}, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return snapfile.Info{}, fmt.Errorf("backup: %w", err)
	}
	if err := restoreInto(path, tmp, members, info, ids); err != nil {
		_ = os.RemoveAll(tmp)
		return snapfile.Info{}, err
	}
	_ = os.Remove(dataDir) // empty, if it exists
	if err := os.Rename(tmp, dataDir); err != nil {
		_ = os.RemoveAll(tmp)
		return snapfile.Info{}, fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(filepath.Dir(filepath.Clean(dataDir))); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return info, nil
}

// NewClusterID is the ID of the cluster restored from a snapshot into
// members: the same on every member restored from the same file into the
// same members (each restores on its own), and never the old cluster's.
func NewClusterID(info snapfile.Info, members []raftnode.Peer) string {
	h := sha256.New()
	fmt.Fprintf(h, "cairn restore\x00%s\x00%s\x00", info.SHA256, info.ClusterID)
	for _, m := range members {
		fmt.Fprintf(h, "%s=%s\x00", m.ID, m.Addr)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func verifyFile(path string, ids []age.Identity) (snapfile.Info, error) {
	r, c, err := openPlain(path, ids)
	if err != nil {
		return snapfile.Info{}, err
	}
	defer c.Close()
	info, err := snapfile.Verify(r)
	if err != nil {
		return snapfile.Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// VerifyFile checks the snapshot file at path (decrypting it with ids if
// it is encrypted) and returns its Info.
func VerifyFile(path string, ids ...age.Identity) (snapfile.Info, error) {
	return verifyFile(path, ids)
}

func restoreInto(path, dir string, members []raftnode.Peer, info snapfile.Info, ids []age.Identity) error {
	read := func(strongFn func(k, v []byte) error, eventualFn func(snapfile.EventualRecord) error) error {
		r, c, err := openPlain(path, ids)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = snapfile.Read(r, strongFn, eventualFn)
		return err
	}
	err := raftnode.WriteRestore(dir, members, info.Applied, func(yield func(k, v []byte) error) error {
		err := read(func(k, v []byte) error {
			if strong.RestoreSkip(k) {
				return nil
			}
			return yield(k, v)
		}, nil)
		if err != nil {
			return err
		}
		return yield(strong.ClusterIDPair(NewClusterID(info, members)))
	})
	if err != nil {
		return fmt.Errorf("backup: restoring the strong state: %w", err)
	}
	err = eventual.WriteRestore(dir, func(yield func(eventual.Restored) error) error {
		return read(nil, func(r snapfile.EventualRecord) error {
			return yield(eventual.Restored{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Origin: r.Origin, Expires: r.Expires})
		})
	})
	if err != nil {
		return fmt.Errorf("backup: restoring the eventual keys: %w", err)
	}
	return nil
}
