package eventual

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/store"
)

// Restored is one saved eventual key.
type Restored struct {
	Key       string
	Value     []byte
	Timestamp string // hlc text form
	Origin    string
	Expires   int64
}

// WriteRestore writes saved keys into the replica database of an empty
// data directory, each with its version (stamp and origin) and expiry, as
// a replica would have stored it. Every restored member gets every key;
// once the members run, anti-entropy and handoff settle which node keeps
// which copy on the ring.
func WriteRestore(dataDir string, keys func(yield func(Restored) error) error) error {
	db, err := store.Open(filepath.Join(dataDir, "eventual"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	b := db.NewBatch()
	err = keys(func(k Restored) error {
		ts, err := hlc.Parse(k.Timestamp)
		if err != nil {
			return fmt.Errorf("eventual: restore %q: %w", k.Key, err)
		}
		r := &record{version: version{stamp: ts, origin: k.Origin}, expires: k.Expires, value: k.Value}
		b.Set(recordKey(k.Key), r.encode())
		if b.Len() > 4<<20 {
			if err := b.Commit(false); err != nil {
				return err
			}
			b = db.NewBatch()
		}
		return nil
	})
	if err == nil {
		err = b.Commit(true)
	} else {
		b.Close()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
