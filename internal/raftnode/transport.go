//lint:file-ignore SA1019 the wire format carries every field Raft v1.8.0 sets, its deprecated Leader and Candidate too

package raftnode

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is raft.Transport over the peer mux with the wire format of
// wire.go. It keeps hashicorp/raft NetworkTransport's behaviour: a pool of
// connections per peer, pipelined AppendEntries (maxInFlight, responses in
// order), the heartbeat fast path, InstallSnapshot streaming the snapshot
// after its header with a deadline scaled by its size, and remote errors
// returned as errors carrying their text. Close stops every goroutine it
// started and closes every connection it holds.
type Transport struct {
	ln       net.Listener
	dial     func(ctx context.Context, addr string) (net.Conn, error)
	addr     raft.ServerAddress
	timeout  time.Duration
	maxPool  int
	log      *slog.Logger
	consumer chan raft.RPC
	hb       atomic.Pointer[func(raft.RPC)]

	mu     sync.Mutex
	pool   map[raft.ServerAddress][]*outConn
	open   map[io.Closer]struct{} // accepted connections and pipelines
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup // the accept loop and the connection handlers
}

// TransportConfig configures NewTransport.
type TransportConfig struct {
	// Listener receives the peers' connections (the mux's, for the Raft byte).
	Listener net.Listener
	// Dial opens a connection to a peer (the peer dialer, with the Raft byte).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Addr is the advertised address, which Raft records in its configuration.
	Addr string
	// Timeout is the I/O deadline of an RPC; InstallSnapshot scales it by
	// its size (one Timeout per snapshotTimeoutScale bytes).
	Timeout time.Duration
	// MaxPool is the number of idle connections kept per peer.
	MaxPool int
	Logger  *slog.Logger
}

const (
	// maxInFlight bounds a pipeline's AppendEntries awaiting a response,
	// as NetworkTransport's default MaxRPCsInFlight (2) does.
	maxInFlight = 2
	// snapshotTimeoutScale is NetworkTransport's TimeoutScale.
	snapshotTimeoutScale = 256 << 10
	// connReadBuffer is the size of a connection's read buffer.
	connReadBuffer = 64 << 10
)

var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
)

// NewTransport starts accepting on cfg.Listener.
func NewTransport(cfg TransportConfig) *Transport {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		ln: cfg.Listener, dial: cfg.Dial, addr: raft.ServerAddress(cfg.Addr), timeout: cfg.Timeout,
		maxPool: cfg.MaxPool, log: cfg.Logger, consumer: make(chan raft.RPC),
		pool: map[raft.ServerAddress][]*outConn{}, open: map[io.Closer]struct{}{}, done: make(chan struct{}),
	}
	t.wg.Add(1)
	go t.accept()
	return t
}

// Consumer is the stream of RPCs for Raft to handle.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumer }

// LocalAddr is the advertised address.
func (t *Transport) LocalAddr() raft.ServerAddress { return t.addr }

// EncodePeer encodes a peer's address as NetworkTransport does.
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte { return []byte(addr) }

// DecodePeer is the inverse of EncodePeer.
func (t *Transport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// SetHeartbeatHandler sets the handler of heartbeats, which skip Consumer.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) { t.hb.Store(&cb) }

// Close stops accepting, closes every connection and pipeline, and waits
// for the goroutines serving them.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	var closers []io.Closer
	for c := range t.open {
		closers = append(closers, c)
	}
	for _, conns := range t.pool {
		for _, c := range conns {
			closers = append(closers, c.c)
		}
	}
	t.pool = nil
	t.mu.Unlock()
	err := t.ln.Close()
	for _, c := range closers {
		_ = c.Close()
	}
	t.wg.Wait()
	return err
}

// track adds c to what Close closes; false after Close.
func (t *Transport) track(c io.Closer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.open[c] = struct{}{}
	return true
}

func (t *Transport) untrack(c io.Closer) {
	t.mu.Lock()
	delete(t.open, c)
	t.mu.Unlock()
}

// --- the sending side ------------------------------------------------------

// outConn is a connection this node dialed.
type outConn struct {
	target raft.ServerAddress
	c      net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	buf    []byte  // encoding scratch
	spills []spill // entries' Data written from the entries
}

func (t *Transport) getConn(target raft.ServerAddress) (*outConn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, raft.ErrTransportShutdown
	}
	if conns := t.pool[target]; len(conns) > 0 {
		c := conns[len(conns)-1]
		t.pool[target] = conns[:len(conns)-1]
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	defer cancel()
	c, err := t.dial(ctx, string(target))
	if err != nil {
		return nil, err
	}
	return &outConn{target: target, c: c, r: bufio.NewReaderSize(c, connReadBuffer), w: bufio.NewWriter(c)}, nil
}

