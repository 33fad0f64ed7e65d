package raftnode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cairnkv/cairn/internal/store"
)

// Large commands travel as chunks. hashicorp/raft's NetworkTransport (the
// transport before transport.go) decoded an entry's data with msgpack,
// which reads a byte string longer than 256 KiB into a buffer grown 256 KiB
// at a time, each step a new allocation and a copy: a 50 MiB entry cost
// every follower 5 GB of allocation (measured) and the GC work kept it from
// answering heartbeats. Chunks also bound an AppendEntries, and so the
// transport's largest frame (wire.go, maxFrame). So the leader cuts a
// command larger than maxEntryData into chunks of at most that size, each
// its own entry (kindChunk | time | id u64 | seq u32 | count u32 | size
// u64 | part), proposed back to back. At the last chunk the FSM adapter
// assembles the command in one buffer of its size and applies it at that
// index. Chunks whose last chunk is not in the same applied batch are stored
// in the state database in the batch that applies them (0x00 "chunk" id
// seq), so they survive restarts and travel in snapshots with the applied
// index they belong to, and are deleted with the command's last chunk.
// A leader that loses office midway leaves chunks no last chunk will come
// for: the next leader's term-start entry (after everything of the earlier
// term that will ever commit) drops every chunk stored before it.
const (
	// maxEntryData bounds an entry's data: msgpack allocates up to 256 KiB
	// at once for a byte string.
	maxEntryData = 256 << 10
	chunkHeader  = 9 + 8 + 4 + 4 + 8
	chunkPayload = maxEntryData - chunkHeader
)

var chunkPrefix = []byte{0x00, 'c', 'h', 'u', 'n', 'k'}

var errChunks = errors.New("raftnode: a chunked command is missing chunks")

func chunkKey(id uint64, seq uint32) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), chunkPrefix...), id)
	return binary.BigEndian.AppendUint32(k, seq)
}

// chunkFrames cuts a command of more than maxEntryData into entries.
func chunkFrames(t time.Time, data []byte) [][]byte {
	id := rand.Uint64()
	count := (len(data) + chunkPayload - 1) / chunkPayload
	out := make([][]byte, 0, count)
	for seq := 0; seq < count; seq++ {
		part := data[seq*chunkPayload : min((seq+1)*chunkPayload, len(data))]
		b := make([]byte, chunkHeader, chunkHeader+len(part))
		b[0] = kindChunk
		binary.BigEndian.PutUint64(b[1:], uint64(t.UnixNano()))
		binary.BigEndian.PutUint64(b[9:], id)
		binary.BigEndian.PutUint32(b[17:], uint32(seq))
		binary.BigEndian.PutUint32(b[21:], uint32(count))
		binary.BigEndian.PutUint64(b[25:], uint64(len(data)))
		out = append(out, append(b, part...))
	}
	return out
}

// chunk is one decoded chunk entry (after unframe: id onwards).
type chunk struct {
	id         uint64
	seq, count uint32
	size       uint64
	part       []byte
	last       bool
}

func parseChunk(data []byte) (chunk, error) {
	if len(data) < chunkHeader-9 {
		return chunk{}, errors.New("raftnode: malformed chunk entry")
	}
	c := chunk{id: binary.BigEndian.Uint64(data), seq: binary.BigEndian.Uint32(data[8:]),
		count: binary.BigEndian.Uint32(data[12:]), size: binary.BigEndian.Uint64(data[16:]), part: data[24:]}
	if c.count == 0 || c.seq >= c.count || c.size > uint64(c.count)*chunkPayload {
		return chunk{}, fmt.Errorf("raftnode: malformed chunk entry (chunk %d of %d, %d bytes)", c.seq, c.count, c.size)
	}
	c.last = c.seq == c.count-1
	return c, nil
}

// chunks assembles the chunked commands of one applied batch.
type chunks struct {
	db *store.DB
	// inBatch holds the parts stored in the batch being built, which reads
	// of the database do not see yet, by key.
	inBatch map[string][]byte
}

// add takes c; at the last chunk it returns the whole command, deleting
// the command's chunks in b. Chunks whose command does not complete in this
// batch are stored by persist.
func (cs *chunks) add(b *store.Batch, c chunk) ([]byte, error) {
	k := chunkKey(c.id, c.seq)
	if cs.inBatch == nil {
		cs.inBatch = map[string][]byte{}
	}
	cs.inBatch[string(k)] = c.part
	if !c.last {
		return nil, nil
	}
	lo := chunkKey(c.id, 0)
	hi := binary.BigEndian.AppendUint64(append([]byte(nil), chunkPrefix...), c.id+1)
	if c.id == ^uint64(0) {
		hi = store.PrefixEnd(chunkPrefix)
	}
	defer b.DeleteRange(lo, hi)
	out := make([]byte, c.size)
	got := make([]bool, c.count)
	put := func(seq uint32, part []byte) {
		if seq < c.count && int(seq)*chunkPayload+len(part) <= len(out) && !got[seq] {
			copy(out[int(seq)*chunkPayload:], part)
			got[seq] = true
		}
	}
	for seq := range c.count {
		if p, ok := cs.inBatch[string(chunkKey(c.id, seq))]; ok {
			put(seq, p)
			delete(cs.inBatch, string(chunkKey(c.id, seq)))
		}
	}
	err := cs.db.Scan(lo, hi, func(k, v []byte) bool {
		put(binary.BigEndian.Uint32(k[len(k)-4:]), v)
		return true
	})
	if err != nil {
		return nil, err
	}
	for seq, ok := range got {
		if !ok {
			return nil, fmt.Errorf("%w: chunk %d of %d", errChunks, seq, c.count)
		}
	}
	return out, nil
}

// persist stores in b the chunks of commands that did not complete in this
// batch: they are applied with the entries' applied index, so a restart or
// a snapshot keeps them until their last chunk comes. A command whose
// chunks all came in one batch never writes them.
func (cs *chunks) persist(b *store.Batch) {
	for k, part := range cs.inBatch {
		b.Set([]byte(k), part)
	}
	clear(cs.inBatch)
}

// dropAll removes every chunk stored so far (a new term started: no last
// chunk of an earlier term is still to come).
func (cs *chunks) dropAll(b *store.Batch) {
	b.DeleteRange(chunkPrefix, store.PrefixEnd(chunkPrefix))
	clear(cs.inBatch)
}
