//lint:file-ignore SA1019 the wire format carries every field Raft v1.8.0 sets, its deprecated Leader and Candidate too

package raftnode

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// The Raft wire format (transport.go speaks it on peer.ProtoRaftWire).
//
// A frame is a type byte, the body's length as a uvarint, and the body. A
// request and its response carry the same type byte; a response body starts
// with the remote error string (empty: none). InstallSnapshot's request frame
// is followed by exactly Size bytes of snapshot. In a body, integers are
// uvarints (signed ones zig-zag varints), booleans one byte, and a byte slice
// a uvarint of its length plus one (0: nil) and its bytes, so nil and empty
// survive the trip as msgpack kept them.
//
// Decoding never trusts a length: every slice and count is checked against
// what is left of the body, and a body against maxFrame, so a hostile frame
// costs at most a small multiple of its own size.
//
// A large AppendEntries (a value's 256 KiB chunks, a follower catching up)
// is never held as one buffer: the sender writes an entry's Data larger
// than inlineDataMax straight from the entry (writeFrame's spills), and the
// receiver decodes a body larger than sharedFrameMax from the connection as
// it arrives (streamDecoder), each entry's Data read into a slice of its
// own. Whole-frame buffers of up to maxFrame, built by doubling, cost two
// extra copies of every replicated byte on each side, and copies of tens of
// MiB that the Go scheduler cannot preempt delayed the heartbeats of a
// busy node past the leader's lease.
const (
	wireAppendEntries   byte = 1
	wireRequestVote     byte = 2
	wireInstallSnapshot byte = 3
	wireTimeoutNow      byte = 4
	wireRequestPreVote  byte = 5

	// maxFrame bounds a frame's body: an AppendEntries carries at most
	// MaxAppendEntries (512) entries of at most 256 KiB (chunk.go).
	maxFrame = 256 << 20
	// sharedFrameMax is the largest AppendEntries body whose entries' Data
	// point into it; a larger body's entries get their own copies, so an
	// entry that the log cache keeps never pins a large frame.
	sharedFrameMax = 64 << 10
	// minLogBytes is the smallest encoded raft.Log: six one-byte fields.
	minLogBytes = 6
	// frameReadStep is the most readBody allocates before the bytes arrive.
	frameReadStep = 32 << 10
	// inlineDataMax is the largest entry Data that appendRequest copies
	// into the frame buffer when it may spill; a larger one is written
	// from the entry itself.
	inlineDataMax = 16 << 10
)

// Errors of the wire format. A decode error closes the connection it came on.
var (
	errBadFrame      = errors.New("raftnode: malformed raft frame")
	errFrameTooLarge = errors.New("raftnode: raft frame too large")
	errUnknownRPC    = errors.New("raftnode: unknown raft rpc type")
)

// --- encoding ---------------------------------------------------------------

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendHeader(b []byte, h *raft.RPCHeader) []byte {
	b = binary.AppendVarint(b, int64(h.ProtocolVersion))
	b = appendBytes(b, h.ID)
	return appendBytes(b, h.Addr)
}

// spill is an entry's Data that belongs in a frame's body at offset at of
// the encoded bytes but is written from where it is (writeFrame).
type spill struct {
	at   int
	data []byte
}

func appendLog(b []byte, l *raft.Log, spills *[]spill) []byte {
	b = binary.AppendUvarint(b, l.Index)
	b = binary.AppendUvarint(b, l.Term)
	b = append(b, byte(l.Type))
	if spills != nil && len(l.Data) > inlineDataMax {
		b = binary.AppendUvarint(b, uint64(len(l.Data))+1)
		*spills = append(*spills, spill{at: len(b), data: l.Data})
	} else {
		b = appendBytes(b, l.Data)
	}
	b = appendBytes(b, l.Extensions)
	return appendTime(b, l.AppendedAt)
}

