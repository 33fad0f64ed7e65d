package process

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// httpDo sends one request and returns the status and body.
func httpDo(t *testing.T, method, u, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

// hookRuns reads a node's hook log: one line per run, the changed keys.
func hookRuns(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// readTree returns every regular file under dir (following dir itself) by
// slash path.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_ = filepath.WalkDir(dir+"/", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			rel, _ := filepath.Rel(dir, p)
			out[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	return out
}

// TestFilesOnThreeProcesses is the files story on three real processes:
// a certs/ keyspace (eventual, replicas all) whose policy materializes it
// with a hook, each node's directory its own (--materialize overrides the
// policy's dir); a certificate and its key written in one request switch
// on every node at once (readers resolving the directory never see a
// mismatched pair) with one hook run per node; a node killed during a
// renewal catches up on restart and runs its hook once; 200+ hostile keys
// are refused and nothing appears outside the directories; and the
// package-repository workflow: cairn sync of a few hundred files into a
// strong pkgs/ prefix, a change and a --delete, every node's copy equal
// to the tree.
func TestFilesOnThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	base := t.TempDir()
	certsDir := func(i int) string { return filepath.Join(base, fmt.Sprintf("m%d", i), "certs") }
	pkgsDir := func(i int) string { return filepath.Join(base, fmt.Sprintf("m%d", i), "pkgs") }
	c := New(t, &builds, Options{Binary: builds.Binary(t, true), Nodes: 3, Args: plainArgs, Dir: filepath.Join(base, "nodes"),
		NodeArgs: func(i int) []string {
			return []string{"--materialize", "certs/=" + certsDir(i), "--materialize", "pkgs/=" + pkgsDir(i)}
		}})
	url0 := c.Nodes[0].URL()
	// The hook appends the changed keys, one line per run, beside the directory.
	hook := `printf '%s\n' "$(echo $CAIRN_CHANGED_KEYS)" >> "$CAIRN_DIR.hooks"`
	policy := map[string]any{"mode": "eventual", "replicas": "all", "write_quorum": 1,
		"materialize": map[string]any{"dir": "/var/lib/cairn/certs", "on_change": []string{"/bin/sh", "-c", hook}, "debounce": "300ms"}}
	pb, _ := json.Marshal(policy)
	if st, body := httpDo(t, http.MethodPut, url0+"/v1/keyspaces/certs/", string(pb)); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("create the certs/ keyspace: %d %s", st, body)
	}
	renew := func(n int) {
		t.Helper()
		txn := fmt.Sprintf(`{"success":[{"op":"put","key":"certs/example.org/fullchain.pem","value":"%s"},{"op":"put","key":"certs/example.org/privkey.pem","value":"%s"}]}`,
			fmt.Sprintf("CERT-%d", n), fmt.Sprintf("KEY-%d", n))
		if st, body := httpDo(t, http.MethodPost, url0+"/v1/txn", txn); st != http.StatusOK {
			t.Fatalf("renewal %d: %d %s", n, st, body)
		}
	}
	pairIs := func(i, n int) func() bool {
		return func() bool {
			got := readTree(t, certsDir(i))
			return got["example.org/fullchain.pem"] == fmt.Sprintf("CERT-%d", n) && got["example.org/privkey.pem"] == fmt.Sprintf("KEY-%d", n)
		}
	}
	renew(1)
	for i := range 3 {
		waitFor(t, 20*time.Second, fmt.Sprintf("n%d's first pair", i+1), pairIs(i, 1))
	}
	for i := range 3 {
		waitFor(t, 10*time.Second, fmt.Sprintf("n%d's hook", i+1), func() bool { return len(hookRuns(certsDir(i)+".hooks")) == 1 })
		if got := hookRuns(certsDir(i) + ".hooks")[0]; got != "certs/example.org/fullchain.pem certs/example.org/privkey.pem" {
			t.Fatalf("n%d's hook saw %q", i+1, got)
		}
	}

	// Renewals while readers on every node resolve the directory once and
	// read both files, as a service loading its certificate does.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	var mismatches []string
	reads := 0
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				d, err := filepath.EvalSymlinks(filepath.Join(certsDir(i), "example.org"))
				if err != nil {
					continue
				}
				a, err1 := os.ReadFile(filepath.Join(d, "fullchain.pem"))
				b, err2 := os.ReadFile(filepath.Join(d, "privkey.pem"))
				if err1 != nil || err2 != nil {
					continue // a version removed under the reader: it retries
				}
				mu.Lock()
				reads++
				if strings.TrimPrefix(string(a), "CERT-") != strings.TrimPrefix(string(b), "KEY-") {
					mismatches = append(mismatches, fmt.Sprintf("n%d: %s / %s", i+1, a, b))
				}
				mu.Unlock()
			}
		}()
	}
	for n := 2; n <= 21; n++ {
		renew(n)
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 3 {
		waitFor(t, 20*time.Second, fmt.Sprintf("n%d's last renewal", i+1), pairIs(i, 21))
	}
	close(stop)
	wg.Wait()
	if len(mismatches) > 0 || reads == 0 {
		t.Fatalf("%d reads, mismatched pairs: %v", reads, mismatches)
	}
	t.Logf("%d reads of the pair during 20 renewals, none mismatched", reads)
	// Let every hook settle, then one renewal is one run on each node.
	time.Sleep(time.Second)
	before := make([]int, 3)
	for i := range 3 {
		before[i] = len(hookRuns(certsDir(i) + ".hooks"))
	}
	renew(22)
	for i := range 3 {
		waitFor(t, 20*time.Second, fmt.Sprintf("n%d at renewal 22", i+1), pairIs(i, 22))
		waitFor(t, 10*time.Second, fmt.Sprintf("n%d's hook for renewal 22", i+1), func() bool { return len(hookRuns(certsDir(i)+".hooks")) == before[i]+1 })
	}
	time.Sleep(time.Second)
	for i := range 3 {
		if n := len(hookRuns(certsDir(i) + ".hooks")); n != before[i]+1 {
			t.Fatalf("n%d ran its hook %d times for one renewal", i+1, n-before[i])
		}
	}

	// n3 is killed, a renewal happens, n3 comes back: it catches up and
	// runs its hook once.
	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	hooksBefore := len(hookRuns(certsDir(2) + ".hooks"))
	renew(23)
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "n3 catching up after its restart", pairIs(2, 23))
	waitFor(t, 10*time.Second, "n3's hook after the restart", func() bool { return len(hookRuns(certsDir(2)+".hooks")) == hooksBefore+1 })
	time.Sleep(time.Second)
	if n := len(hookRuns(certsDir(2) + ".hooks")); n != hooksBefore+1 {
		t.Fatalf("n3 ran its hook %d times after catching up", n-hooksBefore)
	}

	// Hostile keys: every one refused, on both kinds of keyspace.
	hostile := hostileKeys()
	if len(hostile) < 200 {
		t.Fatalf("only %d hostile keys", len(hostile))
	}
	for _, k := range hostile {
		for _, prefix := range []string{"certs/", "pkgs/"} {
			u := url0 + "/v1/kv/" + url.PathEscape(prefix+k)
			if st, body := httpDo(t, http.MethodPut, u, "evil"); st < 400 || st >= 500 {
				t.Fatalf("hostile key %q: %d %s", prefix+k, st, body)
			}
		}
	}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "escape") {
			t.Errorf("a hostile key escaped: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The package-repository workflow.
	repo := filepath.Join(base, "repo")
	for j := range 300 {
		p := filepath.Join(repo, "pool", "main", fmt.Sprintf("p%d", j%10), fmt.Sprintf("pkg%d.deb", j))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte{byte(j)}, 100+j*37), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(repo, "dists", "stable", "Release"), "Release 1")
	// sync runs cairn sync against every node, retried while a leader is
	// being elected after a fault (as an operator would), and fails the
	// test with its stderr when it keeps failing.
	var all []string
	for _, n := range c.Nodes {
		all = append(all, n.URL())
	}
	sync := func(args ...string) {
		t.Helper()
		var out []byte
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err = exec.CommandContext(ctx, builds.Binary(t, false), append([]string{"--endpoints", strings.Join(all, ","), "sync"}, args...)...).CombinedOutput()
			cancel()
			if err == nil {
				return
			}
			time.Sleep(time.Second)
		}
		t.Fatalf("cairn sync %v: %v: %s", args, err, out)
	}
	same := func(what string) {
		t.Helper()
		want := readTree(t, repo)
		for i := range 3 {
			waitFor(t, 20*time.Second, fmt.Sprintf("n%d's pkgs/ %s", i+1, what), func() bool {
				got := readTree(t, pkgsDir(i))
				if len(got) != len(want) {
					return false
				}
				for k, v := range want {
					if got[k] != v {
						return false
					}
				}
				return true
			})
		}
	}
	sync(repo, "pkgs/")
	same("after the first sync")
	writeFile(t, filepath.Join(repo, "dists", "stable", "Release"), "Release 2")
	if err := os.Remove(filepath.Join(repo, "pool", "main", "p7", "pkg7.deb")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(repo, "pool", "main", "new.deb"), "new package")
	sync("--delete", repo, "pkgs/")
	same("after the change and --delete")

	// The strong prefix under faults: n3 cut off by a partition while a
	// sync lands (the majority commits it), then healed; n2 paused with
	// SIGSTOP during one; n3 killed with SIGKILL during one and restarted.
	// Each time every directory ends equal to the tree.
	release := 3
	change := func() {
		t.Helper()
		writeFile(t, filepath.Join(repo, "dists", "stable", "Release"), fmt.Sprintf("Release %d", release))
		writeFile(t, filepath.Join(repo, "pool", "main", fmt.Sprintf("fault%d.deb", release)), strings.Repeat("x", 1000*release))
		release++
	}
	c.Partition(2)
	change()
	sync("--delete", repo, "pkgs/")
	if got := readTree(t, pkgsDir(2))["dists/stable/Release"]; got != "Release 2" {
		t.Fatalf("n3, cut off, shows %q", got)
	}
	c.Heal()
	same("after n3's partition healed")
	if err := c.Pause(1); err != nil {
		t.Fatal(err)
	}
	change()
	sync("--delete", repo, "pkgs/")
	if err := c.Resume(1); err != nil {
		t.Fatal(err)
	}
	same("after n2 was paused")
	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	change()
	sync("--delete", repo, "pkgs/")
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	same("after n3 was killed and restarted")
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hostileKeys are paths (below a materialized prefix) that must be refused:
// every combination of an escaping or malformed part with a few places.
func hostileKeys() []string {
	parts := []string{"..", ".", "", "a\\..\\escape", "nul\x00escape", "tab\tescape", "nl\nescape", "\x7fescape",
		"\xff\xfeescape", strings.Repeat("e", 256) + "escape"}
	var keys []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, p := range parts {
		for _, shape := range []string{"%s", "%s/escape", "x/%s/escape", "x/%s", "%s/%s/escape", "x/y/%s/../escape",
			"/%s/escape", "%s//escape", "x//%s", "./%s/escape", "x/./%s", "%s/./escape", "../%s", "x/../%s/escape",
			"%s/", "x/%s/", "a/b/c/%s/escape", "%s/x/../../escape", "escape/%s", "x/%s/y/../../escape", "%s\\escape"} {
			k := strings.ReplaceAll(shape, "%s", p)
			add(k)
		}
	}
	add("/abs/escape")
	add("/etc/passwd-escape")
	return keys
}
