package eventual

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/cairnkv/cairn/internal/eventual/ring"
)

// Anti-entropy: every interval (jittered) each node compares, with every
// other member, the keys both of them own. Each side folds the versions of
// those keys into buckets (a key's bucket is given by its ring hash; a
// bucket's hash is the XOR of its items' hashes, so the order of keys does
// not matter), the peer answers which buckets differ, and the two swap the
// records of those buckets only; merging is last-writer-wins, so the
// exchange is idempotent and both sides end with the greater version of
// every key. After any partition heals, one round with each replica makes
// them converge.
//
// The same pass hands off the keys this node holds but no longer owns (a
// membership change moved their range), and collects tombstones and expired
// values: one is dropped only after TombstoneGrace has passed since its
// stamp and a round with every other owner has completed since this node
// first saw it eligible, so every replica holds it (or something newer) and
// none can bring an older value back.
const buckets = 1024

type antiEntropy struct {
	e     *Engine
	wake  chan struct{}
	limit *limiter

	mu sync.Mutex
	// done is when the last complete round with each peer started.
	done map[string]time.Time
	// eligible holds tombstones and expired values that may be dropped
	// once every other owner has completed a round after since.
	eligible map[string]eligibleAt
}

type eligibleAt struct {
	version
	since time.Time
}

func newAntiEntropy(e *Engine) *antiEntropy {
	return &antiEntropy{e: e, wake: make(chan struct{}, 1), limit: newLimiter(e.cfg.AntiEntropyBytesPerSecond),
		done: map[string]time.Time{}, eligible: map[string]eligibleAt{}}
}

// kick starts a round soon (the membership changed).
func (a *antiEntropy) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *antiEntropy) run() {
	for {
		d := a.e.cfg.AntiEntropyInterval
		d += time.Duration(rand.Int64N(int64(d)/5 + 1))
		t := time.NewTimer(d)
		select {
		case <-a.e.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-a.wake:
			t.Stop()
		}
		err := a.round()
		switch {
		case a.e.ctx.Err() != nil:
		case err != nil:
			a.e.stats.aeRoundFailures.Add(1)
			a.e.log.Warn("anti-entropy round failed", "err", err)
		default:
			a.e.stats.aeRoundsOK.Add(1)
		}
	}
}

// digests are bucket hashes per peer.
type digests map[string]*[buckets]uint64

func bucketOf(key string) int { return int(ring.Hash(key) >> (64 - 10)) }

func itemHash(key string, r *record) uint64 {
	var b [8 + 1 + 8]byte
	binary.BigEndian.PutUint64(b[0:8], uint64(r.stamp))
	if r.tombstone {
		b[8] = 1
	}
	binary.BigEndian.PutUint64(b[9:17], uint64(r.expires))
	h := xxhash.New()
	_, _ = h.WriteString(key)
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(b[:])
	_, _ = h.WriteString(r.origin)
	return h.Sum64()
}

// round compares with every peer, hands off what this node no longer owns
// and collects what may be dropped.
func (a *antiEntropy) round() error {
	e := a.e
	v := e.view.Load()
	start := time.Now()
	dig := digests{}
	for _, m := range v.members {
		if m != e.cfg.Name {
			dig[m] = new([buckets]uint64)
		}
	}
	var handoff []put
	var drop []put
	grace := e.cfg.TombstoneGrace
	now := unixNano()
	a.mu.Lock()
	err := e.reps.scan("", "", func(key string, rec *record) bool {
		_, n, _, _ := e.policy(v, key)
		owners := v.owners(key, n)
		if !slices.Contains(owners, e.cfg.Name) {
			handoff = append(handoff, put{key: key, rec: rec})
			return e.ctx.Err() == nil
		}
		h, b := itemHash(key, rec), bucketOf(key)
		for _, o := range owners {
			if d := dig[o]; d != nil {
				d[b] ^= h
			}
		}
		if !rec.live(now) && now-rec.stamp.Time().UnixNano() > grace.Nanoseconds() &&
			(rec.tombstone || now-rec.expires > grace.Nanoseconds()) {
			el, ok := a.eligible[key]
			if !ok || el.version != rec.version {
				a.eligible[key] = eligibleAt{rec.version, start}
			} else if a.allDone(owners, el.since) {
				drop = append(drop, put{key: key, rec: rec})
				delete(a.eligible, key)
			}
		}
		return e.ctx.Err() == nil
	})
	a.mu.Unlock()
	if err != nil {
		return err
	}
	for peer, d := range dig {
		if !e.det.usable(peer) {
			continue
		}
		if err := a.exchange(v, peer, d); err != nil {
			if e.ctx.Err() == nil {
				e.log.Debug("anti-entropy with a peer failed", "peer", peer, "err", err)
			}
			continue
		}
		a.mu.Lock()
		a.done[peer] = start
		a.mu.Unlock()
	}
	if len(handoff) > 0 {
		a.handOffRanges(v, handoff)
	}
	if len(drop) > 0 {
		if err := e.reps.write(&commit{drop: drop}); err != nil {
			return err
		}
		e.log.Debug("collected tombstones and expired values", "count", len(drop))
	}
	return nil
}

