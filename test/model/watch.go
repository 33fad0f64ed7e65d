package model

import (
	"fmt"
	"slices"
	"strings"
)

// The watch model: what a strong keyspace's change feed owes a client that
// follows the documented protocol (docs/API.md, "Watching keys"). A watcher
// asks a node for the changes under a prefix from a revision; when the
// stream breaks (the node was killed, paused, cut off, restored from a
// snapshot) it asks any node again from the revision after the last one it
// saw whole (the SSE id line). Over all its streams, it must see every
// change of the prefix from where it started, each once, in revision order,
// with the values that were written, and, once the faults heal, catch up to
// the replicas' revision.
//
// CheckWatches holds each watcher to the acknowledged writes (every one
// that answered a revision inside the span the watcher covered is in its
// streams at that revision, with its value), to the other watchers (two
// that saw a revision saw the same events) and to a reference feed: one
// more watch, read after the replicas agreed from the run's first revision
// (the history replayed by a healthy node; from the oldest revision kept,
// when the run outgrew the history). The reference itself is held to the
// rest of the run's history, so a fault shared by the watchers and the
// reference is caught too: every acknowledged write with a revision is in
// it at that revision with its value, every put in it carries a value some
// client wrote to that key, and each key's last event in it is the key's
// agreed end state.

// WatchEvent is one change a watch delivered.
type WatchEvent struct {
	Rev     int64  `json:"rev"`
	Key     string `json:"key"`
	Type    string `json:"type"` // "put" or "delete"
	Value   string `json:"value,omitempty"`
	Expired bool   `json:"expired,omitempty"`
}

func (e WatchEvent) String() string {
	s := fmt.Sprintf("@%d %s %s", e.Rev, e.Type, e.Key)
	if e.Type == "put" {
		s += "=" + e.Value
	}
	if e.Expired {
		s += " (expired)"
	}
	return s
}

// WatchStream is one request of a watcher: the node it asked, the revision
// it asked from (0: from now), and the events it saw whole (those up to the
// last id line), in the order they came.
type WatchStream struct {
	Watcher int          `json:"watcher"`
	Node    string       `json:"node"`
	From    int64        `json:"from"`
	Call    int64        `json:"call"` // ns since the history started
	End     int64        `json:"end"`
	Events  []WatchEvent `json:"events"`
	// Err is why the stream ended ("" when the watcher closed it).
	Err string `json:"err,omitempty"`
	// Compacted: the node answered 410, the revision asked for is no
	// longer kept; the watcher starts again from now, and what it missed
	// is not held against it.
	Compacted bool `json:"compacted,omitempty"`
}

// WatchCheck is everything CheckWatches looks at.
type WatchCheck struct {
	Prefix string
	// Streams of every watcher, each watcher's in the order it made them.
	Streams []WatchStream
	// Reference is the feed read once the replicas agreed, from
	// ReferenceFrom (From, or the oldest revision kept when the history no
	// longer reaches From); nil when it could not be read (ReferenceErr).
	Reference     []WatchEvent
	ReferenceFrom int64
	ReferenceErr  string
	// From is the first revision of the run (0: unknown), Target the
	// replicas' revision at the end, which every watcher must reach.
	From, Target int64
	// Ops is the run's history; End the agreed state (nil: unknown).
	Ops []*Op
	End map[string]Item
}

// WatchResult is what CheckWatches found.
type WatchResult struct {
	Watchers, Streams, Resumed, Events int
	Failures, Notes                    []string
}

// maxWatchFailures bounds the failures reported per watcher: one dropped
// event misaligns what follows it.
const maxWatchFailures = 5

