package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// DefaultMaxFrameBytes bounds an RPC frame when RPCOptions leaves it 0. It is
// as large as gob's own limit was, so nothing forwarded before (a RESP
// pipeline's batch of 1024 large writes is one proposal) is refused now; a
// frame's memory is allocated as its bytes arrive, so the bound costs nothing
// until a peer really sends that much.
const DefaultMaxFrameBytes = 1 << 30

// DefaultMaxInflight bounds the handlers running at once for one connection
// when RPCOptions leaves it 0. Past it the connection's reader waits, which
// holds the caller back (TCP flow control) instead of starting goroutines
// without end.
const DefaultMaxInflight = 1024

// Error codes this package puts in replies. Services choose their own codes
// (any other string of at most 255 bytes).
const (
	// CodeUnknownMethod: no handler for the method; nothing ran.
	CodeUnknownMethod = "peer.unknown_method"
	// CodeClosed: the endpoint is closing and did not run the call.
	CodeClosed = "peer.closed"
	// CodeTooLarge: the reply would exceed the frame limit.
	CodeTooLarge = "peer.too_large"
	// CodeDeadline: the handler gave up at the caller's deadline (it
	// returned an error wrapping context.DeadlineExceeded).
	CodeDeadline = "peer.deadline"
	// CodeInternal: the handler failed with an error that is not an *Error.
	CodeInternal = "peer.internal"
)

const (
	rpcDialTimeout  = 5 * time.Second
	rpcWriteTimeout = 10 * time.Second
	rpcQueue        = 256      // frames waiting for a connection's writer
	rpcBufferBytes  = 64 << 10 // read and write buffers per connection
)

// Handler serves one RPC method. payload belongs to the handler; the bytes it
// returns belong to the endpoint until they are written (do not change them
// after returning). ctx ends at the caller's deadline, when the connection
// breaks, or when the service or the endpoint closes. To give the caller an
// error it can test, return an *Error with a code; any other error reaches
// the caller as CodeInternal with its message.
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// Error is a failed call as the remote handler (or endpoint) reported it.
// Callers test Code, never Msg; errors.Is matches ErrUnknownMethod, ErrClosed,
// ErrFrameTooLarge and context.DeadlineExceeded for this package's codes.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return "peer: remote error " + e.Code + ": " + e.Msg }

// Is reports whether this package's code for target is e's.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnknownMethod:
		return e.Code == CodeUnknownMethod
	case ErrClosed:
		return e.Code == CodeClosed
	case ErrFrameTooLarge:
		return e.Code == CodeTooLarge
	case context.DeadlineExceeded:
		return e.Code == CodeDeadline
	}
	return false
}

// RPCOptions configure an RPC endpoint; the zero value is usable.
type RPCOptions struct {
	Logger *slog.Logger
	// MaxFrameBytes bounds a frame's body, sent or received (0, or more
	// than DefaultMaxFrameBytes: DefaultMaxFrameBytes). Every member must
	// use the same bound.
	MaxFrameBytes int
	// MaxInflight bounds the handlers running at once per connection (0:
	// DefaultMaxInflight).
	MaxInflight int
}

// RPC is a node's internal RPC endpoint on the peer port: it serves the
// services components register on it, and calls other nodes' endpoints,
// keeping one connection per peer address on which any number of calls are
// in flight. Create one per node with NewRPC and hand it to every component.
type RPC struct {
	dialer   *Dialer
	ln       net.Listener
	log      *slog.Logger
	maxFrame int
	inflight int

	// ctx ends at Close; handler contexts and dials derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.RWMutex
	closed   bool
	methods  map[string]method     // by full name, "service.Method"
	services map[string]*Service   // by name
	peers    map[string]*dialEntry // outgoing connections, by address
	inbound  map[*wire]struct{}    // accepted connections

	handlers sync.WaitGroup // running handlers, waited for by Close
	wg       sync.WaitGroup // accept loop, connection goroutines, dials
}

type method struct {
	h   Handler
	svc *Service
}

// NewRPC registers ProtoRPC on mux and serves it until Close; calls to other
// nodes go through dialer.
func NewRPC(mux *Mux, dialer *Dialer, o RPCOptions) (*RPC, error) {
	ln, err := mux.Listen(ProtoRPC, "rpc")
	if err != nil {
		return nil, err
	}
	return newRPC(ln, dialer, o), nil
}

