// Package snapfile is cairn's snapshot file: the whole state of a cluster
// in one stream, as `cairn snapshot save` writes it and `cairn snapshot
// restore` reads it (see docs/BACKUP.md).
//
// A snapshot file is
//
//	magic "CAIRNBK1"
//	entries, each a tag byte and its fields:
//	  'S' uvarint len | key | uvarint len | value     a pair of the strong state database
//	  'E' uvarint len | key | uvarint len | value |   an eventual key's live version
//	      uvarint len | timestamp | uvarint len | origin | varint expires (unix ns, 0: never)
//	'Z'
//	u32 len | trailer JSON (Info)
//	sha256 of every byte before it (32 bytes)
//
// The strong pairs are a consistent snapshot of one member's state
// database after a linearizable barrier: every key, revision, user, rule,
// keyspace policy and the watch history, at one applied index. The
// eventual keys are each eventual keyspace read on a read quorum, key by
// key, while the strong part is written: each key as its newest version
// then, with its hybrid logical clock stamp. A reader checks the length of
// every field and the checksum, so a truncated or corrupt file is refused
// before anything is restored from it.
package snapfile

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Magic starts every snapshot file.
var Magic = [8]byte{'C', 'A', 'I', 'R', 'N', 'B', 'K', '1'}

// ErrCorrupt reports a snapshot file that is truncated, damaged or not one.
var ErrCorrupt = errors.New("snapshot: not a complete cairn snapshot file")

// maxField bounds one key or value read from a file (a value is at most
// 64 MiB; the margin is for the encodings around it).
const maxField = 128 << 20

