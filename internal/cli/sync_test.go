package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairnkv/cairn/internal/httpapi"
	"github.com/cairnkv/cairn/internal/kvtest"
	"github.com/cairnkv/cairn/kv"
)

// mustTree writes files (relative slash path → content) under dir.
func mustTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// mustSync runs cairn sync -o json and returns its summary.
func mustSync(t *testing.T, ep string, args ...string) syncSummary {
	t.Helper()
	code, out, errOut := run(t, "", append([]string{ep, "-o", "json", "sync"}, args...)...)
	if code != ExitOK {
		t.Fatalf("cairn sync %v: exit %d, stderr %s", args, code, errOut)
	}
	var s syncSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("cairn sync %v: %v in %s", args, err, out)
	}
	return s
}

// mustKeys returns every key under prefix with its value.
func mustKeys(t *testing.T, svc *kv.Service, prefix string) map[string]string {
	t.Helper()
	res, err := svc.List(kvtest.Ctx(t), prefix, kv.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range res.Items {
		out[r.Key] = string(r.Value)
	}
	return out
}

func wantCounts(t *testing.T, what string, s syncSummary, uploaded, deleted, unchanged int) {
	t.Helper()
	if s.Uploaded != uploaded || s.Deleted != deleted || s.Unchanged != unchanged {
		t.Fatalf("%s: uploaded %d, deleted %d, unchanged %d; want %d, %d, %d (%+v)", what,
			s.Uploaded, s.Deleted, s.Unchanged, uploaded, deleted, unchanged, s)
	}
}

// A tree of 200 files goes up in one transaction; a second run sends
// nothing; a change, an addition and a removal send only those, the
// removal only with --delete; --dry-run changes nothing.
func TestSyncTree(t *testing.T) {
	ep, _, svc := realAPI(t)
	dir := t.TempDir()
	files := map[string]string{}
	for i := range 200 {
		files[fmt.Sprintf("d%d/f%03d.txt", i%10, i)] = strings.Repeat(fmt.Sprint(i), 20)
	}
	files["bin/blob"] = "\x00\xff\xfe"
	files["empty"] = ""
	delete(files, "d0/f000.txt")
	mustTree(t, dir, files)

	s := mustSync(t, ep, dir, "pkgs/")
	wantCounts(t, "first sync", s, 201, 0, 0)
	if s.Transactions != 1 || !s.Atomic || s.Mode != "strong" || s.Revision == 0 {
		t.Fatalf("first sync not one atomic transaction: %+v", s)
	}
	got := mustKeys(t, svc, "pkgs/")
	if len(got) != 201 || got["pkgs/bin/blob"] != "\x00\xff\xfe" || got["pkgs/d3/f013.txt"] != files["d3/f013.txt"] {
		t.Fatalf("%d keys; blob %q", len(got), got["pkgs/bin/blob"])
	}
	if v, ok := got["pkgs/empty"]; !ok || v != "" {
		t.Fatalf("empty file: %q %v", v, ok)
	}

	wantCounts(t, "again", mustSync(t, ep, dir, "pkgs/"), 0, 0, 201)

	mustTree(t, dir, map[string]string{"d1/f001.txt": "changed", "new/file": "new"})
	if err := os.Remove(filepath.Join(dir, "d2", "f002.txt")); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, "changed", mustSync(t, ep, dir, "pkgs/"), 2, 0, 199)
	if got := mustKeys(t, svc, "pkgs/"); got["pkgs/d1/f001.txt"] != "changed" || got["pkgs/new/file"] != "new" || got["pkgs/d2/f002.txt"] == "" {
		t.Fatalf("after the change: %q %q %q", got["pkgs/d1/f001.txt"], got["pkgs/new/file"], got["pkgs/d2/f002.txt"])
	}

	// --dry-run, with --delete: the plan, and no change.
	mustTree(t, dir, map[string]string{"d4/f004.txt": "changed again"})
	if err := os.Remove(filepath.Join(dir, "d5", "f005.txt")); err != nil {
		t.Fatal(err)
	}
	before := kvtest.MustRevision(t, svc)
	s = mustSync(t, ep, "--delete", "--dry-run", dir, "pkgs/")
	wantCounts(t, "dry run", s, 1, 2, 199)
	wantChanges := `[{"op":"put","key":"pkgs/d4/f004.txt","path":"d4/f004.txt","bytes":13},{"op":"delete","key":"pkgs/d2/f002.txt"},{"op":"delete","key":"pkgs/d5/f005.txt"}]`
	if b, _ := json.Marshal(s.Changes); string(b) != wantChanges || !s.DryRun || s.Changes == nil {
		t.Fatalf("dry run plan %s, want %s", b, wantChanges)
	}
	if after := kvtest.MustRevision(t, svc); after != before {
		t.Fatalf("--dry-run changed the revision from %d to %d", before, after)
	}
	code, out, _ := run(t, "", ep, "sync", "--delete", "--dry-run", dir, "pkgs/")
	if code != 0 || !strings.Contains(out, "put pkgs/d4/f004.txt (13 bytes)\ndelete pkgs/d2/f002.txt\n") ||
		!strings.Contains(out, "dry run, would have uploaded 1 file (13 bytes), deleted 2, unchanged 199, skipped 0") {
		t.Fatalf("dry run text: %d %s", code, out)
	}

	s = mustSync(t, ep, "--delete", dir, "pkgs/")
	wantCounts(t, "--delete", s, 1, 2, 199)
	if !s.Atomic {
		t.Fatalf("the uploads and deletes were not one transaction: %+v", s)
	}
	got = mustKeys(t, svc, "pkgs/")
	if _, ok := got["pkgs/d2/f002.txt"]; ok || len(got) != 200 {
		t.Fatalf("after --delete: %d keys, d2/f002.txt still there: %v", len(got), ok)
	}
	code, out, _ = run(t, "", ep, "sync", dir, "pkgs/")
	if code != 0 || out != "uploaded 0 files (0 bytes), deleted 0, unchanged 200, skipped 0\n" {
		t.Fatalf("summary %d %q", code, out)
	}
}