// allDone reports whether a round with every owner but this node started
// after since. Callers hold a.mu.
func (a *antiEntropy) allDone(owners []string, since time.Time) bool {
	for _, o := range owners {
		if o != a.e.cfg.Name && !a.done[o].After(since) {
			return false
		}
	}
	return true
}

// localDigest folds the versions of the keys this node and peer both own.
func (a *antiEntropy) localDigest(v *view, peer string, want map[int]bool) (*[buckets]uint64, []scanItem, error) {
	e := a.e
	d := new([buckets]uint64)
	var items []scanItem
	err := e.reps.scan("", "", func(key string, rec *record) bool {
		_, n, _, _ := e.policy(v, key)
		owners := v.owners(key, n)
		if !slices.Contains(owners, e.cfg.Name) || !slices.Contains(owners, peer) {
			return true
		}
		b := bucketOf(key)
		d[b] ^= itemHash(key, rec)
		if want[b] {
			items = append(items, scanItem{key, rec})
		}
		return e.ctx.Err() == nil
	})
	return d, items, err
}

// exchange compares digests with peer and swaps the differing buckets.
func (a *antiEntropy) exchange(v *view, peer string, d *[buckets]uint64) error {
	e := a.e
	addr := v.addrs[peer]
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
	defer cancel()
	var w writer
	w.str(e.cfg.Name)
	for _, h := range d {
		w.u64(h)
	}
	out, err := e.cfg.RPC.Call(ctx, addr, methodDigest, w.b)
	if err != nil {
		return err
	}
	rd := reader{b: out}
	n := rd.count(1)
	diff := make([]int, 0, n)
	for range n {
		b := int(rd.uvarint())
		if b >= buckets {
			rd.fail()
		}
		diff = append(diff, b)
	}
	if rd.err != nil {
		return rd.err
	}
	// Swap a few buckets per call, so one call stays small.
	const perCall = 64
	for len(diff) > 0 {
		chunk := diff[:min(perCall, len(diff))]
		diff = diff[len(chunk):]
		want := map[int]bool{}
		for _, b := range chunk {
			want[b] = true
		}
		_, mine, err := a.localDigest(v, peer, want)
		if err != nil {
			return err
		}
		var w writer
		w.str(e.cfg.Name)
		w.uvarint(uint64(len(chunk)))
		for _, b := range chunk {
			w.uvarint(uint64(b))
		}
		w.b = append(w.b, encodeScan(mine, false)...)
		a.limit.wait(e.ctx, len(w.b))
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
		out, err := e.cfg.RPC.Call(ctx, addr, methodExchange, w.b)
		cancel()
		if err != nil {
			return err
		}
		theirs, _, err := decodeScan(out)
		if err != nil {
			return err
		}
		e.stats.aeKeysSent.Add(uint64(len(mine)))
		e.stats.aeKeysReceived.Add(uint64(len(theirs)))
		if err := a.merge(theirs); err != nil {
			return err
		}
	}
	return nil
}

// merge applies records received from a peer.
func (a *antiEntropy) merge(items []scanItem) error {
	if len(items) == 0 {
		return nil
	}
	puts := make([]put, 0, len(items))
	for _, it := range items {
		if a.e.observe(it.rec.stamp, false) != nil {
			continue // too far ahead of this node's clock: a later round
		}
		puts = append(puts, put{key: it.key, rec: it.rec})
	}
	return a.e.reps.write(&commit{puts: puts})
}

