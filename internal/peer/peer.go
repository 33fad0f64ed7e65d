// Package peer owns the peer port: one TCP listener (TLS with required client
// certificates when configured) shared by every component that talks to other
// members. The first byte a dialer writes on a new connection says which
// protocol follows, as in rqlite's tcp.Mux. Components register their byte on
// the Mux (Listen); the bytes are declared below, in one place, so a new
// component claims one here and two components can never share one. A
// connection that announces a byte nobody registered is logged and closed.
// After the byte the dialer sends its cluster ID (see ClusterID): a length
// byte and the ID, so nodes of different clusters never talk.
//
// RPC is the node's one internal request/response endpoint (on ProtoRPC):
// components register named services on it (raftnode its forwarding, read
// index and membership calls; the eventual engine its replication and
// anti-entropy calls next) and call each other's by name. Its wire protocol
// is cairn's own: length-prefixed binary frames (request id, method name,
// payload; reply id, error code and message, payload), many calls in flight
// on one connection per peer, replies in any order. We chose it over
//
//   - net/rpc with gob, used before: frozen in the standard library,
//     reflection-based (every call encodes type information and walks
//     structs), with no context (a caller could give up, but the server never
//     learned of the deadline), no error codes (only strings, which callers
//     had to carry in their reply structs), and gob decoding limits we do not
//     control;
//   - gRPC: a large dependency with HTTP/2 framing, protobuf code generation
//     and its own connection management and TLS, none of which the peer port
//     needs (it already has mTLS, the mux and a fault-injection dialer);
//     gRPC belongs on the client-facing side, where users' tools speak it.
//
// The protocol needs none of that: payloads are bytes that each service
// encodes by hand, a frame is a few fixed fields, and the whole of it is this
// package (fuzzed: FuzzFrameDecode). See rpc.go and frame.go.
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
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol bytes written first on every peer connection. Each has one owner;
// a component claims its byte with Mux.Listen, which refuses a byte already
// taken. A new component declares its byte here.
const (
	// ProtoRaft carried hashicorp/raft's NetworkTransport (msgpack) of the
	// node's Raft group, up to the build that replaced it with ProtoRaftWire.
	// Retired: nothing listens on it, so a node of an older build is refused
	// ("unknown protocol byte") instead of misparsed. Never reuse it.
	ProtoRaft byte = 1
	// ProtoRPC carries internal RPC, shared by every component through one
	// RPC endpoint per node (services register by name, not by byte).
	// Owner: RPC (this package); users: raftnode (forwarding, read index,
	// membership, ping), and the eventual engine next.
	ProtoRPC byte = 2

	// ProtoReplication is reserved for the eventual engine's bulk streams
	// (hinted handoff replay, range transfer when the ring changes), which
	// would hold an RPC connection too long. Single writes and reads go over
	// RPC.
	ProtoReplication byte = 3
	// ProtoAntiEntropy is reserved for the eventual engine's anti-entropy
	// exchanges (hash-tree comparison, bandwidth-limited repair streams).
	ProtoAntiEntropy byte = 4
	// Byte 5 carried the experimental etcd-raft member's messages
	// (measured and deleted, docs/BENCHMARKS.md); do not reuse it.
	// ProtoRaftWire carries raftnode's own Raft transport (its binary wire
	// format, raftnode/wire.go) of the node's Raft group. Owner: raftnode.
	ProtoRaftWire byte = 6

	// ProtoRaftGroupFirst..ProtoRaftGroupLast were reserved for further Raft
	// groups on the retired msgpack transport. Retired with ProtoRaft: never
	// reuse them.
	ProtoRaftGroupFirst byte = 16
	ProtoRaftGroupLast  byte = 63
	// ProtoRaftWireGroupFirst..ProtoRaftWireGroupLast are reserved for the
	// transports of further Raft groups (multi-raft, the rsm framework) in
	// the wire format of ProtoRaftWire: group g uses
	// ProtoRaftWireGroupFirst+g. The node's first group stays on
	// ProtoRaftWire.
	ProtoRaftWireGroupFirst byte = 64
	ProtoRaftWireGroupLast  byte = 111
)

// Errors returned by the mux, the dialer and RPC.
var (
	// ErrClosed means the mux, a listener or the RPC endpoint is closed.
	ErrClosed      = errors.New("peer: closed")
	ErrPartitioned = errors.New("peer: link cut by fault injection")
	// ErrHandshake means the TLS handshake with a peer failed: one side does
	// not trust the other's certificate (or one side does not speak TLS).
	ErrHandshake = errors.New("peer: TLS handshake failed")
	// ErrProtoTaken means another component has registered the protocol byte.
	ErrProtoTaken = errors.New("peer: protocol byte already registered")
	// ErrServiceTaken means another component has registered an RPC service
	// of that name.
	ErrServiceTaken = errors.New("peer: rpc service already registered")
	// ErrBadName means an RPC service or method name is empty, too long
	// (255 bytes with the service name) or, for a service, has a dot.
	ErrBadName = errors.New("peer: bad rpc service or method name")
	// ErrUnknownMethod means the peer has no handler for the method (the
	// service is not registered there, or not yet): nothing ran.
	ErrUnknownMethod = errors.New("peer: rpc method not registered")
	// ErrFrameTooLarge means an RPC frame exceeds the frame limit; a call
	// whose request is too large is not sent.
	ErrFrameTooLarge = errors.New("peer: rpc frame too large")
	// ErrBadFrame means a peer sent bytes that are not a valid RPC frame; the
	// connection is closed.
	ErrBadFrame = errors.New("peer: malformed rpc frame")
	// ErrConnLost means the connection broke while a call was in flight: the
	// call may or may not have run on the peer. The next call redials.
	ErrConnLost = errors.New("peer: rpc connection lost")
	// ErrNotSent means a call failed before any of it was sent (the peer
	// could not be dialed, or the connection broke before the call used
	// it): it certainly did not run there, so it is safe to try again.
	ErrNotSent = errors.New("peer: rpc not sent")
)

