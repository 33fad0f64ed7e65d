// Package hlc is the hybrid logical clock that orders writes in eventual
// keyspaces: last write wins by (timestamp, node name), so every replica must
// stamp with a clock that never runs backwards, stays close to real time
// (so "last" means what users expect across nodes), and moves past any
// timestamp it has seen (so a write that reads another is ordered after it).
//
// A Timestamp is one uint64: the wall clock in milliseconds since the Unix
// epoch in the high 48 bits, a logical counter in the low 16 (Kulkarni et
// al., "Logical Physical Clocks", 2014, with the packing CockroachDB and
// MongoDB use). Packing makes the HLC rules one max: a new timestamp is
// max(wall, last+1) when sending and max(wall, last+1, remote+1) when
// receiving, and a full counter simply carries into the next millisecond.
//
// Safety against a bad clock: Update refuses a remote timestamp more than
// MaxOffset ahead of the local wall clock, so one node with a clock far in
// the future cannot drag every replica (and every later write) there.
//
// Across restarts the clock persists a ceiling, as CockroachDB does: before
// it hands out a timestamp above the last persisted ceiling it asks its owner
// (Options.Persist, synchronously) to store a new ceiling PersistAhead beyond
// it, and a restarted clock starts from the stored ceiling (Options.Start).
// Every timestamp issued before a crash is at most the stored ceiling, so
// none issued after it can be smaller, even if the wall clock went back
// meanwhile; and the store is written once per PersistAhead of clock time
// while timestamps are being issued, not once per timestamp. The package does
// no I/O: the engine stores the mark.
package hlc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrTooFarAhead is returned by Update for a remote timestamp more than
	// MaxOffset ahead of the local wall clock; the clock is left unchanged.
	ErrTooFarAhead = errors.New("hlc: remote timestamp too far ahead of the local clock")
	// ErrSyntax is returned by Parse for a string that is not a timestamp in
	// its canonical form.
	ErrSyntax = errors.New("hlc: malformed timestamp")
	// ErrRange is returned for a timestamp past MaxTimestamp.
	ErrRange = errors.New("hlc: timestamp out of range")
	// ErrPersist wraps the error of Options.Persist: the clock could not make
	// its ceiling durable, so it issued no timestamp.
	ErrPersist = errors.New("hlc: persisting the clock ceiling failed")
	// ErrOptions is returned by NewClock for invalid Options.
	ErrOptions = errors.New("hlc: invalid clock options")
)

const (
	logicalBits = 16
	maxLogical  = 1<<logicalBits - 1

	// DefaultMaxOffset is the default for Options.MaxOffset: the largest
	// clock skew between nodes the cluster tolerates (--max-clock-offset).
	DefaultMaxOffset = 500 * time.Millisecond

	// DefaultPersistAhead is the default for Options.PersistAhead. Short, so
	// that a node restarted within it (with its clock at the ceiling, ahead
	// of the wall clock) waits at most this long before its timestamps are
	// within MaxOffset of its peers again; long enough that the ceiling costs
	// one small write per second of activity.
	DefaultPersistAhead = time.Second

	// layout is the physical part of the string form: RFC 3339 in UTC with
	// exactly three fractional digits, so that every timestamp has one fixed
	// width form and strings sort as the timestamps do.
	layout    = "2006-01-02T15:04:05.000Z"
	formatLen = len(layout) + 1 + 5 // "-" and five logical digits
)

// maxPhysical is the last millisecond of year 9999, the largest a four-digit
// RFC 3339 year can show (48 bits would reach year 10889).
var maxPhysical = time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC).UnixMilli()

// MaxTimestamp is the largest valid timestamp: the last millisecond of year
// 9999 with a full logical counter.
var MaxTimestamp = Timestamp(uint64(maxPhysical)<<logicalBits | maxLogical)

// Timestamp is a hybrid logical clock reading: milliseconds since the Unix
// epoch in the high 48 bits and a logical counter in the low 16. Timestamps
// order as uint64s; the zero Timestamp is before every issued one.
type Timestamp uint64

// Make returns the timestamp of physical milliseconds since the Unix epoch
// and a logical counter, with physical clamped to [0, the physical part of
// MaxTimestamp].
func Make(physical int64, logical uint16) Timestamp {
	physical = min(max(physical, 0), maxPhysical)
	return Timestamp(uint64(physical)<<logicalBits | uint64(logical))
}