func (a *antiEntropy) handleDigest(_ context.Context, b []byte) ([]byte, error) {
	rd := reader{b: b}
	peer := rd.str()
	var theirs [buckets]uint64
	for i := range theirs {
		theirs[i] = rd.u64()
	}
	if rd.err != nil {
		return nil, rd.err
	}
	v := a.e.view.Load()
	if v.addrs[peer] == "" {
		return nil, fmt.Errorf("eventual: anti-entropy from %q, which is not a member here", peer)
	}
	mine, _, err := a.localDigest(v, peer, nil)
	if err != nil {
		return nil, err
	}
	var diff []int
	for i := range mine {
		if mine[i] != theirs[i] {
			diff = append(diff, i)
		}
	}
	var w writer
	w.uvarint(uint64(len(diff)))
	for _, i := range diff {
		w.uvarint(uint64(i))
	}
	return w.b, nil
}

func (a *antiEntropy) handleExchange(_ context.Context, b []byte) ([]byte, error) {
	rd := reader{b: b}
	peer := rd.str()
	n := rd.count(1)
	want := map[int]bool{}
	for range n {
		bk := int(rd.uvarint())
		if bk >= buckets {
			rd.fail()
		}
		want[bk] = true
	}
	if rd.err != nil {
		return nil, rd.err
	}
	theirs, _, err := decodeScan(rd.b)
	if err != nil {
		return nil, err
	}
	v := a.e.view.Load()
	if v.addrs[peer] == "" {
		return nil, fmt.Errorf("eventual: anti-entropy from %q, which is not a member here", peer)
	}
	// Answer with what this node had before merging: the peer merges it
	// the same way, so both end with the greater version of every key.
	_, mine, err := a.localDigest(v, peer, want)
	if err != nil {
		return nil, err
	}
	if err := a.merge(theirs); err != nil {
		return nil, err
	}
	out := encodeScan(mine, false)
	a.limit.wait(a.e.ctx, len(out))
	return out, nil
}

// handOffRanges sends keys this node holds but no longer owns to their
// owners and drops each once every owner has it.
func (a *antiEntropy) handOffRanges(v *view, items []put) {
	e := a.e
	byOwner := map[string][]int{}
	for i, p := range items {
		_, n, _, _ := e.policy(v, p.key)
		for _, o := range v.owners(p.key, n) {
			byOwner[o] = append(byOwner[o], i)
		}
	}
	failed := make([]bool, len(items))
	for owner, idx := range byOwner {
		for len(idx) > 0 {
			chunk := idx[:min(len(idx), hintBatch)]
			idx = idx[len(chunk):]
			ps := make([]put, len(chunk))
			size := 0
			for j, i := range chunk {
				ps[j] = items[i]
				size += len(items[i].key) + len(items[i].rec.value)
			}
			a.limit.wait(e.ctx, size)
			ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
			out, err := e.deliver(ctx, v, owner, ps, false)
			cancel()
			for j, i := range chunk {
				if err != nil || !out[j].applied {
					failed[i] = true
				}
			}
		}
	}
	var drop []put
	for i, p := range items {
		if !failed[i] {
			drop = append(drop, p)
		}
	}
	if len(drop) > 0 {
		if err := e.reps.write(&commit{drop: drop}); err != nil {
			e.log.Warn("cannot drop handed-off keys", "err", err)
			return
		}
		e.log.Info("handed off keys this node no longer owns", "count", len(drop), "kept", len(items)-len(drop))
	}
}

// limiter is a token bucket over bytes per second.
type limiter struct {
	mu    sync.Mutex
	rate  float64
	avail float64
	last  time.Time
}

func newLimiter(bytesPerSecond int) *limiter {
	return &limiter{rate: float64(bytesPerSecond), avail: float64(bytesPerSecond), last: time.Now()}
}

// wait takes n bytes, sleeping while the bucket is short (a burst of up to
// one second's worth passes at once).
func (l *limiter) wait(ctx context.Context, n int) {
	l.mu.Lock()
	now := time.Now()
	l.avail = min(l.rate, l.avail+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.avail -= float64(n)
	short := -l.avail
	l.mu.Unlock()
	if short <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(short / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