// CheckWatches checks the watchers' streams against the model above.
func CheckWatches(in WatchCheck) WatchResult {
	var res WatchResult
	byWatcher := map[int][]WatchStream{}
	var ids []int
	for _, s := range in.Streams {
		if _, ok := byWatcher[s.Watcher]; !ok {
			ids = append(ids, s.Watcher)
		}
		byWatcher[s.Watcher] = append(byWatcher[s.Watcher], s)
		res.Streams++
		res.Events += len(s.Events)
	}
	res.Watchers = len(ids)
	slices.Sort(ids)

	var ref map[int64][]WatchEvent
	var refRevs []int64
	inRef := func(r int64) bool { return in.Reference != nil && r >= in.ReferenceFrom }
	if in.Reference != nil && in.ReferenceFrom == 0 {
		in.ReferenceFrom = in.From
	}
	if in.Reference != nil && in.ReferenceFrom > in.From && in.From > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("watch: the history no longer reaches the run's first revision %d; the reference feed starts at %d, and the watchers are checked against each other and the acknowledged writes before it", in.From, in.ReferenceFrom))
	}
	if in.Reference != nil {
		ref = groupByRevision(in.Reference)
		for r := range ref {
			refRevs = append(refRevs, r)
		}
		slices.Sort(refRevs)
		res.Failures = append(res.Failures, checkReference(in, ref)...)
	} else {
		res.Notes = append(res.Notes, "watch: no reference feed ("+in.ReferenceErr+"): the watchers are checked against each other and the acknowledged writes only")
		ref = map[int64][]WatchEvent{}
	}
	agreed := map[int64][]WatchEvent{} // without a reference: the first watcher's view of each revision
	for _, id := range ids {
		var fails []string
		failf := func(format string, args ...any) {
			if len(fails) < maxWatchFailures {
				fails = append(fails, fmt.Sprintf("watch %d: ", id)+fmt.Sprintf(format, args...))
			}
		}
		streams := byWatcher[id]
		last := int64(0) // the last revision this watcher saw whole
		from := int64(0) // where the watcher's current run of streams began
		seen := map[int64][]WatchEvent{}
		var spans [][2]int64 // the revisions the watcher owed, [from, to]
		for i, s := range streams {
			if i > 0 {
				res.Resumed++
			}
			switch {
			case i == 0 || streams[i-1].Compacted:
				from = s.From
			case last > 0 && s.From != last+1:
				failf("resumed on %s from %d, not from %d, the revision after the last it saw", s.Node, s.From, last+1)
			case last == 0 && s.From != streams[i-1].From:
				failf("resumed on %s from %d after seeing nothing from %d", s.Node, s.From, streams[i-1].From)
			}
			if s.Compacted {
				res.Notes = append(res.Notes, fmt.Sprintf("watch %d: revision %d was compacted on %s; it started again from now", id, s.From, s.Node))
			}
			groups := groupInOrder(s.Events)
			for _, g := range groups {
				r := g[0].Rev
				switch {
				case r <= last:
					failf("on %s (from %d): revision %d after %d: %s", s.Node, s.From, r, last, describeEvents(g))
					continue
				case s.From > 0 && r < s.From:
					failf("on %s: revision %d before the %d it asked from: %s", s.Node, r, s.From, describeEvents(g))
					continue
				}
				// Every reference revision between the previous one seen and
				// this one was missed.
				lo := last + 1
				if last == 0 {
					lo = from
				}
				if lo > 0 {
					for _, mr := range revsBetween(refRevs, lo, r) {
						failf("on %s (from %d): missed revision %d (%s) before %d", s.Node, s.From, mr, describeEvents(ref[mr]), r)
					}
				}
				seen[r] = g
				if inRef(r) {
					want, ok := ref[r]
					switch {
					case !ok:
						failf("on %s: revision %d (%s) is not in the reference feed", s.Node, r, describeEvents(g))
					case !slices.Equal(g, want):
						failf("on %s: revision %d is %s, the reference feed has %s", s.Node, r, describeEvents(g), describeEvents(want))
					}
				} else if want, ok := agreed[r]; !ok {
					agreed[r] = g
				} else if !slices.Equal(g, want) {
					failf("on %s: revision %d is %s, another watcher saw %s", s.Node, r, describeEvents(g), describeEvents(want))
				}
				if last == 0 && from == 0 {
					from = r // a watch from now covers what follows its first event
				}
				last = r
			}
			if s.Compacted {
				if last > 0 {
					spans = append(spans, [2]int64{from, last})
				}
				last = 0
			}
		}
		if last > 0 {
			if in.Target > last {
				spans = append(spans, [2]int64{from, in.Target})
			} else {
				spans = append(spans, [2]int64{from, last})
			}
		}
		for _, f := range missedAcked(in.Ops, spans, seen) {
			failf("%s", f)
		}
		if in.Target > 0 && last < in.Target {
			lo := last + 1
			if last == 0 {
				lo = from
			}
			missing := revsBetween(refRevs, lo, in.Target+1)
			if len(missing) > 0 || in.Reference == nil {
				failf("stopped at revision %d; the replicas are at %d (missing %d revisions of the reference feed)", last, in.Target, len(missing))
			}
		}
		res.Failures = append(res.Failures, fails...)
	}
	return res
}

// missedAcked lists the acknowledged writes with a revision inside spans
// that seen does not have, with their value, at that revision.
func missedAcked(ops []*Op, spans [][2]int64, seen map[int64][]WatchEvent) []string {
	var out []string
	for _, o := range ops {
		if !o.Changed() || o.ClusterRev <= 0 {
			continue
		}
		inside := false
		for _, sp := range spans {
			if sp[0] > 0 && o.ClusterRev >= sp[0] && o.ClusterRev <= sp[1] {
				inside = true
			}
		}
		if want := ackedEvent(o); inside && !slices.Contains(seen[o.ClusterRev], want) {
			out = append(out, fmt.Sprintf("revision %d is %s, not the acknowledged %s", o.ClusterRev, describeEvents(seen[o.ClusterRev]), o.Describe()))
		}
	}
	return out
}