// ClusterID is the ID of the cluster a node belongs to, as the peer port
// announces and checks it. Every connection starts with the protocol byte
// and the dialer's cluster ID (a length byte, then the ID); the accepting
// side closes a connection whose ID differs from its own when both are
// known, so the members of two clusters (a cluster restored from a
// snapshot and a member of the old one started by mistake) never talk. A
// side that does not know its ID yet (a node joining, a new cluster before
// its first leader named it) takes part. The zero value (and nil) is an
// unknown ID.
type ClusterID struct {
	get atomic.Pointer[func() string]
}

// Set makes f the source of the ID (the strong engine's, once it runs).
func (c *ClusterID) Set(f func() string) { c.get.Store(&f) }

// Get returns the ID, "" while unknown.
func (c *ClusterID) Get() string {
	if c == nil {
		return ""
	}
	if f := c.get.Load(); f != nil {
		return (*f)()
	}
	return ""
}

// maxClusterID bounds the ID a peer may announce.
const maxClusterID = 64

// Mux accepts peer connections and routes them by their first byte.
type Mux struct {
	ln     net.Listener
	tls    *tls.Config
	log    *slog.Logger
	faults *Faults
	// Cluster, when set, refuses connections from other clusters.
	Cluster *ClusterID

	mu       sync.Mutex
	handlers map[byte]*virtualListener // registered protocols
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

// Listen registers proto for the component called name (used in errors and
// logs) and returns a listener that receives the connections whose first byte
// is proto. It fails with ErrProtoTaken when another listener holds proto,
// and with ErrClosed after Close. Closing the listener releases the byte.
func (m *Mux) Listen(proto byte, name string) (net.Listener, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("peer: listen for %s: %w", name, ErrClosed)
	}
	if vl := m.handlers[proto]; vl != nil {
		return nil, fmt.Errorf("%w: byte %d is %s's, wanted by %s", ErrProtoTaken, proto, vl.name, name)
	}
	vl := &virtualListener{proto: proto, name: name, mux: m, conns: make(chan net.Conn, 16), done: make(chan struct{})}
	m.handlers[proto] = vl
	return vl, nil
}

// release unregisters v if it still holds its byte.
func (m *Mux) release(v *virtualListener) {
	m.mu.Lock()
	if m.handlers[v.proto] == v {
		delete(m.handlers, v.proto)
	}
	m.mu.Unlock()
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
	var b [2]byte // the protocol byte, the cluster ID's length
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[1] > maxClusterID {
		_ = conn.Close()
		return
	}
	theirs := make([]byte, b[1])
	if _, err := io.ReadFull(conn, theirs); err != nil {
		_ = conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if mine := m.Cluster.Get(); mine != "" && len(theirs) > 0 && string(theirs) != mine {
		m.log.Warn("peer connection from another cluster refused", "remote", conn.RemoteAddr().String(),
			"their_cluster_id", string(theirs), "cluster_id", mine)
		_ = conn.Close()
		return
	}
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
	vls := make([]*virtualListener, 0, len(m.handlers))
	for _, vl := range m.handlers {
		vl.closeOnce()
		vls = append(vls, vl)
	}
	m.mu.Unlock()
	err := m.ln.Close()
	m.wg.Wait()
	// Connections routed but never accepted would otherwise stay open, and a
	// peer writing to one would wait for its I/O timeout instead of redialing.
	for _, vl := range vls {
		vl.drain()
	}
	return err
}

type virtualListener struct {
	proto byte
	name  string
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

// Close stops accepting, releases the protocol byte and closes connections
// waiting to be accepted.
func (v *virtualListener) Close() error {
	v.closeOnce()
	v.mux.release(v)
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
	// Cluster is the ID announced on every connection (nil: unknown).
	Cluster *ClusterID
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
		tc := d.Faults.track(conn, addr)
		if tc == nil {
			_ = conn.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, ErrPartitioned)
		}
		conn = tc
	}
	if d.TLS != nil {
		tc := tls.Client(conn, d.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%w with %s: %w", ErrHandshake, addr, err)
		}
		conn = tc
	}
	id := d.Cluster.Get()
	if len(id) > maxClusterID {
		id = ""
	}
	hello := append([]byte{proto, byte(len(id))}, id...)
	if _, err := conn.Write(hello); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("peer: %w", err)
	}
	return conn, nil
}
