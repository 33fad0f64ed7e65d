package materialize

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"iter"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairnkv/cairn/auth"
	"github.com/cairnkv/cairn/kv"
)

// Source is what a materializer reads: kv.Service.
type Source interface {
	List(ctx context.Context, prefix string, o kv.ListOptions) (*kv.ListResult, error)
	Get(ctx context.Context, key string, o kv.ReadOptions) (*kv.Record, error)
	Watch(ctx context.Context, prefix string, fromRevision int64) (iter.Seq2[[]kv.Event, error], error)
}

// Spec is one prefix materialized into one directory on this node.
type Spec struct {
	Prefix string
	Dir    string // absolute
	// StripPrefix is removed from each key to make its path (default: Prefix).
	StripPrefix string
	FileMode    fs.FileMode // default 0644
	DirMode     fs.FileMode // default 0755
	// OnChange is the hook's argv (no shell); empty for none.
	OnChange    []string
	Debounce    time.Duration // default 1s
	HookTimeout time.Duration // default 30s
	// Eventual says the prefix is in an eventual keyspace: its feed starts
	// from now, so the materializer lists it again every Resync.
	Eventual bool
	Resync   time.Duration // default 60s (eventual only)
}

// WithDefaults fills in the defaults.
func (s Spec) WithDefaults() Spec {
	if s.StripPrefix == "" {
		s.StripPrefix = s.Prefix
	}
	if s.FileMode == 0 {
		s.FileMode = 0o644
	}
	if s.DirMode == 0 {
		s.DirMode = 0o755
	}
	if s.Debounce == 0 {
		s.Debounce = time.Second
	}
	if s.HookTimeout == 0 {
		s.HookTimeout = 30 * time.Second
	}
	if s.Resync == 0 {
		s.Resync = time.Minute
	}
	return s
}

// Validate checks a spec on its own.
func (s Spec) Validate() error {
	switch {
	case s.Dir == "" || !strings.HasPrefix(s.Dir, "/"):
		return fmt.Errorf("materialize %q: directory %q is not an absolute path", s.Prefix, s.Dir)
	case !strings.HasPrefix(s.Prefix, s.StripPrefix):
		return fmt.Errorf("materialize %q: strip_prefix %q is not a prefix of it", s.Prefix, s.StripPrefix)
	case s.FileMode&^fs.ModePerm != 0 || s.DirMode&^fs.ModePerm != 0:
		return fmt.Errorf("materialize %q: file_mode and dir_mode are permission bits (such as 0644)", s.Prefix)
	case s.Debounce < 0 || s.HookTimeout < 0 || s.Resync < 0:
		return fmt.Errorf("materialize %q: negative debounce, hook_timeout or resync", s.Prefix)
	}
	return nil
}

// Materializer keeps one directory equal to one prefix: it lists the
// prefix, publishes it, then follows the prefix's change feed, publishing
// each batch of changes (a transaction's changes together) as one new
// version of the tree, and runs the hook after each publish.
type Materializer struct {
	spec Spec
	src  Source
	log  *slog.Logger
	hook *hookRunner
	// stats, when set, count publishes and hook runs (the Manager's metrics).
	stats *stats

	mu   sync.Mutex // the tree
	tree *Tree

	// Owned by the run loop.
	keys    map[string]keyState
	fresh   map[string][]byte // content that arrived with an event, until published
	refused map[string]bool   // keys that cannot be paths, logged once
	// nextExpiry is when the next live key expires (unix ns; 0: none).
	nextExpiry int64
}

// keyState is the newest version of one key the materializer knows.
type keyState struct {
	meta    FileMeta
	deleted bool
	expires int64 // unix ns; 0: never
}

// newer reports whether a is a later version of its key than b.
func newer(a, b FileMeta) bool {
	if a.Timestamp != "" || b.Timestamp != "" {
		if a.Timestamp != b.Timestamp {
			return a.Timestamp > b.Timestamp
		}
		return a.Origin > b.Origin
	}
	return a.Revision > b.Revision
}

// New opens spec's directory. Run does the work.
func New(spec Spec, src Source, log *slog.Logger) (*Materializer, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	tree, err := OpenTree(spec.Dir, spec.Prefix, spec.FileMode, spec.DirMode)
	if err != nil {
		return nil, err
	}
	m := &Materializer{spec: spec, src: src, log: log.With("prefix", spec.Prefix, "dir", spec.Dir), tree: tree}
	if len(spec.OnChange) > 0 {
		m.hook = newHookRunner(m)
	}
	return m, nil
}

// Spec is what m materializes.
func (m *Materializer) Spec() Spec { return m.spec }

// Run keeps the directory in step until ctx is done, then closes it.
func (m *Materializer) Run(ctx context.Context) {
	ctx = auth.WithIdentity(ctx, auth.System)
	var wg sync.WaitGroup
	if m.hook != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.hook.run(ctx)
		}()
		if keys, _ := m.pending(); len(keys) > 0 {
			m.hook.notify() // changes published before a restart, hook not yet run
		}
	}
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := m.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > time.Minute {
			delay = 100 * time.Millisecond
		}
		m.log.Warn("materialize: following the prefix failed; starting over", "err", err, "in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
	wg.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	_ = m.tree.Close()
}

