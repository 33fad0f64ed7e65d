package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionBuildInfo: cairn version reports what the Go toolchain stamped
// into the binary (revision, time, modified) and, with -o json, every field.
func TestVersionBuildInfo(t *testing.T) {
	b := readBuildInfo("1.2.3", func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99", Path: "github.com/cairnkv/cairn/cmd/cairn",
			Main: debug.Module{Path: "github.com/cairnkv/cairn", Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
				{Key: "vcs.modified", Value: "true"}}}, true
	})
	if b.Version != "1.2.3" || b.Module != "v1.2.3" || b.Revision != "abc123" || b.RevisionAt != "2026-01-02T03:04:05Z" ||
		!b.Modified || b.GoVersion != "go1.99" || b.OS == "" || b.Arch == "" {
		t.Fatalf("build info: %+v", b)
	}
	if b := readBuildInfo("x", func() (*debug.BuildInfo, bool) { return nil, false }); b.GoVersion == "" || b.Revision != "" {
		t.Fatalf("without build info: %+v", b)
	}

	code, out, errOut := run(t, "", "version")
	if code != ExitOK || !strings.HasPrefix(out, "cairn test\n") || !strings.Contains(out, "os/arch") {
		t.Fatalf("version: %d %q %q", code, out, errOut)
	}
	code, out, _ = run(t, "", "version", "-o", "json")
	var j map[string]any
	if code != ExitOK || json.Unmarshal([]byte(out), &j) != nil || j["version"] != "test" || j["go_version"] == "" || j["os"] == "" {
		t.Fatalf("version -o json: %d %q", code, out)
	}
}

// TestManPages: cairn man DIR writes a roff page per command, the
// subcommands included; a missing argument is a usage error.
func TestManPages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	if code, out, errOut := run(t, "", "man", dir); code != ExitOK {
		t.Fatalf("man: %d %s %s", code, out, errOut)
	}
	for _, page := range []string{"cairn.1", "cairn-serve.1", "cairn-members-remove.1", "cairn-status.1", "cairn-version.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), ".nh") || !strings.Contains(string(b), ".SH NAME") {
			t.Fatalf("%s is not a man page: %.200q", page, b)
		}
	}
	serve, _ := os.ReadFile(filepath.Join(dir, "cairn-serve.1"))
	if !strings.Contains(string(serve), "force-new-cluster") {
		t.Fatal("cairn-serve.1 does not document --force-new-cluster")
	}
	if code, _, _ := run(t, "", "man"); code != ExitUsage {
		t.Fatalf("man without DIR: exit %d, want %d", code, ExitUsage)
	}
}

// TestCompletions: every shell's script is generated, and the completion
// backend they all call completes subcommands and flags.
func TestCompletions(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := run(t, "", "completion", sh)
		if code != ExitOK || !strings.Contains(out, "cairn") || len(out) < 500 {
			t.Fatalf("completion %s: %d %.100q %s", sh, code, out, errOut)
		}
	}
	code, out, _ := run(t, "", "__complete", "sta")
	if code != ExitOK || !strings.Contains(out, "status") {
		t.Fatalf("completing \"sta\": %d %q", code, out)
	}
	code, out, _ = run(t, "", "__complete", "serve", "--force-new")
	if code != ExitOK || !strings.Contains(out, "--force-new-cluster") {
		t.Fatalf("completing \"serve --force-new\": %d %q", code, out)
	}
}

// fakeMember answers /v1/cluster/status for one member and, when members is
// set, /v1/cluster/members.
func fakeMember(t *testing.T, status string, members func() string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/cluster/status":
			w.Write([]byte(status))
		case r.URL.Path == "/v1/cluster/members" && members != nil:
			w.Write([]byte(members()))
		default:
			w.WriteHeader(404)
			w.Write([]byte(`{"error":{"code":"not_found","message":"no route"}}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestStatusCluster: cairn status --cluster asks every member from the
// member list, prints one row each with the lag behind the highest commit
// index, marks a member that does not answer and exits non-zero for it.
func TestStatusCluster(t *testing.T) {
	var n1 *httptest.Server
	n2 := fakeMember(t, `{"name":"n2","state":"follower","leader":"n1","term":3,"commit_index":90,"applied_index":88,"revision":40}`, nil)
	dead := "http://127.0.0.1:1"
	n1 = fakeMember(t, `{"name":"n1","state":"leader","leader":"n1","term":3,"commit_index":100,"applied_index":100,"revision":41}`, func() string {
		return fmt.Sprintf(`{"members":[{"name":"n1","client_url":%q},{"name":"n2","client_url":%q},{"name":"n3","client_url":%q}]}`, n1.URL, n2.URL, dead)
	})
	code, out, errOut := run(t, "", "--endpoints", n1.URL, "--timeout", "2s", "status", "--cluster")
	if code != ExitError || !strings.Contains(errOut, "1 of 3") {
		t.Fatalf("status --cluster with a dead member: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ENDPOINT") {
		t.Fatalf("want a header and 3 rows:\n%s", out)
	}
	row := func(name string) []string {
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 1 && f[1] == name {
				return f
			}
		}
		t.Fatalf("no row for %s:\n%s", name, out)
		return nil
	}
	if f := row("n1"); f[2] != "leader" || f[8] != "0" || f[9] != "healthy" {
		t.Fatalf("n1 row: %v", f)
	}
	if f := row("n2"); f[2] != "follower" || f[3] != "n1" || f[6] != "88" || f[8] != "12" || f[9] != "healthy" {
		t.Fatalf("n2 row (lag 100-88): %v", f)
	}
	if f := row("n3"); f[0] != dead || f[9] != "unhealthy" || len(f) < 11 {
		t.Fatalf("n3 row: %v", f)
	}

	code, out, _ = run(t, "", "--endpoints", n1.URL, "--timeout", "2s", "-o", "json", "status", "--cluster")
	var j struct {
		Endpoints []endpointStatus `json:"endpoints"`
	}
	if code != ExitError || json.Unmarshal([]byte(out), &j) != nil || len(j.Endpoints) != 3 {
		t.Fatalf("status --cluster -o json: %d %q", code, out)
	}
	for _, e := range j.Endpoints {
		if e.Member == "n3" && (e.Error == "" || e.Healthy || e.Status != nil) {
			t.Fatalf("n3 in json: %+v", e)
		}
		if e.Member == "n2" && (e.Status == nil || e.Lag != 12 || !e.Healthy) {
			t.Fatalf("n2 in json: %+v", e)
		}
	}

	// Without a member list (a node that has none to give), every
	// --endpoints URL is asked; all answering is exit 0.
	code, out, errOut = run(t, "", "--endpoints", n2.URL, "status", "--cluster")
	if code != ExitOK || !strings.Contains(errOut, "warning") || strings.Count(strings.TrimSpace(out), "\n") != 1 {
		t.Fatalf("status --cluster without a member list: %d\n%s\n%s", code, out, errOut)
	}
}
