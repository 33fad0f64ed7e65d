package eventual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/kv"
)

// The coordinator: any node coordinates a write or read of any key, talking
// to the key's owners (itself directly, the others over RPC).

// Apply implements kv.Engine. Each transaction is a batch of puts and
// deletes without compares: one stamp for all of it, sent to the owners of
// its keys; each replica applies the keys it holds in one synced batch.
// Expire and merge-patch read the key first (at the read quorum) and write
// a new version: last writer wins against a concurrent write, as every
// eventual write does.
func (e *Engine) Apply(ctx context.Context, txns []kv.Txn, _ uint64) ([]*kv.TxnResult, []error, error) {
	if err := e.Ready(); err != nil {
		return nil, nil, err
	}
	v := e.view.Load()
	results := make([]*kv.TxnResult, len(txns))
	errs := make([]error, len(txns))
	// Every transaction of the batch (a pipeline, or RESP commands of many
	// connections) is prepared, then all their copies go out in one write,
	// one message per node.
	preps := make([]*prepared, len(txns))
	var all []put
	var quorum []int
	for i := range txns {
		p, err := e.prepare(ctx, v, &txns[i])
		if err != nil {
			errs[i] = err
			continue
		}
		p.first = len(all)
		preps[i] = p
		all = append(all, p.puts...)
		for range p.puts {
			quorum = append(quorum, txns[i].WriteQuorum)
		}
	}
	var out []keyOutcome
	if len(all) > 0 {
		var err error
		if out, err = e.write(ctx, v, all, quorum); err != nil {
			return nil, nil, err
		}
	}
	for i, p := range preps {
		if p != nil {
			results[i], errs[i] = p.finish(out[p.first : p.first+len(p.puts)])
		}
	}
	return results, errs, nil
}

// prepared is a transaction stamped and turned into the records to write,
// waiting for their outcomes.
type prepared struct {
	res   *kv.TxnResult
	puts  []put
	ops   []int // for each put, its op's index in res.Results
	first int   // the index of puts[0] in the batch's write
}

// finish completes the result from each put's outcome: the fewest acks
// over the keys, and an error when one of them missed its quorum.
func (p *prepared) finish(out []keyOutcome) (*kv.TxnResult, error) {
	res := p.res
	if len(p.puts) == 0 {
		return res, nil
	}
	res.Acks = -1
	for _, o := range out {
		if o.err != nil {
			return nil, o.err
		}
		if res.Acks < 0 || o.acks < res.Acks {
			res.Acks = o.acks
		}
		res.Replicas = max(res.Replicas, o.replicas)
	}
	for i, pt := range p.puts {
		r := &res.Results[p.ops[i]]
		switch r.Type {
		case kv.OpDelete:
			if out[i].hadLive {
				r.Deleted = 1
			}
		case kv.OpDeletePrefix:
		default:
			if !pt.rec.tombstone {
				r.Record = pt.rec.kv(pt.key)
				r.Record.Acks, r.Record.Replicas = res.Acks, res.Replicas
			}
		}
	}
	return res, nil
}

// refuse is the error for what an eventual keyspace cannot do.
func (e *Engine) refuse(key, what string) error {
	p := e.cfg.Cluster.Keyspaces().Lookup(key)
	return fmt.Errorf("%w: %q is in the eventual keyspace %q: %s needs agreement, which eventual keyspaces do not have (use a strong keyspace)",
		kv.ErrUnsupportedMode, key, p.Prefix, what)
}

var opNames = map[kv.OpType]string{
	kv.OpIncr: "INCR", kv.OpIncrFloat: "INCRBYFLOAT", kv.OpAppend: "APPEND", kv.OpRename: "RENAME", kv.OpGet: "a read inside a transaction",
}

