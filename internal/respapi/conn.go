package respapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// Bounds on what one connection may hold before it must answer.
const (
	maxPendingWrites = 1024    // write commands per TxnBatch
	maxPendingReply  = 1 << 20 // reply bytes held back before writing them out
	maxQueued        = 10000   // commands queued in one MULTI
	maxWatched       = 10000   // keys watched by one connection
	maxExpireRetries = 10      // CAS retries of EXPIRE … NX|XX|GT|LT
)

// conn is one client connection. Only its own goroutine touches it.
type conn struct {
	s  *Server
	nc net.Conn // nil in tests that drive a conn over plain readers
	rd *reader
	w  io.Writer

	id     int64
	name   string
	lib    string
	libVer string
	// authed: the connection may run commands (it authenticated, has a
	// client certificate, or no authentication is required).
	authed bool
	user   string
	// cert is the identity of the client certificate, which RESET keeps.
	cert *auth.Identity
	// ctx carries the connection's identity to the service.
	ctx context.Context
	// readonly makes this connection's reads serializable (READONLY).
	readonly bool
	// readMode is how this connection's linearizable reads confirm the
	// leader (CLIENT READMODE; default: the server's --read-mode).
	readMode kv.ReadMode
	// fresh means a linearizable read has run in this group since the last
	// write: every command of the group was received before that read's
	// leadership check, so later reads of the group may be served locally.
	fresh bool
	quit  bool

	// MULTI state.
	multi    bool
	multiErr bool
	queued   []queuedCmd
	watched  map[string]int64 // key -> mod revision when watched (0: absent)
	watchSeq []string         // watched keys in order, for deterministic compares

	// The current group: replies in request order (nil while a write is
	// pending) and the writes not yet sent.
	out      [][]byte
	outBytes int
	pending  []pendingWrite
	// groupStart is when the group began; tracked are its commands not yet
	// counted in the metrics (metrics.go).
	groupStart time.Time
	tracked    []tracked

	// Subscriptions (pubsub.go): the channels and patterns, the watches
	// that deliver their notifications by key prefix, and the copy of the
	// subscriptions those watches read (view, under wmu), stale while
	// viewDirty.
	channels  map[string]struct{}
	patterns  map[string]struct{}
	watches   map[string]*feedWatch
	view      *subView
	viewDirty bool
	// hold (under wmu) keeps the watches' events in held from a SUBSCRIBE
	// until its confirmation is written and the new view installed: none
	// is written before the confirmation, and none is lost.
	hold bool
	held []kv.Event
	// heldFatal is a watch's end that came while holding: written, and
	// the connection closed, after the held events.
	heldFatal error
	// wmu serializes writes to w: the group's replies, and the messages
	// the watch goroutines write.
	wmu sync.Mutex
}

type pendingWrite struct {
	txn    kv.Txn
	finish func(*kv.TxnResult) []byte
	slot   int
}

func newConn(s *Server, nc net.Conn, rw io.ReadWriter) *conn {
	return &conn{
		s:   s,
		nc:  nc,
		rd:  newReader(rw),
		w:   rw,
		id:  s.nextID.Add(1),
		ctx: auth.WithIdentity(s.ctx, auth.Anonymous),
	}
}

// setIdentity makes id the connection's identity from now on.
func (c *conn) setIdentity(id auth.Identity) {
	c.authed, c.user = true, id.Name
	c.ctx = auth.WithIdentity(c.s.ctx, id)
}

// mayRun reports whether commands other than AUTH, HELLO and the like may run.
func (c *conn) mayRun() bool { return c.authed || !c.s.authRequired() }

func (c *conn) limits() limits {
	if c.mayRun() {
		return c.s.limAuthed
	}
	return c.s.limUnauth
}

// serve runs the connection until the client leaves, QUIT, a protocol error
// or a failed write. Each iteration is one group: the first command blocks
// on the network, the rest are what is already buffered.
func (c *conn) serve() error {
	if c.nc != nil && (c.s.opt.ReadTimeout > 0 || c.s.opt.IdleTimeout > 0) {
		c.rd.deadline = c.setReadDeadline
	}
	for {
		args, err := c.rd.next(c.limits(), true)
		if err != nil {
			return c.fail(c.ctx, err)
		}
		if !c.s.opt.Inflight.TryAcquire() {
			if err := c.busy(args); err != nil {
				return err
			}
			continue
		}
		err = c.group(args)
		c.s.opt.Inflight.Release()
		if err != nil || c.quit {
			return err
		}
	}
}

