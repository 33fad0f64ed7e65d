package eventual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/internal/eventual/hlc"
	"github.com/cairnkv/cairn/internal/eventual/ring"
	"github.com/cairnkv/cairn/internal/peer"
	"github.com/cairnkv/cairn/internal/watch"
	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Member is one member of the cluster as the engine needs it.
type Member struct {
	Name, PeerAddr string
}

// Cluster is what the engine learns from the control plane (the strong
// engine fills it): who the members are and the keyspace policies, both as
// applied on this node.
type Cluster interface {
	Members() []Member
	Keyspaces() *keyspace.Table
}

// Config configures an Engine.
type Config struct {
	Name    string // this node's member name
	DataDir string // the replicas live in DataDir/eventual
	RPC     *peer.RPC
	Cluster Cluster
	// RequestTimeout bounds a request, and each replica call inside it.
	RequestTimeout time.Duration
	// AntiEntropyInterval is how often ranges are compared with the other
	// replicas (jittered by up to a fifth).
	AntiEntropyInterval time.Duration
	// MaxClockOffset is how far ahead of this node's clock a write's stamp
	// may be.
	MaxClockOffset time.Duration
	// TombstoneGrace is how long a tombstone (or an expired value) is kept
	// at least before it may be dropped (0: 24 h).
	TombstoneGrace time.Duration
	// AntiEntropyBytesPerSecond bounds the bytes of records anti-entropy
	// and range handoff send (0: 16 MiB/s).
	AntiEntropyBytesPerSecond int
	// Vnodes is the ring's virtual nodes per member (0: ring.DefaultVnodes).
	Vnodes int
	// Wall is the engine's physical clock (nil: time.Now); tests skew it.
	Wall func() time.Time
	// NoRepair switches anti-entropy, read repair, hints and handoff off:
	// only test builds that prove the convergence checker can fail use it.
	NoRepair bool
	// MaxMessageBytes bounds the records one message to a peer carries (a
	// batch of writes, a page of a scan), so each fits in the peer RPC
	// frame limit (0: DefaultMaxMessageBytes). A single record larger than
	// it still travels alone.
	MaxMessageBytes int
	// MaxOutbox bounds the mirror outbox's entries, one per key of a
	// mirrored keyspace not yet copied to its bucket (0: 1,000,000); past
	// it, writes of new keys are counted as an overflow instead (outbox.go).
	MaxOutbox int
	// StoreFailed, when set, is told if the replicas' database
	// fails (store.Options.OnFail: its disk keeps failing); it must not block.
	StoreFailed func(error)
	Logger      *slog.Logger
}

// DefaultMaxMessageBytes is Config.MaxMessageBytes when it is 0.
const DefaultMaxMessageBytes = 32 << 20

// Engine is the eventual engine on one node; it implements kv.Engine and
// kv.Placement.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	reps  *replicas
	clock *hlc.Clock
	svc   *peer.Service
	det   *detector
	ae    *antiEntropy
	send  *senders

	view atomic.Pointer[view]
	// prev is the ring before the last membership change, asked too by
	// reads until the ranges have moved (see view.until).
	prev atomic.Pointer[view]

	hintWake chan struct{}
	// stats count for the metrics (metrics.go).
	stats engineStats
	// feed is this node's change feed (feed.go).
	feed watch.Hub

	readyAt time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// view is one membership: the ring and where each member listens.
type view struct {
	ring    *ring.Ring
	addrs   map[string]string // name -> peer address
	members []string          // sorted
	until   time.Time         // for prev: when reads stop asking it
}

func (v *view) owners(key string, n int) []string {
	if n <= 0 || n > len(v.members) {
		n = len(v.members)
	}
	return v.ring.Owners(key, n)
}

var (
	errNotReady = fmt.Errorf("%w: the eventual engine is starting", kv.ErrUnavailable)
)

// Open opens the replica database and starts the engine's loops.
func Open(cfg Config) (*Engine, error) {
	if cfg.Name == "" || cfg.RPC == nil || cfg.Cluster == nil {
		return nil, errors.New("eventual: a name, an RPC endpoint and the cluster are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.AntiEntropyInterval <= 0 {
		cfg.AntiEntropyInterval = 30 * time.Second
	}
	if cfg.TombstoneGrace <= 0 {
		cfg.TombstoneGrace = 24 * time.Hour
	}
	if cfg.AntiEntropyBytesPerSecond <= 0 {
		cfg.AntiEntropyBytesPerSecond = 16 << 20
	}
	e := &Engine{cfg: cfg, log: cfg.Logger.With("subsystem", "eventual"), hintWake: make(chan struct{}, 1)}
	var err error
	if e.reps, err = openReplicas(filepath.Join(cfg.DataDir, "eventual"), e.log, cfg.StoreFailed); err != nil {
		return nil, err
	}
	e.reps.now = func() int64 { return e.wall().UnixNano() }
	e.reps.onApply = e.publish
	e.reps.mirrored = e.mirrored
	e.reps.maxOutbox = int64(cfg.MaxOutbox)
	start, err := e.reps.loadClock()
	if err == nil {
		e.clock, err = hlc.NewClock(hlc.Options{Wall: cfg.Wall, MaxOffset: cfg.MaxClockOffset, Start: start, Persist: e.reps.saveClock})
	}
	if err != nil {
		_ = e.reps.close()
		return nil, err
	}
	// A restarted clock starts at its persisted ceiling, up to a second
	// ahead of the wall clock: wait that out before stamping writes, so
	// peers do not refuse them.
	e.readyAt = time.Now().Add(e.clock.Lead())
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.view.Store(&view{ring: ring.New(nil, cfg.Vnodes), addrs: map[string]string{}})
	e.refreshView()
	e.send = newSenders(e)
	e.det = newDetector(e)
	e.ae = newAntiEntropy(e)
	if e.svc, err = cfg.RPC.Register("eventual", e.handlers()); err != nil {
		e.cancel()
		_ = e.reps.close()
		return nil, err
	}
	e.goLoop(e.watchMembers)
	e.goLoop(e.det.run)
	if !cfg.NoRepair {
		e.goLoop(e.ae.run)
		e.goLoop(e.deliverHints)
	}
	return e, nil
}

func (e *Engine) goLoop(fn func()) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		fn()
	}()
}