// Excluded paths are neither uploaded nor deleted; a symlink pointing
// outside DIR (to a file or a directory) is skipped, not followed.
func TestSyncExcludeAndSymlinks(t *testing.T) {
	ep, _, svc := realAPI(t)
	dir, outside := t.TempDir(), t.TempDir()
	mustTree(t, outside, map[string]string{"secret": "do not upload", "sub/secret2": "nor this"})
	mustTree(t, dir, map[string]string{"keep.txt": "k", "x.tmp": "t", "a/b.tmp": "t", "build/out.o": "o", "a/build/deep": "d"})
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	kvtest.MustPut(t, svc, "site/old.tmp", "remote only, excluded", kv.PutOptions{})
	kvtest.MustPut(t, svc, "site/build/old", "remote only, under an excluded dir", kv.PutOptions{})
	kvtest.MustPut(t, svc, "site/gone", "remote only", kv.PutOptions{})
	kvtest.MustPut(t, svc, "site/link", "a key where DIR has a symlink", kv.PutOptions{})
	kvtest.MustPut(t, svc, "site/linkdir/x", "a key below a symlink in DIR", kv.PutOptions{})
	kvtest.MustPut(t, svc, "sitefoo/x", "not under site/", kv.PutOptions{})

	code, out, errOut := run(t, "", ep, "-o", "json", "sync", "--delete", "--exclude", "*.tmp", "--exclude", "build", dir, "site/")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s syncSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, "exclude", s, 1, 1, 0)
	if s.Excluded != 4 || len(s.Skipped) != 2 || s.Skipped[0].Path != "link" || s.Skipped[1].Path != "linkdir" ||
		!strings.Contains(s.Skipped[0].Reason, "symlink") {
		t.Fatalf("excluded %d, skipped %+v", s.Excluded, s.Skipped)
	}
	if !strings.Contains(errOut, "skipped link: symlink (not followed)") {
		t.Errorf("stderr does not report the symlink: %q", errOut)
	}
	got := mustKeys(t, svc, "site")
	want := map[string]string{"site/keep.txt": "k", "site/old.tmp": "remote only, excluded", "site/build/old": "remote only, under an excluded dir",
		"site/link": "a key where DIR has a symlink", "site/linkdir/x": "a key below a symlink in DIR", "sitefoo/x": "not under site/"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys\n%v\nwant\n%v", got, want)
	}
	for _, v := range got {
		if strings.Contains(v, "upload") && v != "remote only, excluded" {
			t.Fatalf("a file outside DIR was uploaded: %q", v)
		}
	}
	code, out, _ = run(t, "", ep, "sync", "--exclude", "*.tmp", "--exclude", "build", dir, "site/")
	if code != 0 || !strings.HasPrefix(out, "uploaded 0 files (0 bytes), deleted 0, unchanged 1, skipped 2 (") || !strings.Contains(out, "excluded 4") {
		t.Fatalf("text summary: %q", out)
	}
}