func newRPC(ln net.Listener, dialer *Dialer, o RPCOptions) *RPC {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxFrameBytes <= 0 || o.MaxFrameBytes > DefaultMaxFrameBytes {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if dialer == nil {
		dialer = &Dialer{}
	}
	r := &RPC{
		dialer: dialer, ln: ln, log: o.Logger, maxFrame: o.MaxFrameBytes, inflight: o.MaxInflight,
		methods: map[string]method{}, services: map[string]*Service{},
		peers: map[string]*dialEntry{}, inbound: map[*wire]struct{}{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.serve()
	return r
}

// Service is a set of methods registered together under one name.
type Service struct {
	rpc    *RPC
	name   string
	ctx    context.Context // ends at Close; ends the service's handler contexts
	cancel context.CancelFunc
	wg     sync.WaitGroup // running handlers
	closed bool           // under rpc.mu
}

// Register adds the service name with its methods, called as
// "name.Method". It fails with ErrServiceTaken when the name is registered,
// ErrBadName for an empty name or one with a dot, and ErrClosed after Close.
func (r *RPC) Register(name string, methods map[string]Handler) (*Service, error) {
	if name == "" || strings.Contains(name, ".") {
		return nil, fmt.Errorf("%w: service %q", ErrBadName, name)
	}
	for m, h := range methods {
		if m == "" || h == nil || len(name)+1+len(m) > maxMethodLen {
			return nil, fmt.Errorf("%w: method %q of %s", ErrBadName, m, name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("peer: register %s: %w", name, ErrClosed)
	}
	if r.services[name] != nil {
		return nil, fmt.Errorf("%w: %s", ErrServiceTaken, name)
	}
	s := &Service{rpc: r, name: name}
	s.ctx, s.cancel = context.WithCancel(r.ctx)
	r.services[name] = s
	for m, h := range methods {
		r.methods[name+"."+m] = method{h: h, svc: s}
	}
	return s, nil
}

// Close removes the service's methods (calls to them answer
// ErrUnknownMethod), ends its handlers' contexts and waits for them to
// return. Other services keep running.
func (s *Service) Close() {
	r := s.rpc
	r.mu.Lock()
	if !s.closed {
		s.closed = true
		delete(r.services, s.name)
		for name, m := range r.methods {
			if m.svc == s {
				delete(r.methods, name)
			}
		}
	}
	r.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// Close stops serving and calling. Handlers still running see their contexts
// end; Close waits for them and sends their replies, then closes every
// connection (calls in flight fail with ErrConnLost) and waits for the
// endpoint's goroutines.
func (r *RPC) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	_ = r.ln.Close()
	r.cancel()
	r.handlers.Wait()

	r.mu.Lock()
	var in []*wire
	for w := range r.inbound {
		in = append(in, w)
	}
	var out []*clientConn
	for _, e := range r.peers {
		if e.cc != nil {
			out = append(out, e.cc)
		}
	}
	r.mu.Unlock()
	for _, w := range in {
		w.finish() // the replies of the handlers waited for above go out first
	}
	for _, cc := range out {
		cc.fail(fmt.Errorf("%w: %w", ErrConnLost, ErrClosed))
	}
	r.wg.Wait()
	return nil
}

// Call invokes method ("service.Method") on the endpoint at addr and returns
// its reply, or an error: an *Error when the handler failed (errors.As),
// ErrConnLost when the connection broke after the request may have been
// sent (the outcome is unknown), the context's error when ctx ended first
// (the handler's context ends at the same deadline), or a dial error
// (nothing was sent). Call does not keep payload after it returns.
func (r *RPC) Call(ctx context.Context, addr, method string, payload []byte) ([]byte, error) {
	return r.call(ctx, addr, method, payload, false)
}

// CallOwned is Call for a payload the caller hands over: it is written
// from where it is, not copied into the frame (a forwarded 64 MiB command
// costs no second 64 MiB), so the caller must not change it after the
// call, even once CallOwned has returned.
func (r *RPC) CallOwned(ctx context.Context, addr, method string, payload []byte) ([]byte, error) {
	return r.call(ctx, addr, method, payload, true)
}

func (r *RPC) call(ctx context.Context, addr, method string, payload []byte, owned bool) ([]byte, error) {
	if method == "" || len(method) > maxMethodLen {
		return nil, fmt.Errorf("%w: method %q", ErrBadName, method)
	}
	if requestFixed+len(method)+len(payload) > r.maxFrame {
		return nil, fmt.Errorf("peer: rpc %s to %s: %w: %d-byte payload", method, addr, ErrFrameTooLarge, len(payload))
	}
	for attempt := 0; ; attempt++ {
		cc, err := r.peer(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("peer: rpc %s to %s: %w: %w", method, addr, ErrNotSent, err)
		}
		out, sent, err := cc.call(ctx, method, payload, owned)
		if err != nil && !sent && attempt == 0 && errors.Is(err, ErrConnLost) {
			// The connection broke before this call used it (a peer that
			// restarted since the last call): redial once.
			r.forget(addr, cc)
			continue
		}
		if err != nil && !sent {
			return nil, fmt.Errorf("peer: rpc %s to %s: %w: %w", method, addr, ErrNotSent, err)
		}
		if err != nil {
			return nil, fmt.Errorf("peer: rpc %s to %s: %w", method, addr, err)
		}
		return out, nil
	}
}

// dialEntry is an outgoing connection, or the dial that will make it. Its
// fields are set before ready closes.
type dialEntry struct {
	ready chan struct{}
	cc    *clientConn
	err   error
}

// peer returns the connection to addr, dialing it once however many callers
// want it at the same time. The dial is bounded by its own timeout, not by
// the first caller's context, since later callers share it.
func (r *RPC) peer(ctx context.Context, addr string) (*clientConn, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	e := r.peers[addr]
	if e == nil {
		e = &dialEntry{ready: make(chan struct{})}
		r.peers[addr] = e
		r.wg.Add(1)
		go r.dial(addr, e)
	}
	r.mu.Unlock()
	select {
	case <-e.ready:
		return e.cc, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *RPC) dial(addr string, e *dialEntry) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.ctx, rpcDialTimeout)
	conn, err := r.dialer.Dial(ctx, addr, ProtoRPC)
	cancel()
	r.mu.Lock()
	if err == nil && r.closed {
		_ = conn.Close()
		err = ErrClosed
	}
	if err != nil {
		e.err = err
		if r.peers[addr] == e {
			delete(r.peers, addr) // the next call dials again
		}
		r.mu.Unlock()
		close(e.ready)
		return
	}
	cc := &clientConn{rpc: r, addr: addr, w: newWire(conn), pending: map[uint64]chan callResult{}}
	e.cc = cc
	r.wg.Add(2)
	r.mu.Unlock()
	go func() { defer r.wg.Done(); cc.w.writeLoop() }()
	go func() { defer r.wg.Done(); cc.readLoop() }()
	close(e.ready)
}

// forget drops cc from the connections so that the next call redials.
func (r *RPC) forget(addr string, cc *clientConn) {
	r.mu.Lock()
	if e := r.peers[addr]; e != nil && e.cc == cc {
		delete(r.peers, addr)
	}
	r.mu.Unlock()
}

// clientConn is an outgoing connection: calls register in pending under a
// fresh id, the reader hands each reply to its caller.
type clientConn struct {
	rpc  *RPC
	addr string
	w    *wire

	mu      sync.Mutex
	err     error // set once broken; no call starts after it
	next    uint64
	pending map[uint64]chan callResult
}

type callResult struct {
	f   frame
	err error
}

// call sends one request and waits for its reply; sent is false when the
// request certainly did not leave (so it is safe to try again).
func (cc *clientConn) call(ctx context.Context, method string, payload []byte, owned bool) (out []byte, sent bool, err error) {
	var timeout time.Duration
	if d, ok := ctx.Deadline(); ok {
		if timeout = time.Until(d); timeout <= 0 {
			return nil, false, context.DeadlineExceeded
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	ch := make(chan callResult, 1)
	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return nil, false, err
	}
	cc.next++
	id := cc.next
	cc.pending[id] = ch
	cc.mu.Unlock()

	// Unless the caller handed it over, the payload is copied into the
	// frame: the writer may still hold the frame after a caller whose
	// context ended has returned.
	var f outFrame
	if owned {
		f = outFrame{head: appendRequestHead(nil, id, timeout, method, len(payload)), payload: payload}
	} else {
		b := appendRequestHead(make([]byte, 0, frameLenSize+requestFixed+len(method)+len(payload)), id, timeout, method, len(payload))
		f = outFrame{head: append(b, payload...)}
	}
	if err := cc.w.send(ctx, f); err != nil {
		cc.abandon(id)
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	select {
	case res := <-ch:
		switch {
		case res.err != nil:
			return nil, true, res.err
		case res.f.code != "":
			return nil, true, &Error{Code: res.f.code, Msg: res.f.msg}
		}
		return res.f.payload, true, nil
	case <-ctx.Done():
		cc.abandon(id) // a reply that comes later is dropped
		return nil, true, ctx.Err()
	}
}

func (cc *clientConn) abandon(id uint64) {
	cc.mu.Lock()
	delete(cc.pending, id)
	cc.mu.Unlock()
}

func (cc *clientConn) readLoop() {
	br := bufio.NewReaderSize(cc.w.conn, rpcBufferBytes)
	for {
		body, err := readFrame(br, cc.rpc.maxFrame)
		var f frame
		if err == nil {
			f, err = parseFrame(body)
		}
		if err == nil && f.kind != frameReply {
			err = fmt.Errorf("%w: a request on a calling connection", ErrBadFrame)
		}
		if err != nil {
			if werr := cc.w.closedErr(); werr != nil {
				err = werr // the writer failed first, or the endpoint closed us
			} else if errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge) {
				cc.rpc.log.Warn("peer rpc: bad reply frame; closing the connection", "peer", cc.addr, "err", err)
			}
			cc.fail(fmt.Errorf("%w: %w", ErrConnLost, err))
			return
		}
		cc.mu.Lock()
		ch := cc.pending[f.id]
		delete(cc.pending, f.id)
		cc.mu.Unlock()
		if ch != nil {
			ch <- callResult{f: f}
		}
	}
}

// fail breaks the connection: calls in flight get err, the next call redials.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err == nil {
		cc.err = err
	}
	err = cc.err
	pending := cc.pending
	cc.pending = nil
	cc.mu.Unlock()
	for _, ch := range pending {
		ch <- callResult{err: err}
	}
	cc.w.close(err)
	cc.rpc.forget(cc.addr, cc)
}

// serve accepts connections from peers until the listener closes.
func (r *RPC) serve() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			return
		}
		w := newWire(conn)
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			_ = conn.Close()
			return
		}
		r.inbound[w] = struct{}{}
		r.wg.Add(2)
		r.mu.Unlock()
		go func() { defer r.wg.Done(); w.writeLoop() }()
		go func() { defer r.wg.Done(); r.serveConn(w) }()
	}
}

