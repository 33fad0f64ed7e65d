package respapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// limits bound one request frame. They are checked while the frame is parsed,
// before anything is allocated for it, so a client cannot make the server
// reserve memory it has not sent.
type limits struct {
	maxArgs   int   // elements of one array
	maxBulk   int64 // bytes of one bulk string
	maxFrame  int64 // bytes of one whole frame, headers included
	maxInline int   // bytes of one inline (telnet-style) command line
	// unauth selects Redis's error texts for unauthenticated connections.
	unauth bool
}

// Frame limits for connections that have not authenticated (when a password is
// set), in the spirit of Redis's fix for CVE-2021-32675.
const (
	unauthMaxArgs  = 10
	unauthMaxBytes = 4096
)

// maxHeaderLine is the longest "*<count>\r\n" or "$<len>\r\n" line accepted.
const maxHeaderLine = 32

// errIncomplete means the buffer holds only the beginning of a frame.
var errIncomplete = errors.New("respapi: incomplete frame")

// protocolError is a malformed frame; the connection is answered with
// "-ERR Protocol error: …" and closed.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

func protoErr(format string, a ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, a...)}
}

// parser parses RESP2 request frames (arrays of bulk strings, or inline
// commands) from a buffer. It is resumable: when a frame is incomplete it keeps
// what it has parsed, so a large frame arriving in many reads is not parsed
// again from the start each time.
type parser struct {
	count int   // elements of the current array; 0 until its header is parsed
	marks []int // start and end offsets (from the frame start) of parsed bulks
	pos   int   // offset of the next unparsed byte from the frame start
	need  int   // bytes the frame needs at least before parsing can progress
}

func (p *parser) reset() {
	p.count, p.pos, p.need = 0, 0, 0
	p.marks = p.marks[:0]
	if cap(p.marks) > 1024 {
		p.marks = nil
	}
}

// parse parses one frame at the start of b. It returns the arguments (copied
// out of b), the bytes consumed, and errIncomplete or a *protocolError. An
// empty frame (an empty array or a blank inline line) returns nil args and
// n > 0.
func (p *parser) parse(b []byte, lim limits) (args [][]byte, n int, err error) {
	if len(b) == 0 {
		return nil, 0, errIncomplete
	}
	if b[0] != '*' {
		return parseInline(b, lim)
	}
	if p.count == 0 {
		line, ok, err := headerLine(b, "multibulk count")
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			p.need = len(b) + 1
			return nil, 0, errIncomplete
		}
		count, ok := parseDecimal(line[1:])
		if !ok {
			return nil, 0, protoErr("invalid multibulk length")
		}
		if count > int64(lim.maxArgs) {
			if lim.unauth {
				return nil, 0, protoErr("unauthenticated multibulk length")
			}
			return nil, 0, protoErr("invalid multibulk length")
		}
		if count <= 0 {
			// Redis ignores "*0" and "*-1".
			p.reset()
			return nil, len(line) + 2, nil
		}
		p.count = int(count)
		p.pos = len(line) + 2
	}
	for len(p.marks)/2 < p.count {
		rest := b[p.pos:]
		if len(rest) == 0 {
			p.need = p.pos + 1
			return nil, 0, errIncomplete
		}
		if rest[0] != '$' {
			return nil, 0, protoErr("expected '$', got '%c'", rest[0])
		}
		line, ok, err := headerLine(rest, "bulk count")
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			p.need = p.pos + len(rest) + 1
			return nil, 0, errIncomplete
		}
		size, ok := parseDecimal(line[1:])
		if !ok || size < 0 || size > lim.maxBulk {
			if lim.unauth && ok && size >= 0 {
				return nil, 0, protoErr("unauthenticated bulk length")
			}
			return nil, 0, protoErr("invalid bulk length")
		}
		start := p.pos + len(line) + 2
		end := int64(start) + size
		if end+2 > lim.maxFrame {
			if lim.unauth {
				return nil, 0, protoErr("unauthenticated bulk length")
			}
			return nil, 0, protoErr("request of more than %d bytes", lim.maxFrame)
		}
		if int64(len(b)) < end+2 {
			p.need = int(end + 2)
			return nil, 0, errIncomplete
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			return nil, 0, protoErr("bulk string not terminated by CRLF")
		}
		p.marks = append(p.marks, start, int(end))
		p.pos = int(end + 2)
	}
	total := 0
	for i := 0; i < len(p.marks); i += 2 {
		total += p.marks[i+1] - p.marks[i]
	}
	data := make([]byte, 0, total)
	args = make([][]byte, 0, p.count)
	for i := 0; i < len(p.marks); i += 2 {
		s := len(data)
		data = append(data, b[p.marks[i]:p.marks[i+1]]...)
		args = append(args, data[s:len(data):len(data)])
	}
	n = p.pos
	p.reset()
	return args, n, nil
}