// Physical returns the wall-clock part: milliseconds since the Unix epoch.
func (t Timestamp) Physical() int64 { return int64(t >> logicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t & maxLogical) }

// Time returns the wall-clock part as a time in UTC, for expiry and display.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Physical()).UTC() }

// String returns Format(t).
func (t Timestamp) String() string { return Format(t) }

// MarshalText encodes t as Format does, so timestamps read well in JSON.
func (t Timestamp) MarshalText() ([]byte, error) {
	if t > MaxTimestamp {
		return nil, fmt.Errorf("%w: %d", ErrRange, uint64(t))
	}
	return []byte(Format(t)), nil
}

// UnmarshalText decodes what MarshalText encodes.
func (t *Timestamp) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Format returns the string form of t used in HTTP headers
// (X-Cairn-Timestamp) and JSON: the physical part in RFC 3339 UTC with
// milliseconds, a dash and the logical counter in five digits, e.g.
// "2025-03-01T12:00:00.250Z-00003". Every timestamp has exactly one form, of
// fixed width, so the strings sort as the timestamps do and people can read
// them. A timestamp past MaxTimestamp formats as MaxTimestamp's physical part
// (it cannot be issued or parsed).
func Format(t Timestamp) string {
	phys := min(t.Physical(), maxPhysical)
	b := make([]byte, 0, formatLen)
	b = time.UnixMilli(phys).UTC().AppendFormat(b, layout)
	b = append(b, '-')
	l := strconv.AppendUint(nil, uint64(t.Logical()), 10)
	b = append(b, "00000"[len(l):]...)
	return string(append(b, l...))
}

// Parse reads the form Format writes, and only that form: one string per
// timestamp keeps headers comparable as strings and caches keyed by them
// exact.
func Parse(s string) (Timestamp, error) {
	if len(s) != formatLen || s[len(layout)] != '-' {
		return 0, fmt.Errorf("%w: %s: want the form %s-LLLLL", ErrSyntax, quote(s), layout)
	}
	phys, logical := s[:len(layout)], s[len(layout)+1:]
	for i := 0; i < len(logical); i++ {
		if logical[i] < '0' || logical[i] > '9' {
			return 0, fmt.Errorf("%w: %s: the logical counter must be five digits", ErrSyntax, quote(s))
		}
	}
	l, err := strconv.ParseUint(logical, 10, logicalBits)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: the logical counter is at most %d", ErrSyntax, quote(s), maxLogical)
	}
	tm, err := time.Parse(layout, phys)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrSyntax, quote(s), err)
	}
	// time.Parse is lenient in ways that would give one timestamp two forms;
	// insisting on the canonical form rules them all out at once.
	if tm.UTC().Format(layout) != phys {
		return 0, fmt.Errorf("%w: %s: not in canonical form", ErrSyntax, quote(s))
	}
	ms := tm.UnixMilli()
	if ms < 0 {
		return 0, fmt.Errorf("%w: %s: before the Unix epoch", ErrRange, quote(s))
	}
	return Make(ms, uint16(l)), nil
}

// quote quotes s for an error message, shortened: it may be any header.
func quote(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}

// Stamp is what last-write-wins compares: a write's timestamp and the node
// that stamped it.
type Stamp struct {
	TS   Timestamp
	Node string
}

// Compare orders stamps for last-write-wins: by timestamp, then by node name
// (two nodes can issue the same timestamp; the name makes the order total and
// the same on every replica). It returns -1 if a is older than b, +1 if
// newer, 0 if equal. The greater stamp wins.
func Compare(a, b Stamp) int {
	switch {
	case a.TS < b.TS:
		return -1
	case a.TS > b.TS:
		return 1
	}
	return strings.Compare(a.Node, b.Node)
}

// Options configure a Clock. The zero value is a clock on time.Now with the
// default offset and no persistence.
type Options struct {
	// Wall is the physical clock; nil means time.Now. Tests inject their own.
	Wall func() time.Time
	// MaxOffset is how far ahead of the local wall clock a remote timestamp
	// may be before Update refuses it; 0 means DefaultMaxOffset.
	MaxOffset time.Duration
	// Start is the ceiling persisted by the previous run (0 on first start):
	// every timestamp the clock issues is above it.
	Start Timestamp
	// Persist, when set, must durably store the ceiling it is given before
	// it returns; the clock hands out no timestamp above the last ceiling
	// Persist accepted, and the engine passes the stored ceiling as Start on
	// the next run. It is called with the clock locked, about once per
	// PersistAhead of clock time, so a slow store delays timestamps briefly
	// at that moment only. Nil means no persistence (tests, tools).
	Persist func(ceiling Timestamp) error
	// PersistAhead is how far beyond the current time each ceiling is set;
	// 0 means DefaultPersistAhead.
	PersistAhead time.Duration
}

