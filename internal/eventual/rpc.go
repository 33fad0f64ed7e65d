package eventual

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/peer"
)

// The engine's internal RPC service "eventual" on the node's shared peer
// endpoint. Messages use the small codec in record.go.
const (
	methodPut      = "eventual.Put"      // records to merge (writes, repairs, hints, handoff)
	methodGet      = "eventual.Get"      // the stored versions of some keys
	methodScan     = "eventual.Scan"     // stored versions under a prefix, for lists
	methodPing     = "eventual.Ping"     // the failure detector's heartbeat
	methodDigest   = "eventual.Digest"   // anti-entropy: compare bucket hashes
	methodExchange = "eventual.Exchange" // anti-entropy: swap the records of differing buckets
)

// codeClock is the error code of a write refused for its stamp.
const codeClock = "clock"

func (e *Engine) handlers() map[string]peer.Handler {
	return map[string]peer.Handler{
		"Put":      e.handlePut,
		"Get":      e.handleGet,
		"Scan":     e.handleScan,
		"Ping":     e.handlePing,
		"Digest":   e.ae.handleDigest,
		"Exchange": e.ae.handleExchange,
	}
}

// handlePing answers a heartbeat with this node's wall clock (unix ms), from
// which the pinging node learns how far apart their clocks are.
func (e *Engine) handlePing(context.Context, []byte) ([]byte, error) {
	var w writer
	w.u64(uint64(e.wall().UnixMilli()))
	return w.b, nil
}

func (e *Engine) handlePut(_ context.Context, b []byte) ([]byte, error) {
	rd := reader{b: b}
	n := rd.count(3 + recordFixedLen)
	puts := make([]put, 0, n)
	refused := make([]string, n)
	keep := make([]int, 0, n)
	for i := range n {
		key, hint, flags, rec := rd.str(), rd.str(), rd.byte1(), rd.rec()
		if rd.err != nil {
			return nil, rd.err
		}
		if err := e.observe(rec.stamp, flags&1 != 0); err != nil {
			refused[i] = err.Error()
			continue
		}
		puts = append(puts, put{key: key, hint: hint, rec: rec})
		keep = append(keep, i)
	}
	c := &commit{puts: puts}
	if err := e.reps.write(c); err != nil {
		return nil, err
	}
	var w writer
	w.uvarint(uint64(n))
	j := 0
	for i := range n {
		if j < len(keep) && keep[j] == i {
			if c.out[j].hadLive {
				w.byte1(putAppliedLive)
			} else {
				w.byte1(putApplied)
			}
			j++
			continue
		}
		w.byte1(putRefusedClock)
		w.str(refused[i])
	}
	return w.b, nil
}

// observe merges a received stamp into the clock. A stamp too far ahead of
// this node's clock is refused, whoever sends it: a coordinator's fresh
// write (check: logged as a warning), or a copy another replica accepted
// (a hint, a repair, anti-entropy), which is taken later, once this node's
// clock has come within the bound of it, so one node with a clock far ahead
// cannot carry its writes onto every replica.
func (e *Engine) observe(ts hlc.Timestamp, check bool) error {
	_, err := e.clock.Update(ts)
	switch {
	case err == nil:
		return nil
	case check:
		e.log.Warn("refused a write stamped too far ahead of this node's clock", "err", err)
	case errors.Is(err, hlc.ErrTooFarAhead):
		e.log.Debug("deferred a copy stamped too far ahead of this node's clock", "err", err)
	default:
		e.log.Warn("clock", "err", err)
	}
	return err
}

// isClockRefusal reports whether a replica refused a write for its stamp.
func isClockRefusal(err error) bool {
	var pe *peer.Error
	return errors.As(err, &pe) && pe.Code == codeClock
}

func (e *Engine) handleGet(_ context.Context, b []byte) ([]byte, error) {
	rd := reader{b: b}
	n := rd.count(1)
	recs := make([]*record, 0, n)
	size := binary.MaxVarintLen64
	for range n {
		key := rd.str()
		if rd.err != nil {
			return nil, rd.err
		}
		rec, err := e.reps.get(key)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
		size++
		if rec != nil {
			size += rec.wireLen()
		}
	}
	// Sized up front: a large value is copied into the reply once.
	w := writer{b: make([]byte, 0, size)}
	w.uvarint(uint64(n))
	for _, rec := range recs {
		if rec == nil {
			w.byte1(0)
			continue
		}
		w.byte1(1)
		w.rec(rec)
	}
	return w.b, nil
}

// decodeGetReply returns the versions a Get answered, nil where absent.
func decodeGetReply(b []byte, n int) ([]*record, error) {
	rd := reader{b: b}
	if got := rd.count(1); rd.err == nil && got != n {
		rd.fail()
	}
	out := make([]*record, n)
	for i := range n {
		if rd.byte1() == 1 {
			out[i] = rd.rec()
		}
	}
	return out, rd.err
}

// scanItem is one stored version in a page of a replica's scan.
type scanItem struct {
	key string
	rec *record
}

func (e *Engine) handleScan(_ context.Context, b []byte) ([]byte, error) {
	rd := reader{b: b}
	prefix, after, limit := rd.str(), rd.str(), int(rd.uvarint())
	if rd.err != nil {
		return nil, rd.err
	}
	items, more, err := e.localScan(prefix, after, limit)
	if err != nil {
		return nil, err
	}
	return encodeScan(items, more), nil
}

func (e *Engine) localScan(prefix, after string, limit int) (items []scanItem, more bool, err error) {
	if limit <= 0 || limit > maxScanPage {
		limit = maxScanPage
	}
	size := 0
	err = e.reps.scan(prefix, after, func(key string, rec *record) bool {
		// A page ends at limit records, or at MaxMessageBytes (at least
		// one record), so it fits in one reply.
		if len(items) == limit || len(items) > 0 && size+len(key)+rec.wireLen() > e.cfg.MaxMessageBytes {
			more = true
			return false
		}
		size += len(key) + rec.wireLen()
		items = append(items, scanItem{key, rec})
		return true
	})
	return items, more, err
}

const maxScanPage = 1000

func encodeScan(items []scanItem, more bool) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, it := range items {
		n += len(it.key) + it.rec.wireLen()
	}
	w := writer{b: make([]byte, 0, n)}
	if more {
		w.byte1(1)
	} else {
		w.byte1(0)
	}
	w.uvarint(uint64(len(items)))
	for _, it := range items {
		w.str(it.key)
		w.rec(it.rec)
	}
	return w.b
}

func decodeScan(b []byte) (items []scanItem, more bool, err error) {
	rd := reader{b: b}
	more = rd.byte1() == 1
	n := rd.count(1 + recordFixedLen)
	items = make([]scanItem, 0, n)
	for range n {
		key, rec := rd.str(), rd.rec()
		if rd.err != nil {
			break
		}
		items = append(items, scanItem{key, rec})
	}
	return items, more, rd.err
}