// Info describes a snapshot: what its trailer says, and what a reader
// found (Bytes, SHA256).
type Info struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Node is the member that wrote it, Version its cairn version.
	Node    string `json:"node"`
	Version string `json:"version"`
	// ClusterID is the saved cluster's ID (a restore gives the new cluster
	// another).
	ClusterID string `json:"cluster_id,omitempty"`
	// Revision and Applied are the strong state's revision and the Raft
	// index it was taken at.
	Revision int64  `json:"revision"`
	Applied  uint64 `json:"applied"`
	// StrongPairs counts the strong entries, StrongKeys the keys among
	// them; EventualKeys the eventual keys.
	StrongPairs  int64 `json:"strong_pairs"`
	StrongKeys   int64 `json:"strong_keys"`
	EventualKeys int64 `json:"eventual_keys"`
	Keyspaces    int   `json:"keyspaces"`
	Users        int   `json:"users"`
	// Bytes and SHA256 are the file's size and checksum (set by readers).
	Bytes  int64  `json:"bytes,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
}

// EventualRecord is one eventual key in a snapshot.
type EventualRecord struct {
	Key       string
	Value     []byte
	Timestamp string
	Origin    string
	Expires   int64
}

// Writer writes a snapshot file.
type Writer struct {
	out io.Writer
	w   *bufio.Writer
	h   hash.Hash
	n   int64
	err error
	tmp [binary.MaxVarintLen64]byte
}

// NewWriter starts a snapshot file on w.
func NewWriter(w io.Writer) *Writer {
	h := sha256.New()
	sw := &Writer{out: w, w: bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20), h: h}
	sw.write(Magic[:])
	return sw
}

func (w *Writer) write(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
		w.n += int64(len(b))
	}
}

func (w *Writer) field(b []byte) {
	n := binary.PutUvarint(w.tmp[:], uint64(len(b)))
	w.write(w.tmp[:n])
	w.write(b)
}

// Strong adds a pair of the strong state.
func (w *Writer) Strong(k, v []byte) error {
	w.write([]byte{'S'})
	w.field(k)
	w.field(v)
	return w.err
}

// Eventual adds an eventual key.
func (w *Writer) Eventual(r EventualRecord) error {
	w.write([]byte{'E'})
	w.field([]byte(r.Key))
	w.field(r.Value)
	w.field([]byte(r.Timestamp))
	w.field([]byte(r.Origin))
	n := binary.PutVarint(w.tmp[:], r.Expires)
	w.write(w.tmp[:n])
	return w.err
}

// Written is how many bytes the writer has taken so far.
func (w *Writer) Written() int64 { return w.n }

// Close ends the file with info and the checksum.
func (w *Writer) Close(info Info) error {
	w.write([]byte{'Z'})
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	w.write(l[:])
	w.write(b)
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err != nil {
		return w.err
	}
	// The checksum is of everything before it: the hash has seen it all.
	_, err = w.out.Write(w.h.Sum(nil))
	return err
}

// Read reads a snapshot file from r, calling strong and eventual (either
// may be nil) for its entries in order, and returns its Info once the
// checksum matched. An error from a callback stops the read. Callers that
// must not act on a damaged file call Verify first: Read only knows the
// file is whole at its end.
func Read(r io.Reader, strong func(k, v []byte) error, eventual func(EventualRecord) error) (Info, error) {
	raw := bufio.NewReaderSize(r, 1<<20)
	br := &hashingReader{r: raw, h: sha256.New()}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s (at byte %d)", ErrCorrupt, fmt.Sprintf(format, args...), br.n)
	}
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || magic != Magic {
		return Info{}, fmt.Errorf("%w: no snapshot header (not a cairn snapshot file)", ErrCorrupt)
	}
	field := func(what string) ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, corrupt("truncated in a %s length", what)
		}
		if n > maxField {
			return nil, corrupt("a %s of %d bytes", what, n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, corrupt("truncated in a %s", what)
		}
		return b, nil
	}
	var strongN, eventualN int64
	for done := false; !done; {
		tag, err := br.ReadByte()
		if err != nil {
			return Info{}, corrupt("truncated: the file ends before its trailer")
		}
		switch tag {
		case 'S':
			k, err := field("key")
			if err != nil {
				return Info{}, err
			}
			v, err := field("value")
			if err != nil {
				return Info{}, err
			}
			strongN++
			if strong != nil {
				if err := strong(k, v); err != nil {
					return Info{}, err
				}
			}
		case 'E':
			var rec EventualRecord
			var parts [4][]byte
			for i, what := range []string{"key", "value", "timestamp", "origin"} {
				if parts[i], err = field(what); err != nil {
					return Info{}, err
				}
			}
			rec.Key, rec.Value, rec.Timestamp, rec.Origin = string(parts[0]), parts[1], string(parts[2]), string(parts[3])
			if rec.Expires, err = binary.ReadVarint(br); err != nil {
				return Info{}, corrupt("truncated in an expiry")
			}
			eventualN++
			if eventual != nil {
				if err := eventual(rec); err != nil {
					return Info{}, err
				}
			}
		case 'Z':
			done = true
		default:
			return Info{}, corrupt("unknown entry tag %#x", tag)
		}
	}
	var l [4]byte
	if _, err := io.ReadFull(br, l[:]); err != nil {
		return Info{}, corrupt("truncated in the trailer")
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > 1<<20 {
		return Info{}, corrupt("a trailer of %d bytes", n)
	}
	tb := make([]byte, n)
	if _, err := io.ReadFull(br, tb); err != nil {
		return Info{}, corrupt("truncated in the trailer")
	}
	var want, sum [32]byte
	br.h.Sum(want[:0])
	if _, err := io.ReadFull(raw, sum[:]); err != nil {
		return Info{}, corrupt("truncated: no checksum")
	}
	if sum != want {
		return Info{}, corrupt("checksum mismatch: the file is damaged")
	}
	if _, err := raw.ReadByte(); !errors.Is(err, io.EOF) {
		return Info{}, corrupt("bytes after the checksum")
	}
	return finish(tb, sum, strongN, eventualN, br.n+32)
}

func finish(trailer []byte, sum [32]byte, strongN, eventualN, size int64) (Info, error) {
	var info Info
	if err := json.Unmarshal(trailer, &info); err != nil {
		return Info{}, fmt.Errorf("%w: the trailer is not JSON: %w", ErrCorrupt, err)
	}
	if info.StrongPairs != strongN || info.EventualKeys != eventualN {
		return Info{}, fmt.Errorf("%w: the trailer counts %d strong and %d eventual entries, the file holds %d and %d",
			ErrCorrupt, info.StrongPairs, info.EventualKeys, strongN, eventualN)
	}
	info.Bytes, info.SHA256 = size, hex.EncodeToString(sum[:])
	return info, nil
}

// hashingReader hashes and counts what the parser consumes.
type hashingReader struct {
	r *bufio.Reader
	h hash.Hash
	n int64
}

func (c *hashingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

func (c *hashingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.h.Write([]byte{b})
		c.n++
	}
	return b, err
}

// Verify reads a whole snapshot file and returns its Info, or why it is
// not a complete one.
func Verify(r io.Reader) (Info, error) { return Read(r, nil, nil) }
