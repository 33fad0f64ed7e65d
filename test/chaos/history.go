package chaos

import (
	"fmt"
	"time"
)

// Kind is an operation of the workload.
type Kind string

// The workload's operations. Every write carries a value no other write uses,
// so a read tells which write it saw.
const (
	KindGet       Kind = "get"        // linearizable GET
	KindSerialGet Kind = "sget"       // GET ?consistency=serializable (not linearizable by contract)
	KindPut       Kind = "put"        // PUT
	KindCAS       Kind = "cas"        // PUT with If-Match: "<Match>" ("0": only if absent)
	KindDelete    Kind = "delete"     // DELETE
	KindTxnPut    Kind = "txn-put"    // txn: if mod_revision = Match then put Value, get; else get
	KindTxnDelete Kind = "txn-delete" // txn: if value = MatchValue then delete; else get
	// The same register through the Redis protocol, which answers no
	// revisions: GET (linearizable), SET, DEL.
	KindRespGet Kind = "resp-get"
	KindRespSet Kind = "resp-set"
	KindRespDel Kind = "resp-del"
)

// Kinds lists the operations in report order.
var Kinds = []Kind{KindGet, KindSerialGet, KindPut, KindCAS, KindDelete, KindTxnPut, KindTxnDelete, KindRespGet, KindRespSet, KindRespDel}

// Outcome is what a client knows about an operation once it returned.
type Outcome int

// Outcomes. Only Unknown writes are uncertain; Error operations had no effect
// and are left out of the checks.
const (
	// OK: acknowledged; for a conditional write, the condition held.
	OK Outcome = iota
	// Failed: a definite answer that the condition did not hold (412, the
	// failure branch of a txn); nothing was written.
	Failed
	// Unknown: a write that timed out, lost its connection or got a 503 or
	// 5xx; it may or may not have taken effect, now or later.
	Unknown
	// Error: a read that failed, or a request that was never sent (refused
	// connection); it had no effect.
	Error
)

func (o Outcome) String() string {
	return [...]string{"ok", "failed", "unknown", "error"}[o]
}

// Op is one operation with what the client saw.
type Op struct {
	Client int
	Node   string // the node the request went to
	Kind   Kind
	Key    string
	Value  string // the value written (put, cas, txn-put)
	// Match is the mod revision a cas or txn-put requires (0: the key must
	// not exist); MatchValue the value a txn-delete requires.
	Match      int64
	MatchValue string
	Call       int64 // ns since the run started
	Return     int64 // ns since the run started; set to the end of the history for Unknown
	Outcome    Outcome

	// Found, Got, Rev and Ver describe the key as the operation saw it: a
	// read; a failed condition (cas: Rev is the current mod revision, 0 when
	// absent; txn: the failure branch's get); a successful write (Rev and,
	// for a txn, Ver of the new record).
	Found bool
	Got   string
	Rev   int64
	Ver   int64
	// Deleted is what a delete or txn-delete removed.
	Deleted int64
	// ClusterRev is the cluster revision an answer carried (writes, deletes,
	// txns), 0 when none.
	ClusterRev int64
	// Incarnation of the node that served a serializable read, and whether
	// it flagged the answer as possibly stale (X-Cairn-Stale).
	Incarnation int
	Stale       bool
	Err         string
	// Dropped marks an Unknown operation that the revision counter shows
	// changed nothing (see accountUnknowns); the check leaves it out.
	Dropped bool `json:",omitempty"`
}

// IsWrite reports whether the operation may change the key.
func (o *Op) IsWrite() bool {
	switch o.Kind {
	case KindPut, KindCAS, KindDelete, KindTxnPut, KindTxnDelete, KindRespSet, KindRespDel:
		return true
	}
	return false
}

func (o *Op) String() string {
	call := time.Duration(o.Call).Round(time.Millisecond)
	return fmt.Sprintf("client %d via %s at %s: %s", o.Client, o.Node, call, describeOp(o))
}

// describeOp is one line for the report and the visualization.
func describeOp(o *Op) string {
	res := ""
	switch o.Outcome {
	case Unknown:
		res = "?"
	case Error:
		res = "error: " + o.Err
	}
	seen := func() string {
		if !o.Found {
			return "absent"
		}
		return fmt.Sprintf("%s @%d v%d", o.Got, o.Rev, o.Ver)
	}
	switch o.Kind {
	case KindGet, KindSerialGet:
		if res == "" {
			res = seen()
		}
		return fmt.Sprintf("%s(%s) -> %s", o.Kind, o.Key, res)
	case KindPut:
		if res == "" {
			res = fmt.Sprintf("@%d", o.Rev)
		}
		return fmt.Sprintf("put(%s, %s) -> %s", o.Key, o.Value, res)
	case KindCAS:
		if res == "" && o.Outcome == OK {
			res = fmt.Sprintf("ok @%d", o.Rev)
		} else if res == "" {
			res = fmt.Sprintf("failed, at @%d", o.Rev)
		}
		return fmt.Sprintf("cas(%s, %s if @%d) -> %s", o.Key, o.Value, o.Match, res)
	case KindDelete:
		if res == "" {
			res = fmt.Sprintf("deleted %d @%d", o.Deleted, o.ClusterRev)
		}
		return fmt.Sprintf("delete(%s) -> %s", o.Key, res)
	case KindTxnPut:
		if res == "" && o.Outcome == OK {
			res = fmt.Sprintf("ok, then %s", seen())
		} else if res == "" {
			res = "failed, saw " + seen()
		}
		return fmt.Sprintf("txn(%s: if @%d put %s) -> %s", o.Key, o.Match, o.Value, res)
	case KindTxnDelete:
		if res == "" && o.Outcome == OK {
			res = fmt.Sprintf("ok, deleted %d", o.Deleted)
		} else if res == "" {
			res = "failed, saw " + seen()
		}
		return fmt.Sprintf("txn(%s: if =%s delete) -> %s", o.Key, o.MatchValue, res)
	}
	return string(o.Kind)
}
