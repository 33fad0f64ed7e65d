// Package peer owns the peer port: one TCP listener (TLS with required client
// certificates when configured) that carries both Raft traffic and cairn's
// internal RPC. The first byte a dialer writes on a new connection says which
// protocol follows, as in rqlite's tcp.Mux; Mux hands each connection to the
// listener registered for that byte.
//
// Dialer makes the matching outgoing connections. Both sides share a Faults
// value so tests can cut links between nodes (Partition/Heal) without touching
// the code under test.
package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Protocol bytes written first on every peer connection.
const (
	ProtoRaft byte = 1
	ProtoRPC  byte = 2
)

// Errors returned by the mux and dialer.
var (
	ErrClosed      = errors.New("peer: listener closed")
	ErrPartitioned = errors.New("peer: link cut by fault injection")
	// ErrHandshake means the TLS handshake with a peer failed: one side does
	// not trust the other's certificate (or one side does not speak TLS).
	ErrHandshake = errors.New("peer: TLS handshake failed")
)

// Mux accepts peer connections and routes them by their first byte.
type Mux struct {
	ln     net.Listener
	tls    *tls.Config
	log    *slog.Logger
	faults *Faults

	mu       sync.Mutex
	handlers map[byte]*virtualListener
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

// NewMux wraps ln. With a non-nil tlsConf every connection is TLS.
func NewMux(ln net.Listener, tlsConf *tls.Config, faults *Faults, log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mux{ln: ln, tls: tlsConf, faults: faults, log: log, handlers: map[byte]*virtualListener{}, done: make(chan struct{})}
}

// Addr is the address the mux listens on.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// Listen returns a listener that receives the connections whose first byte is proto.
func (m *Mux) Listen(proto byte) net.Listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	vl := &virtualListener{proto: proto, mux: m, conns: make(chan net.Conn, 16), done: make(chan struct{})}
	m.handlers[proto] = vl
	return vl
}

// Serve accepts connections until Close. It returns nil after Close.
func (m *Mux) Serve() error {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("peer: accept: %w", err)
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			_ = conn.Close()
			return nil
		}
		m.wg.Add(1) // under mu, so Close's Wait never races with an Add
		m.mu.Unlock()
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

func (m *Mux) route(conn net.Conn) {
	if m.faults != nil {
		conn = m.faults.track(conn, "")
	}
	if m.tls != nil {
		tc := tls.Server(conn, m.tls)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			m.log.Warn("peer TLS handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
			_ = conn.Close()
			return
		}
		conn = tc
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		_ = conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	m.mu.Lock()
	vl := m.handlers[b[0]]
	m.mu.Unlock()
	if vl == nil {
		m.log.Warn("peer connection with unknown protocol byte", "byte", b[0], "remote", conn.RemoteAddr().String())
		_ = conn.Close()
		return
	}
	select {
	case <-vl.done:
		_ = conn.Close()
		return
	default:
	}
	select {
	case vl.conns <- conn:
	case <-vl.done:
		_ = conn.Close()
	case <-m.done:
		_ = conn.Close()
	}
}

// Close stops accepting and closes every virtual listener.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	for _, vl := range m.handlers {
		vl.closeOnce()
	}
	m.mu.Unlock()
	err := m.ln.Close()
	m.wg.Wait()
	// Connections routed but never accepted would otherwise stay open, and a
	// peer writing to one would wait for its I/O timeout instead of redialing.
	for _, vl := range m.handlers {
		vl.drain()
	}
	return err
}

type virtualListener struct {
	proto byte
	mux   *Mux
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (v *virtualListener) Accept() (net.Conn, error) {
	select {
	case c := <-v.conns:
		return c, nil
	case <-v.done:
		return nil, ErrClosed
	}
}

func (v *virtualListener) closeOnce() { v.once.Do(func() { close(v.done) }) }

// Close stops accepting and closes connections waiting to be accepted.
func (v *virtualListener) Close() error {
	v.closeOnce()
	v.drain()
	return nil
}

func (v *virtualListener) drain() {
	for {
		select {
		case c := <-v.conns:
			_ = c.Close()
		default:
			return
		}
	}
}

func (v *virtualListener) Addr() net.Addr { return v.mux.Addr() }

// Dialer opens peer connections of one protocol.
type Dialer struct {
	TLS    *tls.Config
	Faults *Faults
}

// Dial connects to addr and announces proto.
func (d *Dialer) Dial(ctx context.Context, addr string, proto byte) (net.Conn, error) {
	if d.Faults != nil && d.Faults.Blocked(addr) {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrPartitioned)
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if d.Faults != nil {
		conn = d.Faults.track(conn, addr)
	}
	if d.TLS != nil {
		tc := tls.Client(conn, d.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%w with %s: %w", ErrHandshake, addr, err)
		}
		conn = tc
	}
	if _, err := conn.Write([]byte{proto}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	return conn, nil
}
