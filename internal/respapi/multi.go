package respapi

import (
	"context"
	"fmt"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// MULTI/EXEC: every queued command is a plan; EXEC joins their ops into one
// kv.Txn, so the block applies atomically or not at all. WATCH records each
// key's mod revision, and EXEC turns them into compares: when any watched key
// changed, the success branch does not run and EXEC answers a null array.
// Keys of eventual keyspaces have no revision to compare, so WATCH refuses
// them, as the service refuses every compare on them.

// queuedCmd is a command queued in MULTI.
type queuedCmd struct{ p plan }

func multiCommands() []*command {
	return []*command{
		{name: "multi", arity: 1, flags: flagMultiCtl | flagNoState, run: runMulti},
		{name: "exec", arity: 1, flags: flagMultiCtl | flagWrite, run: runExec},
		{name: "discard", arity: 1, flags: flagMultiCtl | flagNoState, run: runDiscard},
		{name: "watch", arity: -2, flags: flagMultiCtl | flagRead, firstKey: 1, lastKey: -1, step: 1, run: runWatch},
		{name: "unwatch", arity: 1, flags: flagNoState, plan: planUnwatch},
	}
}

func runMulti(_ context.Context, c *conn, _ [][]byte) []byte {
	if c.multi {
		return replyErr("ERR MULTI calls can not be nested")
	}
	c.multi = true
	return replyOK
}

// queue adds a command to the open MULTI block. Commands that are not one
// unconditional set of txn ops cannot be part of the block's transaction;
// like a command with the wrong arity, they make EXEC fail with EXECABORT.
func (c *conn) queue(cmd *command, args [][]byte) {
	if cmd.plan == nil || cmd.flags&flagNoMulti != 0 {
		c.multiErr = true
		c.reply(replyErr("ERR '" + cmd.name + "' cannot be used inside MULTI"))
		return
	}
	if len(c.queued) >= maxQueued {
		c.multiErr = true
		c.reply(replyErr("ERR too many commands queued in MULTI"))
		return
	}
	p := cmd.plan(c, args)
	if p.err == nil && (p.run != nil || len(p.txn.Compare) > 0 || len(p.txn.Failure) > 0) {
		c.multiErr = true
		c.reply(replyErr("ERR '" + cmd.name + "' with a condition (NX, XX, GT, LT) cannot be used inside MULTI: the block is one transaction"))
		return
	}
	c.queued = append(c.queued, queuedCmd{p: p})
	c.reply(replyQueued)
}

// resetMulti ends a MULTI block and forgets the watched keys.
func (c *conn) resetMulti() {
	c.multi, c.multiErr = false, false
	c.queued = nil
	c.clearWatches()
}

func (c *conn) clearWatches() {
	c.watched, c.watchSeq = nil, nil
}

func runDiscard(_ context.Context, c *conn, _ [][]byte) []byte {
	if !c.multi {
		return replyErr("ERR DISCARD without MULTI")
	}
	c.resetMulti()
	return replyOK
}

func runExec(ctx context.Context, c *conn, _ [][]byte) []byte {
	if !c.multi {
		return replyErr("ERR EXEC without MULTI")
	}
	queued, failed := c.queued, c.multiErr
	var t kv.Txn
	for _, k := range c.watchSeq {
		t.Compare = append(t.Compare, kv.Compare{Key: k, Target: kv.TargetModRevision, Op: "=", Number: c.watched[k]})
	}
	c.resetMulti()
	if failed {
		return replyErr("EXECABORT Transaction discarded because of previous errors.")
	}
	write := false
	for _, q := range queued {
		if q.p.err != nil {
			continue
		}
		for _, op := range q.p.txn.Success {
			write = write || op.Type != kv.OpGet
		}
		t.Success = append(t.Success, q.p.txn.Success...)
	}
	res := &kv.TxnResult{Succeeded: true}
	if len(t.Success) > 0 || len(t.Compare) > 0 {
		r, err := c.s.svc.Txn(ctx, t)
		if err != nil {
			return replyError(err, write)
		}
		if r == nil {
			return replyErr("ERR internal error: no result for the transaction")
		}
		res = r
	}
	if !res.Succeeded {
		return replyNullArray
	}
	items := make([][]byte, len(queued))
	off := 0
	for i, q := range queued {
		if q.p.err != nil {
			items[i] = q.p.err
			continue
		}
		n := len(q.p.txn.Success)
		sub := &kv.TxnResult{Succeeded: true, Revision: res.Revision}
		if off+n <= len(res.Results) {
			sub.Results = res.Results[off : off+n]
		}
		off += n
		items[i] = q.p.finish(sub)
	}
	return replyArray(items...)
}

func runWatch(ctx context.Context, c *conn, a [][]byte) []byte {
	if c.multi {
		return replyErr("ERR WATCH inside MULTI is not allowed")
	}
	ks := c.s.svc.Keyspaces()
	for _, k := range a[1:] {
		if p := ks.Lookup(string(k)); p.Mode == keyspace.Eventual {
			return replyError(fmt.Errorf("%w: WATCH %q: it is in the eventual keyspace %q, where no revision tells whether a key changed (use a strong keyspace)",
				kv.ErrUnsupportedMode, k, p.Prefix), false)
		}
	}
	for _, k := range a[1:] {
		key := string(k)
		if _, ok := c.watched[key]; ok {
			continue // watched since the first WATCH
		}
		if len(c.watchSeq) >= maxWatched {
			return replyErr("ERR too many watched keys")
		}
		r, err := c.get(ctx, key)
		if err != nil {
			return replyError(err, false)
		}
		var rev int64
		if r != nil {
			rev = r.ModRevision
		}
		if c.watched == nil {
			c.watched = map[string]int64{}
		}
		c.watched[key] = rev
		c.watchSeq = append(c.watchSeq, key)
	}
	return replyOK
}

func planUnwatch(c *conn, _ [][]byte) plan {
	return plan{finish: func(*kv.TxnResult) []byte {
		if !c.multi {
			c.clearWatches()
		}
		return replyOK
	}}
}
