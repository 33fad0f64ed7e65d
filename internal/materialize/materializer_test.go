package materialize

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// runner is a materializer started by start, stopped by stop.
type runner struct {
	m      *Materializer
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, spec Spec, src Source) *runner {
	t.Helper()
	m, err := New(spec, src, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		m.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// eventually waits for cond, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func put(t *testing.T, svc *kv.Service, pairs ...string) {
	t.Helper()
	var ops []kv.Op
	for i := 0; i < len(pairs); i += 2 {
		ops = append(ops, kv.Op{Type: kv.OpPut, Key: pairs[i], Value: []byte(pairs[i+1])})
	}
	if _, err := svc.Txn(kvtest.Ctx(t), kv.Txn{Success: ops}); err != nil {
		t.Fatal(err)
	}
}

func treeIs(t *testing.T, dir string, want map[string]string) func() bool {
	return func() bool {
		got := map[string]string{}
		err := filepath.WalkDir(dir+"/", func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = string(b)
			return err
		})
		if err != nil || len(got) != len(want) {
			return false
		}
		for k, v := range want {
			if got[k] != v {
				return false
			}
		}
		return true
	}
}

func TestMaterializerFollowsAStrongPrefix(t *testing.T) {
	svc := kvtest.NewService(t)
	put(t, svc, "certs/a.org/cert", "C1", "certs/a.org/key", "K1", "other/x", "not mine")
	dir := filepath.Join(t.TempDir(), "certs")
	r := start(t, Spec{Prefix: "certs/", Dir: dir}, svc)
	eventually(t, "the first listing", treeIs(t, dir, map[string]string{"a.org/cert": "C1", "a.org/key": "K1"}))

	// A transaction's changes are one version: count publishes.
	var publishes atomic.Int32
	r.m.mu.Lock()
	r.m.tree.published = func() { publishes.Add(1) }
	r.m.mu.Unlock()
	put(t, svc, "certs/a.org/cert", "C2", "certs/a.org/key", "K2")
	eventually(t, "the renewal", treeIs(t, dir, map[string]string{"a.org/cert": "C2", "a.org/key": "K2"}))
	if n := publishes.Load(); n != 1 {
		t.Errorf("one transaction made %d versions", n)
	}
	if _, _, err := svc.Delete(kvtest.Ctx(t), "certs/a.org/key", kv.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delete", treeIs(t, dir, map[string]string{"a.org/cert": "C2"}))

	// Keys that cannot be files (written here without the service's check)
	// are left out, and a key whose name another key uses as a directory
	// yields to it, whatever order they came in.
	put(t, svc, "certs/../escape", "evil", "certs/x", "file", "certs/x/y", "deeper", "certs/z/w", "deeper")
	put(t, svc, "certs/z", "file")
	eventually(t, "unsafe and shadowed keys left out", treeIs(t, dir, map[string]string{"a.org/cert": "C2", "x/y": "deeper", "z/w": "deeper"}))
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Fatal("a key escaped the directory")
	}
	_, _, _ = svc.Delete(kvtest.Ctx(t), "certs/x/y", kv.DeleteOptions{})
	eventually(t, "the shadowed key appears once its directory goes", treeIs(t, dir, map[string]string{"a.org/cert": "C2", "x": "file", "z/w": "deeper"}))

	// Stopped, changed, started again: it catches up.
	r.stop()
	put(t, svc, "certs/b.org/cert", "B1")
	_, _, _ = svc.Delete(kvtest.Ctx(t), "certs/z/w", kv.DeleteOptions{})
	start(t, Spec{Prefix: "certs/", Dir: dir}, svc)
	eventually(t, "catching up after a restart", treeIs(t, dir, map[string]string{"a.org/cert": "C2", "x": "file", "z": "file", "b.org/cert": "B1"}))
}

