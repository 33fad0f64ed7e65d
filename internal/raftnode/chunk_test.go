package raftnode

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/store"
	"github.com/hashicorp/raft"
)

// recorder is a StateMachine that keeps every command it applies.
type recorder struct{ got []Entry }

func (r *recorder) Apply(_ *store.Batch, entries []Entry) [][]byte {
	out := make([][]byte, len(entries))
	for i, e := range entries {
		r.got = append(r.got, Entry{Index: e.Index, Time: e.Time, Data: append([]byte(nil), e.Data...)})
		out[i] = []byte("ok")
	}
	return out
}

func (r *recorder) Restored() error { return nil }

// TestChunkedCommand: a command over maxEntryData is cut into chunks that
// the FSM assembles and applies once, at the last chunk's index, whatever
// batches the chunks arrive in and whatever entries come between them; the
// chunks are gone afterwards, and a new term drops an unfinished command's.
func TestChunkedCommand(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "state"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rec := &recorder{}
	f, err := newFSM(db, rec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := make([]byte, 3*chunkPayload+1234)
	for i := range cmd {
		cmd[i] = byte(rand.Uint32())
	}
	now := time.Now()
	frames := chunkFrames(now, cmd)
	if len(frames) != 4 {
		t.Fatalf("%d chunks", len(frames))
	}
	var logs []*raft.Log
	idx := uint64(0)
	add := func(data []byte) {
		idx++
		logs = append(logs, &raft.Log{Index: idx, Type: raft.LogCommand, Data: data})
	}
	add(frames[0])
	add(frame(kindCommand, now, []byte("small")))
	add(frames[1])
	add(frames[2])
	add(frames[3])
	for i, l := range logs {
		if len(l.Data) > maxEntryData {
			t.Fatalf("entry %d is %d bytes", i, len(l.Data))
		}
	}
	// Three batches: the chunks are read back from the database and from
	// the batch being built.
	out := f.ApplyBatch(logs[:2])
	out = append(out, f.ApplyBatch(logs[2:4])...)
	out = append(out, f.ApplyBatch(logs[4:])...)
	if len(rec.got) != 2 || string(rec.got[0].Data) != "small" || !bytes.Equal(rec.got[1].Data, cmd) || rec.got[1].Index != 5 {
		t.Fatalf("applied %d commands", len(rec.got))
	}
	if string(out[4].([]byte)) != "ok" || out[0] != nil {
		t.Fatalf("answers %v", out)
	}
	left := 0
	_ = db.Scan(chunkPrefix, store.PrefixEnd(chunkPrefix), func(k, v []byte) bool { left++; return true })
	if left != 0 {
		t.Fatalf("%d chunks left after the command applied", left)
	}
	// An unfinished command's chunks go at the next term's start.
	orphan := chunkFrames(now, cmd)
	f.ApplyBatch([]*raft.Log{{Index: 6, Type: raft.LogCommand, Data: orphan[0]}})
	f.ApplyBatch([]*raft.Log{{Index: 7, Type: raft.LogCommand, Data: frame(kindTermStart, now, nil)}})
	_ = db.Scan(chunkPrefix, store.PrefixEnd(chunkPrefix), func(k, v []byte) bool { left++; return true })
	if left != 0 {
		t.Fatalf("%d chunks left after a new term started", left)
	}
	// Its last chunk, were it to come, finds chunks missing: an error, not
	// a command cut short.
	out = f.ApplyBatch([]*raft.Log{{Index: 8, Type: raft.LogCommand, Data: orphan[3]}})
	if err, ok := out[0].(error); !ok || len(rec.got) != 2 {
		t.Fatalf("a last chunk without the others: %v, %d commands", err, len(rec.got))
	}
}
