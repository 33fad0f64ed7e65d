package strong

import "github.com/cairnkv/cairn/kv"

// The commonest command by far is a transaction of one unconditional put
// (Redis SET, SET EX, HTTP PUT) or delete of one key. The general path
// (txn, view.applyOp, commit) builds a view with two maps, a key list and
// a write closure for it, which was most of the per-entry cost of applying
// on every member. fastTxn applies such a transaction directly, with the
// same steps in the same order: the same keyspace check, the same reads
// (so the same cache fills), the same record, revision, expiry index entry,
// history event and encoded result. TestFastPathEquivalent applies random
// command sequences with and without it and compares every byte.

// fastTxn applies t when it is one unconditional put or delete and returns
// its encoded result (what encodeResult or errResult gives on the general
// path); ok false means t is not such a transaction and txn must apply it.
func (ab *applyBatch) fastTxn(now int64, t *kv.Txn) (out []byte, ok bool) {
	if ab.m.noFastPath || len(t.Compare) != 0 || len(t.Success) != 1 {
		return nil, false
	}
	op := &t.Success[0]
	if op.Type != kv.OpPut && op.Type != kv.OpDelete {
		return nil, false
	}
	// Without compares the success branch runs, but the general path
	// checks the failure branch's keys too: so does this one.
	if err := ab.strongKeys(t); err != nil {
		return errResult(err), true
	}
	old, err := ab.get(op.Key)
	if err != nil {
		return errResult(err), true
	}
	// cur is what the command sees (view.live): an expired record is
	// absent; old is what the key holds, for the expiry index (commit).
	cur := old
	if cur != nil && cur.Expires != 0 && cur.Expires <= now {
		cur = nil
	}
	var (
		// r and meta stay on the stack: only their encoding leaves.
		r       = kv.OpResult{Type: op.Type, Key: op.Key}
		meta    kv.Record
		nr      *kv.Record
		written bool
	)
	if op.ReturnPrev {
		r.Prev = cur
	}
	rev := ab.rev
	if op.Type == kv.OpDelete {
		if cur != nil {
			rev++
			written = true
			r.Deleted = 1
		}
	} else {
		var kept int64
		if cur != nil {
			kept = cur.Expires
		}
		exp := putExpiry(*op, now, kept)
		switch {
		case exp != 0 && exp <= now:
			// Already expired (Redis SET PXAT in the past): the key is gone.
			if cur != nil {
				rev++
				written = true
			}
		default:
			rev++
			written = true
			nr = &kv.Record{Key: op.Key, Value: op.Value, CreateRevision: rev, ModRevision: rev, Version: 1, Expires: exp}
			if cur != nil {
				nr.CreateRevision = cur.CreateRevision
				nr.Version = cur.Version + 1
			}
			// The caller has the value; do not send it back through the log result.
			meta = *nr
			meta.Value = nil
			r.Record = &meta
		}
	}
	if written {
		if ev, ok := ab.stage(op.Key, old, nr, rev); ok {
			ab.groups = append(ab.groups, ab.group(rev, ev))
		}
	}
	ab.rev = rev
	res := [1]kv.OpResult{r}
	return encodeResult(result{Txn: &kv.TxnResult{Succeeded: true, Revision: rev, Results: res[:]}}), true
}