// ackedEvent is the event an acknowledged write makes.
func ackedEvent(o *Op) WatchEvent {
	if o.Kind == KindDelete || o.Kind == KindTxnDelete {
		return WatchEvent{Rev: o.ClusterRev, Key: o.Key, Type: "delete"}
	}
	return WatchEvent{Rev: o.ClusterRev, Key: o.Key, Type: "put", Value: o.Value}
}

// checkReference holds the reference feed to the history and the end state.
func checkReference(in WatchCheck, ref map[int64][]WatchEvent) []string {
	var fails []string
	for _, o := range in.Ops {
		if !o.Changed() || o.ClusterRev < max(in.ReferenceFrom, 1) {
			continue
		}
		if want := ackedEvent(o); !slices.Contains(ref[o.ClusterRev], want) {
			fails = append(fails, fmt.Sprintf("watch: revision %d in the reference feed is %s, not the acknowledged %s", o.ClusterRev, describeEvents(ref[o.ClusterRev]), o.Describe()))
		}
	}
	written := map[string]bool{} // key \x00 value of every write that may have happened
	deletes := map[string]bool{}
	for _, o := range in.Ops {
		if !o.IsWrite() || o.Outcome == Failed || o.Outcome == Error {
			continue
		}
		switch o.Kind {
		case KindDelete, KindTxnDelete, KindRespDel:
			deletes[o.Key] = true
		default:
			written[o.Key+"\x00"+o.Value] = true
		}
	}
	lastOf := map[string]WatchEvent{}
	for _, e := range in.Reference {
		if e.Rev < in.ReferenceFrom {
			fails = append(fails, fmt.Sprintf("watch: the reference feed from %d holds %s", in.ReferenceFrom, e))
		}
		if cur, ok := lastOf[e.Key]; !ok || e.Rev >= cur.Rev {
			lastOf[e.Key] = e
		}
		if !isWorkloadKey(in.Prefix, e.Key) {
			continue
		}
		switch {
		case e.Type == "put" && !written[e.Key+"\x00"+e.Value]:
			fails = append(fails, fmt.Sprintf("watch: the reference feed has %s, a value no client wrote to %s", e, e.Key))
		case e.Type == "delete" && !e.Expired && !deletes[e.Key]:
			fails = append(fails, fmt.Sprintf("watch: the reference feed has %s, and no client deleted %s", e, e.Key))
		}
	}
	if in.End == nil || in.ReferenceFrom == 0 {
		return fails
	}
	for k, e := range lastOf {
		it, ok := in.End[k]
		switch {
		case e.Type == "delete" && ok:
			fails = append(fails, fmt.Sprintf("watch: the reference feed ends %s with %s, the replicas hold it @%d", k, e, it.ModRevision))
		case e.Type == "put" && (!ok || it.ModRevision != e.Rev || string(it.Value) != e.Value):
			fails = append(fails, fmt.Sprintf("watch: the reference feed ends %s with %s, the replicas hold %s", k, e, describeItem(it, ok)))
		}
	}
	for k, it := range in.End {
		if _, ok := lastOf[k]; !ok && strings.HasPrefix(k, in.Prefix) && it.ModRevision >= in.ReferenceFrom {
			fails = append(fails, fmt.Sprintf("watch: the replicas hold %s=%s @%d, a change the reference feed does not have", k, it.Value, it.ModRevision))
		}
	}
	slices.Sort(fails)
	return fails
}

// isWorkloadKey: a key the workload's clients write (the nemesis's filler
// keys, prefix + "fill/", are written outside the history).
func isWorkloadKey(prefix, key string) bool {
	return strings.HasPrefix(key, prefix) && !strings.HasPrefix(key, prefix+"fill/")
}

// groupInOrder splits events into runs of one revision, in order.
func groupInOrder(evs []WatchEvent) [][]WatchEvent {
	var out [][]WatchEvent
	for i := 0; i < len(evs); {
		j := i + 1
		for j < len(evs) && evs[j].Rev == evs[i].Rev {
			j++
		}
		out = append(out, evs[i:j])
		i = j
	}
	return out
}

// groupByRevision indexes a feed by revision.
func groupByRevision(evs []WatchEvent) map[int64][]WatchEvent {
	out := map[int64][]WatchEvent{}
	for _, e := range evs {
		out[e.Rev] = append(out[e.Rev], e)
	}
	return out
}

// revsBetween returns the revisions of sorted in [lo, hi).
func revsBetween(sorted []int64, lo, hi int64) []int64 {
	i, _ := slices.BinarySearch(sorted, lo)
	j, _ := slices.BinarySearch(sorted, hi)
	if i >= j {
		return nil
	}
	return sorted[i:j]
}

func describeEvents(evs []WatchEvent) string {
	if len(evs) == 0 {
		return "nothing"
	}
	var parts []string
	for _, e := range evs {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, ", ")
}

func describeItem(it Item, ok bool) string {
	if !ok {
		return "nothing"
	}
	return fmt.Sprintf("%s=%s @%d", it.Key, it.Value, it.ModRevision)
}