func (e *Engine) prepare(ctx context.Context, v *view, t *kv.Txn) (*prepared, error) {
	if len(t.Compare) > 0 {
		return nil, e.refuse(t.Compare[0].Key, "a compare (CAS, If-Match, SET NX/XX, WATCH)")
	}
	if ahead, by := e.det.clockAhead(); ahead {
		return nil, fmt.Errorf("%w: this node's clock is %v ahead of most of its peers' (max clock offset %v): it coordinates no eventual writes until its clock is set right",
			kv.ErrUnavailable, by.Round(time.Millisecond), e.clock.MaxOffset())
	}
	stamp, err := e.clock.Now()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", kv.ErrUnavailable, err)
	}
	now := e.wall() // expiries are decided on the engine's clock
	res := &kv.TxnResult{Succeeded: true, Timestamp: hlc.Format(stamp), Results: make([]kv.OpResult, 0, len(t.Success))}
	var puts []put
	var ops []int // index into res.Results for each put
	for _, op := range t.Success {
		if op.ReturnPrev && op.Type != kv.OpExpire {
			return nil, e.refuse(op.Key, "returning the previous value (GETSET, SET GET, GETDEL)")
		}
		rec := &record{version: version{stamp: stamp, origin: e.cfg.Name}}
		switch op.Type {
		case kv.OpPut:
			rec.value = op.Value
			rec.expires = expiry(now, op.TTL, op.ExpiresAt)
			if op.KeepTTL {
				cur, err := e.read(ctx, v, op.Key, kv.ReadOptions{})
				if err != nil {
					return nil, err
				}
				if cur.live(now.UnixNano()) {
					rec.expires = cur.expires
				}
			}
			if rec.expires != 0 && rec.expires <= now.UnixNano() {
				rec.tombstone, rec.value = true, nil // an expiry in the past deletes, as in Redis
			}
		case kv.OpDelete:
			rec.tombstone = true
		case kv.OpDeletePrefix:
			keys, err := e.liveKeys(ctx, op.Key)
			if err != nil {
				return nil, err
			}
			for _, k := range keys {
				puts = append(puts, put{key: k, rec: &record{version: rec.version, tombstone: true}})
				ops = append(ops, len(res.Results))
			}
			res.Results = append(res.Results, kv.OpResult{Type: op.Type, Key: op.Key, Deleted: int64(len(keys))})
			continue
		case kv.OpExpire, kv.OpPatch:
			cur, err := e.read(ctx, v, op.Key, kv.ReadOptions{})
			if err != nil {
				return nil, err
			}
			live := cur.live(now.UnixNano())
			if op.Type == kv.OpExpire {
				if !live {
					res.Results = append(res.Results, kv.OpResult{Type: op.Type, Key: op.Key})
					continue
				}
				prev := cur.kv(op.Key)
				rec.value = cur.value
				rec.expires = expiry(now, op.TTL, op.ExpiresAt)
				r := kv.OpResult{Type: op.Type, Key: op.Key}
				if op.ReturnPrev {
					r.Prev = prev
				}
				if rec.expires != 0 && rec.expires <= now.UnixNano() {
					rec.tombstone, rec.value = true, nil // an expiry in the past deletes
					r.Deleted = 1
				}
				puts = append(puts, put{key: op.Key, rec: rec})
				ops = append(ops, len(res.Results))
				res.Results = append(res.Results, r)
				continue
			} else {
				doc := []byte("{}")
				if live {
					doc, rec.expires = cur.value, cur.expires
				}
				if !json.Valid(doc) {
					return nil, fmt.Errorf("%w: %q", kv.ErrNotJSON, op.Key)
				}
				merged, err := jsonpatch.MergePatch(doc, op.Value)
				if err != nil {
					return nil, fmt.Errorf("%w: %q holds a JSON document the patch does not apply to: %v", kv.ErrNotJSON, op.Key, err)
				}
				rec.value = merged
				if op.TTL > 0 || op.ExpiresAt > 0 {
					rec.expires = expiry(now, op.TTL, op.ExpiresAt)
				}
			}
		default:
			what := opNames[op.Type]
			if what == "" {
				what = string(op.Type)
			}
			return nil, e.refuse(op.Key, what)
		}
		puts = append(puts, put{key: op.Key, rec: rec})
		ops = append(ops, len(res.Results))
		res.Results = append(res.Results, kv.OpResult{Type: op.Type, Key: op.Key})
	}
	return &prepared{res: res, puts: puts, ops: ops}, nil
}