// Over the batch size, the change goes in batches (uploads in path order,
// then the deletes); a file too large for a batch is a PUT of its own; a
// batch the server refuses as too large is split.
func TestSyncBatches(t *testing.T) {
	ep, _, svc := realAPIWith(t, httpapi.Options{MaxValueBytes: 16 << 10}) // transaction bodies up to 96 KiB
	dir := t.TempDir()
	files := map[string]string{"big": strings.Repeat("B", 10<<10)}
	for i := range 60 {
		files[fmt.Sprintf("f%02d", i)] = strings.Repeat("x", 1000+i)
	}
	mustTree(t, dir, files)
	kvtest.MustPut(t, svc, "b/stale", "remote only", kv.PutOptions{})

	s := mustSync(t, ep, "--delete", "--batch-bytes", "8192", dir, "b/")
	wantCounts(t, "batches", s, 61, 1, 0)
	if s.Atomic || s.Transactions < 10 {
		t.Fatalf("%d transactions, atomic %v", s.Transactions, s.Atomic)
	}
	got := mustKeys(t, svc, "b/")
	if len(got) != 61 || got["b/big"] != files["big"] || got["b/f59"] != files["f59"] {
		t.Fatalf("%d keys", len(got))
	}
	// The uploads went in path order, the delete last.
	res, err := svc.List(kvtest.Ctx(t), "b/", kv.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for _, r := range res.Items {
		if r.ModRevision < last {
			t.Fatalf("%s written at %d, before the key ahead of it (%d)", r.Key, r.ModRevision, last)
		}
		last = r.ModRevision
	}

	// 60 changed files are ~80 KiB of base64 plus 2 KiB: under 2 MiB, over
	// the server's 96 KiB. Refused as one transaction, split.
	for i := range 60 {
		files[fmt.Sprintf("f%02d", i)] = strings.Repeat("y", 1300+i)
	}
	mustTree(t, dir, files)
	s = mustSync(t, ep, dir, "b/")
	wantCounts(t, "split", s, 60, 0, 1)
	if s.Atomic || s.Transactions < 2 {
		t.Fatalf("not split: %+v", s)
	}
	if got := mustKeys(t, svc, "b/"); got["b/f07"] != files["f07"] {
		t.Fatalf("f07 %q", got["b/f07"])
	}
}

// A failing step stops the sync and says what was applied before it.
func TestSyncPartialFailure(t *testing.T) {
	ep, _, svc := realAPIWith(t, httpapi.Options{MaxValueBytes: 8 << 10})
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"a": "small", "b": strings.Repeat("B", 20<<10), "c": "small"})
	code, _, errOut := run(t, "", ep, "sync", "--batch-bytes", "4096", dir, "p/")
	if code != ExitError || !strings.Contains(errOut, "step 2 of 3 failed") || !strings.Contains(errOut, "uploading b (20480 bytes)") ||
		!strings.Contains(errOut, "applied before it: 1 file uploaded, 0 keys deleted, in 1 transaction; run sync again") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	if got := mustKeys(t, svc, "p/"); len(got) != 1 || got["p/a"] != "small" {
		t.Fatalf("applied %v", got)
	}
}