// session lists the prefix, publishes it and follows its feed until the
// feed ends.
func (m *Materializer) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m.keys, m.fresh = map[string]keyState{}, map[string][]byte{}
	if m.refused == nil {
		m.refused = map[string]bool{}
	}
	batches := make(chan []kv.Event, 64)
	feedErr := make(chan error, 1)
	follow := func(from int64) error {
		seq, err := m.src.Watch(ctx, m.spec.Prefix, from)
		if err != nil {
			return err
		}
		go func() {
			for evs, err := range seq {
				if err != nil {
					feedErr <- err
					return
				}
				select {
				case batches <- evs:
				case <-ctx.Done():
					return
				}
			}
			feedErr <- errors.New("the change feed ended")
		}()
		return nil
	}
	if m.spec.Eventual {
		// From now, before the listing: a change during it is not missed.
		if err := follow(0); err != nil {
			return err
		}
	}
	rev, err := m.list(ctx)
	if err != nil {
		return err
	}
	if !m.spec.Eventual {
		if err := follow(rev + 1); err != nil {
			return err
		}
	}
	if err := m.publish(ctx); err != nil {
		return err
	}
	m.log.Info("materialized", "files", len(m.tree.Manifest().Files), "version", m.tree.Manifest().Version)
	var resync <-chan time.Time
	if m.spec.Eventual {
		t := time.NewTicker(m.spec.Resync)
		defer t.Stop()
		resync = t.C
	}
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		expiry.Stop()
		if m.nextExpiry != 0 {
			expiry.Reset(time.Until(time.Unix(0, m.nextExpiry)) + time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-feedErr:
			return err
		case <-expiry.C:
		case <-resync:
			if _, err := m.list(ctx); err != nil {
				m.log.Warn("materialize: listing for the periodic resync failed", "err", err)
				continue
			}
		case evs := <-batches:
			m.apply(evs)
			// What else has arrived goes into the same version.
			for more := true; more; {
				select {
				case evs := <-batches:
					m.apply(evs)
				default:
					more = false
				}
			}
		}
		if err := m.publish(ctx); err != nil {
			return err
		}
	}
}

// readOptions reads this node's copy of a strong prefix (the feed that
// follows is this node's too), and a quorum of an eventual one.
func (m *Materializer) readOptions(local bool) kv.ReadOptions {
	if m.spec.Eventual {
		return kv.ReadOptions{Local: local}
	}
	return kv.ReadOptions{Serializable: true}
}

// list learns every key version under the prefix (keys only: content is
// fetched for what changed) and returns the revision of the first page.
func (m *Materializer) list(ctx context.Context) (int64, error) {
	rev, err := m.listWith(ctx, m.readOptions(false))
	if err != nil && m.spec.Eventual {
		// Too few members answer: this node's own copy is better than nothing.
		m.log.Warn("materialize: listing the eventual prefix on a quorum failed; using this node's copy", "err", err)
		rev, err = m.listWith(ctx, m.readOptions(true))
	}
	return rev, err
}

func (m *Materializer) listWith(ctx context.Context, ro kv.ReadOptions) (int64, error) {
	var rev int64
	seen := map[string]bool{}
	after := ""
	for {
		page, err := m.src.List(ctx, m.spec.Prefix, kv.ListOptions{ReadOptions: ro, After: after, Limit: 1000, KeysOnly: true})
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = page.Revision
		}
		for _, r := range page.Items {
			seen[r.Key] = true
			m.learn(keyState{meta: metaOf(r), expires: r.Expires})
			after = r.Key
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
	}
	// A key known before that the listing lacks is gone. A strong listing
	// is this node's state, exact; an eventual one is asked again per key,
	// since the feed may have brought a key the members have not all got.
	for key, st := range m.keys {
		if seen[key] || st.deleted {
			continue
		}
		if m.spec.Eventual {
			if _, err := m.src.Get(ctx, key, ro); !errors.Is(err, kv.ErrKeyNotFound) {
				continue
			}
		}
		m.keys[key] = keyState{meta: st.meta, deleted: true}
	}
	return rev, nil
}

func metaOf(r *kv.Record) FileMeta {
	return FileMeta{Key: r.Key, Revision: r.ModRevision, Timestamp: r.Timestamp, Origin: r.Origin}
}

// learn records st if it is newer than what is known of its key.
func (m *Materializer) learn(st keyState) bool {
	old, ok := m.keys[st.meta.Key]
	if ok && !newer(st.meta, old.meta) {
		return false
	}
	m.keys[st.meta.Key] = st
	return true
}

// apply takes one batch of the feed.
func (m *Materializer) apply(evs []kv.Event) {
	for _, ev := range evs {
		meta := FileMeta{Key: ev.Key, Revision: ev.Revision, Timestamp: ev.Timestamp, Origin: ev.Origin}
		st := keyState{meta: meta, deleted: ev.Type == kv.EventDelete, expires: ev.Expires}
		if brokenIgnoresDeletes && st.deleted {
			continue
		}
		if !m.learn(st) {
			continue
		}
		if st.deleted || ev.ValueOmitted {
			delete(m.fresh, ev.Key) // an omitted value is read when published
		} else {
			m.fresh[ev.Key] = ev.Value // read only: the feed shares it with other watchers
		}
	}
}

