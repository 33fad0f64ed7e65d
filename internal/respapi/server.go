// Package respapi is cairn's Redis-protocol (RESP2) front end: redis-cli and
// Redis clients talk to any node, and every command becomes a call to the same
// kv service the HTTP API uses, so a key written here is read there with the
// same revisions and TTLs.
//
// String commands are expressed as kv transactions (kv.Txn): a read command is
// a list of get operations served with Service.Get, a write command one
// transaction. Commands already buffered on a connection are processed as a
// group: consecutive writes go to the service together in one TxnBatch (one
// Raft proposal), a read first sends the writes queued before it, and replies
// are written in request order. MULTI/EXEC becomes one atomic transaction,
// with WATCH turned into mod-revision compares.
//
// Each connection is served by one goroutine, which parses, runs and
// answers its own commands; nothing is handed to another goroutine on the
// way (watch goroutines only write notifications). Measured at 64 clients
// (docs/BENCHMARKS.md "A leaner RESP path"): one write per reply group and
// two reads per request, the second the read that finds nothing and parks
// the goroutine. Go's poller gives no sound way to skip that read (each
// read resets the descriptor's readiness mark first, so waiting before
// reading can miss bytes already queued); only an epoll loop of our own
// would, worth at most 1.2–1.4× on the front end by a toy measurement.
//
// SUBSCRIBE and PSUBSCRIBE carry Redis's keyspace notifications, made from
// the service's change feed (Service.Watch) and written by one goroutine per
// watch under the lock the replies are written under (pubsub.go); there is
// no other pub/sub.
//
// Reply encoding uses github.com/tidwall/redcon. Request parsing is our own
// (reader.go): redcon's Reader (v1.6) has no bound on the number of arguments
// or the size of a frame — it doubles its buffer for as long as a client keeps
// sending an unfinished command, and parses the frame again from its start on
// every read — and it has no hook for the tighter limits a connection must
// have before it authenticates. reader.go checks every announced count and
// length against the connection's limits before it buffers or allocates.
package respapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Service is what the RESP front end needs from the kv service; *kv.Service
// implements it.
type Service interface {
	Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	Txn(ctx context.Context, t kv.Txn) (*kv.TxnResult, error)
	TxnBatch(ctx context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error)
	Members(ctx context.Context) ([]kv.Member, error)
	AddMember(ctx context.Context, m kv.MemberSpec) error
	RemoveMember(ctx context.Context, name string) error
	Status(ctx context.Context) (*kv.Status, error)
	// Snapshot takes a Raft snapshot on this node now (RAFT SNAPSHOT NOW).
	Snapshot() error
	// Ready reports whether this node can serve (MACHINE).
	Ready() error
	// CheckAdmin says whether the connection's identity may run admin
	// commands (RAFT, MACHINE).
	CheckAdmin(ctx context.Context) error
	// Keyspaces is the policy table the service routes keys by (WATCH
	// refuses keys of eventual keyspaces).
	Keyspaces() *keyspace.Table
	// Watch is the change feed keyspace notifications are made of
	// (SUBSCRIBE, PSUBSCRIBE): the changes of the keys under prefix that
	// ctx's identity may read.
	Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error)
}

// Authenticator checks AUTH credentials and says whether authentication is
// required at all (ACL rules are in force); *kv.Service implements it.
type Authenticator interface {
	Authenticate(user, password string) (auth.Identity, error)
	AuthRequired() bool
}

var _ Service = (*kv.Service)(nil)

// Options configure a Server.
type Options struct {
	// MaxValueBytes bounds one bulk argument (plus a small slack for keys and
	// options); the service enforces the exact value limit. Default 1 MiB.
	MaxValueBytes int64
	// Auth checks AUTH user password (AUTH password is the user "default",
	// as Redis's requirepass). While it says authentication is required, a
	// connection without a verified client certificate must AUTH before
	// anything else, with tight frame limits until then. Nil: no users, and
	// AUTH is refused as in a Redis without a password.
	Auth Authenticator
	// Inflight bounds the command groups served at once across the node;
	// over it a group is answered -BUSY. Nil: no bound.
	Inflight *auth.Inflight
	// ReadTimeout bounds how long a client may take to send the rest of a
	// command it has started; IdleTimeout closes a connection that sends
	// nothing for that long. Zero: no bound.
	ReadTimeout, IdleTimeout time.Duration
	// Logger receives connection-level logs; nil discards them.
	Logger *slog.Logger
	// Version is cairn's version, reported by VERSION, INFO and MACHINE.
	Version string
	// Snapshots are the saved snapshots RAFT SNAPSHOT LIST|FILE|READ show
	// (the node's scheduled backups); nil: none.
	Snapshots Snapshots
	// Registerer, if set, gets the front end's metrics (commands by name
	// and outcome, their latencies, -BUSY refusals, open connections; see
	// metrics.go). Nil: nothing is counted.
	Registerer prometheus.Registerer
}

