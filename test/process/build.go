package process

import (
	"os"
	"sync"
	"testing"
)

// Builds are the cairn binaries of one test binary, each built on first
// use into one temporary directory. A package's TestMain calls Remove after
// m.Run.
type Builds struct {
	mu    sync.Mutex
	dir   string
	paths map[bool]string
	errs  map[bool]error
}

// Binary returns cairn built from this checkout, with -tags faultinject
// when faultinject is set, building it the first time; it fails the test
// when the build fails.
func (b *Builds) Binary(tb testing.TB, faultinject bool) string {
	tb.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.paths == nil {
		b.paths, b.errs = map[bool]string{}, map[bool]error{}
	}
	if _, done := b.paths[faultinject]; !done && b.errs[faultinject] == nil {
		if b.dir == "" {
			dir, err := os.MkdirTemp("", "cairn-test-bin")
			if err != nil {
				tb.Fatal(err)
			}
			b.dir = dir
		}
		path, err := BuildBinary(b.dir, faultinject)
		if err != nil {
			b.errs[faultinject] = err
		} else {
			b.paths[faultinject] = path
		}
	}
	if err := b.errs[faultinject]; err != nil {
		tb.Fatal(err)
	}
	return b.paths[faultinject]
}

// Remove deletes the binaries.
func (b *Builds) Remove() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// New starts a cluster with opts (opts.Binary, when empty, is the
// faultinject build from builds), with node data and logs in a directory of
// the test's, and kills every node when the test ends.
func New(tb testing.TB, builds *Builds, opts Options) *Cluster {
	tb.Helper()
	if opts.Binary == "" {
		opts.Binary = builds.Binary(tb, true)
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	c, err := NewCluster(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}
