package respapi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var testLimits = limits{maxArgs: 1 << 20, maxBulk: 1 << 20, maxFrame: 4 << 20, maxInline: 64 << 10}

func TestParseFrames(t *testing.T) {
	unauth := limits{maxArgs: unauthMaxArgs, maxBulk: unauthMaxBytes, maxFrame: unauthMaxBytes, maxInline: unauthMaxBytes, unauth: true}
	cases := []struct {
		name string
		in   string
		lim  limits
		want []string // nil: an empty frame
		n    int
		err  string // "" ok, "incomplete", or the protocol error text
	}{
		{name: "simple", in: "*2\r\n$3\r\nGET\r\n$1\r\na\r\n", want: []string{"GET", "a"}, n: 20},
		{name: "binary", in: "*1\r\n$4\r\na\r\nb\r\n", want: []string{"a\r\nb"}, n: 14},
		{name: "empty bulk", in: "*1\r\n$0\r\n\r\n", want: []string{""}, n: 10},
		{name: "followed", in: "*1\r\n$4\r\nPING\r\n*1\r\n", want: []string{"PING"}, n: 14},
		{name: "empty array", in: "*0\r\n", n: 4},
		{name: "null array", in: "*-1\r\n", n: 5},
		{name: "inline", in: "SET a  b\r\n", want: []string{"SET", "a", "b"}, n: 10},
		{name: "inline lf", in: "PING\n", want: []string{"PING"}, n: 5},
		{name: "blank inline", in: "\r\n", n: 2},
		{name: "partial header", in: "*2\r", err: "incomplete"},
		{name: "partial bulk", in: "*2\r\n$3\r\nGE", err: "incomplete"},
		{name: "missing element", in: "*2\r\n$3\r\nGET\r\n", err: "incomplete"},
		{name: "partial inline", in: "PIN", err: "incomplete"},
		{name: "bad count", in: "*x\r\n", err: "Protocol error: invalid multibulk length"},
		{name: "huge count", in: "*99999999999999999999\r\n", err: "Protocol error: invalid multibulk length"},
		{name: "too many args", in: "*2000000\r\n", err: "Protocol error: invalid multibulk length"},
		{name: "not a bulk", in: "*1\r\n:1\r\n", err: "Protocol error: expected '$', got ':'"},
		{name: "negative bulk", in: "*1\r\n$-1\r\n", err: "Protocol error: invalid bulk length"},
		{name: "huge bulk", in: "*1\r\n$2000000\r\n", err: "Protocol error: invalid bulk length"},
		{name: "no crlf", in: "*1\r\n$1\r\nab\r\n", err: "Protocol error: bulk string not terminated by CRLF"},
		{name: "lf only header", in: "*1\n", err: "Protocol error: invalid multibulk count line"},
		{name: "long header", in: "*" + strings.Repeat("1", 40), err: "Protocol error: too big multibulk count string"},
		{name: "long inline", in: strings.Repeat("a", 70<<10), err: "Protocol error: too big inline request"},
		{name: "unauth ok", in: "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n", lim: unauth, want: []string{"AUTH", "pw"}, n: 22},
		{name: "unauth args", in: "*11\r\n", lim: unauth, err: "Protocol error: unauthenticated multibulk length"},
		{name: "unauth bulk", in: "*1\r\n$5000\r\n", lim: unauth, err: "Protocol error: unauthenticated bulk length"},
		{name: "unauth frame", in: "*3\r\n$2000\r\n" + strings.Repeat("a", 2000) + "\r\n$2000\r\n" + strings.Repeat("a", 2000) + "\r\n$100\r\n",
			lim: unauth, err: "Protocol error: unauthenticated bulk length"},
		{name: "unauth inline", in: strings.Repeat("a ", 11) + "\r\n", lim: unauth, err: "Protocol error: unauthenticated multibulk length"},
		{name: "frame limit", in: "*5\r\n$1048576\r\n" + strings.Repeat("a", 1048576) + "\r\n$1048576\r\n" + strings.Repeat("a", 1048576) +
			"\r\n$1048576\r\n" + strings.Repeat("a", 1048576) + "\r\n$1048576\r\n" + strings.Repeat("a", 1048576) + "\r\n$1048576\r\n",
			err: "Protocol error: request of more than 4194304 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lim := c.lim
			if lim.maxArgs == 0 {
				lim = testLimits
			}
			var p parser
			args, n, err := p.parse([]byte(c.in), lim)
			switch {
			case c.err == "incomplete":
				if !errors.Is(err, errIncomplete) {
					t.Fatalf("err = %v, want incomplete", err)
				}
				return
			case c.err != "":
				var pe *protocolError
				if !errors.As(err, &pe) || err.Error() != c.err {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if n != c.n {
				t.Errorf("consumed %d, want %d", n, c.n)
			}
			if len(args) != len(c.want) || (c.want == nil) != (args == nil) {
				t.Fatalf("args %q, want %q", args, c.want)
			}
			for i := range args {
				if string(args[i]) != c.want[i] {
					t.Errorf("arg %d = %q, want %q", i, args[i], c.want[i])
				}
			}
		})
	}
}

// A frame that arrives one byte at a time parses the same, and the parser
// resumes instead of starting again.
func TestReaderByteByByte(t *testing.T) {
	big := strings.Repeat("v", 100000)
	in := string(encode("SET", "k", big)) + "PING\r\n" + string(encode("GET", "k"))
	rd := newReader(iotest.OneByteReader(strings.NewReader(in)))
	var got [][]string
	for {
		args, err := rd.next(testLimits, true)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, a := range args {
			s = append(s, string(a))
		}
		got = append(got, s)
	}
	if len(got) != 3 || got[0][2] != big || got[1][0] != "PING" || got[2][1] != "k" {
		t.Fatalf("got %d commands: %.80q", len(got), got)
	}
}

// The reader never grows its buffer past what the frame limits allow, and
// arguments do not alias the buffer it reuses.
func TestReaderBuffer(t *testing.T) {
	var in bytes.Buffer
	for i := 0; i < 100; i++ {
		in.Write(encode("SET", "key", strings.Repeat("x", 1000)))
	}
	rd := newReader(&in)
	first, err := rd.next(testLimits, true)
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for {
		args, err := rd.next(testLimits, false)
		if err != nil {
			t.Fatal(err)
		}
		if args == nil {
			break
		}
		n++
	}
	if n < 2 {
		t.Errorf("only %d commands parsed from one read", n)
	}
	if string(first[1]) != "key" || len(first[2]) != 1000 {
		t.Errorf("first command changed: %q", first[:2])
	}
	// A bulk length beyond the limit fails without reading (or allocating) it.
	rd = newReader(strings.NewReader("*1\r\n$999999999\r\n"))
	if _, err := rd.next(testLimits, true); err == nil || !strings.Contains(err.Error(), "invalid bulk length") {
		t.Errorf("err = %v", err)
	}
	if len(rd.buf) > readBufSize {
		t.Errorf("buffer grew to %d", len(rd.buf))
	}
}
