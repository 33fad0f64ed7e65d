package auth

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Inflight bounds the requests a node works on at once, across front ends.
// Over the bound a request is refused at once (HTTP 429 with Retry-After, RESP
// -BUSY) instead of queueing: a node under more load than it can serve sheds
// it before memory and latency grow without bound.
type Inflight struct {
	sem *semaphore.Weighted
}

// NewInflight returns a limiter for max requests; max <= 0 means no limit (nil).
func NewInflight(max int) *Inflight {
	if max <= 0 {
		return nil
	}
	return &Inflight{sem: semaphore.NewWeighted(int64(max))}
}

// TryAcquire takes a slot if one is free. A nil limiter always succeeds.
func (l *Inflight) TryAcquire() bool { return l == nil || l.sem.TryAcquire(1) }

// Release gives back a slot taken by TryAcquire.
func (l *Inflight) Release() {
	if l != nil {
		l.sem.Release(1)
	}
}

// ParseHosts parses allowed_hosts entries: CIDRs ("10.0.0.0/8") or single
// addresses ("127.0.0.1", "::1").
func ParseHosts(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("%w: allowed host %q: %v", ErrInvalid, e, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("%w: allowed host %q: want a CIDR or an IP address", ErrInvalid, e)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// HostAllowed reports whether addr (a net.Addr of a TCP peer) is inside one of
// hosts; an empty list allows every host.
func HostAllowed(hosts []netip.Prefix, addr net.Addr) bool {
	if len(hosts) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range hosts {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// GuardOptions configure GuardListener.
type GuardOptions struct {
	// AllowedHosts, when not empty, is the only set of client addresses
	// whose connections are kept.
	AllowedHosts []netip.Prefix
	// MaxConns bounds the open connections of the listener; 0 means none.
	MaxConns int
	// Refuse, if set, is called (with a short deadline set) on a connection
	// refused for being over MaxConns, to tell the client why before it is
	// closed. It is not called for hosts outside AllowedHosts.
	Refuse func(net.Conn)
	// OnReject, if set, is told about every refused connection.
	OnReject func(remote net.Addr, reason string)
}

// GuardListener wraps ln so connections from hosts outside the allowed list
// and connections over the limit are closed as soon as they are accepted,
// before any TLS handshake or request parsing spends memory on them.
func GuardListener(ln net.Listener, o GuardOptions) net.Listener {
	if len(o.AllowedHosts) == 0 && o.MaxConns <= 0 {
		return ln
	}
	return &guardListener{Listener: ln, o: o}
}

type guardListener struct {
	net.Listener
	o    GuardOptions
	open atomic.Int64
}

func (g *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !HostAllowed(g.o.AllowedHosts, c.RemoteAddr()) {
			g.reject(c, "host not in allowed_hosts")
			c.Close()
			continue
		}
		if g.o.MaxConns > 0 && g.open.Add(1) > int64(g.o.MaxConns) {
			g.open.Add(-1)
			g.reject(c, "too many connections")
			if g.o.Refuse != nil {
				go func() { g.o.Refuse(c); c.Close() }()
			} else {
				c.Close()
			}
			continue
		}
		if g.o.MaxConns <= 0 {
			return c, nil
		}
		return &countedConn{Conn: c, g: g}, nil
	}
}

func (g *guardListener) reject(c net.Conn, reason string) {
	if g.o.OnReject != nil {
		g.o.OnReject(c.RemoteAddr(), reason)
	}
}

type countedConn struct {
	net.Conn
	g    *guardListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.g.open.Add(-1) })
	return c.Conn.Close()
}