// group runs the command that started a group and every command already
// buffered behind it, then writes the replies.
func (c *conn) group(args [][]byte) error {
	c.fresh = false
	if c.s.metrics != nil {
		c.groupStart = time.Now()
	}
	c.dispatch(c.ctx, args)
	for !c.quit {
		if len(c.pending) >= maxPendingWrites || c.outBytes >= maxPendingReply {
			if err := c.writeOut(c.ctx); err != nil {
				return err
			}
		}
		args, err := c.rd.next(c.limits(), false)
		if err != nil {
			return c.fail(c.ctx, err)
		}
		if args == nil {
			break
		}
		c.dispatch(c.ctx, args)
	}
	return c.writeOut(c.ctx)
}

// busy answers a group -BUSY without running it: the node is serving as many
// requests as max-inflight-requests allows.
func (c *conn) busy(args [][]byte) error {
	for args != nil {
		c.s.metrics.refuse()
		c.reply(replyErr("BUSY cairn is serving as many requests as it may (max-inflight-requests); retry shortly"))
		var err error
		if args, err = c.rd.next(c.limits(), false); err != nil {
			return c.fail(c.ctx, err)
		}
	}
	return c.writeOut(c.ctx)
}

// setReadDeadline bounds the next read: a client that has started a command
// must finish it within ReadTimeout; one between commands may stay silent for
// IdleTimeout.
func (c *conn) setReadDeadline(midFrame bool) {
	d := c.s.opt.IdleTimeout
	if midFrame {
		d = c.s.opt.ReadTimeout
	} else if c.subscribed() {
		d = 0 // a subscriber waits for messages, as Redis's timeout spares it
	}
	if d <= 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
}