// expiry is the absolute expiry of a write: ExpiresAt wins over a TTL.
func expiry(now time.Time, ttl time.Duration, at int64) int64 {
	switch {
	case at != 0:
		return at
	case ttl > 0:
		return now.Add(ttl).UnixNano()
	}
	return 0
}

// target is one node a write goes to: an owner, or with sloppy quorum a
// stand-in that keeps the write as a hint for the owner.
type target struct {
	node string
	hint string
}

// keyOutcome is what a write achieved for one put.
type keyOutcome struct {
	acks, replicas int
	hadLive        bool  // some replica held a live value before
	err            error // the put missed its write quorum, or could not be sent
}

// write sends puts to the owners of their keys, one message per node, and
// waits until every put has its write quorum of durable copies (quorum[i],
// or the policy's write_quorum when 0), or until no more can come.
func (e *Engine) write(ctx context.Context, v *view, puts []put, quorum []int) ([]keyOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	// The copies beyond W are still delivered after the answer (or after
	// the client gave up): they have their own deadline, and end only with
	// the engine.
	dctx, dcancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
	delivered := false
	defer func() {
		if !delivered {
			dcancel()
		}
	}()
	type keyState struct {
		need, acks, replicas int
		sloppy               bool
		owners, ext          []string
		used                 map[string]bool
		failures             []string
	}
	keys := make([]*keyState, len(puts))
	out := make([]keyOutcome, len(puts))
	for i, p := range puts {
		pol, n, w, _ := e.policy(v, p.key)
		if q := quorum[i]; q > 0 {
			if q > n {
				out[i].err = fmt.Errorf("%w: w=%d is more than the %d replicas of %q", kv.ErrInvalidArgument, q, n, p.key)
				keys[i] = &keyState{replicas: n, used: map[string]bool{}}
				continue
			}
			w = q
		}
		ks := &keyState{need: w, replicas: n, sloppy: pol.SloppyQuorum, owners: v.owners(p.key, n), used: map[string]bool{}}
		if ks.sloppy {
			ks.ext = v.owners(p.key, 0)
		}
		keys[i] = ks
	}
	answers := make(chan writeAnswer, 64)
	inflight := 0
	dispatch := func(plan map[string]*delivery) {
		for _, d := range plan {
			inflight++
			go func(d *delivery) {
				ps := make([]put, len(d.idx))
				for j, i := range d.idx {
					ps[j] = put{key: puts[i].key, rec: puts[i].rec, hint: d.tg[j].hint}
				}
				out, err := e.deliver(dctx, v, d.node, ps, true)
				answers <- writeAnswer{d, out, err}
			}(d)
		}
	}
	add := func(plan map[string]*delivery, i int, t target) {
		d := plan[t.node]
		if d == nil {
			d = &delivery{node: t.node}
			plan[t.node] = d
		}
		d.idx = append(d.idx, i)
		d.tg = append(d.tg, t)
		keys[i].used[t.node] = true
	}
	// standIn picks the next healthy node beyond the preference list for an
	// owner, or "" when there is none.
	standIn := func(ks *keyState) string {
		for _, m := range ks.ext {
			if !ks.used[m] && !slices.Contains(ks.owners, m) && e.det.usable(m) {
				return m
			}
		}
		return ""
	}
	plan := map[string]*delivery{}
	for i, ks := range keys {
		if out[i].err != nil {
			continue
		}
		for _, o := range ks.owners {
			if ks.sloppy && !e.det.usable(o) {
				if s := standIn(ks); s != "" {
					add(plan, i, target{node: s, hint: o})
					continue
				}
			}
			add(plan, i, target{node: o})
		}
	}
	dispatch(plan)
	done := func() bool {
		for _, ks := range keys {
			if ks.acks < ks.need {
				return false
			}
		}
		return true
	}
	for inflight > 0 && !done() {
		var a writeAnswer
		select {
		case a = <-answers:
		case <-ctx.Done():
			// Late answers no longer count for this reply.
			e.drainWrite(answers, inflight, puts, dcancel)
			delivered, inflight = true, 0
			for _, ks := range keys {
				ks.failures = append(ks.failures, ctx.Err().Error())
			}
			continue
		}
		inflight--
		retry := map[string]*delivery{}
		for j, i := range a.d.idx {
			ks := keys[i]
			if a.err == nil && a.out[j].applied {
				ks.acks++
				out[i].hadLive = out[i].hadLive || a.out[j].hadLive
				continue
			}
			err := a.err
			if err == nil {
				err = errors.New("not applied")
			}
			ks.failures = append(ks.failures, fmt.Sprintf("%s: %v", a.d.node, err))
			owner := a.d.tg[j].hint
			if owner == "" {
				owner = a.d.tg[j].node
			}
			if ks.sloppy && !isClockRefusal(err) {
				if s := standIn(ks); s != "" {
					add(retry, i, target{node: s, hint: owner})
					continue
				}
			}
			// No stand-in: keep the write here for the owner, so it gets it
			// when it is back (an extra copy, not an ack); not when it
			// refused the stamp, which a hint would only carry there later.
			if !isClockRefusal(err) {
				e.keepHint(owner, puts[i])
			}
		}
		dispatch(retry)
	}
	if inflight > 0 {
		e.drainWrite(answers, inflight, puts, dcancel)
		delivered = true
	}
	for i, ks := range keys {
		out[i].acks, out[i].replicas = ks.acks, ks.replicas
		if out[i].err == nil && ks.acks < ks.need {
			out[i].err = fmt.Errorf("%w: %d of %d write acks for %q (%d replicas); the write may have landed on some of them (%s)",
				kv.ErrUnavailable, ks.acks, ks.need, puts[i].key, ks.replicas, strings.Join(dedupe(ks.failures), "; "))
		}
	}
	return out, nil
}

