package respapi

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

// wrappedListener hands out connections wrapped the way the connection
// limit wraps them (a struct embedding net.Conn), counting their writes.
type wrappedListener struct {
	net.Listener
	writes atomic.Int64
}

type wrappedConn struct {
	net.Conn
	l *wrappedListener
}

func (l *wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &wrappedConn{Conn: c, l: l}, nil
}

func (c *wrappedConn) Write(p []byte) (int, error) {
	c.l.writes.Add(1)
	return c.Conn.Write(p)
}

func startWrapped(t *testing.T, svc Service) (*testServer, *wrappedListener) {
	t.Helper()
	s := New(svc, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := &wrappedListener{Listener: ln}
	done := make(chan error, 1)
	go func() { done <- s.Serve(wl) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{Server: s, addr: ln.Addr().String()}, wl
}

func TestWrappedConnWritesEachGroupOnce(t *testing.T) {
	srv, wl := startWrapped(t, newService(t))
	c := dial(t, srv)
	var cmds [][]string
	for i := 0; i < 50; i++ {
		cmds = append(cmds, []string{"SET", fmt.Sprintf("k%d", i), fmt.Sprint(i)}, []string{"GET", fmt.Sprintf("k%d", i)})
	}
	got := pipeline(c, cmds...)
	for i := 0; i < 50; i++ {
		if got[2*i] != "+OK" || got[2*i+1] != fmt.Sprintf("%q", fmt.Sprint(i)) {
			t.Fatalf("replies %d: %s %s", i, got[2*i], got[2*i+1])
		}
	}
	// The client's frames may arrive in more than one read, so allow a few
	// groups, but never one write per reply.
	if n := wl.writes.Load(); n > 5 {
		t.Errorf("%d writes for 100 replies", n)
	}
	c.mustDo("+PONG", "PING")
}

func TestWrappedConnLargeReplies(t *testing.T) {
	srv, _ := startWrapped(t, newService(t))
	c := dial(t, srv)
	big := strings.Repeat("x", 300<<10) // larger than groupWriterMax
	var cmds [][]string
	for i := 0; i < 4; i++ {
		cmds = append(cmds, []string{"SET", fmt.Sprintf("b%d", i), big})
	}
	for i := 0; i < 4; i++ {
		cmds = append(cmds, []string{"GET", fmt.Sprintf("b%d", i)}, []string{"GET", "missing"})
	}
	got := pipeline(c, cmds...)
	for i, r := range got {
		switch {
		case i < 4 && r != "+OK",
			i >= 4 && i%2 == 0 && r != fmt.Sprintf("%q", big),
			i >= 4 && i%2 == 1 && r != "nil":
			t.Fatalf("reply %d: %.40s", i, r)
		}
	}
}

func TestWrappedConnAnswersBeforeClosing(t *testing.T) {
	srv, _ := startWrapped(t, newService(t))
	c := dial(t, srv)
	var b bytes.Buffer
	b.Write(encode("SET", "k", "v"))
	b.WriteString("*1\r\n$x\r\n") // malformed bulk length
	c.send(b.Bytes())
	if r := c.read(); r != "+OK" {
		t.Fatalf("SET: %s", r)
	}
	if r := c.read(); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("protocol error reply: %s", r)
	}
	if !c.closed() {
		t.Fatal("connection left open after a protocol error")
	}

	c = dial(t, srv)
	c.send(append(encode("GET", "k"), encode("QUIT")...))
	if r := c.read(); r != `"v"` {
		t.Fatalf("GET: %s", r)
	}
	if r := c.read(); r != "+OK" {
		t.Fatalf("QUIT: %s", r)
	}
	if !c.closed() {
		t.Fatal("connection left open after QUIT")
	}
}