// serveConn reads requests and runs each in its own goroutine, at most
// r.inflight at once.
func (r *RPC) serveConn(w *wire) {
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel() // handlers of a broken connection stop: no one reads their replies
	sem := make(chan struct{}, r.inflight)
	br := bufio.NewReaderSize(w.conn, rpcBufferBytes)
	remote := w.conn.RemoteAddr().String()
	for {
		body, err := readFrame(br, r.maxFrame)
		var f frame
		if err == nil {
			f, err = parseFrame(body)
		}
		if err == nil && f.kind != frameRequest {
			err = fmt.Errorf("%w: a reply on a serving connection", ErrBadFrame)
		}
		if err != nil {
			if w.closedErr() == nil && (errors.Is(err, ErrBadFrame) || errors.Is(err, ErrFrameTooLarge)) {
				r.log.Warn("peer rpc: bad request frame; closing the connection", "remote", remote, "err", err)
			}
			w.close(err)
			break
		}
		select {
		case sem <- struct{}{}:
		case <-w.done:
		}
		if w.closedErr() != nil {
			break
		}
		r.dispatch(ctx, w, f, sem)
	}
	r.mu.Lock()
	delete(r.inbound, w)
	r.mu.Unlock()
}

// dispatch starts f's handler, or answers at once when there is none.
func (r *RPC) dispatch(connCtx context.Context, w *wire, f frame, sem chan struct{}) {
	r.mu.RLock()
	m, ok := r.methods[f.method]
	closed := r.closed
	if ok && !closed {
		// Under the lock that Close and Service.Close take before waiting,
		// so no handler starts after either has begun to wait.
		r.handlers.Add(1)
		m.svc.wg.Add(1)
	}
	r.mu.RUnlock()
	switch {
	case closed:
		r.reply(w, f.id, nil, &Error{Code: CodeClosed, Msg: "the endpoint is closing"})
		<-sem
		return
	case !ok:
		r.reply(w, f.id, nil, &Error{Code: CodeUnknownMethod, Msg: "no method " + f.method})
		<-sem
		return
	}
	go func() {
		defer func() {
			<-sem
			m.svc.wg.Done()
			r.handlers.Done()
		}()
		var ctx context.Context
		var cancel context.CancelFunc
		if f.timeout > 0 {
			ctx, cancel = context.WithTimeout(connCtx, f.timeout)
		} else {
			ctx, cancel = context.WithCancel(connCtx)
		}
		stop := context.AfterFunc(m.svc.ctx, cancel)
		out, err := m.h(ctx, f.payload)
		stop()
		cancel()
		r.reply(w, f.id, out, err)
	}()
}

