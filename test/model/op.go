package model

import (
	"fmt"
	"time"
)

// Kind is an operation of a history.
type Kind string

// The operations on one key of a strong keyspace. Every write carries a
// value no other write uses, so a read tells which write it saw; no write
// writes the empty string.
const (
	KindGet       Kind = "get"        // linearizable GET
	KindSerialGet Kind = "sget"       // GET ?consistency=serializable (not linearizable by contract)
	KindPut       Kind = "put"        // PUT
	KindCAS       Kind = "cas"        // PUT with If-Match: "<Match>" ("0": only if absent)
	KindDelete    Kind = "delete"     // DELETE
	KindTxnPut    Kind = "txn-put"    // txn: if mod_revision = Match then put Value, get; else get
	KindTxnSwap   Kind = "txn-swap"   // txn: if value = MatchValue (absent when "") then put Value, get; else get
	KindTxnDelete Kind = "txn-delete" // txn: if value = MatchValue then delete; else get
	// The same register through the Redis protocol, which answers no
	// revisions: GET (linearizable), SET, DEL.
	KindRespGet Kind = "resp-get"
	KindRespSet Kind = "resp-set"
	KindRespDel Kind = "resp-del"
)

// Kinds lists the operations in report order.
var Kinds = []Kind{KindGet, KindSerialGet, KindPut, KindCAS, KindDelete, KindTxnPut, KindTxnSwap, KindTxnDelete,
	KindRespGet, KindRespSet, KindRespDel}

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
	Value  string // the value written (put, cas, txn-put, txn-swap, resp-set)
	// Match is the mod revision a cas or txn-put requires (0: the key must
	// not exist); MatchValue the value a txn-swap or txn-delete requires
	// (for a txn-swap, "" means the key must not exist).
	Match      int64
	MatchValue string
	Call       int64 // ns since the history started
	Return     int64 // ns since the history started; the end of the history for Unknown
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
	// changed nothing (see AccountUnknowns); the check leaves it out.
	Dropped bool `json:",omitempty"`
}

// IsWrite reports whether the operation may change the key.
func (o *Op) IsWrite() bool {
	switch o.Kind {
	case KindPut, KindCAS, KindDelete, KindTxnPut, KindTxnSwap, KindTxnDelete, KindRespSet, KindRespDel:
		return true
	}
	return false
}

// Changed reports whether the operation was acknowledged and wrote
// something (RESP writes are never counted: they answer no revision).
func (o *Op) Changed() bool {
	if o.Outcome != OK {
		return false
	}
	switch o.Kind {
	case KindPut, KindCAS, KindTxnPut, KindTxnSwap:
		return true
	case KindDelete, KindTxnDelete:
		return o.Deleted > 0
	}
	return false
}

func (o *Op) String() string {
	call := time.Duration(o.Call).Round(time.Millisecond)
	return fmt.Sprintf("client %d via %s at %s: %s", o.Client, o.Node, call, o.Describe())
}

// Describe is one line for reports and the visualization, like
// `put(k, c3-41) -> @812` or `txn(k: if @812 put v) -> ok, then v @815 v4`.
func (o *Op) Describe() string {
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
		if o.Rev == 0 {
			return o.Got
		}
		return fmt.Sprintf("%s @%d v%d", o.Got, o.Rev, o.Ver)
	}
	switch o.Kind {
	case KindGet, KindSerialGet, KindRespGet:
		if res == "" {
			res = seen()
		}
		return fmt.Sprintf("%s(%s) -> %s", o.Kind, o.Key, res)
	case KindPut:
		if res == "" {
			res = fmt.Sprintf("@%d", o.Rev)
		}
		return fmt.Sprintf("put(%s, %s) -> %s", o.Key, o.Value, res)
	case KindRespSet:
		if res == "" {
			res = "OK"
		}
		return fmt.Sprintf("resp-set(%s, %s) -> %s", o.Key, o.Value, res)
	case KindCAS:
		if res == "" && o.Outcome == OK {
			res = fmt.Sprintf("ok @%d", o.Rev)
		} else if res == "" {
			res = fmt.Sprintf("failed, at @%d", o.Rev)
		}
		return fmt.Sprintf("cas(%s, %s if @%d) -> %s", o.Key, o.Value, o.Match, res)
	case KindDelete, KindRespDel:
		if res == "" && o.Kind == KindDelete {
			res = fmt.Sprintf("deleted %d @%d", o.Deleted, o.ClusterRev)
		} else if res == "" {
			res = fmt.Sprintf("deleted %d", o.Deleted)
		}
		return fmt.Sprintf("%s(%s) -> %s", o.Kind, o.Key, res)
	case KindTxnPut, KindTxnSwap:
		if res == "" && o.Outcome == OK {
			res = fmt.Sprintf("ok, then %s", seen())
		} else if res == "" {
			res = "failed, saw " + seen()
		}
		cond := fmt.Sprintf("@%d", o.Match)
		if o.Kind == KindTxnSwap {
			cond = "=" + o.MatchValue
			if o.MatchValue == "" {
				cond = "absent"
			}
		}
		return fmt.Sprintf("txn(%s: if %s put %s) -> %s", o.Key, cond, o.Value, res)
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

// Item is a key as a replica holds it (a listing's entry).
type Item struct {
	Key            string `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
}

// Annotation marks a span of the history (a fault) in the visualization.
type Annotation struct {
	Start, End  int64
	Description string
	Details     string
}