// publish makes the tree match what is known, loading the content of
// keys that changed and did not come with an event while the version is
// built.
func (m *Materializer) publish(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	target := m.target()
	cur := m.tree.Manifest().Files
	for rel, e := range target {
		if e.Content != nil {
			continue
		}
		if old, ok := cur[rel]; ok && old.sameVersion(e.Meta) && old.SHA256 != "" {
			e.Meta.SHA256, e.Meta.Size = old.SHA256, old.Size
			target[rel] = e
			continue
		}
		target[rel] = m.loader(ctx, e.Meta)
	}
	for attempt := 0; ; attempt++ {
		changed, err := m.tree.Publish(target)
		var missing *MissingError
		if errors.As(err, &missing) && attempt < 3 {
			m.log.Warn("materialize: a file was removed from the published directory; writing it again", "path", missing.Rel)
			target[missing.Rel] = m.loader(ctx, target[missing.Rel].Meta)
			continue
		}
		if err != nil {
			m.stats.count(publishFailures)
			return err
		}
		clear(m.fresh)
		if len(changed) > 0 {
			m.stats.count(publishes)
			m.log.Info("published", "version", m.tree.Manifest().Version, "changed", len(changed))
			if m.hook != nil {
				if err := m.tree.AddPending(changed); err != nil {
					return err
				}
				m.hook.notify()
			}
		}
		return nil
	}
}

// loader is the entry of a key whose content is read when the version is
// built: its current value, which may be newer than meta.
func (m *Materializer) loader(ctx context.Context, meta FileMeta) Entry {
	return Entry{Meta: meta, Load: func() (FileMeta, []byte, error) {
		rec, err := m.src.Get(ctx, meta.Key, m.readOptions(false))
		if errors.Is(err, kv.ErrKeyNotFound) {
			// Deleted since it was listed: the feed says so too.
			m.keys[meta.Key] = keyState{meta: meta, deleted: true}
			return FileMeta{}, nil, ErrGone
		}
		if err != nil {
			return FileMeta{}, nil, fmt.Errorf("reading %q: %w", meta.Key, err)
		}
		got := metaOf(rec)
		if newer(got, meta) {
			m.keys[rec.Key] = keyState{meta: got, expires: rec.Expires}
		} else {
			got = meta
		}
		return got, rec.Value, nil
	}}
}

// target is the tree the known keys make (see Plan), with the content
// that came with events.
func (m *Materializer) target() map[string]Entry {
	var live []FileMeta
	now := time.Now().UnixNano()
	m.nextExpiry = 0
	for _, st := range m.keys {
		switch {
		case st.deleted:
		case st.expires != 0 && st.expires <= now:
			// Expired: an eventual key's expiry sends no event.
		default:
			live = append(live, st.meta)
			if st.expires != 0 && (m.nextExpiry == 0 || st.expires < m.nextExpiry) {
				m.nextExpiry = st.expires
			}
		}
	}
	files, skipped := Plan(live, m.spec.StripPrefix)
	for _, s := range skipped {
		if !m.refused[s.Key] {
			m.refused[s.Key] = true
			m.log.Warn("materialize: key not written to disk", "key", s.Key, "reason", s.Reason)
		}
	}
	out := make(map[string]Entry, len(files))
	for rel, meta := range files {
		if v, ok := m.fresh[meta.Key]; ok {
			out[rel] = newEntry(meta, v)
			continue
		}
		out[rel] = Entry{Meta: meta}
	}
	return out
}

// Skipped is a key Plan leaves out, and why.
type Skipped struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// Plan maps keys to the paths of their files: each key whose name, once
// strip is cut, is a safe path (RelPath), except a key whose path another
// key uses as a directory (key "a" beside "a/b": the directory wins, on
// every node alike, whatever order the keys came in).
func Plan(keys []FileMeta, strip string) (files map[string]FileMeta, skipped []Skipped) {
	rels := map[string]FileMeta{}
	dirs := map[string]bool{}
	for _, meta := range keys {
		rel, err := RelPath(meta.Key, strip)
		if err != nil {
			skipped = append(skipped, Skipped{Key: meta.Key, Reason: err.Error()})
			continue
		}
		rels[rel] = meta
		for i := strings.LastIndexByte(rel, '/'); i > 0; i = strings.LastIndexByte(rel[:i], '/') {
			dirs[rel[:i]] = true
		}
	}
	files = make(map[string]FileMeta, len(rels))
	for rel, meta := range rels {
		if dirs[rel] {
			skipped = append(skipped, Skipped{Key: meta.Key, Reason: "another key uses its path as a directory"})
			continue
		}
		files[rel] = meta
	}
	sort.Slice(skipped, func(i, j int) bool { return skipped[i].Key < skipped[j].Key })
	return files, skipped
}

func (m *Materializer) pending() ([]string, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tree.Pending()
}

func (m *Materializer) clearPending(gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tree.ClearPending(gen)
}