func (r *RPC) reply(w *wire, id uint64, out []byte, err error) {
	var code, msg string
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e) && e.Code != "":
			code, msg = e.Code, e.Msg
		case errors.Is(err, context.DeadlineExceeded):
			code, msg = CodeDeadline, err.Error()
		default:
			code, msg = CodeInternal, err.Error()
		}
		if len(code) > maxCodeLen {
			code = code[:maxCodeLen]
		}
		out = nil
	} else if replyFixed+len(out) > r.maxFrame {
		code, msg, out = CodeTooLarge, fmt.Sprintf("a %d-byte reply", len(out)), nil
	}
	// No deadline of its own: the write timeout bounds a peer that stops reading.
	_ = w.send(context.Background(), outFrame{head: appendReplyHead(nil, id, code, msg, len(out)), payload: out})
}

// wire is one connection's sending side: a goroutine owns the buffered
// writer and writes queued frames, flushing when the queue is empty, so
// concurrent calls share system calls.
type wire struct {
	conn      net.Conn
	out       chan outFrame
	done      chan struct{} // closed with the connection
	finishing chan struct{} // closed to flush what is queued, then close
	closeOnce sync.Once
	finOnce   sync.Once
	err       error // why the wire closed; set before done closes
}

type outFrame struct{ head, payload []byte }

