package strong

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Commands and results travel through the Raft log and internal RPC in a
// compact binary form (values are not base64-expanded, and nothing is
// reflected at run time). Every field is length-prefixed; decoding checks
// every length against what is left, so a corrupt entry is an error, never a
// panic or a huge allocation.

// command is one log entry of the strong engine. Data commands (txn, batch,
// expire) change records; control commands (member, auth, keyspace) change
// the replicated control plane every node agrees on.
type command struct {
	Type     string
	Txn      *kv.Txn
	Batch    []kv.Txn
	Expire   []expireItem
	Member   *kv.Member
	Name     string // member_del: the member; keyspace_del: the prefix
	Auth     *kv.AuthChange
	Keyspace *keyspace.Policy
	// AuthChecked says the proposer checked access against the auth state
	// of revision AuthRev; the machine refuses the command if the auth state
	// changed since (ErrAuthChanged), so a write is never applied on the
	// strength of a permission revoked before it commits.
	AuthChecked bool
	AuthRev     uint64
	// Revision is mirror_cursor's: how far the prefix Name is mirrored.
	Revision int64
}

const (
	cmdTxn         = "txn"
	cmdBatch       = "batch"
	cmdExpire      = "expire"
	cmdMemberSet   = "member_set"
	cmdMemberDel   = "member_del"
	cmdAuth        = "auth"
	cmdKeyspaceSet = "keyspace_set"
	cmdKeyspaceDel = "keyspace_del"
)

// expireItem is a key the leader saw expired, with the revision it saw.
type expireItem struct {
	Key         string
	ModRevision int64
}

// result is the machine's answer to one command.
type result struct {
	Txn *kv.TxnResult
	// Batch holds one encoded result per txn of a batch command.
	Batch [][]byte
	// Code and Msg carry an error: its kv.Code and its text.
	Code kv.Code
	Msg  string
	// Index is the log index of a control command that changed what every
	// node must agree on (a keyspace policy), so its proposer can wait until
	// every member has applied it.
	Index uint64
}

func errResult(err error) []byte {
	return encodeResult(result{Code: kv.CodeOf(err), Msg: err.Error()})
}

func decodeResult(b []byte) (*result, error) {
	r, err := decodeResultBytes(b)
	if err != nil {
		return nil, fmt.Errorf("strong: bad result from the state machine: %w", err)
	}
	if r.Code != kv.CodeOK {
		return nil, kv.ErrorWithCode(r.Code, r.Msg)
	}
	return &r, nil
}

var errCorruptCommand = errors.New("strong: corrupt command")

const (
	cmdCodeTxn byte = iota + 1
	cmdCodeBatch
	cmdCodeExpire
	cmdCodeMemberSet
	cmdCodeMemberDel
	cmdCodeAuth
	cmdCodeKeyspaceSet
	cmdCodeKeyspaceDel
	cmdCodeClusterID
	cmdCodeMirrorCursor
)

var opCodes = []kv.OpType{kv.OpGet, kv.OpPut, kv.OpDelete, kv.OpDeletePrefix, kv.OpPatch, kv.OpIncr, kv.OpIncrFloat, kv.OpAppend, kv.OpExpire, kv.OpRename}

var targetCodes = []kv.CompareTarget{kv.TargetValue, kv.TargetVersion, kv.TargetCreateRevision, kv.TargetModRevision, kv.TargetExists}

var cmpOpCodes = []string{"=", "!=", "<", ">"}

// opCode is op's code in opCodes. Not indexOf: its error formats the
// argument, which makes every result encodeResult takes escape to the heap.
func opCode(op kv.OpType) (byte, bool) {
	for i, v := range opCodes {
		if v == op {
			return byte(i), true
		}
	}
	return 0, false
}

func indexOf[T comparable](xs []T, x T) (byte, error) {
	for i, v := range xs {
		if v == x {
			return byte(i), nil
		}
	}
	return 0, fmt.Errorf("%w: %v", kv.ErrInvalidArgument, x)
}

type enc struct{ b []byte }

