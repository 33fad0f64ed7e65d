package eventual

import (
	"context"
	"time"
)

// Hinted handoff: a write kept here for an owner that could not take it
// (as a sloppy-quorum stand-in, or because the owner failed after the
// write was answered) is handed to the owner once the failure detector
// sees it healthy, oldest first, in batches; a hint is dropped only after
// the owner acknowledged it, and only if no newer hint replaced it
// meanwhile. Hints for a member that left the cluster go to the key's
// current owners instead.

const hintBatch = 256

// hintsDue wakes the hint loop (a member became healthy).
func (e *Engine) hintsDue() {
	select {
	case e.hintWake <- struct{}{}:
	default:
	}
}

func (e *Engine) deliverHints() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		case <-e.hintWake:
		}
		owners, err := e.reps.hintOwners()
		if err != nil {
			e.log.Warn("cannot list hints", "err", err)
			continue
		}
		for _, owner := range owners {
			e.handOff(owner)
		}
	}
}

// handOff delivers the hints kept for owner while it takes them.
func (e *Engine) handOff(owner string) {
	v := e.view.Load()
	member := v.addrs[owner] != ""
	if member && !e.det.usable(owner) {
		return
	}
	for e.ctx.Err() == nil {
		var batch []put
		err := e.reps.hints(owner, func(key string, rec *record) bool {
			batch = append(batch, put{key: key, rec: rec})
			return len(batch) < hintBatch
		})
		if err != nil || len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
		delivered := e.handOffBatch(ctx, v, owner, member, batch)
		cancel()
		if len(delivered) > 0 {
			for i := range delivered {
				delivered[i].hint = owner
			}
			if err := e.reps.write(&commit{dropHints: delivered}); err != nil {
				return
			}
		}
		if len(delivered) < len(batch) {
			return // the rest fails now; try again later
		}
	}
}

// handOffBatch sends hints to their owner (or, for a member that left, to
// the keys' current owners) and returns the ones that were taken.
func (e *Engine) handOffBatch(ctx context.Context, v *view, owner string, member bool, batch []put) []put {
	if member {
		out, err := e.deliver(ctx, v, owner, batch, false)
		if err != nil {
			e.log.Debug("hinted handoff failed", "owner", owner, "err", err)
			return nil
		}
		var done []put
		for i, o := range out {
			if o.applied {
				done = append(done, batch[i])
			}
		}
		return done
	}
	var done []put
	for _, p := range batch {
		_, n, _, _ := e.policy(v, p.key)
		ok := true
		for _, o := range v.owners(p.key, n) {
			if _, err := e.deliver(ctx, v, o, []put{p}, false); err != nil {
				ok = false
			}
		}
		if ok {
			done = append(done, p)
		}
	}
	return done
}