// appendRequest appends the body of a request and returns it with its
// type. With spills non-nil, an entry's Data over inlineDataMax is not
// copied but appended to *spills, for writeFrame to write in its place.
func appendRequest(b []byte, cmd any, spills *[]spill) ([]byte, byte, error) {
	switch r := cmd.(type) {
	case *raft.AppendEntriesRequest:
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = appendBytes(b, r.Leader)
		b = binary.AppendUvarint(b, r.PrevLogEntry)
		b = binary.AppendUvarint(b, r.PrevLogTerm)
		b = binary.AppendUvarint(b, r.LeaderCommitIndex)
		b = binary.AppendUvarint(b, uint64(len(r.Entries)))
		for _, l := range r.Entries {
			b = appendLog(b, l, spills)
		}
		return b, wireAppendEntries, nil
	case *raft.RequestVoteRequest:
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = appendBytes(b, r.Candidate)
		b = binary.AppendUvarint(b, r.LastLogIndex)
		b = binary.AppendUvarint(b, r.LastLogTerm)
		return appendBool(b, r.LeadershipTransfer), wireRequestVote, nil
	case *raft.RequestPreVoteRequest:
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = binary.AppendUvarint(b, r.LastLogIndex)
		return binary.AppendUvarint(b, r.LastLogTerm), wireRequestPreVote, nil
	case *raft.InstallSnapshotRequest:
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendVarint(b, int64(r.SnapshotVersion))
		b = binary.AppendUvarint(b, r.Term)
		b = appendBytes(b, r.Leader)
		b = binary.AppendUvarint(b, r.LastLogIndex)
		b = binary.AppendUvarint(b, r.LastLogTerm)
		b = appendBytes(b, r.Peers)
		b = appendBytes(b, r.Configuration)
		b = binary.AppendUvarint(b, r.ConfigurationIndex)
		return binary.AppendVarint(b, r.Size), wireInstallSnapshot, nil
	case *raft.TimeoutNowRequest:
		return appendHeader(b, &r.RPCHeader), wireTimeoutNow, nil
	}
	return b, 0, fmt.Errorf("%w: request %T", errUnknownRPC, cmd)
}

// appendResponse appends the body of the response of type typ: the remote
// error, then resp (which may be nil, as Raft answers some errors: its zero
// value is sent, as NetworkTransport's msgpack nil decodes to one).
func appendResponse(b []byte, typ byte, resp any, rerr error) ([]byte, error) {
	var msg []byte
	if rerr != nil {
		msg = []byte(rerr.Error())
	}
	b = appendBytes(b, msg)
	switch typ {
	case wireAppendEntries:
		r, _ := resp.(*raft.AppendEntriesResponse)
		if r == nil {
			r = &raft.AppendEntriesResponse{}
		}
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = binary.AppendUvarint(b, r.LastLog)
		b = appendBool(b, r.Success)
		return appendBool(b, r.NoRetryBackoff), nil
	case wireRequestVote:
		r, _ := resp.(*raft.RequestVoteResponse)
		if r == nil {
			r = &raft.RequestVoteResponse{}
		}
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = appendBytes(b, r.Peers)
		return appendBool(b, r.Granted), nil
	case wireRequestPreVote:
		r, _ := resp.(*raft.RequestPreVoteResponse)
		if r == nil {
			r = &raft.RequestPreVoteResponse{}
		}
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		return appendBool(b, r.Granted), nil
	case wireInstallSnapshot:
		r, _ := resp.(*raft.InstallSnapshotResponse)
		if r == nil {
			r = &raft.InstallSnapshotResponse{}
		}
		b = appendHeader(b, &r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		return appendBool(b, r.Success), nil
	case wireTimeoutNow:
		r, _ := resp.(*raft.TimeoutNowResponse)
		if r == nil {
			r = &raft.TimeoutNowResponse{}
		}
		return appendHeader(b, &r.RPCHeader), nil
	}
	return b, fmt.Errorf("%w: %d", errUnknownRPC, typ)
}

// writeFrame writes one frame to w (not flushed): body with each spill's
// data at its offset. A spill larger than w's buffer goes to the connection
// without a copy (bufio.Writer writes it through).
func writeFrame(w *bufio.Writer, typ byte, body []byte, spills []spill) error {
	size := len(body)
	for _, s := range spills {
		size += len(s.data)
	}
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = typ
	n := binary.PutUvarint(hdr[1:], uint64(size))
	if _, err := w.Write(hdr[:1+n]); err != nil {
		return err
	}
	at := 0
	for _, s := range spills {
		if _, err := w.Write(body[at:s.at]); err != nil {
			return err
		}
		if _, err := w.Write(s.data); err != nil {
			return err
		}
		at = s.at
	}
	_, err := w.Write(body[at:])
	return err
}

// --- decoding ---------------------------------------------------------------

// readFrameHeader reads a frame's type and body length.
func readFrameHeader(r *bufio.Reader) (byte, uint64, error) {
	typ, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, 0, noEOF(err)
	}
	if n > maxFrame {
		return 0, 0, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	return typ, n, nil
}

// readFrame reads one frame. The body is a new buffer that the decoded
// message may point into; it is never reused.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	typ, n, err := readFrameHeader(r)
	if err != nil {
		return 0, nil, err
	}
	body, err := readBody(r, n)
	return typ, body, err
}

// readRequest reads and decodes one request frame: an AppendEntries body
// over sharedFrameMax as it arrives (streamAppendEntries), any other from a
// buffer that holds it whole.
func readRequest(r *bufio.Reader) (byte, any, error) {
	typ, n, err := readFrameHeader(r)
	if err != nil {
		return 0, nil, err
	}
	if typ == wireAppendEntries && n > sharedFrameMax {
		cmd, err := streamAppendEntries(r, n)
		return typ, cmd, err
	}
	body, err := readBody(r, n)
	if err != nil {
		return 0, nil, err
	}
	cmd, err := decodeRequest(typ, body)
	return typ, cmd, err
}

