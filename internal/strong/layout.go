package strong

import (
	"encoding/binary"
	"errors"

	"github.com/cairnkv/cairn/kv"
)

// State database layout (every key starts with a byte >= 0x01; 0x00 belongs to raftnode):
//
//	0x01 key                 record
//	0x02 be64(expires) key   TTL index entry (empty value)
//	0x03 "rev"               cluster revision (be64)
//	0x04 name                member metadata (JSON)
//	0x05 "u" name            user (JSON auth.User)
//	0x05 "r"                 ACL rules (JSON []auth.Rule)
//	0x05 "v"                 auth revision: log index of the last auth change (be64)
//	0x06 prefix              keyspace policy (JSON keyspace.Policy)
//	0x07                     watch history: oldest revision kept (be64)
//	0x07 be64(revision)      watch history: the events of the command of that revision
//
// Records (0x01, 0x02, 0x03) are the data; 0x04 to 0x06 are the control plane;
// 0x07 is the watch history (history.go), local to each replica's database
// and outside the digest, though every replica writes the same entries.
const (
	prefixData     byte = 0x01
	prefixTTL      byte = 0x02
	prefixMeta     byte = 0x03
	prefixMember   byte = 0x04
	prefixAuth     byte = 0x05
	prefixKeyspace byte = 0x06
	prefixHistory  byte = 0x07
)

var (
	authRulesKey = []byte{prefixAuth, 'r'}
	authRevKey   = []byte{prefixAuth, 'v'}
)

func authUserKey(name string) []byte { return append([]byte{prefixAuth, 'u'}, name...) }

var historyOldestKey = []byte{prefixHistory}

// historyKey is the key of the history entry of revision rev; -1 gives the
// end of the history's range.
func historyKey(rev int64) []byte {
	k := make([]byte, 9)
	k[0] = prefixHistory
	binary.BigEndian.PutUint64(k[1:], uint64(rev))
	return k
}

var revKey = []byte{prefixMeta, 'r', 'e', 'v'}

var errCorruptRecord = errors.New("strong: corrupt record")

func dataKey(key string) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixData
	copy(k[1:], key)
	return k
}

func ttlKey(expires int64, key string) []byte {
	k := make([]byte, 9+len(key))
	k[0] = prefixTTL
	binary.BigEndian.PutUint64(k[1:], uint64(expires))
	copy(k[9:], key)
	return k
}

func memberKey(name string) []byte { return append([]byte{prefixMember}, name...) }

func keyspaceKey(prefix string) []byte { return append([]byte{prefixKeyspace}, prefix...) }

// Record layout: format byte | create uvarint | mod uvarint | version uvarint |
// expires varint | hlc uvarint | flags byte | len(origin) uvarint | origin | value.
// The hlc, flags and origin fields are always zero here: they were reserved
// for eventual keyspaces, whose engine keeps its own records; format 1 keeps
// them so databases written before stay readable.
const recordFormat = 1

func encodeRecord(r *kv.Record) []byte { return appendRecord(make([]byte, 0, recordLen(r)), r) }

// appendRecord appends r's encoding to buf.
func appendRecord(buf []byte, r *kv.Record) []byte {
	buf = append(buf, recordFormat)
	buf = binary.AppendUvarint(buf, uint64(r.CreateRevision))
	buf = binary.AppendUvarint(buf, uint64(r.ModRevision))
	buf = binary.AppendUvarint(buf, uint64(r.Version))
	buf = binary.AppendVarint(buf, r.Expires)
	buf = append(buf, 0, 0, 0) // hlc, flags, len(origin)
	return append(buf, r.Value...)
}

// recordLen is the exact length of r's encoding (what a batch's SetBuffer
// needs to take it in place).
func recordLen(r *kv.Record) int {
	return 4 + uvarintLen(uint64(r.CreateRevision)) + uvarintLen(uint64(r.ModRevision)) +
		uvarintLen(uint64(r.Version)) + varintLen(r.Expires) + len(r.Value)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// varintLen is the length of binary.AppendVarint's zig-zag encoding.
func varintLen(v int64) int {
	ux := uint64(v) << 1
	if v < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

func decodeRecord(key string, b []byte) (*kv.Record, error) {
	if len(b) < 1 || b[0] != recordFormat {
		return nil, errCorruptRecord
	}
	r := &kv.Record{Key: key}
	p := 1
	u := func() uint64 {
		if p < 0 {
			return 0
		}
		v, n := binary.Uvarint(b[p:])
		if n <= 0 {
			p = -1
			return 0
		}
		p += n
		return v
	}
	r.CreateRevision = int64(u())
	r.ModRevision = int64(u())
	r.Version = int64(u())
	if p < 0 {
		return nil, errCorruptRecord
	}
	exp, n := binary.Varint(b[p:])
	if n <= 0 {
		return nil, errCorruptRecord
	}
	p += n
	r.Expires = exp
	u() // hlc
	if p < 0 || p >= len(b) {
		return nil, errCorruptRecord
	}
	p++ // flags
	ol := u()
	if p < 0 || uint64(len(b)-p) < ol {
		return nil, errCorruptRecord
	}
	p += int(ol) // origin
	r.Value = b[p:]
	return r, nil
}
