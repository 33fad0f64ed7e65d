package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// The RPC wire format. After the protocol byte, each side of a connection
// writes frames, one after another:
//
//	length  uint32, big-endian: how many bytes follow (the body)
//	kind    byte: frameRequest or frameReply
//	id      uint64: the caller's number for the call, unique among its calls
//	        in flight on the connection; a reply repeats its request's id
//
// A request goes on with
//
//	timeout uint64: nanoseconds the caller will wait (0: no deadline); the
//	        handler's context ends then
//	method  byte length, then the name ("service.Method")
//	payload the rest of the body
//
// and a reply with
//
//	code    byte length, then the error code ("" when the call succeeded)
//	message uint16 length, then the error message
//	payload the rest of the body
//
// Integers are big-endian. Callers write only requests and read only replies;
// servers the other way round. A frame that breaks these rules ends the
// connection.
const (
	frameRequest byte = 1
	frameReply   byte = 2

	frameLenSize   = 4
	requestFixed   = 1 + 8 + 8 + 1 // kind, id, timeout, method length
	replyFixed     = 1 + 8 + 1 + 2 // kind, id, code length, message length
	maxMethodLen   = math.MaxUint8
	maxCodeLen     = math.MaxUint8
	maxMessageLen  = math.MaxUint16
	frameReadChunk = 64 << 10 // bodies larger than this grow as their bytes arrive
)

// frame is a decoded request or reply.
type frame struct {
	kind    byte
	id      uint64
	timeout time.Duration // request
	method  string        // request
	code    string        // reply
	msg     string        // reply
	payload []byte        // aliases the body it was decoded from
}

// appendRequestHead appends a request frame's length and fixed fields for a
// payload of n bytes; the payload itself follows it on the wire.
func appendRequestHead(b []byte, id uint64, timeout time.Duration, method string, n int) []byte {
	body := requestFixed + len(method) + n
	b = binary.BigEndian.AppendUint32(b, uint32(body))
	b = append(b, frameRequest)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint64(b, uint64(max(timeout, 0)))
	b = append(b, byte(len(method)))
	return append(b, method...)
}

// appendReplyHead is appendRequestHead for a reply. Messages longer than the
// field holds are cut.
func appendReplyHead(b []byte, id uint64, code, msg string, n int) []byte {
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen]
	}
	body := replyFixed + len(code) + len(msg) + n
	b = binary.BigEndian.AppendUint32(b, uint32(body))
	b = append(b, frameReply)
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, byte(len(code)))
	b = append(b, code...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...)
}

// readFrame reads one frame's body, refusing a length over maxBody before
// reading it. A body larger than frameReadChunk is allocated as its bytes
// arrive, so a length that lies costs no more memory than the bytes the peer
// really sent. io.EOF means the peer closed the connection between frames.
func readFrame(r io.Reader, maxBody int) ([]byte, error) {
	var hdr [frameLenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > int64(maxBody) {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrFrameTooLarge, n, maxBody)
	}
	if n < min(requestFixed, replyFixed) {
		return nil, fmt.Errorf("%w: %d-byte body", ErrBadFrame, n)
	}
	size := int(n)
	if size <= frameReadChunk {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, unexpectedEOF(err)
		}
		return b, nil
	}
	b := make([]byte, 0, frameReadChunk)
	for len(b) < size {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(len(b), size-len(b)))
		}
		k, err := io.ReadFull(r, b[len(b):min(cap(b), size)])
		b = b[:len(b)+k]
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return b, nil
}

// unexpectedEOF reports a connection closed inside a frame as such.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseFrame decodes a body read by readFrame. Every length is checked
// against what is left of the body; nothing is allocated but the two short
// strings.
func parseFrame(body []byte) (frame, error) {
	var f frame
	if len(body) < 1+8 {
		return f, fmt.Errorf("%w: %d-byte body", ErrBadFrame, len(body))
	}
	f.kind = body[0]
	f.id = binary.BigEndian.Uint64(body[1:9])
	rest := body[9:]
	switch f.kind {
	case frameRequest:
		if len(rest) < 8+1 {
			return f, fmt.Errorf("%w: short request", ErrBadFrame)
		}
		t := binary.BigEndian.Uint64(rest)
		if t > math.MaxInt64 {
			return f, fmt.Errorf("%w: timeout %d out of range", ErrBadFrame, t)
		}
		f.timeout = time.Duration(t)
		m := int(rest[8])
		rest = rest[9:]
		if m == 0 || len(rest) < m {
			return f, fmt.Errorf("%w: method name of %d bytes in %d", ErrBadFrame, m, len(rest))
		}
		f.method = string(rest[:m])
		f.payload = rest[m:]
	case frameReply:
		if len(rest) < 1 {
			return f, fmt.Errorf("%w: short reply", ErrBadFrame)
		}
		c := int(rest[0])
		rest = rest[1:]
		if len(rest) < c+2 {
			return f, fmt.Errorf("%w: error code of %d bytes in %d", ErrBadFrame, c, len(rest))
		}
		f.code = string(rest[:c])
		rest = rest[c:]
		m := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if len(rest) < m {
			return f, fmt.Errorf("%w: message of %d bytes in %d", ErrBadFrame, m, len(rest))
		}
		f.msg = string(rest[:m])
		f.payload = rest[m:]
	default:
		return f, fmt.Errorf("%w: kind %d", ErrBadFrame, f.kind)
	}
	if len(f.payload) == 0 {
		f.payload = nil
	}
	return f, nil
}
