package peer

import (
	"net"
	"sync"
	"time"
)

// Faults cuts links between nodes for tests. A node's Dialer refuses to dial a
// blocked address and every tracked connection to it is closed at once; the
// Mux side closes nothing by itself, so a symmetric partition is made by
// blocking each side's address on the other side (see test/cluster).
// The zero value blocks nothing.
type Faults struct {
	mu      sync.Mutex
	blocked map[string]bool
	delays  map[string]time.Duration
	conns   map[net.Conn]string
}

// Delay adds d before every write on links to addr (0 removes it).
func (f *Faults) Delay(addr string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delays == nil {
		f.delays = map[string]time.Duration{}
	}
	if d <= 0 {
		delete(f.delays, addr)
		return
	}
	f.delays[addr] = d
}

func (f *Faults) delay(addr string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delays[addr]
}

// Reset removes every fault.
func (f *Faults) Reset() {
	f.mu.Lock()
	f.blocked = nil
	f.delays = nil
	f.mu.Unlock()
}

// Block cuts outgoing links to addr and closes existing ones.
func (f *Faults) Block(addr string) {
	f.mu.Lock()
	if f.blocked == nil {
		f.blocked = map[string]bool{}
	}
	f.blocked[addr] = true
	var toClose []net.Conn
	for c, a := range f.conns {
		if a == addr {
			toClose = append(toClose, c)
		}
	}
	f.mu.Unlock()
	for _, c := range toClose {
		_ = c.Close()
	}
}

// Unblock restores links to addr.
func (f *Faults) Unblock(addr string) {
	f.mu.Lock()
	delete(f.blocked, addr)
	f.mu.Unlock()
}

// Blocked reports whether links to addr are cut.
func (f *Faults) Blocked(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blocked[addr]
}

// track wraps c, a link to addr ("": an accepted one), so that Block closes
// it. It returns nil for a link to an address blocked since the dial began:
// Block closes only the links it can see, and one tracked after it would
// carry traffic across the partition.
func (f *Faults) track(c net.Conn, addr string) net.Conn {
	if addr == "" {
		return c
	}
	f.mu.Lock()
	if f.blocked[addr] {
		f.mu.Unlock()
		return nil
	}
	if f.conns == nil {
		f.conns = map[net.Conn]string{}
	}
	tc := &trackedConn{Conn: c, f: f, addr: addr}
	f.conns[tc] = addr
	f.mu.Unlock()
	return tc
}

type trackedConn struct {
	net.Conn
	f    *Faults
	addr string
	once sync.Once
}

func (t *trackedConn) Write(p []byte) (int, error) {
	if d := t.f.delay(t.addr); d > 0 {
		time.Sleep(d)
	}
	return t.Conn.Write(p)
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.f.mu.Lock()
		delete(t.f.conns, t)
		t.f.mu.Unlock()
	})
	return t.Conn.Close()
}