func TestSyncRefusals(t *testing.T) {
	ep, _, _ := realAPI(t)
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"f": "x"})
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"sync", dir, "pkgs"}, ExitUsage, `must end in "/"`},
		{[]string{"sync", dir, ""}, ExitUsage, `must end in "/"`},
		{[]string{"sync", filepath.Join(dir, "missing"), "pkgs/"}, ExitError, "no such file or directory"},
		{[]string{"sync", filepath.Join(dir, "f"), "pkgs/"}, ExitError, "is not a directory"},
		{[]string{"sync", "--exclude", "[", dir, "pkgs/"}, ExitUsage, "syntax error in pattern"},
		{[]string{"sync", "--bogus", dir, "pkgs/"}, ExitUsage, "unknown flag"},
		{[]string{"sync", dir}, ExitUsage, "accepts 2 arg"},
	} {
		code, _, errOut := run(t, "", append([]string{ep}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("cairn %v: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.msg)
		}
	}
}

// On a terminal, a progress bar on stderr counts files and bytes.
func TestSyncProgress(t *testing.T) {
	ep, _, _ := realAPI(t)
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"a": "1", "b": "22"})
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{ep, "sync", dir, "p/"}, Env{Stdout: &out, Stderr: &errb,
		Getenv: func(string) string { return "" }, StderrIsTerminal: true})
	if code != 0 || !strings.Contains(errb.String(), "sync 2/2 files") || !strings.Contains(out.String(), "uploaded 2 files (3 bytes)") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// An eventual keyspace takes the change as transactions of plain puts and
// deletes, which are not atomic across its replicas.
func TestSyncEventual(t *testing.T) {
	ev := &kvtest.FakeEventual{Members: []string{"n1", "n2", "n3"}}
	ep, _, svc := realAPI(t, kvtest.Eventual(ev))
	kvtest.MustEventualKeyspace(t, svc, "certs/")
	dir := t.TempDir()
	mustTree(t, dir, map[string]string{"a.pem": "A", "b/c.pem": "C"})
	s := mustSync(t, ep, dir, "certs/")
	wantCounts(t, "eventual", s, 2, 0, 0)
	if s.Mode != "eventual" || s.Atomic || s.Transactions != 1 {
		t.Fatalf("%+v", s)
	}
	if err := os.Remove(filepath.Join(dir, "a.pem")); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, "eventual again", mustSync(t, ep, "--delete", dir, "certs/"), 0, 1, 1)
	if got := mustKeys(t, svc, "certs/"); len(got) != 1 || got["certs/b/c.pem"] != "C" {
		t.Fatalf("keys %v", got)
	}
	mustTree(t, dir, map[string]string{"b/c.pem": "C2"})
	if code, out, _ := run(t, "", ep, "sync", dir, "certs/"); code != 0 || !strings.Contains(out, "\nin 1 step (an eventual keyspace: not atomic)\n") {
		t.Fatalf("text summary: %d %q", code, out)
	}
	// A prefix over keyspaces of both modes cannot be one transaction.
	code, _, errOut := run(t, "", ep, "sync", dir, "c/")
	if code != 0 {
		t.Fatalf("c/ is strong only: exit %d %s", code, errOut)
	}
	kvtest.MustEventualKeyspace(t, svc, "mix/ev/")
	code, _, errOut = run(t, "", ep, "sync", dir, "mix/")
	if code != ExitError || !strings.Contains(errOut, "spans keyspaces of different modes") {
		t.Fatalf("mixed: exit %d %s", code, errOut)
	}
}