// returnConn keeps c for the next call, or closes it.
func (t *Transport) returnConn(c *outConn) {
	t.mu.Lock()
	if !t.closed && len(t.pool[c.target]) < t.maxPool {
		t.pool[c.target] = append(t.pool[c.target], c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = c.c.Close()
}

// send writes one request frame and flushes it. Large entries' Data go
// from the entries to the connection without a copy (spills).
func (c *outConn) send(cmd any) error {
	body, typ, err := appendRequest(c.buf[:0], cmd, &c.spills)
	if err != nil {
		return err
	}
	c.buf = body
	if cap(c.buf) > sharedFrameMax {
		c.buf = nil // do not keep a large buffer
	}
	err = writeFrame(c.w, typ, body, c.spills)
	clear(c.spills) // do not pin the entries
	c.spills = c.spills[:0]
	if err != nil {
		return err
	}
	return c.w.Flush()
}

// recv reads the response into resp. Only a remote error
// leaves the connection usable.
func (c *outConn) recv(resp any) (bool, error) {
	rtyp, body, err := readFrame(c.r)
	if err != nil {
		return false, err
	}
	msg, err := decodeResponse(rtyp, body, resp)
	if err != nil {
		return false, err // decodeResponse checks that rtyp answers typ
	}
	if msg != "" {
		return true, errors.New(msg)
	}
	return true, nil
}

func (t *Transport) call(target raft.ServerAddress, cmd, resp any) error {
	c, err := t.getConn(target)
	if err != nil {
		return err
	}
	if t.timeout > 0 {
		_ = c.c.SetDeadline(time.Now().Add(t.timeout))
	}
	err = c.send(cmd)
	if err != nil {
		_ = c.c.Close()
		return err
	}
	reusable, err := c.recv(resp)
	if reusable {
		t.returnConn(c)
	} else {
		_ = c.c.Close()
	}
	return err
}

// AppendEntries sends one AppendEntries and waits for its response.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.call(target, args, resp)
}

// RequestVote asks target for its vote.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return t.call(target, args, resp)
}

// RequestPreVote asks target whether it would vote.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.call(target, args, resp)
}

// TimeoutNow tells target to start an election now.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return t.call(target, args, resp)
}

// InstallSnapshot sends the request, then the args.Size bytes of data, on
// a connection of its own that it closes after the response.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	c, err := t.getConn(target)
	if err != nil {
		return err
	}
	defer func() { _ = c.c.Close() }()
	if t.timeout > 0 {
		_ = c.c.SetDeadline(time.Now().Add(max(t.timeout, t.timeout*time.Duration(args.Size/snapshotTimeoutScale))))
	}
	err = c.send(args)
	if err != nil {
		return err
	}
	if _, err := io.Copy(c.w, data); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	_, err = c.recv(resp)
	return err
}

// --- the receiving side ----------------------------------------------------

func (t *Transport) accept() {
	defer t.wg.Done()
	delay := time.Duration(0)
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Error("raft transport: accept failed", "err", err)
			select {
			case <-t.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = conn.Close()
			return
		}
		t.open[conn] = struct{}{}
		t.wg.Add(1) // under mu, so Close's Wait never races with an Add
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			defer t.untrack(conn)
			defer func() { _ = conn.Close() }()
			if err := t.serve(conn); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, raft.ErrTransportShutdown) && !t.isClosed() {
				t.log.Warn("raft transport: closing a peer connection", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (t *Transport) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// serve handles the requests of one connection in turn, until it fails.
func (t *Transport) serve(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, connReadBuffer)
	w := bufio.NewWriter(conn)
	var buf []byte
	respCh := make(chan raft.RPCResponse, 1)
	for {
		typ, cmd, err := readRequest(r)
		if err != nil {
			return err
		}
		rpc := raft.RPC{Command: cmd, RespChan: respCh}
		var snapshot *io.LimitedReader
		if req, ok := cmd.(*raft.InstallSnapshotRequest); ok {
			snapshot = &io.LimitedReader{R: r, N: req.Size}
			rpc.Reader = snapshot
		}
		if fn := t.hb.Load(); fn != nil && *fn != nil && isHeartbeat(cmd) {
			(*fn)(rpc)
		} else {
			select {
			case t.consumer <- rpc:
			case <-t.done:
				return raft.ErrTransportShutdown
			}
		}
		var resp raft.RPCResponse
		select {
		case resp = <-respCh:
		case <-t.done:
			return raft.ErrTransportShutdown
		}
		if buf, err = appendResponse(buf[:0], typ, resp.Response, resp.Error); err != nil {
			return err
		}
		if err := writeFrame(w, typ, buf, nil); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if snapshot != nil {
			// The sender closes its snapshot connection after the response;
			// what Raft left unread would desynchronise this one anyway.
			return io.EOF
		}
	}
}

// isHeartbeat is NetworkTransport's rule: an AppendEntries that carries
// nothing but the leader's term and address.
func isHeartbeat(cmd any) bool {
	r, ok := cmd.(*raft.AppendEntriesRequest)
	if !ok {
		return false
	}
	leader := r.Addr
	if len(leader) == 0 {
		leader = r.Leader
	}
	return r.Term != 0 && leader != nil && r.PrevLogEntry == 0 && r.PrevLogTerm == 0 &&
		len(r.Entries) == 0 && r.LeaderCommitIndex == 0
}