// hookLog is a hook that appends one line per run to a file: the changed
// keys, space-separated.
func hookLog(t *testing.T) (argv []string, runs func() []string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "hook.log")
	argv = []string{"/bin/sh", "-c", `printf '%s|%s|%s\n' "$(echo $CAIRN_CHANGED_KEYS)" "$CAIRN_KEYSPACE" "$CAIRN_DIR" >> ` + log}
	return argv, func() []string {
		b, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
}

func TestHookRunsOncePerBatchAndAfterARestart(t *testing.T) {
	svc := kvtest.NewService(t)
	argv, runs := hookLog(t)
	dir := filepath.Join(t.TempDir(), "certs")
	spec := Spec{Prefix: "certs/", Dir: dir, OnChange: argv, Debounce: 100 * time.Millisecond}
	r := start(t, spec, svc)
	put(t, svc, "certs/c", "1", "certs/k", "1")
	eventually(t, "the hook's first run", func() bool { return len(runs()) == 1 && runs()[0] != "" })
	if got := runs()[0]; got != "certs/c certs/k|certs/|"+dir {
		t.Fatalf("hook environment: %q", got)
	}
	// Changes within the debounce: one run with every key.
	for i := range 5 {
		put(t, svc, fmt.Sprintf("certs/n%d", i), "x")
	}
	eventually(t, "one debounced run", func() bool { return len(runs()) == 2 })
	if got := runs()[1]; got != "certs/n0 certs/n1 certs/n2 certs/n3 certs/n4|certs/|"+dir {
		t.Fatalf("debounced run: %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(runs()); n != 2 {
		t.Fatalf("%d runs for two batches", n)
	}
	// Down during a change: the hook runs once when it is back.
	r.stop()
	put(t, svc, "certs/c", "2")
	start(t, spec, svc)
	eventually(t, "the run after the restart", func() bool { return len(runs()) == 3 })
	time.Sleep(300 * time.Millisecond)
	if got := runs(); len(got) != 3 || !strings.HasPrefix(got[2], "certs/c|") {
		t.Fatalf("runs after the restart: %q", got)
	}
}

func TestHookFailureIsRetriedAndTimesOut(t *testing.T) {
	svc := kvtest.NewService(t)
	dir := filepath.Join(t.TempDir(), "certs")
	flag := filepath.Join(t.TempDir(), "ok")
	count := filepath.Join(t.TempDir(), "count")
	// Fails until the flag file exists; counts its runs.
	argv := []string{"/bin/sh", "-c", "echo run >> " + count + "; test -e " + flag}
	start(t, Spec{Prefix: "certs/", Dir: dir, OnChange: argv, Debounce: 10 * time.Millisecond}, svc)
	put(t, svc, "certs/c", "1")
	runs := func() int { b, _ := os.ReadFile(count); return strings.Count(string(b), "run") }
	eventually(t, "a retry after the failure", func() bool { return runs() >= 2 })
	// Publishing goes on while the hook fails.
	put(t, svc, "certs/d", "1")
	eventually(t, "a publish while the hook fails", treeIs(t, dir, map[string]string{"c": "1", "d": "1"}))
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n := runs()
	eventually(t, "the retry that succeeds", func() bool { return runs() > n })
	time.Sleep(2500 * time.Millisecond)
	if after := runs(); after > n+1 {
		t.Fatalf("the hook kept running after it succeeded: %d runs", after-n)
	}

	// A hook that hangs is killed at its timeout, with its children.
	svc2 := kvtest.NewService(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	hang := []string{"/bin/sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}
	start(t, Spec{Prefix: "certs/", Dir: filepath.Join(t.TempDir(), "c2"), OnChange: hang, Debounce: 10 * time.Millisecond, HookTimeout: 200 * time.Millisecond}, svc2)
	put(t, svc2, "certs/c", "1")
	var pid int
	eventually(t, "the hanging hook", func() bool {
		b, err := os.ReadFile(pidFile)
		_, serr := fmt.Sscan(string(b), &pid)
		return err == nil && serr == nil
	})
	eventually(t, "the hook's child killed at the timeout", func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(b), ") Z ")
	})
}
