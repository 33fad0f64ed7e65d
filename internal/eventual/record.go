package eventual

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/kv"
)

// version orders the versions of one key: by stamp, then by the origin's
// name. A replica keeps only the greatest version it has seen.
type version struct {
	stamp  hlc.Timestamp
	origin string
}

func (v version) compare(w version) int {
	return hlc.Compare(hlc.Stamp{TS: v.stamp, Node: v.origin}, hlc.Stamp{TS: w.stamp, Node: w.origin})
}

// record is one version of a key as a replica keeps it.
type record struct {
	version
	expires   int64 // unix ns; 0: never
	tombstone bool
	value     []byte
}

// live reports whether r is a value that has not expired at now (unix ns).
func (r *record) live(now int64) bool {
	return r != nil && !r.tombstone && (r.expires == 0 || r.expires > now)
}

// kv returns the record as the service returns it.
func (r *record) kv(key string) *kv.Record {
	return &kv.Record{Key: key, Value: r.value, Expires: r.expires,
		Timestamp: hlc.Format(r.stamp), Origin: r.origin}
}

// The record format, after the key 0x01 key:
//
//	format (1) | stamp (8, big endian) | flags (1) | expires (8) |
//	origin length (uvarint) | origin | value
const (
	recordFormat   = 1
	flagTombstone  = 1
	recordFixedLen = 1 + 8 + 1 + 8
)

var errBadRecord = errors.New("eventual: malformed record")

func (r *record) appendTo(b []byte) []byte {
	b = append(b, recordFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(r.stamp))
	var flags byte
	if r.tombstone {
		flags |= flagTombstone
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint64(b, uint64(r.expires))
	b = binary.AppendUvarint(b, uint64(len(r.origin)))
	b = append(b, r.origin...)
	return append(b, r.value...)
}

func (r *record) encode() []byte {
	return r.appendTo(make([]byte, 0, recordFixedLen+2+len(r.origin)+len(r.value)))
}

// decodeRecord parses a stored or received record; the value aliases b.
func decodeRecord(b []byte) (*record, error) {
	if len(b) < recordFixedLen || b[0] != recordFormat {
		return nil, errBadRecord
	}
	r := &record{}
	r.stamp = hlc.Timestamp(binary.BigEndian.Uint64(b[1:9]))
	r.tombstone = b[9]&flagTombstone != 0
	r.expires = int64(binary.BigEndian.Uint64(b[10:18]))
	n, k := binary.Uvarint(b[18:])
	if k <= 0 || n > uint64(len(b)-18-k) {
		return nil, errBadRecord
	}
	o := 18 + k
	r.origin = string(b[o : o+int(n)])
	r.value = b[o+int(n):]
	return r, nil
}

// A wire codec for the engine's RPC messages: length-prefixed byte strings
// and uvarints appended to a buffer, read back by a reader that fails on the
// first malformed field and keeps failing.

type writer struct{ b []byte }

func (w *writer) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *writer) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *writer) byte1(c byte)     { w.b = append(w.b, c) }
func (w *writer) u64(v uint64)     { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *writer) rec(r *record) { // in place: a large value is copied once
	w.uvarint(uint64(r.encodedLen()))
	w.b = r.appendTo(w.b)
}

// encodedLen is the size of r's encoding.
func (r *record) encodedLen() int {
	var v [binary.MaxVarintLen64]byte
	return recordFixedLen + binary.PutUvarint(v[:], uint64(len(r.origin))) + len(r.origin) + len(r.value)
}

// wireLen is about what r adds to a message beside a key: its encoding and
// a few length prefixes.
func (r *record) wireLen() int { return r.encodedLen() + 3*binary.MaxVarintLen64 + 1 }

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed message", errBadRecord)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a length that must not exceed what is left of the message
// divided by min, the smallest size of one element, so a hostile count
// cannot make the reader allocate.
func (r *reader) count(min int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/max(min, 1)) {
		r.fail()
		return 0
	}
	return int(n)
}

func (r *reader) bytes() []byte {
	n := r.count(1)
	if r.err != nil {
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) str() string { return string(r.bytes()) }

func (r *reader) byte1() byte {
	if r.err != nil || len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) rec() *record {
	b := r.bytes()
	if r.err != nil {
		return nil
	}
	rec, err := decodeRecord(b)
	if err != nil {
		r.err = err
		return nil
	}
	return rec
}

// unixNano is the engine's clock for expiry decisions.
func unixNano() int64 { return time.Now().UnixNano() }
