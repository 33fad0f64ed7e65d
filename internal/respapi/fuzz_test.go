package respapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// FuzzCommand drives the whole command path — bytes, parser, dispatch,
// calls on a real single-node service, reply encoding — and checks that the
// output is a sequence of well-formed RESP replies in which a protocol error,
// if any, comes last. Every input starts from an empty keyspace.
func FuzzCommand(f *testing.F) {
	seeds := [][]byte{
		encode("SET", "a", "1"),
		encode("GET", "a"),
		append(encode("SET", "a", "1", "EX", "10", "GET"), encode("TTL", "a")...),
		append(encode("INCR", "n"), encode("INCRBYFLOAT", "n", "1.5")...),
		append(append(encode("MULTI"), encode("INCR", "a")...), encode("EXEC")...),
		append(encode("WATCH", "a"), encode("UNWATCH")...),
		encode("MSET", "a", "1", "b", "2"),
		encode("KEYS", "[a-"),
		encode("SCAN", "0", "MATCH", "*", "COUNT", "2"),
		encode("EXPIRE", "a", "10", "GT"),
		encode("GETRANGE", "a", "-100", "100"),
		encode("RAFT", "INFO", "*"),
		encode("HELLO", "2", "AUTH", "default", "pw"),
		encode("AUTH", "pw"),
		encode("CLIENT", "SETNAME", "x"),
		encode("INFO"),
		encode("COMMAND"),
		[]byte("PING\r\nSET a b\r\n"),
		append(encode("CONFIG", "SET", "notify-keyspace-events", "KEA"), encode("PSUBSCRIBE", "__keyspace@0__:*")...),
		bytes.Join([][]byte{encode("SUBSCRIBE", "__keyevent@0__:set", "x"), encode("GET", "a"), encode("PING"),
			encode("UNSUBSCRIBE", "x"), encode("RESET"), encode("SET", "a", "1")}, nil),
		[]byte("*1\r\n$-5\r\n"),
		[]byte("*2\r\n$3\r\nGET\r\n$1\r\nab\r\n"),
		[]byte("*3\r\n$3\r\nSET\r\n$1\r\na\r\n$99999999999\r\n"),
		[]byte("*9999999999\r\n"),
		[]byte("$3\r\nfoo\r\n"),
		[]byte("*1\r\n+PING\r\n"),
	}
	for _, s := range seeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	open := newService(f)
	locked := newService(f, withPasswords(f, "default", "pw")...)
	f.Fuzz(func(t *testing.T, in []byte, withPassword bool) {
		svc, o := open, Options{MaxValueBytes: 1 << 10}
		if withPassword {
			svc, o.Auth = locked, locked
		}
		out := runConn(t, svc, o, in)
		checkReplies(t, out)
		if _, _, err := svc.Delete(kvtest.Ctx(t), "", kv.DeleteOptions{Prefix: true}); err != nil {
			t.Fatalf("empty the keyspace: %v", err)
		}
	})
}

// runConn serves one connection over in-memory streams until the input ends.
func runConn(t *testing.T, svc Service, o Options, in []byte) []byte {
	t.Helper()
	s := New(svc, o)
	defer s.Close()
	var out bytes.Buffer
	c := newConn(s, nil, struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(in), &out})
	err := c.serve()
	c.stopFeed() // as Server.handle does: no message after this
	if err != nil {
		var pe *protocolError
		if !errors.As(err, &pe) {
			t.Fatalf("serve: %v", err)
		}
	}
	return out.Bytes()
}

func checkReplies(t *testing.T, out []byte) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		r, err := readReply(br)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("malformed reply: %v in %q", err, out)
		}
		if strings.HasPrefix(r, "-ERR Protocol error") {
			if _, err := br.Peek(1); !errors.Is(err, io.EOF) {
				t.Fatalf("replies after a protocol error: %q", out)
			}
			return
		}
	}
}

func TestRunConnProtocolErrorIsLast(t *testing.T) {
	out := runConn(t, newService(t), Options{}, []byte("PING\r\n*1\r\n$x\r\nPING\r\n"))
	if want := "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"; string(out) != want {
		t.Errorf("out %q, want %q", out, want)
	}
}
