package eventual

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/cairnkv/cairn/kv"
)

// The failure detector: every node pings every other member over internal
// RPC. A member that misses missesToDamage pings in a row is damaged:
// coordinators send its writes to stand-ins and read from others first.
// A damaged member that answers again is validating until it has answered
// roundsToHeal pings in a row, and healthy again after that, as the Repose
// datastore makes a node pass validation rounds before it takes traffic.
const (
	pingInterval   = 500 * time.Millisecond
	pingTimeout    = 400 * time.Millisecond
	missesToDamage = 3
	roundsToHeal   = 3
)

type detector struct {
	e     *Engine
	mu    sync.Mutex
	peers map[string]*liveness
}

type liveness struct {
	// offset is how far this node's clock runs ahead of the member's, as
	// measured by the last answered ping (half its round trip taken as the
	// one-way delay); valid when measured is set.
	offset          time.Duration
	measured        bool
	misses, answers int
	damaged         bool // damaged or validating: not usable
	validating      bool
	since           time.Time
}

func newDetector(e *Engine) *detector { return &detector{e: e, peers: map[string]*liveness{}} }

// usable reports whether coordinators should send node traffic: this node
// always, a member the detector has not failed yet, not a damaged or
// validating one.
func (d *detector) usable(node string) bool {
	if node == d.e.cfg.Name {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.peers[node]
	return l == nil || !l.damaged
}

func (d *detector) health(node string) string {
	if node == d.e.cfg.Name {
		return kv.HealthSelf
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.peers[node]
	switch {
	case l == nil || !l.damaged:
		return kv.HealthHealthy
	case l.validating:
		return kv.HealthValidating
	}
	return kv.HealthDamaged
}

func (d *detector) run() {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case <-d.e.ctx.Done():
			return
		case <-t.C:
		}
		v := d.e.view.Load()
		var wg sync.WaitGroup
		for _, m := range v.members {
			if m == d.e.cfg.Name {
				continue
			}
			wg.Add(1)
			go func(m, addr string) {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(d.e.ctx, pingTimeout)
				sent := d.e.wall()
				out, err := d.e.cfg.RPC.Call(ctx, addr, methodPing, nil)
				got := d.e.wall()
				cancel()
				d.record(m, err == nil)
				if rd := (reader{b: out}); err == nil && len(out) == 8 {
					remote := time.UnixMilli(int64(rd.u64()))
					d.measure(m, sent.Add(got.Sub(sent)/2).Sub(remote))
				}
			}(m, v.addrs[m])
		}
		wg.Wait()
		d.forget(v.members)
	}
}

func (d *detector) record(node string, ok bool) {
	if d.e.ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.peers[node]
	if l == nil {
		l = &liveness{since: time.Now()}
		d.peers[node] = l
	}
	if !ok {
		l.answers = 0
		l.misses++
		if !l.damaged && l.misses >= missesToDamage {
			l.damaged, l.validating, l.since = true, false, time.Now()
			d.e.log.Warn("member damaged: it missed its heartbeats", "member", node)
		} else if l.validating {
			l.validating = false
		}
		return
	}
	l.misses = 0
	if !l.damaged {
		return
	}
	l.answers++
	l.validating = true
	if l.answers >= roundsToHeal {
		l.damaged, l.validating, l.since = false, false, time.Now()
		d.e.log.Info("member healthy again: it passed its validation rounds", "member", node)
		d.e.hintsDue()
	}
}

func (d *detector) measure(node string, offset time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.peers[node]; l != nil {
		l.offset, l.measured = offset, true
	}
}

// clockAhead reports whether this node's clock runs more than the max
// clock offset ahead of most of the members it could measure (and by how
// much, the median of those): its writes would be refused by them, or win
// over later ones, so it stops coordinating writes, as a CockroachDB node
// whose clock is off stops serving.
func (d *detector) clockAhead() (bool, time.Duration) {
	limit := d.e.clock.MaxOffset()
	d.mu.Lock()
	defer d.mu.Unlock()
	var offs []time.Duration
	ahead := 0
	for _, l := range d.peers {
		if !l.measured || l.damaged {
			continue
		}
		offs = append(offs, l.offset)
		if l.offset > limit {
			ahead++
		}
	}
	if len(offs) == 0 || 2*ahead <= len(offs) {
		return false, 0
	}
	slices.Sort(offs)
	return true, offs[len(offs)/2]
}

// forget drops members that left.
func (d *detector) forget(members []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for m := range d.peers {
		found := false
		for _, x := range members {
			found = found || x == m
		}
		if !found {
			delete(d.peers, m)
		}
	}
}
