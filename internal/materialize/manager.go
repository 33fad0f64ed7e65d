package materialize

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// Manager runs this node's materializers: one per prefix that a keyspace
// policy or the node's own list (Local) materializes, the node's entry
// overriding the policy's field by field. It follows policy changes,
// starting, restarting and stopping materializers as they come and go.
type Manager struct {
	src      Source
	local    []keyspace.Materialize
	policies *keyspace.Table
	log      *slog.Logger
	// poll is how often the policy table is looked at.
	poll time.Duration

	specs   atomic.Pointer[[]Spec] // what runs now, for CheckWrite
	stats   stats                  // the materializers' metrics (metrics.go)
	mu      sync.Mutex
	running map[string]*running // by prefix
}

type running struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a manager over src, the node's own list and the
// replicated policy table.
func NewManager(src Source, local []keyspace.Materialize, policies *keyspace.Table, log *slog.Logger) *Manager {
	mg := &Manager{src: src, local: local, policies: policies, log: log.With("subsystem", "materialize"),
		poll: time.Second, running: map[string]*running{}}
	specs := mg.Specs()
	mg.specs.Store(&specs)
	return mg
}

// Run keeps the materializers in step with the policies until ctx is done
// and then stops them all.
func (mg *Manager) Run(ctx context.Context) {
	t := time.NewTicker(mg.poll)
	defer t.Stop()
	for {
		mg.reconcile(ctx)
		select {
		case <-ctx.Done():
			mg.mu.Lock()
			defer mg.mu.Unlock()
			for prefix, r := range mg.running {
				r.cancel()
				<-r.done
				delete(mg.running, prefix)
			}
			return
		case <-t.C:
		}
	}
}

// Specs is what this node materializes, by the policies as they stand.
func (mg *Manager) Specs() []Spec {
	var out []Spec
	byPrefix := map[string]int{}
	add := func(prefix string, m keyspace.Materialize, over *keyspace.Materialize) {
		if over != nil {
			m = merge(m, *over)
		}
		s := Spec{Prefix: prefix, Dir: m.Dir, StripPrefix: m.StripPrefix, FileMode: m.FileMode, DirMode: m.DirMode,
			OnChange: m.OnChange, Debounce: m.Debounce, HookTimeout: m.HookTimeout,
			Eventual: mg.policies.Lookup(prefix).Mode == keyspace.Eventual}
		byPrefix[prefix] = len(out)
		out = append(out, s.WithDefaults())
	}
	localFor := func(prefix string) *keyspace.Materialize {
		for i := range mg.local {
			if mg.local[i].Prefix == prefix {
				return &mg.local[i]
			}
		}
		return nil
	}
	for _, p := range mg.policies.Policies() {
		if p.Materialize != nil {
			add(p.Prefix, *p.Materialize, localFor(p.Prefix))
		}
	}
	for _, m := range mg.local {
		if _, ok := byPrefix[m.Prefix]; !ok {
			add(m.Prefix, m, nil)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix < out[j].Prefix })
	return out
}

// merge overrides base's fields with the node's own where it set them.
func merge(base, own keyspace.Materialize) keyspace.Materialize {
	if own.Dir != "" {
		base.Dir = own.Dir
	}
	if own.FileMode != 0 {
		base.FileMode = own.FileMode
	}
	if own.DirMode != 0 {
		base.DirMode = own.DirMode
	}
	if own.StripPrefix != "" {
		base.StripPrefix = own.StripPrefix
	}
	if len(own.OnChange) > 0 {
		base.OnChange = own.OnChange
	}
	if own.Debounce != 0 {
		base.Debounce = own.Debounce
	}
	if own.HookTimeout != 0 {
		base.HookTimeout = own.HookTimeout
	}
	return base
}

func (mg *Manager) reconcile(ctx context.Context) {
	specs := mg.Specs()
	mg.specs.Store(&specs)
	mg.mu.Lock()
	defer mg.mu.Unlock()
	want := map[string]Spec{}
	dirs := map[string]string{}
	for _, s := range specs {
		if other, ok := dirs[s.Dir]; ok {
			mg.log.Error("two prefixes materialize into one directory; the second is not materialized", "dir", s.Dir, "first", other, "second", s.Prefix)
			continue
		}
		dirs[s.Dir] = s.Prefix
		want[s.Prefix] = s
	}
	for prefix, r := range mg.running {
		if s, ok := want[prefix]; !ok || !reflect.DeepEqual(s, r.spec) {
			r.cancel()
			<-r.done
			delete(mg.running, prefix)
		}
	}
	for prefix, s := range want {
		if _, ok := mg.running[prefix]; ok {
			continue
		}
		m, err := New(s, mg.src, mg.log)
		if err != nil {
			mg.log.Error("cannot materialize", "prefix", prefix, "dir", s.Dir, "err", err)
			continue
		}
		m.stats = &mg.stats
		rctx, cancel := context.WithCancel(ctx)
		r := &running{spec: s, cancel: cancel, done: make(chan struct{})}
		mg.running[prefix] = r
		go func() {
			defer close(r.done)
			m.Run(rctx)
		}()
	}
}

// CheckWrite refuses a key that a materialized prefix (of this node or of
// any policy) could not write as a file; kv.Service calls it on writes.
func (mg *Manager) CheckWrite(key string) error {
	for _, s := range *mg.specs.Load() {
		if strings.HasPrefix(key, s.Prefix) {
			if _, err := RelPath(key, s.StripPrefix); err != nil {
				return fmt.Errorf("%w: %w (the keyspace is materialized into %s)", kv.ErrInvalidKey, err, s.Dir)
			}
		}
	}
	for _, p := range mg.policies.Policies() {
		if m := p.Materialize; m != nil && strings.HasPrefix(key, p.Prefix) {
			strip := m.StripPrefix
			if strip == "" {
				strip = p.Prefix
			}
			if _, err := RelPath(key, strip); err != nil {
				return fmt.Errorf("%w: %w (the keyspace is materialized)", kv.ErrInvalidKey, err)
			}
		}
	}
	return nil
}