// delivery is one message of a write to one node, carrying every put of
// the write that node takes.
type delivery struct {
	node string
	idx  []int    // puts in this message
	tg   []target // per put: owner or stand-in
}

type writeAnswer struct {
	d   *delivery
	out []outcome
	err error
}

// drainWrite takes, in the background, the n answers still to come for a
// write that was already answered: for a replica that failed, this node
// keeps a hint.
func (e *Engine) drainWrite(answers <-chan writeAnswer, n int, puts []put, done context.CancelFunc) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer done()
		for range n {
			a := <-answers
			for j, i := range a.d.idx {
				if (a.err == nil && a.out[j].applied) || isClockRefusal(a.err) {
					continue
				}
				owner := a.d.tg[j].hint
				if owner == "" {
					owner = a.d.tg[j].node
				}
				e.keepHint(owner, puts[i])
			}
		}
	}()
}

func dedupe(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// deliver sends puts to node (this node directly) and returns their
// outcomes.
func (e *Engine) deliver(ctx context.Context, v *view, node string, puts []put, check bool) ([]outcome, error) {
	if node == e.cfg.Name {
		c := &commit{puts: puts}
		if err := e.reps.write(c); err != nil {
			return nil, err
		}
		return c.out, nil
	}
	addr := v.addrs[node]
	if addr == "" {
		return nil, fmt.Errorf("no address known for %s", node)
	}
	return e.send.put(ctx, addr, puts, check)
}

// keepHint stores p here as a hint for owner (unless owner is this node).
func (e *Engine) keepHint(owner string, p put) {
	if owner == e.cfg.Name || e.cfg.NoRepair {
		return
	}
	if err := e.reps.write(&commit{puts: []put{{key: p.key, rec: p.rec, hint: owner}}}); err != nil {
		e.log.Warn("cannot keep a hint", "owner", owner, "key", p.key, "err", err)
	}
}

// Get implements kv.Engine.
func (e *Engine) Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error) {
	var rec *record
	var err error
	if o.Local {
		rec, err = e.reps.get(key)
	} else {
		rec, err = e.read(ctx, e.view.Load(), key, o)
	}
	if err != nil || !rec.live(e.wall().UnixNano()) {
		return nil, err
	}
	return rec.kv(key), nil
}

