package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cairn "github.com/cairnkv/cairn/client"
	"github.com/cairnkv/cairn/test/model"
)

// Watchers follow the run's prefix the way the docs tell a client to
// (test/model/watch.go has the model): each asks a node for the changes
// from the run's first revision; when its stream breaks it asks a node
// again, any running one, from the revision after the last it saw whole.
// A watcher also leaves a stream that works after 1–4 s for another node,
// as a client behind a load balancer would, so that every run resumes
// often, on nodes ahead and behind.
// Once the replicas agree, every watcher must reach their revision; then
// one more watch, the reference, replays the run from its first revision
// on a live node, and model.CheckWatches holds the watchers to it and it to
// the history.

// watchStall is how long a watcher waits on a stream that brings nothing
// while it catches up before it asks another node (a node a fault left
// behind, or removed from the cluster, may never bring more).
const watchStall = 5 * time.Second

// watchCatchUp bounds the wait for every watcher to reach the replicas'
// revision once they agree.
const watchCatchUp = 20 * time.Second

type watcher struct {
	id     int
	c      Cluster
	prefix string
	rec    *recorder
	rng    *rand.Rand
	hc     *http.Client

	mu      sync.Mutex
	streams []model.WatchStream
	last    int64 // the last revision seen whole
	target  int64 // once set: stop when last reaches it
	moved   time.Time
	done    chan struct{}
}

// watchers is a run's set of watchers.
type watchers struct {
	ws     []*watcher
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWatchers starts n watchers of prefix from revision from (0: from
// now), spread over the running nodes.
func startWatchers(c Cluster, n int, prefix string, from int64, seed uint64, rec *recorder) *watchers {
	ctx, cancel := context.WithCancel(context.Background())
	set := &watchers{cancel: cancel}
	for i := 0; i < n; i++ {
		w := &watcher{id: i, c: c, prefix: prefix, rec: rec, rng: rand.New(rand.NewPCG(seed, 0x77617463+uint64(i))),
			hc: &http.Client{Transport: &http.Transport{}}, done: make(chan struct{}), moved: time.Now()}
		set.ws = append(set.ws, w)
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			defer close(w.done)
			w.run(ctx, from)
		}()
	}
	return set
}

// catchUp waits until every watcher saw revision target or d passed, then
// stops them all and returns their streams.
func (s *watchers) catchUp(target int64, d time.Duration) []model.WatchStream {
	for _, w := range s.ws {
		w.mu.Lock()
		w.target = target
		w.mu.Unlock()
	}
	deadline := time.After(d)
	for _, w := range s.ws {
		select {
		case <-w.done:
		case <-deadline:
		}
	}
	s.cancel()
	s.wg.Wait()
	var out []model.WatchStream
	for _, w := range s.ws {
		w.hc.CloseIdleConnections()
		out = append(out, w.streams...)
	}
	return out
}

func (w *watcher) caughtUp() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.target > 0 && w.last >= w.target
}

func (w *watcher) run(ctx context.Context, from int64) {
	next := from
	var node int
	for ctx.Err() == nil && !w.caughtUp() {
		t := w.c.Targets()
		switch {
		case len(t) == 0:
			sleep(ctx, 100*time.Millisecond)
			continue
		case len(w.streams) == 0:
			node = t[w.id%len(t)] // the watchers start on different nodes
		default:
			node = t[w.rng.IntN(len(t))]
		}
		s := w.stream(ctx, node, next)
		w.mu.Lock()
		w.streams = append(w.streams, s)
		w.mu.Unlock()
		switch {
		case s.Compacted:
			next = 0
		case w.last > 0:
			next = w.last + 1
		}
		if ctx.Err() == nil && !w.caughtUp() {
			sleep(ctx, time.Duration(100+w.rng.IntN(200))*time.Millisecond)
		}
	}
}

