package harness

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairnkv/cairn/test/model"
)

// The materialize check of an eventual run. When EventualConfig.Materialize
// is set, every node of the cluster writes one of the run's keyspaces (one
// with replicas "all", so that its own change feed sees every change) as
// files into a directory of its own (--materialize PREFIX=DIR). Once the
// replicas have converged, each member's directory must hold exactly the
// converged live keys of the prefix, each file the key's value, within
// MaterializeCheck.Within: the writes, deletes and expiries that reached
// the node through the faults (by its feed, read repair, hints,
// anti-entropy, and its listing after a restart) all made it to disk.

// MaterializeCheck names the materialized keyspace of a run and where each
// node writes it.
type MaterializeCheck struct {
	Prefix string
	// Dir is the directory of node slot i.
	Dir func(slot int) string
	// Within is how long after convergence the directories may take
	// (default 10 s).
	Within time.Duration
}

// MaterializeKeyspace is an eventual keyspace every node holds in full, for
// the materialize check.
func MaterializeKeyspace(prefix string) EventualKeyspace {
	return EventualKeyspace{Prefix: prefix, Replicas: 0, WriteQuorum: 1, ReadQuorum: 1}
}

// checkMaterialized compares each member's directory with the converged
// end state, polling until they match or the check's time is up. It
// returns the failures, and how long the last directory took.
func checkMaterialized(c Cluster, m *MaterializeCheck, final []model.KeyState) (failures []string, took time.Duration) {
	within := m.Within
	if within <= 0 {
		within = 10 * time.Second
	}
	want := map[string]string{}
	for _, k := range final {
		rel, ok := strings.CutPrefix(k.Key, m.Prefix)
		if !ok {
			continue
		}
		for _, r := range k.Replicas {
			if r.Present {
				want[rel] = r.Value
				break
			}
		}
	}
	start := time.Now()
	for i := 0; i < c.Slots(); i++ {
		n := c.Node(i)
		if !n.Member || !n.Running {
			continue
		}
		dir := m.Dir(i)
		var diff string
		for {
			diff = treeDiff(dir, want)
			if diff == "" || time.Since(start) > within {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if diff != "" {
			failures = append(failures, fmt.Sprintf("materialized directory of %s (%s) differs from the converged keyspace %s after %s: %s",
				n.Name, dir, m.Prefix, time.Since(start).Round(100*time.Millisecond), diff))
		}
	}
	return failures, time.Since(start)
}

// treeDiff describes how the files under dir differ from want (relative
// slash path → content), "" when they do not.
func treeDiff(dir string, want map[string]string) string {
	got := map[string]string{}
	err := filepath.WalkDir(dir+"/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		return err.Error()
	}
	var diffs []string
	for rel, v := range want {
		switch g, ok := got[rel]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s missing (the key holds %q)", rel, v))
		case g != v:
			diffs = append(diffs, fmt.Sprintf("%s holds %q, the key %q", rel, g, v))
		}
	}
	for rel, g := range got {
		if _, ok := want[rel]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s holds %q, the key is gone", rel, g))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 3 {
		diffs = append(diffs[:3], fmt.Sprintf("and %d more", len(diffs)-3))
	}
	return strings.Join(diffs, "; ")
}