// read asks r owners of key for their versions and returns the greatest
// (nil when none has one); owners that answered an older one are repaired
// in the background.
func (e *Engine) read(ctx context.Context, v *view, key string, o kv.ReadOptions) (*record, error) {
	if err := e.Ready(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	_, n, _, need := e.policy(v, key)
	if o.ReadQuorum > 0 {
		if o.ReadQuorum > n {
			return nil, fmt.Errorf("%w: r=%d is more than the %d replicas of %q", kv.ErrInvalidArgument, o.ReadQuorum, n, key)
		}
		need = o.ReadQuorum
	}
	owners := v.owners(key, n)
	// This node first, then healthy owners, then the rest.
	order := make([]string, 0, len(owners))
	if slices.Contains(owners, e.cfg.Name) {
		order = append(order, e.cfg.Name)
	}
	for _, pass := range []bool{true, false} {
		for _, m := range owners {
			if m != e.cfg.Name && e.det.usable(m) == pass {
				order = append(order, m)
			}
		}
	}
	// While ranges move, the previous owners are asked too.
	var extra []string
	if p := e.prev.Load(); p != nil && time.Now().Before(p.until) {
		for _, m := range p.owners(key, n) {
			if !slices.Contains(owners, m) && v.addrs[m] != "" {
				extra = append(extra, m)
			}
		}
	}
	type answer struct {
		node  string
		rec   *record
		err   error
		extra bool
	}
	answers := make(chan answer, len(order)+len(extra))
	ask := func(node string, extra bool) {
		go func() {
			rec, err := e.fetch(ctx, v, node, key)
			answers <- answer{node, rec, err, extra}
		}()
	}
	next := 0
	for ; next < need && next < len(order); next++ {
		ask(order[next], false)
	}
	for _, m := range extra {
		ask(m, true)
	}
	pending, extraPending := next+len(extra), len(extra)
	var got []answer
	okCount := 0
	var failures []string
	for pending > 0 && (okCount < need || extraPending > 0) {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			pending = 0
			failures = append(failures, ctx.Err().Error())
			continue
		}
		pending--
		if a.extra {
			extraPending--
		}
		if a.err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", a.node, a.err))
			if !a.extra && next < len(order) {
				ask(order[next], false)
				next++
				pending++
			}
			continue
		}
		got = append(got, a)
		if !a.extra {
			okCount++
		}
	}
	if okCount < need {
		return nil, fmt.Errorf("%w: %d of %d read replies for %q (%s)", kv.ErrUnavailable, okCount, need, key, strings.Join(dedupe(failures), "; "))
	}
	var best *record
	for _, a := range got {
		if a.rec != nil && (best == nil || a.rec.compare(best.version) > 0) {
			best = a.rec
		}
	}
	if best != nil && !e.cfg.NoRepair {
		var stale []string
		for _, a := range got {
			if !a.extra && (a.rec == nil || a.rec.compare(best.version) < 0) {
				stale = append(stale, a.node)
			}
		}
		if len(stale) > 0 {
			e.repair(v, key, best, stale)
		}
	}
	return best, nil
}

// fetch returns node's stored version of key.
func (e *Engine) fetch(ctx context.Context, v *view, node, key string) (*record, error) {
	if node == e.cfg.Name {
		return e.reps.get(key)
	}
	addr := v.addrs[node]
	if addr == "" {
		return nil, fmt.Errorf("no address known for %s", node)
	}
	var w writer
	w.uvarint(1)
	w.str(key)
	out, err := e.cfg.RPC.Call(ctx, addr, methodGet, w.b)
	if err != nil {
		return nil, err
	}
	recs, err := decodeGetReply(out, 1)
	if err != nil {
		return nil, err
	}
	return recs[0], nil
}

// repair sends the newest version to the owners that answered an older one
// (read repair), in the background.
func (e *Engine) repair(v *view, key string, best *record, stale []string) {
	e.stats.readRepairs.Add(uint64(len(stale)))
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.RequestTimeout)
		defer cancel()
		for _, node := range stale {
			if _, err := e.deliver(ctx, v, node, []put{{key: key, rec: best}}, false); err != nil {
				e.log.Debug("read repair failed", "key", key, "node", node, "err", err)
			}
		}
	}()
}