// Close stops the loops, the RPC service and the database.
func (e *Engine) Close() error {
	if !e.closed.CompareAndSwap(false, true) {
		return nil
	}
	e.cancel()
	e.feed.Close(errFeedClosed)
	e.svc.Close()
	e.wg.Wait()
	e.send.wait()
	return e.reps.close()
}

// Ready implements kv.Engine.
func (e *Engine) Ready() error {
	if time.Now().Before(e.readyAt) {
		return errNotReady
	}
	if len(e.view.Load().members) == 0 {
		return fmt.Errorf("%w: no members known yet", kv.ErrUnavailable)
	}
	return nil
}

// watchMembers rebuilds the ring whenever the membership changes.
func (e *Engine) watchMembers() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			if e.refreshView() {
				e.ae.kick()
			}
		}
	}
}

// refreshView builds a new view when the members changed and reports
// whether it did.
func (e *Engine) refreshView() bool {
	ms := e.cfg.Cluster.Members()
	addrs := make(map[string]string, len(ms))
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		addrs[m.Name] = m.PeerAddr
		names = append(names, m.Name)
	}
	slices.Sort(names)
	old := e.view.Load()
	if slices.Equal(old.members, names) {
		if !mapsEqual(old.addrs, addrs) {
			e.view.Store(&view{ring: old.ring, addrs: addrs, members: names})
		}
		return false
	}
	if len(names) == 0 {
		return false
	}
	nv := &view{ring: ring.New(names, e.cfg.Vnodes), addrs: addrs, members: names}
	if len(old.members) > 0 {
		p := *old
		// Reads ask the old owners too until handoff and anti-entropy have
		// had time to move the ranges.
		p.until = time.Now().Add(3*e.cfg.AntiEntropyInterval + 10*time.Second)
		e.prev.Store(&p)
		e.log.Info("membership changed: ranges move", "from", old.members, "to", names)
	}
	e.view.Store(nv)
	return true
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// policy returns the key's policy with its counts resolved against the
// members of v: n replicas, w and r acks.
func (e *Engine) policy(v *view, key string) (p keyspace.Policy, n, w, r int) {
	p = e.cfg.Cluster.Keyspaces().Lookup(key)
	n = p.Replicas
	if n <= 0 || n > len(v.members) {
		n = len(v.members)
	}
	w, r = p.WriteQuorum, p.ReadQuorum
	if w <= 0 {
		w = n/2 + 1
	}
	if r <= 0 {
		r = n/2 + 1
	}
	return p, n, min(w, n), min(r, n)
}

// wall is the engine's physical clock.
func (e *Engine) wall() time.Time {
	if e.cfg.Wall != nil {
		return e.cfg.Wall()
	}
	return time.Now()
}

// Ring implements kv.Placement.
func (e *Engine) Ring(key string, replicas int) *kv.RingInfo {
	v := e.view.Load()
	info := &kv.RingInfo{Vnodes: v.ring.Vnodes()}
	health := e.Health()
	shares := primaryShares(v.ring)
	for _, m := range v.members {
		info.Members = append(info.Members, kv.RingMember{Name: m, Health: health[m], Share: shares[m]})
	}
	if key != "" {
		info.Key = key
		info.Hash = fmt.Sprintf("%016x", ring.Hash(key))
		info.Preference = v.owners(key, replicas)
		info.Replicas = len(info.Preference)
	}
	return info
}

// primaryShares is each member's fraction of the hash space it owns first.
func primaryShares(r *ring.Ring) map[string]float64 {
	out := map[string]float64{}
	for _, p := range r.Ranges(1) {
		var size uint64
		if p.Range.Start == p.Range.End {
			out[p.Owners[0]] = 1
			continue
		}
		size = p.Range.End - p.Range.Start // wraps correctly in uint64
		out[p.Owners[0]] += float64(size) / (1 << 64)
	}
	return out
}

// Health implements kv.Placement.
func (e *Engine) Health() map[string]string {
	v := e.view.Load()
	out := make(map[string]string, len(v.members))
	for _, m := range v.members {
		out[m] = e.det.health(m)
	}
	return out
}