// Clock is a hybrid logical clock, safe for concurrent use.
type Clock struct {
	wall      func() time.Time
	maxOffset time.Duration
	persist   func(Timestamp) error
	ahead     int64 // PersistAhead in ms

	mu      sync.Mutex
	last    Timestamp // the last timestamp issued (or Start)
	ceiling Timestamp // the last ceiling known durable
}

// NewClock returns a clock that issues timestamps above opts.Start.
func NewClock(opts Options) (*Clock, error) {
	if opts.MaxOffset < 0 {
		return nil, fmt.Errorf("%w: negative max offset %v", ErrOptions, opts.MaxOffset)
	}
	if opts.PersistAhead < 0 {
		return nil, fmt.Errorf("%w: negative persist-ahead %v", ErrOptions, opts.PersistAhead)
	}
	if opts.Start >= MaxTimestamp {
		return nil, fmt.Errorf("%w: start %d is past the last timestamp", ErrRange, uint64(opts.Start))
	}
	c := &Clock{
		wall:      opts.Wall,
		maxOffset: opts.MaxOffset,
		persist:   opts.Persist,
		ahead:     opts.PersistAhead.Milliseconds(),
		last:      opts.Start,
		ceiling:   opts.Start,
	}
	if c.wall == nil {
		c.wall = time.Now
	}
	if c.maxOffset == 0 {
		c.maxOffset = DefaultMaxOffset
	}
	if opts.PersistAhead == 0 {
		c.ahead = DefaultPersistAhead.Milliseconds()
	}
	return c, nil
}

// Now returns a new timestamp for a local event (a write this node
// coordinates): greater than every timestamp the clock issued or received
// before, and equal to the wall clock when the wall clock is ahead of them.
// It fails only when Persist fails or the clock runs past MaxTimestamp.
func (c *Clock) Now() (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tick(c.wallMillis(), 0)
}

// Update merges a timestamp received from another node (a replicated write,
// a read reply) and returns the receive event's timestamp, greater than
// remote and than every earlier one, so everything this node stamps from now
// on orders after what it has seen. A remote timestamp more than MaxOffset
// ahead of the local wall clock is refused with ErrTooFarAhead and changes
// nothing: accepting it would move every later write on this node that far
// into the future.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := c.wallMillis()
	if lead := remote.Physical() - wall; lead > c.maxOffset.Milliseconds() {
		return 0, fmt.Errorf("%w: %s is %v ahead of the wall clock (max offset %v)",
			ErrTooFarAhead, Format(remote), time.Duration(lead)*time.Millisecond, c.maxOffset)
	}
	return c.tick(wall, remote+1)
}

// Last returns the last timestamp issued (or Start if none yet).
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Lead returns how far the clock runs ahead of the wall clock (0 if it does
// not). After a restart from a ceiling the clock can lead by up to
// PersistAhead, and peers refuse timestamps that lead by more than
// MaxOffset; an engine that sleeps for Lead before accepting writes (as
// CockroachDB sleeps past its persisted upper bound) avoids those refusals.
// Also worth exporting as a metric.
func (c *Clock) Lead() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	lead := c.last.Physical() - c.wallMillis()
	return time.Duration(max(lead, 0)) * time.Millisecond
}

// MaxOffset returns the skew bound Update enforces.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

func (c *Clock) wallMillis() int64 { return c.wall().UnixMilli() }

// tick issues the next timestamp: at least the wall clock, the last one plus
// one and floor. Callers hold c.mu.
func (c *Clock) tick(wall int64, floor Timestamp) (Timestamp, error) {
	if c.last >= MaxTimestamp {
		return 0, fmt.Errorf("%w: the clock is at %s", ErrRange, Format(c.last))
	}
	next := max(Make(wall, 0), c.last+1, floor)
	if next > MaxTimestamp {
		return 0, fmt.Errorf("%w: %d", ErrRange, uint64(next))
	}
	if c.persist != nil && next > c.ceiling {
		ceiling := min(Make(next.Physical()+c.ahead, maxLogical), MaxTimestamp)
		if err := c.persist(ceiling); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrPersist, err)
		}
		c.ceiling = ceiling
	}
	c.last = next
	return next, nil
}