// List implements kv.Engine: it asks every reachable member for its
// versions under prefix, merges them by key (the greatest version wins,
// tombstones and expired values hidden) and pages like a strong list. It
// needs answers from enough members that every key has at least its read
// quorum of owners among them.
func (e *Engine) List(ctx context.Context, prefix string, o kv.ListOptions, visible func(key string) bool) (*kv.ListResult, error) {
	if err := e.Ready(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RequestTimeout)
	defer cancel()
	v := e.view.Load()
	_, n, _, r := e.policy(v, prefix)
	if o.ReadQuorum > 0 {
		r = min(o.ReadQuorum, n)
	}
	members := v.members
	if o.Local {
		members = []string{e.cfg.Name}
	}
	res := &kv.ListResult{}
	after := o.After
	now := e.wall().UnixNano()
	for {
		page, more, err := e.listRound(ctx, v, members, prefix, after, n, r, o.Local)
		if err != nil {
			return nil, err
		}
		for _, it := range page {
			after = it.key
			if !it.rec.live(now) || !visible(it.key) {
				continue
			}
			if o.Limit > 0 && len(res.Items) == o.Limit {
				res.More = true
				return res, nil
			}
			kr := it.rec.kv(it.key)
			if o.KeysOnly {
				kr.Value = nil
			}
			res.Items = append(res.Items, kr)
		}
		if !more {
			return res, nil
		}
	}
}

// listRound fetches one page from each member and merges the pages up to
// the smallest last key among members that have more.
func (e *Engine) listRound(ctx context.Context, v *view, members []string, prefix, after string, n, r int, local bool) ([]scanItem, bool, error) {
	type answer struct {
		node  string
		items []scanItem
		more  bool
		err   error
	}
	answers := make(chan answer, len(members))
	for _, m := range members {
		go func(m string) {
			var a answer
			a.node = m
			if m == e.cfg.Name {
				a.items, a.more, a.err = e.localScan(prefix, after, maxScanPage)
			} else if addr := v.addrs[m]; addr == "" {
				a.err = fmt.Errorf("no address known for %s", m)
			} else {
				var w writer
				w.str(prefix)
				w.str(after)
				w.uvarint(maxScanPage)
				var out []byte
				if out, a.err = e.cfg.RPC.Call(ctx, addr, methodScan, w.b); a.err == nil {
					a.items, a.more, a.err = decodeScan(out)
				}
			}
			answers <- a
		}(m)
	}
	merged := map[string]*record{}
	var bound string
	haveBound, more := false, false
	var failures []string
	for range members {
		a := <-answers
		if a.err != nil {
			failures = append(failures, fmt.Sprintf("%s: %v", a.node, a.err))
			continue
		}
		for _, it := range a.items {
			if cur := merged[it.key]; cur == nil || it.rec.compare(cur.version) > 0 {
				merged[it.key] = it.rec
			}
		}
		if a.more && len(a.items) > 0 {
			last := a.items[len(a.items)-1].key
			if !haveBound || last < bound {
				bound, haveBound = last, true
			}
			more = true
		}
	}
	// Every key has n owners; with f members silent, at least n-f of them
	// answered, which must reach the read quorum.
	if f := len(failures); !local && n-f < r {
		return nil, false, fmt.Errorf("%w: a list needs %d replies per key, %d of %d members did not answer (%s)",
			kv.ErrUnavailable, r, f, len(members), strings.Join(dedupe(failures), "; "))
	}
	out := make([]scanItem, 0, len(merged))
	for k, rec := range merged {
		if haveBound && k > bound {
			continue
		}
		out = append(out, scanItem{k, rec})
	}
	slices.SortFunc(out, func(a, b scanItem) int { return strings.Compare(a.key, b.key) })
	return out, more, nil
}

// liveKeys lists every live key under prefix (for a prefix delete).
func (e *Engine) liveKeys(ctx context.Context, prefix string) ([]string, error) {
	res, err := e.List(ctx, prefix, kv.ListOptions{KeysOnly: true}, func(string) bool { return true })
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(res.Items))
	for i, r := range res.Items {
		keys[i] = r.Key
	}
	return keys, nil
}