// headerLine returns the "*…" or "$…" line at the start of b without its CRLF;
// ok is false when the line is not complete yet.
func headerLine(b []byte, what string) (line []byte, ok bool, err error) {
	lim := b
	if len(lim) > maxHeaderLine {
		lim = lim[:maxHeaderLine]
	}
	i := bytes.IndexByte(lim, '\n')
	if i < 0 {
		if len(b) >= maxHeaderLine {
			return nil, false, protoErr("too big %s string", what)
		}
		return nil, false, nil
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, false, protoErr("invalid %s line", what)
	}
	return b[:i-1], true, nil
}

// parseDecimal parses an optionally negative decimal integer with no other
// characters, refusing overflow.
func parseDecimal(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// parseInline parses a telnet-style command: one line of arguments separated
// by spaces or tabs, without quoting.
func parseInline(b []byte, lim limits) ([][]byte, int, error) {
	window := b
	if len(window) > lim.maxInline {
		window = window[:lim.maxInline]
	}
	i := bytes.IndexByte(window, '\n')
	if i < 0 {
		if len(b) >= lim.maxInline {
			return nil, 0, protoErr("too big inline request")
		}
		return nil, 0, errIncomplete
	}
	line := bytes.TrimSuffix(b[:i], []byte{'\r'})
	fields := bytes.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
	if len(fields) > lim.maxArgs {
		if lim.unauth {
			return nil, 0, protoErr("unauthenticated multibulk length")
		}
		return nil, 0, protoErr("too many arguments in inline request")
	}
	if len(fields) == 0 {
		return nil, i + 1, nil
	}
	args := make([][]byte, len(fields))
	for j, f := range fields {
		args[j] = bytes.Clone(f)
	}
	return args, i + 1, nil
}

// reader reads request frames from a connection into a buffer of its own.
type reader struct {
	rd   io.Reader
	buf  []byte
	r, w int // unparsed data is buf[r:w]
	p    parser
	err  error // sticky read error
	// deadline, if set, is called before each read from the connection,
	// saying whether a frame has been started.
	deadline func(midFrame bool)
}

const (
	readBufSize    = 16 << 10
	maxIdleBufSize = 64 << 10
)

func newReader(rd io.Reader) *reader {
	return &reader{rd: rd, buf: make([]byte, readBufSize)}
}

// next returns the next command. With block false it only parses what is
// already buffered and returns nil, nil when no complete frame is there; with
// block true it reads from the connection until a frame is complete. Empty
// frames are skipped.
func (rd *reader) next(lim limits, block bool) ([][]byte, error) {
	for {
		args, n, err := rd.p.parse(rd.buf[rd.r:rd.w], lim)
		if err == nil {
			rd.r += n
			if rd.r == rd.w {
				rd.r, rd.w = 0, 0
				if len(rd.buf) > maxIdleBufSize {
					rd.buf = make([]byte, readBufSize)
				}
			}
			if args == nil {
				continue
			}
			return args, nil
		}
		if !errors.Is(err, errIncomplete) {
			return nil, err
		}
		if !block {
			return nil, nil
		}
		if rd.err != nil {
			return nil, rd.err
		}
		rd.fill(lim)
	}
}

// fill reads once from the connection, first making room for at least the
// bytes the current frame needs (bounded by the frame limits, which the
// parser has already checked).
func (rd *reader) fill(lim limits) {
	if rd.r > 0 {
		copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
	}
	want := rd.p.need
	if want < rd.w+1 {
		want = rd.w + 1
	}
	if want > len(rd.buf) {
		size := 2 * len(rd.buf)
		if most := int(lim.maxFrame) + maxHeaderLine; size > most {
			size = most
		}
		if size < want {
			size = want
		}
		nb := make([]byte, size)
		copy(nb, rd.buf[:rd.w])
		rd.buf = nb
	}
	if rd.deadline != nil {
		rd.deadline(rd.w > 0)
	}
	n, err := rd.rd.Read(rd.buf[rd.w:])
	rd.w += n
	if err != nil {
		rd.err = err
	}
}