func (e *enc) byte(v byte)      { e.b = append(e.b, v) }
func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorruptCommand
	}
}

func (d *dec) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) bool() bool { return d.byte() != 0 }

// count reads a collection length, refusing lengths the rest of the input
// cannot hold (each element takes at least min bytes).
func (d *dec) count(min int) int {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// txnBytes is about the size of t's encoding (at least it): what a command
// carrying t adds to a Raft entry.
func txnBytes(t *kv.Txn) int {
	if t == nil {
		return 0
	}
	n := 3 * binary.MaxVarintLen64
	for _, c := range t.Compare {
		n += len(c.Key) + len(c.Value) + 3 + 3*binary.MaxVarintLen64
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		for _, op := range ops {
			n += len(op.Key) + len(op.Value) + 2 + 4*binary.MaxVarintLen64
		}
	}
	return n
}

func encodeCommand(c command) ([]byte, error) {
	// Sized up front: a command carrying a large value is allocated once,
	// not grown by doubling.
	n := 64 + txnBytes(c.Txn)
	for i := range c.Batch {
		n += txnBytes(&c.Batch[i])
	}
	e := &enc{b: make([]byte, 0, n)}
	switch c.Type {
	case cmdTxn:
		e.byte(cmdCodeTxn)
		if err := e.txn(c.Txn); err != nil {
			return nil, err
		}
		e.authRev(c)
	case cmdBatch:
		e.byte(cmdCodeBatch)
		e.uvarint(uint64(len(c.Batch)))
		for i := range c.Batch {
			if err := e.txn(&c.Batch[i]); err != nil {
				return nil, err
			}
		}
		e.authRev(c)
	case cmdExpire:
		e.byte(cmdCodeExpire)
		e.uvarint(uint64(len(c.Expire)))
		for _, it := range c.Expire {
			e.str(it.Key)
			e.varint(it.ModRevision)
		}
	case cmdMemberSet:
		e.byte(cmdCodeMemberSet)
		b, err := json.Marshal(c.Member)
		if err != nil {
			return nil, err
		}
		e.bytes(b)
	case cmdMemberDel:
		e.byte(cmdCodeMemberDel)
		e.str(c.Name)
	case cmdAuth:
		e.byte(cmdCodeAuth)
		b, err := json.Marshal(c.Auth)
		if err != nil {
			return nil, err
		}
		e.bytes(b)
	case cmdKeyspaceSet:
		e.byte(cmdCodeKeyspaceSet)
		b, err := json.Marshal(c.Keyspace)
		if err != nil {
			return nil, err
		}
		e.bytes(b)
	case cmdKeyspaceDel:
		e.byte(cmdCodeKeyspaceDel)
		e.str(c.Name)
	case cmdClusterID:
		e.byte(cmdCodeClusterID)
		e.str(c.Name)
	case cmdMirrorCursor:
		e.byte(cmdCodeMirrorCursor)
		e.str(c.Name)
		e.varint(c.Revision)
	default:
		return nil, fmt.Errorf("%w: command %q", kv.ErrInvalidArgument, c.Type)
	}
	return e.b, nil
}

// authRev appends, for a command whose access was checked, the revision of
// the auth state it was checked against (see Machine.Apply).
func (e *enc) authRev(c command) {
	if c.AuthChecked {
		e.byte(1)
		e.uvarint(c.AuthRev)
	}
}

func (d *dec) authRev(c *command) {
	if d.err == nil && len(d.b) > 0 {
		if d.byte() != 1 {
			d.fail()
			return
		}
		c.AuthChecked, c.AuthRev = true, d.uvarint()
	}
}

func (e *enc) txn(t *kv.Txn) error {
	if t == nil {
		return fmt.Errorf("%w: nil txn", kv.ErrInvalidArgument)
	}
	e.uvarint(uint64(len(t.Compare)))
	for _, c := range t.Compare {
		tc, err := indexOf(targetCodes, c.Target)
		if err != nil {
			return err
		}
		op := c.Op
		if op == "" {
			op = "="
		}
		oc, err := indexOf(cmpOpCodes, op)
		if err != nil {
			return err
		}
		e.str(c.Key)
		e.byte(tc)
		e.byte(oc)
		e.bytes(c.Value)
		e.varint(c.Number)
		e.bool(c.Exists)
	}
	for _, ops := range [][]kv.Op{t.Success, t.Failure} {
		e.uvarint(uint64(len(ops)))
		for _, op := range ops {
			code, err := indexOf(opCodes, op.Type)
			if err != nil {
				return err
			}
			e.byte(code)
			e.str(op.Key)
			e.bytes(op.Value)
			e.varint(int64(op.TTL))
			e.varint(op.ExpiresAt)
			var flags byte
			if op.KeepTTL {
				flags |= 1
			}
			if op.ReturnPrev {
				flags |= 2
			}
			e.byte(flags)
		}
	}
	return nil
}

func decodeCommand(b []byte) (command, error) {
	d := &dec{b: b}
	var c command
	switch d.byte() {
	case cmdCodeTxn:
		c.Type = cmdTxn
		c.Txn = d.txn()
		d.authRev(&c)
	case cmdCodeBatch:
		c.Type = cmdBatch
		n := d.count(3)
		c.Batch = make([]kv.Txn, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			if t := d.txn(); t != nil {
				c.Batch = append(c.Batch, *t)
			}
		}
		d.authRev(&c)
	case cmdCodeExpire:
		c.Type = cmdExpire
		n := d.count(2)
		for i := 0; i < n && d.err == nil; i++ {
			c.Expire = append(c.Expire, expireItem{Key: d.str(), ModRevision: d.varint()})
		}
	case cmdCodeMemberSet:
		c.Type = cmdMemberSet
		raw := d.bytes()
		if d.err == nil {
			c.Member = &kv.Member{}
			if err := json.Unmarshal(raw, c.Member); err != nil {
				return c, fmt.Errorf("%w: %w", errCorruptCommand, err)
			}
		}
	case cmdCodeMemberDel:
		c.Type = cmdMemberDel
		c.Name = d.str()
	case cmdCodeAuth:
		c.Type = cmdAuth
		raw := d.bytes()
		if d.err == nil {
			c.Auth = &kv.AuthChange{}
			if err := json.Unmarshal(raw, c.Auth); err != nil {
				return c, fmt.Errorf("%w: %w", errCorruptCommand, err)
			}
		}
	case cmdCodeKeyspaceSet:
		c.Type = cmdKeyspaceSet
		raw := d.bytes()
		if d.err == nil {
			c.Keyspace = &keyspace.Policy{}
			if err := json.Unmarshal(raw, c.Keyspace); err != nil {
				return c, fmt.Errorf("%w: %w", errCorruptCommand, err)
			}
		}
	case cmdCodeKeyspaceDel:
		c.Type = cmdKeyspaceDel
		c.Name = d.str()
	case cmdCodeClusterID:
		c.Type = cmdClusterID
		c.Name = d.str()
	case cmdCodeMirrorCursor:
		c.Type = cmdMirrorCursor
		c.Name = d.str()
		c.Revision = d.varint()
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return c, d.err
}

// txnBox is a txn with room for one op: the commonest txn, one put, is
// decoded in one allocation instead of two.
type txnBox struct {
	t  kv.Txn
	op [1]kv.Op
}

func (d *dec) txn() *kv.Txn {
	box := &txnBox{}
	t, boxed := &box.t, false
	n := d.count(6)
	for i := 0; i < n && d.err == nil; i++ {
		var c kv.Compare
		c.Key = d.str()
		tc, oc := d.byte(), d.byte()
		if int(tc) >= len(targetCodes) || int(oc) >= len(cmpOpCodes) {
			d.fail()
			return nil
		}
		c.Target, c.Op = targetCodes[tc], cmpOpCodes[oc]
		c.Value = d.bytes()
		c.Number = d.varint()
		c.Exists = d.bool()
		t.Compare = append(t.Compare, c)
	}
	for _, branch := range []*[]kv.Op{&t.Success, &t.Failure} {
		n := d.count(6)
		if n == 1 && !boxed {
			*branch, boxed = box.op[:0:1], true
		}
		for i := 0; i < n && d.err == nil; i++ {
			code := d.byte()
			if int(code) >= len(opCodes) {
				d.fail()
				return nil
			}
			op := kv.Op{Type: opCodes[code], Key: d.str(), Value: d.bytes()}
			op.TTL = time.Duration(d.varint())
			op.ExpiresAt = d.varint()
			flags := d.byte()
			op.KeepTTL, op.ReturnPrev = flags&1 != 0, flags&2 != 0
			*branch = append(*branch, op)
		}
	}
	if d.err != nil {
		return nil
	}
	return t
}

// Results: status byte (0 ok, 1 error); an error carries code and message;
// an ok result carries an optional txn result and an optional batch.

func encodeResult(r result) []byte {
	n := 32
	if r.Txn != nil {
		// Sized up front (a put's result is about 40 bytes): one allocation.
		for _, or := range r.Txn.Results {
			n += 2*len(or.Key) + 64 + recordValueLen(or.Record) + recordValueLen(or.Prev)
		}
	}
	for _, b := range r.Batch {
		n += len(b) + binary.MaxVarintLen64
	}
	e := &enc{b: make([]byte, 0, n)}
	if r.Code != kv.CodeOK {
		e.byte(1)
		e.str(string(r.Code))
		e.str(r.Msg)
		return e.b
	}
	e.byte(0)
	if r.Txn == nil {
		e.byte(0)
	} else {
		e.byte(1)
		e.bool(r.Txn.Succeeded)
		e.varint(r.Txn.Revision)
		e.uvarint(uint64(len(r.Txn.Results)))
		for _, or := range r.Txn.Results {
			code, _ := opCode(or.Type)
			e.byte(code)
			e.str(or.Key)
			e.varint(or.Deleted)
			e.record(or.Record)
			e.record(or.Prev)
		}
	}
	e.uvarint(uint64(len(r.Batch)))
	for _, b := range r.Batch {
		e.bytes(b)
	}
	if r.Index != 0 { // optional, last: results without it are unchanged
		e.uvarint(r.Index)
	}
	return e.b
}

func recordValueLen(r *kv.Record) int {
	if r == nil {
		return 0
	}
	return len(r.Value)
}

func (e *enc) record(r *kv.Record) {
	if r == nil {
		e.byte(0)
		return
	}
	e.byte(1)
	e.str(r.Key)
	e.uvarint(uint64(recordLen(r)))
	e.b = appendRecord(e.b, r)
}

func (d *dec) record() *kv.Record {
	if d.byte() == 0 {
		return nil
	}
	key := d.str()
	raw := d.bytes()
	if d.err != nil {
		return nil
	}
	r, err := decodeRecord(key, raw)
	if err != nil {
		d.fail()
		return nil
	}
	return r
}

func decodeResultBytes(b []byte) (result, error) {
	d := &dec{b: b}
	var r result
	if d.byte() == 1 {
		r.Code, r.Msg = kv.Code(d.str()), d.str()
		return r, d.err
	}
	if d.byte() == 1 {
		t := &kv.TxnResult{Succeeded: d.bool(), Revision: d.varint()}
		n := d.count(4)
		t.Results = make([]kv.OpResult, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			code := d.byte()
			if int(code) >= len(opCodes) {
				d.fail()
				break
			}
			or := kv.OpResult{Type: opCodes[code], Key: d.str(), Deleted: d.varint()}
			or.Record = d.record()
			or.Prev = d.record()
			t.Results = append(t.Results, or)
		}
		r.Txn = t
	}
	n := d.count(1)
	for i := 0; i < n && d.err == nil; i++ {
		r.Batch = append(r.Batch, d.bytes())
	}
	if d.err == nil && len(d.b) != 0 {
		r.Index = d.uvarint()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return r, d.err
}