// fail answers what the group has produced so far, then a protocol error if
// that is what ended the connection.
func (c *conn) fail(ctx context.Context, err error) error {
	var pe *protocolError
	if errors.As(err, &pe) {
		c.reply(replyErr("ERR " + pe.Error()))
	}
	if werr := c.writeOut(ctx); werr != nil && pe == nil {
		return werr
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// reply appends a reply to the group.
func (c *conn) reply(b []byte) {
	c.out = append(c.out, b)
	c.outBytes += len(b)
}

// writeOut sends the pending writes, then every reply of the group in order.
func (c *conn) writeOut(ctx context.Context) error {
	c.flushWrites(ctx)
	c.observeGroup()
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.viewDirty {
		// After the confirmations below: they precede every message.
		defer c.installView()
	}
	if len(c.out) == 0 {
		return nil
	}
	if c.nc != nil {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
	}
	// net.Buffers writes the replies with one writev on a TCP connection.
	bufs := net.Buffers(c.out)
	_, err := bufs.WriteTo(c.w)
	clear(c.out)
	c.out, c.outBytes = c.out[:0], 0
	return err
}

// flushWrites sends the pending writes in one TxnBatch and fills their replies.
func (c *conn) flushWrites(ctx context.Context) {
	if len(c.pending) == 0 {
		return
	}
	txns := make([]kv.Txn, len(c.pending))
	for i, p := range c.pending {
		txns[i] = p.txn
	}
	results, errs, err := c.s.svc.TxnBatch(ctx, txns)
	for i, p := range c.pending {
		var r []byte
		switch {
		case err != nil:
			r = replyError(err, true)
		case i < len(errs) && errs[i] != nil:
			r = replyError(errs[i], true)
		case i >= len(results) || results[i] == nil:
			r = replyErr("ERR internal error: no result for the write")
		default:
			r = p.finish(results[i])
		}
		c.out[p.slot] = r
		c.outBytes += len(r)
	}
	clear(c.pending)
	c.pending = c.pending[:0]
	c.fresh = false
}

// readOpts is the consistency of the next read: linearizable, unless the
// connection asked for stale reads (READONLY) or a linearizable read of this
// group already ran since the last write (see conn.fresh).
func (c *conn) readOpts() kv.ReadOptions {
	return kv.ReadOptions{Serializable: c.readonly || c.fresh, ReadMode: c.readMode}
}

// readDone records that a read with o succeeded.
func (c *conn) readDone(o kv.ReadOptions) {
	if !o.Serializable {
		c.fresh = true
	}
}

// get reads one key; a missing key is nil without error. Expired keys the
// leader has not removed yet are returned (the caller filters with live).
func (c *conn) get(ctx context.Context, key string) (*kv.Record, error) {
	o := c.readOpts()
	r, err := c.s.svc.Get(ctx, key, o)
	if errors.Is(err, kv.ErrKeyNotFound) {
		c.readDone(o)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c.readDone(o)
	return r, nil
}

// list reads one page of keys under prefix.
func (c *conn) list(ctx context.Context, prefix, after string, limit int) (*kv.ListResult, error) {
	o := c.readOpts()
	res, err := c.s.svc.List(ctx, prefix, kv.ListOptions{ReadOptions: o, After: after, Limit: limit, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	c.readDone(o)
	return res, nil
}

// dispatch runs or queues one command.
func (c *conn) dispatch(ctx context.Context, args [][]byte) {
	name := strings.ToLower(string(args[0]))
	cmd := commands[name]
	c.track(name)
	if (cmd == nil || cmd.flags&flagNoAuth == 0) && !c.mayRun() {
		c.reply(replyErr(msgNoAuth))
		return
	}
	if cmd == nil {
		c.multiFailed()
		c.reply(replyUnknown(args))
		return
	}
	if !cmd.arityOK(len(args)) {
		c.multiFailed()
		c.reply(replyWrongArgs(cmd.name))
		return
	}
	if c.subscribed() && cmd.flags&flagPubSub == 0 {
		c.reply(replyErr(fmt.Sprintf(msgSubscribedOnly, cmd.name)))
		return
	}
	if c.multi && cmd.flags&flagMultiCtl == 0 {
		c.queue(cmd, args)
		return
	}
	if c.subscribed() && cmd.name == "ping" {
		c.reply(subscribedPing(args))
		return
	}
	if cmd.flags&flagAdmin != 0 {
		if err := c.s.svc.CheckAdmin(ctx); err != nil {
			c.multiFailed()
			c.reply(replyError(err, false))
			return
		}
	}
	if cmd.run != nil {
		if cmd.flags&flagNoState == 0 {
			c.flushWrites(ctx)
		}
		c.reply(cmd.run(ctx, c, args))
		if cmd.flags&flagWrite != 0 {
			c.fresh = false
		}
		return
	}
	c.execPlan(ctx, cmd.plan(c, args))
}

// multiFailed marks an open MULTI as failed (EXEC will answer EXECABORT).
func (c *conn) multiFailed() {
	if c.multi {
		c.multiErr = true
	}
}

// execPlan runs a transaction-shaped command outside MULTI: reads at once
// through Service.Get, writes queued for the group's next TxnBatch.
func (c *conn) execPlan(ctx context.Context, p plan) {
	switch {
	case p.err != nil:
		c.reply(p.err)
	case p.run != nil:
		c.flushWrites(ctx)
		c.reply(p.run(ctx, c))
		c.fresh = false
	case len(p.txn.Success) == 0 && len(p.txn.Compare) == 0 && len(p.txn.Failure) == 0:
		c.reply(p.finish(&kv.TxnResult{Succeeded: true}))
	case p.isRead():
		c.flushWrites(ctx)
		res := &kv.TxnResult{Succeeded: true, Results: make([]kv.OpResult, len(p.txn.Success))}
		for i, op := range p.txn.Success {
			r, err := c.get(ctx, op.Key)
			if err != nil {
				c.reply(replyError(err, false))
				return
			}
			res.Results[i] = kv.OpResult{Type: kv.OpGet, Key: op.Key, Record: r}
		}
		c.reply(p.finish(res))
	default:
		c.pending = append(c.pending, pendingWrite{txn: p.txn, finish: p.finish, slot: len(c.out)})
		c.out = append(c.out, nil)
	}
}