// stream makes one watch request to node from revision from and reads it
// until it breaks, the watcher has caught up, or it stalls while catching
// up.
func (w *watcher) stream(ctx context.Context, node int, from int64) model.WatchStream {
	n := w.c.Node(node)
	s := model.WatchStream{Watcher: w.id, Node: n.Name, From: from, Call: w.rec.now()}
	cl, err := cairn.New(cairn.Config{Endpoints: []string{n.ClientURL}, HTTPClient: w.hc})
	if err != nil {
		s.Err, s.End = err.Error(), w.rec.now()
		return s
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.mu.Lock()
	w.moved = time.Now()
	w.mu.Unlock()
	// Move on after a while, unless catching up.
	var moveOn atomic.Bool
	t := time.AfterFunc(time.Duration(1000+w.rng.IntN(3000))*time.Millisecond, func() {
		w.mu.Lock()
		catching := w.target > 0
		w.mu.Unlock()
		if !catching {
			moveOn.Store(true)
			cancel()
		}
	})
	defer t.Stop()
	// Once a target is set, a stream that has reached it ends, and one that
	// brings nothing is given up.
	stalled := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				w.mu.Lock()
				caught := w.target > 0 && w.last >= w.target
				stuck := w.target > 0 && time.Since(w.moved) > watchStall
				w.mu.Unlock()
				if stuck && !caught {
					close(stalled)
				}
				if caught || stuck {
					cancel()
					return
				}
			}
		}
	}()
	var pending []model.WatchEvent
	errDone := errors.New("caught up")
	err = cl.Watch(sctx, w.prefix, from, func(ev cairn.Event) error {
		pending = append(pending, watchEvent(ev))
		if !ev.Last {
			return nil // a command's events count once its last one came
		}
		s.Events = append(s.Events, pending...)
		pending = pending[:0]
		w.mu.Lock()
		w.last, w.moved = ev.Revision, time.Now()
		done := w.target > 0 && w.last >= w.target
		w.mu.Unlock()
		if done {
			return errDone
		}
		return nil
	})
	s.End = w.rec.now()
	var ae *cairn.APIError
	switch {
	case errors.Is(err, errDone), w.caughtUp():
	case errors.As(err, &ae) && ae.StatusCode == http.StatusGone:
		s.Compacted, s.Err = true, err.Error()
	case moveOn.Load():
		s.Err = "left for another node"
	case isClosed(stalled):
		s.Err = fmt.Sprintf("nothing for %s while catching up", watchStall)
	case err != nil && ctx.Err() == nil:
		s.Err = err.Error()
	}
	return s
}

// watchEvent is ev as the watch model sees it.
func watchEvent(ev cairn.Event) model.WatchEvent {
	return model.WatchEvent{Rev: ev.Revision, Key: ev.Key, Type: ev.Type, Value: string(ev.Value), Expired: ev.Expired}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// referenceFeed replays prefix from revision from (or, when the history no
// longer reaches it, from the oldest revision kept, which it returns) up to
// target on a live node, trying each until one answers whole.
func referenceFeed(c Cluster, prefix string, from, target int64) ([]model.WatchEvent, int64, error) {
	var lastErr error
	for _, i := range c.Live() {
		cl, err := cairn.New(cairn.Config{Endpoints: []string{c.Node(i).ClientURL}})
		if err != nil {
			return nil, 0, err
		}
		for attempt := 0; attempt < 2; attempt++ {
			evs, err := replay(cl, prefix, from, target)
			var ae *cairn.APIError
			if errors.As(err, &ae) && ae.StatusCode == http.StatusGone && ae.OldestRevision > from && attempt == 0 {
				from = ae.OldestRevision
				continue
			}
			if err == nil {
				return evs, from, nil
			}
			lastErr = fmt.Errorf("%s: %w", c.Node(i).Name, err)
			break
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no live node")
	}
	return nil, 0, lastErr
}

// replay reads one watch of prefix from revision from until it has seen
// target whole.
func replay(cl *cairn.Client, prefix string, from, target int64) ([]model.WatchEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var evs, pending []model.WatchEvent
	errDone := errors.New("done")
	err := cl.Watch(ctx, prefix, from, func(ev cairn.Event) error {
		pending = append(pending, watchEvent(ev))
		if ev.Last {
			evs, pending = append(evs, pending...), pending[:0]
			if ev.Revision >= target {
				return errDone
			}
		}
		return nil
	})
	if errors.Is(err, errDone) {
		return evs, nil
	}
	return nil, err
}

// CheckerCatchesDroppedWatchEvents proves the watch check can fail, on a
// 3-node cluster c of the cairn_broken_watch build (its live watch streams
// skip every command whose revision is a multiple of 25; the history, and
// so the reference feed, keeps them). A run with watchers (w.Watchers, at
// least 2), kill -9 and a partition must fail on the watch check, naming a
// missed revision, and on nothing else: the build breaks nothing else.
func CheckerCatchesDroppedWatchEvents(t *testing.T, c Cluster, dir string, w Workload) {
	t.Helper()
	w.Prefix, w.Seed, w.Watchers = "watchdrop/", 1, max(w.Watchers, 2)
	out := Run(c, Config{Name: "live watch streams that drop events", Workload: w,
		Steps: [][]string{{FaultKill}, {FaultPartitionMinority}}, Hold: 1500 * time.Millisecond, OutDir: dir, Logf: t.Logf})
	t.Log("\n" + out.Report)
	if out.Watch == nil || len(out.Watch.Failures) == 0 {
		t.Fatal("the watch check passed watchers whose streams dropped events")
	}
	missed := false
	for _, f := range out.Failures {
		switch {
		case !strings.HasPrefix(f, "watch"):
			t.Errorf("a failure that is not the watch check's: %s", f)
		case strings.Contains(f, "missed revision"):
			missed = true
		}
	}
	if !missed {
		t.Fatal("the watch check failed, but named no missed revision")
	}
	if out.WatchPath == "" {
		t.Fatal("the failed watch check saved no streams")
	}
	t.Logf("caught, as it must be: %d watch failures; streams in %s", len(out.Watch.Failures), out.WatchPath)
}
