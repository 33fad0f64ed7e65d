package raftnode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/cairnkv/cairn/internal/store"
)

// ReadApplied returns the applied index recorded in a state database (or
// a snapshot of one) that get reads.
func ReadApplied(get func(key []byte) ([]byte, error)) (uint64, error) {
	v, err := get(appliedKey)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftnode: corrupt applied index (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// WriteRestore prepares dir, an empty data directory, to start a member of
// a new cluster from a saved state: it writes one Raft snapshot at index
// applied, term 1, whose configuration is members (all voters), holding
// the state pairs that pairs yields (keys >= 0x01). When the member starts
// it finds its state database behind that snapshot and restores it
// (catchUpFromSnapshot), and every member, restored the same way, agrees
// on the configuration and the log position: they elect a leader and go
// on from applied + 1. No bootstrap happens: the snapshot is the state.
func WriteRestore(dir string, members []Peer, applied uint64, pairs func(yield func(k, v []byte) error) error) error {
	if applied == 0 {
		applied = 1 // an index Raft accepts for a snapshot
	}
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "snapshots"), 2, io.Discard)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	var conf raft.Configuration
	for _, p := range members {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	// The store also writes the configuration in the legacy peers form,
	// which needs a transport to encode addresses: an in-memory one does.
	_, enc := raft.NewInmemTransport("")
	defer enc.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, applied, 1, conf, applied, enc)
	if err != nil {
		return fmt.Errorf("raftnode: snapshot: %w", err)
	}
	w := bufio.NewWriterSize(sink, 1<<20)
	w.Write(snapshotMagic[:])
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], applied)
	w.Write(hdr[:])
	var tmp [binary.MaxVarintLen64]byte
	err = pairs(func(k, v []byte) error {
		if len(k) == 0 || k[0] == 0x00 {
			return fmt.Errorf("raftnode: restore: key %q is not a state machine key", k)
		}
		n := binary.PutUvarint(tmp[:], uint64(len(k)))
		w.Write(tmp[:n])
		w.Write(k)
		n = binary.PutUvarint(tmp[:], uint64(len(v)))
		w.Write(tmp[:n])
		_, err := w.Write(v)
		return err
	})
	if err == nil {
		_, err = w.Write([]byte{0})
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	return syncDir(filepath.Join(dir, "snapshots"))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