// Snapshots lists saved snapshot files on this node.
type Snapshots interface {
	// List returns them, oldest first.
	List() ([]SnapshotFile, error)
}

// SnapshotFile is one saved snapshot: its id (file name), where it is on
// this node, when it was taken, of which revision, and its size.
type SnapshotFile struct {
	ID       string
	Path     string
	Time     time.Time
	Revision int64
	Bytes    int64
}

// Server serves the Redis protocol on listeners.
type Server struct {
	svc     Service
	opt     Options
	log     *slog.Logger
	started time.Time

	ctx    context.Context // canceled by Close: aborts in-flight service calls
	cancel context.CancelFunc

	limAuthed limits
	limUnauth limits

	nextID  atomic.Int64
	cursors *cursorTable
	// notify is the notify-keyspace-events setting (notifyFlags): this
	// node's, in memory, as CONFIG SET left it.
	notify atomic.Uint32

	// metrics count commands (nil without Options.Registerer).
	metrics *commandMetrics

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Bounds for authenticated connections.
const (
	bulkSlack     = 64 << 10 // room for keys and options beside the largest value
	maxArgs       = 1 << 20
	minFrameBytes = 64 << 20
	maxInlineSize = 64 << 10
)

// New returns a server that calls svc.
func New(svc Service, o Options) *Server {
	if o.MaxValueBytes <= 0 {
		o.MaxValueBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	s := &Server{
		svc:     svc,
		opt:     o,
		log:     o.Logger.With("subsystem", "resp"),
		started: time.Now(),
		lns:     map[net.Listener]struct{}{},
		conns:   map[net.Conn]struct{}{},
		cursors: newCursorTable(scanCursors),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	maxBulk := o.MaxValueBytes + bulkSlack
	maxFrame := 2*maxBulk + (1 << 20)
	if maxFrame < minFrameBytes {
		maxFrame = minFrameBytes
	}
	s.limAuthed = limits{maxArgs: maxArgs, maxBulk: maxBulk, maxFrame: maxFrame, maxInline: maxInlineSize}
	s.limUnauth = limits{maxArgs: unauthMaxArgs, maxBulk: unauthMaxBytes, maxFrame: unauthMaxBytes,
		maxInline: unauthMaxBytes, unauth: true}
	if o.Registerer != nil {
		s.metrics = newCommandMetrics()
		if err := o.Registerer.Register(s.metrics); err != nil {
			s.log.Error("resp metrics not registered", "err", err)
			s.metrics = nil
		}
	}
	return s
}

// Serve accepts connections on ln and serves each on its own goroutine. It
// blocks until Close, then returns nil; any other accept failure is returned.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("respapi: listener closed: %w", err)
			}
			// Out of file descriptors and the like: wait and try again.
			s.log.Warn("RESP accept failed", "err", err)
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		go s.handle(nc)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a connection unless the server is closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) handle(nc net.Conn) {
	defer s.wg.Done()
	defer s.metrics.connOpened()()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		nc.Close()
	}()
	defer func() {
		// A bug in one command must not take the node down.
		if r := recover(); r != nil {
			s.log.Error("panic serving a RESP connection", "remote", nc.RemoteAddr().String(), "panic", r)
		}
	}()
	var rw io.ReadWriter = nc
	var gw *groupWriter
	if _, bare := nc.(*net.TCPConn); !bare {
		gw = &groupWriter{Conn: nc}
		rw = gw
	}
	c := newConn(s, nc, rw)
	// First of the deferred calls: closing nc ends a write of keyspace
	// notifications that blocks, so their goroutines can be waited for.
	defer func() {
		nc.Close()
		c.stopFeed()
	}()
	if tc, ok := nc.(*tls.Conn); ok {
		// The handshake is bounded like any read; its client certificate,
		// verified against trusted-ca-file, names the connection.
		_ = tc.SetDeadline(time.Now().Add(s.handshakeTimeout()))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("RESP TLS handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		cs := tc.ConnectionState()
		if cn := auth.PeerIdentity(&cs); cn != "" {
			id := auth.Identity{Name: cn, Via: "cert"}
			c.cert = &id
			c.setIdentity(id)
		}
	}
	err := c.serve()
	if gw != nil {
		// What the connection answered last, a protocol error included.
		if ferr := gw.flush(); err == nil {
			err = ferr
		}
	}
	if err != nil {
		s.log.Debug("RESP connection ended", "remote", nc.RemoteAddr().String(), "err", err)
	}
}

// groupWriter sends what a connection writes with one write when the
// connection next waits for input (or ends). A group's replies come as
// separate buffers; on a bare *net.TCPConn net.Buffers sends them with one
// writev, but behind the connection-limit or TLS wrappers it makes one write
// system call (and TLS record) per reply, which was the largest CPU cost of
// pipelined writes. Every blocking read flushes first, so a client never
// waits for a reply that is held here.
//
// Keyspace notifications are written from a watch goroutine while the
// connection's goroutine may be reading, so buf is guarded by mu.
type groupWriter struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	err error
}

