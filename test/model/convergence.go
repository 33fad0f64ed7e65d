package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The convergence model of eventual keyspaces. There is no order to
// linearize: replicas accept writes on both sides of a partition and settle
// on the greatest version afterwards (last write wins by (timestamp,
// origin)). So the model is a check of the end state, once the faults have
// stopped and the replicas had time to exchange what they hold, against
// every write the clients attempted:
//
//   - every replica of a key holds the same version, or none holds one;
//   - that version is at least the version of every acknowledged write of
//     the key: no acknowledged write is lost unless a greater version
//     replaced it, and a delete never lets an older value come back;
//   - a value is the one its write wrote, at the version that write was
//     acknowledged with (values are unique per write, so a value names its
//     write); a write the server refused outright never shows;
//   - a key is absent everywhere only if what may hold the greatest version
//     is a delete, a put that has expired, or no write at all.
//
// Writes whose outcome the client never learned (a timeout, a 503 with
// fewer than W acks: such a write may still have landed on some replicas)
// may or may not be there, with a version the client does not know.

// Version is the version of an eventual record: the coordinator's hybrid
// logical clock stamp in its text form ("2025-03-01T12:00:00.250Z-00003",
// which sorts as the stamps do) and the node that coordinated the write.
// Versions are ordered by (Timestamp, Origin); the zero Version is below
// every other.
type Version struct {
	Timestamp string `json:"timestamp"`
	Origin    string `json:"origin"`
}

// Compare returns -1, 0 or +1 as v is below, equal to or above w.
func (v Version) Compare(w Version) int {
	if c := strings.Compare(v.Timestamp, w.Timestamp); c != 0 {
		return c
	}
	return strings.Compare(v.Origin, w.Origin)
}

// IsZero reports whether v is the zero Version (no version known).
func (v Version) IsZero() bool { return v == Version{} }

func (v Version) String() string {
	if v.IsZero() {
		return "@?"
	}
	return "@" + v.Timestamp + "/" + v.Origin
}

// WriteOutcome is what the client learned of an eventual write.
type WriteOutcome int

// Write outcomes.
const (
	// WriteAcked: 200; W replicas made it durable, at the Version answered.
	WriteAcked WriteOutcome = iota
	// WriteUnknown: a timeout or a lost connection; it may have landed, now
	// or later, at a version the client never learned.
	WriteUnknown
	// WriteFailed: 503, fewer than W replicas acknowledged in time. As in
	// Dynamo the write may still have landed on some, so it counts as
	// unknown; the outcome is kept apart for the report.
	WriteFailed
	// WriteRefused: never sent (the connection was refused) or refused
	// outright (a 4xx); it had no effect and its value must never show.
	WriteRefused
)

func (o WriteOutcome) String() string {
	return [...]string{"acked", "unknown", "failed", "refused"}[o]
}

