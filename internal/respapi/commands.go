package respapi

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// flag describes how a command is dispatched.
type flag uint

const (
	// flagNoAuth: allowed before authentication.
	flagNoAuth flag = 1 << iota
	// flagNoMulti: cannot be queued inside MULTI (not expressible as txn ops).
	flagNoMulti
	// flagMultiCtl: runs at once even inside MULTI (MULTI, EXEC, DISCARD, WATCH, QUIT).
	flagMultiCtl
	// flagNoState: reads and writes no keys, so pending writes need not be
	// sent before it runs.
	flagNoState
	// flagWrite and flagRead classify the command for COMMAND and for the
	// read consistency bookkeeping.
	flagWrite
	flagRead
	flagAdmin
	// flagPubSub: allowed in subscribed mode.
	flagPubSub
)

// command is one entry of the command table. Exactly one of plan and run is set.
type command struct {
	name string
	// arity as in Redis: n > 0 exactly n arguments (with the name), n < 0 at least -n.
	arity int
	flags flag
	// firstKey, lastKey and step locate the key arguments, for COMMAND.
	firstKey, lastKey, step int
	// plan builds the command as a transaction; it must not call the service.
	plan func(c *conn, args [][]byte) plan
	// run executes everything else.
	run func(ctx context.Context, c *conn, args [][]byte) []byte
}

func (cmd *command) arityOK(n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// plan is a command expressed as one kv transaction and a function that turns
// the transaction's result into the reply. Outside MULTI a plan whose ops are
// all gets is served with Service.Get; inside MULTI the ops of every queued
// plan become one transaction.
type plan struct {
	txn kv.Txn
	// finish builds the reply; res.Results holds the results of the branch
	// that ran (Success when res.Succeeded). It must cope with any result.
	finish func(res *kv.TxnResult) []byte
	// err, when set, is the reply (bad arguments) and nothing runs.
	err []byte
	// run, when set, replaces the transaction: the command needs to read
	// before it writes (EXPIRE with NX, XX, GT or LT), so it cannot be queued
	// in MULTI and runs after the pending writes.
	run func(ctx context.Context, c *conn) []byte
}

func (p plan) isRead() bool {
	if len(p.txn.Compare) > 0 || len(p.txn.Failure) > 0 {
		return false
	}
	for _, op := range p.txn.Success {
		if op.Type != kv.OpGet {
			return false
		}
	}
	return true
}

func planErr(msg string) plan { return plan{err: replyErr(msg)} }

// planStatic is a plan with no ops and a fixed reply (PING inside MULTI).
func planStatic(reply []byte) plan {
	return plan{finish: func(*kv.TxnResult) []byte { return reply }}
}

// opResult returns result i of res, or an empty result when there is none.
func opResult(res *kv.TxnResult, i int) kv.OpResult {
	if res == nil || i < 0 || i >= len(res.Results) {
		return kv.OpResult{}
	}
	return res.Results[i]
}

// live returns r unless it is absent or already expired (the leader removes
// expired keys within about a second; reads must not show them meanwhile).
func live(r *kv.Record) *kv.Record {
	if r == nil || (r.Expires != 0 && r.Expires <= time.Now().UnixNano()) {
		return nil
	}
	return r
}

// commands is the command table, by lower-case name.
var commands = map[string]*command{}

// commandNames lists the table's names in order (COMMAND, tests).
var commandNames []string

func register(cmds ...*command) {
	for _, c := range cmds {
		commands[c.name] = c
	}
}

func init() {
	register(stringCommands()...)
	register(keyCommands()...)
	register(connectionCommands()...)
	register(multiCommands()...)
	register(adminCommands()...)
	register(pubsubCommands()...)
	for n := range commands {
		commandNames = append(commandNames, n)
	}
	sort.Strings(commandNames)
}

// lower is strings.ToLower for an argument.
func lower(b []byte) string { return strings.ToLower(string(b)) }

// eqFold compares an argument with a lower-case option name.
func eqFold(b []byte, opt string) bool { return strings.EqualFold(string(b), opt) }
