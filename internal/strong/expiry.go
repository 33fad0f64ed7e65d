package strong

import (
	"context"
	"encoding/binary"
	"time"
)

// TTL expiry is decided through the log: the leader scans the TTL index on an
// interval and proposes an expire command naming the keys (with the mod
// revision it saw) whose time has passed at the entry's leader time; every
// replica deletes them when it applies that command, unless the key was
// rewritten meanwhile. Every replica removes a key at the same log position.

// expiryLoop proposes the deletion of expired keys while this node leads.
func (e *Engine) expiryLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		if !e.node.IsLeader() {
			continue
		}
		e.ensureClusterID()
		items := e.expired(time.Now(), 1000)
		if len(items) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RequestTimeout)
		if _, err := e.propose(ctx, command{Type: cmdExpire, Expire: items}); err != nil {
			e.log.Debug("expiry proposal failed", "err", err)
		}
		cancel()
	}
}

// expired lists keys whose TTL has passed at now, with the revision seen.
func (e *Engine) expired(now time.Time, limit int) []expireItem {
	lo := []byte{prefixTTL}
	hi := ttlKey(now.UnixNano()+1, "")
	var items []expireItem
	_ = e.db.Scan(lo, hi, func(k, _ []byte) bool {
		key := string(k[9:])
		exp := int64(binary.BigEndian.Uint64(k[1:]))
		raw, err := e.db.Get(dataKey(key))
		if err != nil {
			return true
		}
		r, err := decodeRecord(key, raw)
		if err != nil || r.Expires != exp {
			return true
		}
		items = append(items, expireItem{Key: key, ModRevision: r.ModRevision})
		return len(items) < limit
	})
	return items
}
