package model

import (
	"fmt"
	"sort"
)

// CheckSerializable checks that serializable reads never go back in time
// for a client: per client, node and key, the mod revision of what was found
// never decreases. Across a restart of the node (kill -9), the state
// database may come back older than what the node served before (it is not
// fsynced; the log is), but the node marks its answers stale until it has
// replayed that far: a step back in an answer marked stale is returned
// apart, as a note, and one in an answer marked fresh is a violation.
func CheckSerializable(ops []*Op) (n int, violations, staleNotes []string) {
	type seen struct {
		rev         int64
		incarnation int
		op          *Op
	}
	last := map[string]seen{} // client/node/key
	var reads []*Op
	for _, o := range ops {
		if o.Kind == KindSerialGet && o.Outcome == OK {
			reads = append(reads, o)
		}
	}
	sort.SliceStable(reads, func(i, j int) bool { return reads[i].Call < reads[j].Call })
	for _, o := range reads {
		n++
		if !o.Found {
			continue
		}
		id := fmt.Sprintf("%d/%s/%s", o.Client, o.Node, o.Key)
		prev, ok := last[id]
		if ok && o.Rev < prev.rev {
			msg := fmt.Sprintf("%s went back from @%d (%s)", o, prev.rev, prev.op.Describe())
			switch {
			case prev.incarnation == o.Incarnation:
				violations = append(violations, msg)
			case o.Stale:
				staleNotes = append(staleNotes, msg+" across a restart of "+o.Node+", marked stale")
			default:
				violations = append(violations, msg+" across a restart of "+o.Node+", marked fresh (X-Cairn-Stale: false)")
			}
		}
		last[id] = seen{o.Rev, o.Incarnation, o}
	}
	return n, violations, staleNotes
}

// CheckClientRevisions checks that the cluster revision in a client's
// answers never goes backwards, and moves forward with each of its writes.
func CheckClientRevisions(ops []*Op) []string {
	byClient := map[int][]*Op{}
	for _, o := range ops {
		if o.ClusterRev > 0 && (o.Outcome == OK || o.Outcome == Failed) {
			byClient[o.Client] = append(byClient[o.Client], o)
		}
	}
	var bad []string
	for _, list := range byClient {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Call < list[j].Call })
		for k := 1; k < len(list); k++ {
			prev, o := list[k-1], list[k]
			if o.ClusterRev < prev.ClusterRev || (o.Changed() && o.ClusterRev == prev.ClusterRev) {
				bad = append(bad, fmt.Sprintf("revision went back or stood still: %s at @%d after %s at @%d", o, o.ClusterRev, prev.Describe(), prev.ClusterRev))
			}
		}
	}
	return bad
}