func newWire(conn net.Conn) *wire {
	return &wire{conn: conn, out: make(chan outFrame, rpcQueue), done: make(chan struct{}), finishing: make(chan struct{})}
}

func (w *wire) close(err error) {
	w.closeOnce.Do(func() {
		w.err = err
		close(w.done)
		_ = w.conn.Close()
	})
}

// finish closes the wire once the frames already queued are written.
func (w *wire) finish() { w.finOnce.Do(func() { close(w.finishing) }) }

// closedErr is why the wire closed, or nil while it is open.
func (w *wire) closedErr() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}

// send queues f for writing, waiting for room in the queue until ctx ends
// or the connection closes.
func (w *wire) send(ctx context.Context, f outFrame) error {
	if err := w.closedErr(); err != nil {
		return err
	}
	select {
	case w.out <- f:
		return nil
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *wire) writeLoop() {
	bw := bufio.NewWriterSize(w.conn, rpcBufferBytes)
	for {
		var f outFrame
		finishing := false
		select {
		case f = <-w.out:
		case <-w.finishing:
			finishing = true
		case <-w.done:
			return
		}
		if !finishing {
			if err := w.write(bw, f); err != nil {
				w.close(err)
				return
			}
		}
	queued:
		for {
			select {
			case f = <-w.out:
				if err := w.write(bw, f); err != nil {
					w.close(err)
					return
				}
			default:
				break queued
			}
		}
		_ = w.conn.SetWriteDeadline(time.Now().Add(rpcWriteTimeout))
		if err := bw.Flush(); err != nil {
			w.close(err)
			return
		}
		if finishing {
			w.close(ErrClosed)
			return
		}
	}
}

// write buffers f, or writes it through when it is larger than the buffer.
// A peer that takes no bytes for rpcWriteTimeout (plus a second per 10 MiB
// of the frame) is given up on.
func (w *wire) write(bw *bufio.Writer, f outFrame) error {
	n := len(f.head) + len(f.payload)
	_ = w.conn.SetWriteDeadline(time.Now().Add(rpcWriteTimeout + time.Duration(n/(10<<20))*time.Second))
	if _, err := bw.Write(f.head); err != nil {
		return err
	}
	if len(f.payload) > 0 {
		if _, err := bw.Write(f.payload); err != nil {
			return err
		}
	}
	return nil
}
