package respapi

import (
	"fmt"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	svc := newService(t, withPasswords(t, "default", "secret", "alice", "wonder")...)
	f := newSpy(svc)
	srv := startServer(t, f, Options{Auth: svc})
	c := dial(t, srv)
	c.mustDo("-NOAUTH Authentication required.", "GET", "a")
	c.mustDo("-NOAUTH Authentication required.", "NOSUCHCOMMAND")
	c.mustDo("-NOAUTH Authentication required.", "PING")
	c.mustDo("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "wrong")
	c.mustDo("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "alice", "secret")
	c.mustDo("-WRONGPASS invalid username-password pair or user is disabled.", "AUTH", "bob", "wonder")
	c.mustDo("-ERR syntax error", "AUTH", "a", "b", "c")
	c.mustDo("-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time", "HELLO", "2")
	c.mustDo("+OK", "AUTH", "secret")
	c.mustDo("+PONG", "PING")
	c.mustDo("nil", "GET", "a")

	c = dial(t, srv)
	c.mustDo("+OK", "AUTH", "alice", "wonder")
	c.mustDo("+OK", "SET", "a", "1")
	c = dial(t, srv)
	c.mustDo("+OK", "AUTH", "default", "secret")
	c = dial(t, srv)
	if got := c.do("HELLO", "2", "AUTH", "alice", "wonder", "SETNAME", "app"); !strings.HasPrefix(got, `["server" "redis"`) {
		t.Errorf("HELLO with AUTH = %s", got)
	}
	c.mustDo(`"app"`, "CLIENT", "GETNAME")
	c = dial(t, srv)
	c.mustDo("-WRONGPASS invalid username-password pair or user is disabled.", "HELLO", "2", "AUTH", "alice", "nope")
	c.mustDo("-ERR Syntax error in HELLO option 'auth'", "HELLO", "2", "AUTH", "alice")
	c.mustDo("+OK", "QUIT")
	if _, txns, calls := f.stats(); txns != 0 || len(calls) != 2 {
		t.Errorf("service calls %v", calls)
	}
}

// Before AUTH, only small frames are read: the connection is closed at the
// header, before the server reserves room for the announced size.
func TestUnauthenticatedFrameLimits(t *testing.T) {
	svc := newService(t, withPasswords(t, "default", "secret")...)
	srv := startServer(t, svc, Options{Auth: svc})
	cases := []struct {
		name, raw, want string
	}{
		{"many args", "*11\r\n", "-ERR Protocol error: unauthenticated multibulk length"},
		{"big bulk", "*2\r\n$4\r\nAUTH\r\n$5000\r\n", "-ERR Protocol error: unauthenticated bulk length"},
		{"big inline", strings.Repeat("x", 5000), "-ERR Protocol error: too big inline request"},
		{"big frame", "*3\r\n$3\r\nSET\r\n$2000\r\n" + strings.Repeat("k", 2000) + "\r\n$2100\r\n", "-ERR Protocol error: unauthenticated bulk length"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, srv)
			c.send([]byte(tc.raw))
			if got := c.read(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if !c.closed() {
				t.Error("connection still open")
			}
		})
	}
	// After AUTH the same connection may send big frames, even pipelined
	// right behind the AUTH.
	c := dial(t, srv)
	big := strings.Repeat("v", 100000)
	c.send(append(encode("AUTH", "secret"), encode("SET", "k", big)...))
	if got := c.read(); got != "+OK" {
		t.Fatalf("AUTH: %s", got)
	}
	if got := c.read(); got != "+OK" {
		t.Fatalf("SET after AUTH: %s", got)
	}
	if got := c.do("GET", "k"); got != fmt.Sprintf("%q", big) {
		t.Errorf("GET returned %d bytes", len(got))
	}
}
