package kv

import (
	"encoding/binary"
	"errors"
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
const (
	prefixData   byte = 0x01
	prefixTTL    byte = 0x02
	prefixMeta   byte = 0x03
	prefixMember byte = 0x04
	prefixAuth   byte = 0x05
)

var (
	authRulesKey = []byte{prefixAuth, 'r'}
	authRevKey   = []byte{prefixAuth, 'v'}
)

func authUserKey(name string) []byte { return append([]byte{prefixAuth, 'u'}, name...) }

var revKey = []byte{prefixMeta, 'r', 'e', 'v'}

var errCorruptRecord = errors.New("kv: corrupt record")

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

// Record layout: format byte | create uvarint | mod uvarint | version uvarint |
// expires varint | hlc uvarint | flags byte | len(origin) uvarint | origin | value.
const recordFormat = 1

const flagTombstone = 1

func encodeRecord(r *Record) []byte {
	buf := make([]byte, 0, 32+len(r.Origin)+len(r.Value))
	buf = append(buf, recordFormat)
	buf = binary.AppendUvarint(buf, uint64(r.CreateRevision))
	buf = binary.AppendUvarint(buf, uint64(r.ModRevision))
	buf = binary.AppendUvarint(buf, uint64(r.Version))
	buf = binary.AppendVarint(buf, r.Expires)
	buf = binary.AppendUvarint(buf, r.HLC)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(len(r.Origin)))
	buf = append(buf, r.Origin...)
	return append(buf, r.Value...)
}

func decodeRecord(key string, b []byte) (*Record, error) {
	if len(b) < 1 || b[0] != recordFormat {
		return nil, errCorruptRecord
	}
	r := &Record{Key: key}
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
	r.HLC = u()
	if p < 0 || p >= len(b) {
		return nil, errCorruptRecord
	}
	r.Tombstone = b[p]&flagTombstone != 0
	p++
	ol := u()
	if p < 0 || uint64(len(b)-p) < ol {
		return nil, errCorruptRecord
	}
	r.Origin = string(b[p : p+int(ol)])
	p += int(ol)
	r.Value = b[p:]
	return r, nil
}