// CheckLostWrites compares the final state of each key with its last
// acknowledged write (the one with the highest revision): the key must hold
// that write, or something written after it by an operation whose outcome
// the client never learned. It returns how many acknowledged writes it
// looked at, and one line per key that lost one.
func CheckLostWrites(ops []*Op, keys []string, final map[string]Item) (acked int, lost []string) {
	type write struct {
		op  *Op
		rev int64
	}
	lastAck := map[string]write{}
	unknownValue := map[string]bool{}   // key/value of an Unknown write
	unknownDelete := map[string]bool{}  // key had an Unknown delete
	ackedValueRev := map[string]int64{} // key/value -> revision it was acknowledged at
	for _, o := range ops {
		// RESP writes answer no revision, so they cannot be placed against
		// the acknowledged writes here: like unknown writes, they only
		// explain what the key may hold (the linearizability check orders
		// them).
		if o.Outcome == Unknown || o.Kind == KindRespSet || o.Kind == KindRespDel {
			switch o.Kind {
			case KindPut, KindCAS, KindTxnPut, KindTxnSwap, KindRespSet:
				unknownValue[o.Key+"\x00"+o.Value] = true
			case KindDelete, KindTxnDelete, KindRespDel:
				unknownDelete[o.Key] = true
			}
		}
		if !o.Changed() {
			continue
		}
		acked++
		rev := o.Rev
		if o.Kind == KindDelete || o.Kind == KindTxnDelete {
			rev = o.ClusterRev
		} else {
			ackedValueRev[o.Key+"\x00"+o.Value] = rev
		}
		if rev > lastAck[o.Key].rev {
			lastAck[o.Key] = write{o, rev}
		}
	}
	for _, k := range keys {
		it, present := final[k]
		w, ok := lastAck[k]
		fromUnknown := present && unknownValue[k+"\x00"+string(it.Value)]
		switch {
		case !ok:
			if present && !fromUnknown {
				lost = append(lost, fmt.Sprintf("%s holds %q, which no write wrote", k, it.Value))
			}
		case w.op.Kind == KindDelete || w.op.Kind == KindTxnDelete:
			if present && (it.ModRevision <= w.rev || !fromUnknown) {
				lost = append(lost, fmt.Sprintf("%s holds %q @%d although %s (@%d) deleted it last", k, it.Value, it.ModRevision, w.op, w.rev))
			}
		case !present:
			if !unknownDelete[k] {
				lost = append(lost, fmt.Sprintf("%s is gone, but its last acknowledged write %s (@%d) was never deleted", k, w.op, w.rev))
			}
		case it.ModRevision < w.rev:
			lost = append(lost, fmt.Sprintf("%s holds %q @%d, older than its last acknowledged write %s (@%d)", k, it.Value, it.ModRevision, w.op, w.rev))
		case it.ModRevision == w.rev && string(it.Value) != w.op.Value:
			lost = append(lost, fmt.Sprintf("%s holds %q @%d, not %q written at that revision by %s", k, it.Value, it.ModRevision, w.op.Value, w.op))
		case it.ModRevision > w.rev && !fromUnknown:
			r, was := ackedValueRev[k+"\x00"+string(it.Value)]
			if was {
				lost = append(lost, fmt.Sprintf("%s holds %q @%d, a value acknowledged at @%d, after %s (@%d)", k, it.Value, it.ModRevision, r, w.op, w.rev))
			} else {
				lost = append(lost, fmt.Sprintf("%s holds %q @%d, which no write wrote", k, it.Value, it.ModRevision))
			}
		}
	}
	return acked, lost
}

// AccountUnknowns uses the revision counter as ground truth for unknown
// writes. Every change (a put, a txn's put, a delete that removed a key, a
// RESP SET or a DEL that removed one) moves the cluster revision by exactly
// one; a write whose value was read
// back certainly happened. When the changes a history made (changes: the
// end revision minus the start revision) are exactly the acknowledged ones
// (the history's and fillAcked writes made outside it) plus the unknown
// writes seen afterwards, no other unknown operation changed anything, and
// it is left out of the check (marked Dropped). Unknown operations otherwise
// stay open to the end of the history, where each one widens porcupine's
// search. It returns a note for the report.
func AccountUnknowns(ops []*Op, changes, fillAcked, fillUnknown int64) string {
	seen := map[string]bool{}
	for _, o := range ops {
		if o.Found {
			seen[o.Key+"\x00"+o.Got] = true
		}
	}
	var acked, certain, unknown int64
	for _, o := range ops {
		switch {
		case o.Changed(), o.Outcome == OK && (o.Kind == KindRespSet || o.Kind == KindRespDel && o.Deleted > 0):
			// a RESP write answers no revision, but moves it all the same
			acked++
		case o.Outcome == Unknown:
			unknown++
			if o.Value != "" && seen[o.Key+"\x00"+o.Value] {
				certain++
			}
		}
	}
	explained := acked + fillAcked + certain
	if changes != explained {
		return fmt.Sprintf("revisions: %d changes, %d acknowledged (%d of them filler), %d unknown writes seen later; %d unknown operations (and %d filler writes) stay open to the end",
			changes, acked+fillAcked, fillAcked, certain, unknown, fillUnknown)
	}
	dropped := 0
	for _, o := range ops {
		if o.Outcome == Unknown && !(o.Value != "" && seen[o.Key+"\x00"+o.Value]) {
			o.Dropped = true
			dropped++
		}
	}
	return fmt.Sprintf("revisions: %d changes = %d acknowledged (%d of them filler) + %d unknown writes seen later; the other %d unknown operations changed nothing and are left out of the check",
		changes, acked+fillAcked, fillAcked, certain, dropped)
}