// Write is one write a client attempted on an eventual key.
type Write struct {
	Key    string `json:"key"`
	Delete bool   `json:"delete,omitempty"`
	// Value is what a put wrote, unique across every write of the history
	// (the empty string for a delete).
	Value  string `json:"value,omitempty"`
	Client int    `json:"client"`
	// Node is the node the request went to.
	Node    string       `json:"node"`
	Outcome WriteOutcome `json:"outcome"`
	// Version is what the coordinator answered (acknowledged writes only).
	Version Version `json:"version"`
	// Expires is, for a put with a TTL, when it expires: for an
	// acknowledged put its stamp's time plus the TTL, for any other the
	// earliest it may expire (when it was sent plus the TTL). Zero: never.
	Expires time.Time `json:"expires"`
	// Call and Return are when the request was sent and answered, since
	// the start of the run (for reports).
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`
	Err    string        `json:"err,omitempty"`
}

// mayLand reports whether the write may have reached a replica.
func (w *Write) mayLand() bool { return w.Outcome != WriteRefused }

// Describe is one line for a report, like `put(ev/k1, c3-41) via n2 ->
// acked @2025-…-00003/n2` or `delete(ev/k1) via n1 -> unknown (timeout)`.
func (w *Write) Describe() string {
	op := fmt.Sprintf("put(%s, %s)", w.Key, w.Value)
	if w.Delete {
		op = fmt.Sprintf("delete(%s)", w.Key)
	}
	if !w.Expires.IsZero() {
		op += " with a TTL, expiring " + w.Expires.UTC().Format("15:04:05.000")
	}
	res := w.Outcome.String()
	switch {
	case w.Outcome == WriteAcked:
		res += " " + w.Version.String()
	case w.Err != "":
		res += " (" + w.Err + ")"
	}
	return fmt.Sprintf("%s via %s at +%.3fs -> %s", op, w.Node, w.Call.Seconds(), res)
}

// Replica is what one replica of a key holds locally once the faults have
// stopped (GET ?consistency=local on that node).
type Replica struct {
	Node string `json:"node"`
	// Present: the node holds a live version (not a tombstone, not expired).
	Present bool    `json:"present"`
	Value   string  `json:"value,omitempty"`
	Version Version `json:"version"`
	// Err says why the replica could not be read; such a replica proves
	// nothing and fails the check.
	Err string `json:"err,omitempty"`
}

func (r Replica) state() string {
	switch {
	case r.Err != "":
		return "unreadable (" + r.Err + ")"
	case !r.Present:
		return "nothing"
	}
	return r.Value + " " + r.Version.String()
}

// KeyState is a key's replicas as read at the end: every node of its
// preference list, in order.
type KeyState struct {
	Key      string    `json:"key"`
	Replicas []Replica `json:"replicas"`
	// ReadAt is when the reads of the key's replicas began (expiry is
	// judged against it).
	ReadAt time.Time `json:"read_at"`
}

// Violation is one broken rule on one key.
type Violation struct {
	Key string
	// Rule names what was broken: "replicas differ", "lost write",
	// "resurrection", "unknown value", "refused write landed", "wrong
	// version", "duplicate version", "expired value", "unreadable",
	// "not read".
	Rule   string
	Detail string
}

func (v Violation) String() string { return fmt.Sprintf("%s: %s: %s", v.Key, v.Rule, v.Detail) }

// Convergence is the verdict of CheckConvergence.
type Convergence struct {
	Keys     int // keys checked
	Replicas int // replica reads checked
	Present  int // keys every replica holds a live version of
	Absent   int // keys no replica holds a live version of
	Writes   int
	Outcomes map[WriteOutcome]int
	// Violations, in key order; none means the keyspace converged.
	Violations []Violation
}

// OK reports whether no rule was broken.
func (c *Convergence) OK() bool { return len(c.Violations) == 0 }

// CheckConvergence checks the end state of eventual keys against every
// write attempted on them (see the rules at the top of this file). final
// must hold every key written to. slack is how far apart clocks may be
// (the nodes' among themselves and the harness's): a put is taken as
// possibly expired once its Expires is less than slack after the key was
// read, and as certainly expired once it is more than slack before.
func CheckConvergence(writes []Write, final []KeyState, slack time.Duration) Convergence {
	res := Convergence{Writes: len(writes), Outcomes: map[WriteOutcome]int{}}
	byKey := map[string][]*Write{}
	for i := range writes {
		w := &writes[i]
		byKey[w.Key] = append(byKey[w.Key], w)
		res.Outcomes[w.Outcome]++
	}
	read := map[string]bool{}
	for _, ks := range final {
		read[ks.Key] = true
		res.Keys++
		res.Replicas += len(ks.Replicas)
		kc := newKeyCheck(ks, byKey[ks.Key], slack)
		kc.run()
		switch kc.held {
		case heldPresent:
			res.Present++
		case heldAbsent:
			res.Absent++
		}
		res.Violations = append(res.Violations, kc.bad...)
	}
	for k := range byKey {
		if !read[k] {
			res.Violations = append(res.Violations, Violation{k, "not read", fmt.Sprintf("%d writes, but no replica of the key was read at the end", len(byKey[k]))})
		}
	}
	slices.SortStableFunc(res.Violations, func(a, b Violation) int { return cmp.Compare(a.Key, b.Key) })
	return res
}

const (
	heldMixed = iota
	heldPresent
	heldAbsent
)

// keyCheck checks one key.
type keyCheck struct {
	ks      KeyState
	writes  []*Write
	slack   time.Duration
	byValue map[string]*Write // puts by value
	maxAck  *Write            // the acknowledged write with the greatest version
	held    int
	bad     []Violation
}

func newKeyCheck(ks KeyState, writes []*Write, slack time.Duration) *keyCheck {
	kc := &keyCheck{ks: ks, writes: writes, slack: slack, byValue: map[string]*Write{}}
	for _, w := range writes {
		if !w.Delete {
			kc.byValue[w.Value] = w
		}
		if w.Outcome == WriteAcked && (kc.maxAck == nil || w.Version.Compare(kc.maxAck.Version) > 0) {
			kc.maxAck = w
		}
	}
	return kc
}

func (kc *keyCheck) fail(rule, format string, args ...any) {
	kc.bad = append(kc.bad, Violation{kc.ks.Key, rule, fmt.Sprintf(format, args...)})
}

// mayHaveExpired: w is a put with a TTL that may have expired before the
// key was read.
func (kc *keyCheck) mayHaveExpired(w *Write) bool {
	return w != nil && !w.Delete && !w.Expires.IsZero() && !w.Expires.After(kc.ks.ReadAt.Add(kc.slack))
}

// surelyExpired: w is an acknowledged put whose expiry had certainly passed
// when the key was read (the expiry of any other write is not known).
func (kc *keyCheck) surelyExpired(w *Write) bool {
	return w != nil && !w.Delete && w.Outcome == WriteAcked && !w.Expires.IsZero() && w.Expires.Add(kc.slack).Before(kc.ks.ReadAt)
}

func (kc *keyCheck) run() {
	kc.duplicates()
	if len(kc.ks.Replicas) == 0 {
		kc.fail("unreadable", "the key has no replicas (an empty preference list)")
		return
	}
	// The distinct states the replicas hold, and which replicas hold each.
	type group struct {
		r     Replica
		nodes []string
	}
	var groups []*group
	var unreadable []string
	for _, r := range kc.ks.Replicas {
		if r.Err != "" {
			unreadable = append(unreadable, r.Node+": "+r.Err)
			continue
		}
		i := slices.IndexFunc(groups, func(g *group) bool {
			return g.r.Present == r.Present && (!r.Present || g.r.Value == r.Value && g.r.Version == r.Version)
		})
		if i < 0 {
			groups = append(groups, &group{r: r})
			i = len(groups) - 1
		}
		groups[i].nodes = append(groups[i].nodes, r.Node)
	}
	if len(unreadable) > 0 {
		kc.fail("unreadable", "%s", strings.Join(unreadable, "; "))
	}
	if len(groups) == 0 {
		return
	}

	// (a) One state on every replica. A put that expires while its
	// replicas are read may show on some and not on others.
	if len(groups) > 1 {
		var present []*group
		for _, g := range groups {
			if g.r.Present {
				present = append(present, g)
			}
		}
		expiring := len(present) == 1 && len(groups) == 2 && kc.mayHaveExpired(kc.byValue[present[0].r.Value])
		if !expiring {
			var parts []string
			for _, g := range groups {
				parts = append(parts, fmt.Sprintf("%s %s %s", strings.Join(g.nodes, ", "), holds(len(g.nodes)), g.r.state()))
			}
			kc.fail("replicas differ", "%s", strings.Join(parts, "; "))
		}
	} else if groups[0].r.Present {
		kc.held = heldPresent
	} else {
		kc.held = heldAbsent
	}

	for _, g := range groups {
		who := strings.Join(g.nodes, ", ") + " " + holds(len(g.nodes))
		if g.r.Present {
			kc.present(who, g.r)
		} else if len(groups) == 1 {
			kc.absent(who)
		}
	}
}

func holds(n int) string {
	if n == 1 {
		return "holds"
	}
	return "hold"
}

// duplicates: two acknowledged writes of the key cannot share a version.
func (kc *keyCheck) duplicates() {
	seen := map[Version]*Write{}
	for _, w := range kc.writes {
		if w.Outcome != WriteAcked {
			continue
		}
		if o := seen[w.Version]; o != nil {
			kc.fail("duplicate version", "%s and %s were acknowledged with the same version", o.Describe(), w.Describe())
			continue
		}
		seen[w.Version] = w
	}
}

// present checks a live version some replicas hold: (b) not below an
// acknowledged write, (c) the value of its own write at that write's
// version.
func (kc *keyCheck) present(who string, r Replica) {
	what := fmt.Sprintf("%s %s %s", who, r.Value, r.Version)
	w := kc.byValue[r.Value]
	switch {
	case w == nil:
		kc.fail("unknown value", "%s, a value no put to this key wrote", what)
		return
	case w.Outcome == WriteRefused:
		kc.fail("refused write landed", "%s, written by %s, which was refused", what, w.Describe())
	case w.Outcome == WriteAcked && w.Version != r.Version:
		kc.fail("wrong version", "%s, but its write was acknowledged with another version: %s", what, w.Describe())
	case w.Outcome != WriteAcked:
		for _, o := range kc.writes {
			if o.Outcome == WriteAcked && o.Version == r.Version {
				kc.fail("wrong version", "%s (written by %s), but that version is the one of %s", what, w.Describe(), o.Describe())
				break
			}
		}
	}
	if kc.surelyExpired(w) {
		kc.fail("expired value", "%s, but its put had expired by the time it was read (%s): %s",
			what, kc.ks.ReadAt.UTC().Format("15:04:05.000"), w.Describe())
	}
	if m := kc.maxAck; m != nil && r.Version.Compare(m.Version) < 0 {
		rule, why := "lost write", "an acknowledged write with a greater version is lost"
		if m.Delete {
			rule, why = "resurrection", "the value came back after an acknowledged delete with a greater version"
		}
		kc.fail(rule, "%s, below %s: %s", what, m.Describe(), why)
	}
}

// absent checks a key no replica holds (d): what may hold the greatest
// version must be a delete, an expired put, or nothing acknowledged.
func (kc *keyCheck) absent(who string) {
	m := kc.maxAck
	if m == nil || m.Delete || kc.mayHaveExpired(m) {
		return
	}
	for _, w := range kc.writes {
		// A write the client has no version for may be above every
		// acknowledged one.
		if w.Outcome != WriteAcked && w.mayLand() && (w.Delete || kc.mayHaveExpired(w)) {
			return
		}
	}
	kc.fail("lost write", "%s nothing, but the greatest acknowledged write is %s, and no delete or expiry can have replaced it",
		who, m.Describe())
}

// EventualRead is a read of an eventual key as a client saw it.
type EventualRead struct {
	Key     string        `json:"key"`
	Node    string        `json:"node"`
	Found   bool          `json:"found"`
	Value   string        `json:"value,omitempty"`
	Version Version       `json:"version"`
	Call    time.Duration `json:"call"`
}

// CheckEventualReads checks what reads returned during a run: a value must
// have been written to the key by a put that may have landed, at the
// version that put was acknowledged with when it was. Any such value may
// be read at any time (eventual reads promise no order).
func CheckEventualReads(writes []Write, reads []EventualRead) []Violation {
	byValue := map[string]*Write{}
	for i := range writes {
		if w := &writes[i]; !w.Delete {
			byValue[w.Key+"\x00"+w.Value] = w
		}
	}
	var bad []Violation
	for _, r := range reads {
		if !r.Found {
			continue
		}
		what := fmt.Sprintf("a read via %s at +%.3fs returned %s %s", r.Node, r.Call.Seconds(), r.Value, r.Version)
		w := byValue[r.Key+"\x00"+r.Value]
		switch {
		case w == nil:
			bad = append(bad, Violation{r.Key, "unknown value", what + ", a value no put to this key wrote"})
		case w.Outcome == WriteRefused:
			bad = append(bad, Violation{r.Key, "refused write landed", what + ", written by " + w.Describe() + ", which was refused"})
		case w.Outcome == WriteAcked && w.Version != r.Version:
			bad = append(bad, Violation{r.Key, "wrong version", what + ", but its write was acknowledged with another version: " + w.Describe()})
		}
	}
	return bad
}