// readBody reads n bytes into a new slice of capacity n. Over frameReadStep
// the slice doubles as bytes arrive, so a length that lies costs at most
// twice what was really sent.
func readBody(r *bufio.Reader, n uint64) ([]byte, error) {
	if n <= frameReadStep {
		body := make([]byte, n)
		_, err := io.ReadFull(r, body)
		return body, noEOF(err)
	}
	body := make([]byte, 0, frameReadStep)
	for uint64(len(body)) < n {
		if len(body) == cap(body) {
			grown := make([]byte, len(body), min(2*uint64(cap(body)), n))
			copy(grown, body)
			body = grown
		}
		m, err := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+m]
		if err != nil && uint64(len(body)) < n {
			return nil, noEOF(err)
		}
	}
	return body, nil
}

// noEOF turns an EOF inside a frame into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoder reads a body; its first error sticks and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
	// share: byte slices point into b; otherwise they are copies.
	share bool
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadFrame, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1() byte {
	if len(d.b) == 0 {
		d.fail("short body")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte1() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad bool")
	return false
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	n--
	if n > uint64(len(d.b)) {
		d.fail("byte slice longer than the frame")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	if !d.share {
		v = append(make([]byte, 0, n), v...)
	}
	return v
}

// readTime reads a time.Time as appendTime wrote it.
func readTime(d fields) time.Time {
	switch d.byte1() {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("bad time")
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= uint64(time.Second) {
		d.fail("bad nanoseconds")
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (d *decoder) left() uint64 { return uint64(len(d.b)) }

func (d *decoder) failed() bool { return d.err != nil }

// fields is what decodeAppendEntries reads a body with: a decoder over a
// buffer or a streamDecoder over the connection.
type fields interface {
	uvarint() uint64
	varint() int64
	byte1() byte
	bytes() []byte
	fail(what string)
	failed() bool
	left() uint64 // bytes of the body not yet read
	done() error
}

func readHeader(d fields, h *raft.RPCHeader) {
	h.ProtocolVersion = raft.ProtocolVersion(d.varint())
	h.ID = d.bytes()
	h.Addr = d.bytes()
}

func (d *decoder) header(h *raft.RPCHeader) {
	h.ProtocolVersion = raft.ProtocolVersion(d.varint())
	h.ID = d.bytes()
	h.Addr = d.bytes()
}

// streamDecoder reads the n bytes of a body from the connection as
// decodeAppendEntries asks for them. Its first error sticks, as decoder's;
// after it the connection is out of step and is closed.
type streamDecoder struct {
	r   *bufio.Reader
	n   uint64 // bytes of the body not yet read
	err error
}

// streamAppendEntries decodes an AppendEntries body of n bytes from r.
func streamAppendEntries(r *bufio.Reader, n uint64) (*raft.AppendEntriesRequest, error) {
	return decodeAppendEntries(&streamDecoder{r: r, n: n}, false)
}

func (d *streamDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errBadFrame, what)
	}
	d.n = 0
}

func (d *streamDecoder) ioFail(err error) {
	if d.err == nil {
		d.err = noEOF(err)
	}
	d.n = 0
}

func (d *streamDecoder) failed() bool { return d.err != nil }
func (d *streamDecoder) left() uint64 { return d.n }

// ReadByte reads one byte of the body, for binary.ReadUvarint.
func (d *streamDecoder) ReadByte() (byte, error) {
	if d.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	c, err := d.r.ReadByte()
	if err != nil {
		d.ioFail(err)
		return 0, err
	}
	d.n--
	return c, nil
}

func (d *streamDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d)
	if err != nil {
		d.fail("bad uvarint")
		return 0
	}
	return v
}

func (d *streamDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(d)
	if err != nil {
		d.fail("bad varint")
		return 0
	}
	return v
}

func (d *streamDecoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	c, err := d.ReadByte()
	if err != nil {
		d.fail("short body")
		return 0
	}
	return c
}

// bytes reads a slice into memory of its own (readBody: a length that lies
// costs at most twice the bytes that came).
func (d *streamDecoder) bytes() []byte {
	n := d.uvarint()
	if n == 0 {
		return nil
	}
	n--
	if n > d.n {
		d.fail("byte slice longer than the frame")
		return nil
	}
	v, err := readBody(d.r, n)
	if err != nil {
		d.ioFail(err)
		return nil
	}
	d.n -= n
	return v
}

// done reports the first error, or one for bytes of the body left unread.
func (d *streamDecoder) done() error {
	if d.err == nil && d.n != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// logBlock is how many Logs decodeAppendEntries allocates at a time while
// the body is still arriving: a count that lies costs at most one block.
const logBlock = 64

// decodeAppendEntries reads an AppendEntries body. From a buffer its Logs
// come in one slice (the count is checked against the bytes there); while
// the body arrives, in blocks of logBlock.
func decodeAppendEntries(d fields, buffered bool) (*raft.AppendEntriesRequest, error) {
	r := &raft.AppendEntriesRequest{}
	readHeader(d, &r.RPCHeader)
	r.Term = d.uvarint()
	r.Leader = d.bytes()
	r.PrevLogEntry = d.uvarint()
	r.PrevLogTerm = d.uvarint()
	r.LeaderCommitIndex = d.uvarint()
	n := d.uvarint()
	if n > d.left()/minLogBytes {
		d.fail("more entries than the frame holds")
		n = 0
	}
	if n == 0 {
		return r, d.done()
	}
	var logs []raft.Log
	if buffered {
		logs = make([]raft.Log, n)
		r.Entries = make([]*raft.Log, n)
	} else {
		r.Entries = make([]*raft.Log, 0, min(n, logBlock))
	}
	for i := range n {
		if !buffered {
			if len(logs) == 0 {
				logs = make([]raft.Log, min(n-i, logBlock))
			}
			r.Entries = append(r.Entries, nil)
		}
		l := &logs[0]
		logs = logs[1:]
		l.Index = d.uvarint()
		l.Term = d.uvarint()
		l.Type = raft.LogType(d.byte1())
		l.Data = d.bytes()
		l.Extensions = d.bytes()
		l.AppendedAt = readTime(d)
		r.Entries[i] = l
		if d.failed() {
			break
		}
	}
	return r, d.done()
}

// done reports the decoder's error, or one for bytes left over.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

// decodeRequest decodes a request body of type typ. The result points into
// body (AppendEntries up to sharedFrameMax, every other request always).
func decodeRequest(typ byte, body []byte) (any, error) {
	d := &decoder{b: body, share: true}
	switch typ {
	case wireAppendEntries:
		d.share = len(body) <= sharedFrameMax
		return decodeAppendEntries(d, true)
	case wireRequestVote:
		r := &raft.RequestVoteRequest{}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.Candidate = d.bytes()
		r.LastLogIndex = d.uvarint()
		r.LastLogTerm = d.uvarint()
		r.LeadershipTransfer = d.bool()
		return r, d.done()
	case wireRequestPreVote:
		r := &raft.RequestPreVoteRequest{}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.LastLogIndex = d.uvarint()
		r.LastLogTerm = d.uvarint()
		return r, d.done()
	case wireInstallSnapshot:
		r := &raft.InstallSnapshotRequest{}
		d.header(&r.RPCHeader)
		r.SnapshotVersion = raft.SnapshotVersion(d.varint())
		r.Term = d.uvarint()
		r.Leader = d.bytes()
		r.LastLogIndex = d.uvarint()
		r.LastLogTerm = d.uvarint()
		r.Peers = d.bytes()
		r.Configuration = d.bytes()
		r.ConfigurationIndex = d.uvarint()
		if r.Size = d.varint(); r.Size < 0 {
			d.fail("negative snapshot size")
		}
		return r, d.done()
	case wireTimeoutNow:
		r := &raft.TimeoutNowRequest{}
		d.header(&r.RPCHeader)
		return r, d.done()
	}
	return nil, fmt.Errorf("%w: %d", errUnknownRPC, typ)
}

// decodeResponse decodes a response body of type typ into resp, which must
// be the matching response type, and returns the remote error string.
func decodeResponse(typ byte, body []byte, resp any) (string, error) {
	d := &decoder{b: body, share: true}
	msg := string(d.bytes())
	switch r := resp.(type) {
	case *raft.AppendEntriesResponse:
		if typ != wireAppendEntries {
			break
		}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.LastLog = d.uvarint()
		r.Success = d.bool()
		r.NoRetryBackoff = d.bool()
		return msg, d.done()
	case *raft.RequestVoteResponse:
		if typ != wireRequestVote {
			break
		}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.Peers = d.bytes()
		r.Granted = d.bool()
		return msg, d.done()
	case *raft.RequestPreVoteResponse:
		if typ != wireRequestPreVote {
			break
		}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.Granted = d.bool()
		return msg, d.done()
	case *raft.InstallSnapshotResponse:
		if typ != wireInstallSnapshot {
			break
		}
		d.header(&r.RPCHeader)
		r.Term = d.uvarint()
		r.Success = d.bool()
		return msg, d.done()
	case *raft.TimeoutNowResponse:
		if typ != wireTimeoutNow {
			break
		}
		d.header(&r.RPCHeader)
		return msg, d.done()
	}
	return "", fmt.Errorf("%w: response type %d for %T", errBadFrame, typ, resp)
}