// groupWriterMax bounds the bytes held back; more is written at once.
const groupWriterMax = 256 << 10

func (w *groupWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if len(w.buf)+len(p) > groupWriterMax {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > groupWriterMax {
			return w.Conn.Write(p)
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *groupWriter) Read(p []byte) (int, error) {
	if err := w.flush(); err != nil {
		return 0, err
	}
	return w.Conn.Read(p)
}

func (w *groupWriter) flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *groupWriter) flushLocked() error {
	if len(w.buf) == 0 || w.err != nil {
		return w.err
	}
	_, w.err = w.Conn.Write(w.buf)
	if cap(w.buf) > 64<<10 {
		w.buf = nil
	} else {
		w.buf = w.buf[:0]
	}
	return w.err
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.opt.ReadTimeout > 0 {
		return s.opt.ReadTimeout
	}
	return 30 * time.Second
}

// Close stops every listener and connection and waits for the connection
// goroutines; in-flight service calls are canceled.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var err error
	for ln := range s.lns {
		if e := ln.Close(); e != nil && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// connCount is the number of open client connections (INFO clients).
func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// authRequired reports whether connections must authenticate now.
func (s *Server) authRequired() bool { return s.opt.Auth != nil && s.opt.Auth.AuthRequired() }

// cursorTable maps SCAN cursors to the key the scan continues after. Clients
// parse cursors as unsigned 64-bit numbers, so a continuation key cannot be
// the cursor itself; the table is shared by every connection of the server
// (go-redis sends each SCAN of an iteration on any pooled connection) and
// bounded, forgetting the oldest cursors first.
type cursorTable struct {
	mu    sync.Mutex
	max   int
	keys  map[uint64]string
	order []uint64
}

// scanCursors is how many SCAN cursors a server remembers.
const scanCursors = 10000

func newCursorTable(max int) *cursorTable {
	return &cursorTable{max: max, keys: map[uint64]string{}}
}

// put stores after and returns a new non-zero cursor for it.
func (t *cursorTable) put(after string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := rand.Uint64()>>1 | 1
	for t.keys[id] != "" {
		id = rand.Uint64()>>1 | 1
	}
	t.keys[id] = after
	t.order = append(t.order, id)
	for len(t.keys) > t.max && len(t.order) > 0 {
		delete(t.keys, t.order[0])
		t.order = t.order[1:]
	}
	if len(t.order) > 4*t.max {
		live := t.order[:0]
		for _, o := range t.order {
			if _, ok := t.keys[o]; ok {
				live = append(live, o)
			}
		}
		t.order = live
	}
	return id
}

// get returns the key a cursor continues after.
func (t *cursorTable) get(id uint64) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.keys[id]
	return k, ok
}
