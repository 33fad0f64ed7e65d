package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

var builds Builds

// plainArgs are the serve flags of the CLI and replay tests: fast elections
// and otherwise the defaults a user gets (the snapshot settings of
// DefaultArgs would have the replay test restart from a fresh snapshot
// rather than replay its log).
var plainArgs = []string{"--heartbeat-timeout", "500ms", "--election-timeout", "500ms"}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	builds.Remove()
	os.Exit(code)
}

// cli runs the cairn CLI and returns stdout and the exit code.
func cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, builds.Binary(t, false), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("cairn %v: %v", args, err)
	}
	return out.String(), 0
}

func leaderName(t *testing.T, url string) string {
	t.Helper()
	out, code := cli(t, "", "--endpoints", url, "status", "-o", "json")
	if code != 0 {
		return ""
	}
	var st struct{ Leader string }
	if json.Unmarshal([]byte(out), &st) != nil {
		return ""
	}
	return st.Leader
}

// TestThreeProcessesWithCLI drives three release builds with the CLI, the
// way a user would: put on a follower, get everywhere, exit codes, stdin,
// members, kill -9 of the leader, writes continuing, restart and catch-up,
// a clean exit on SIGTERM.
func TestThreeProcessesWithCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 3, Args: plainArgs})
	url := func(i int) string { return c.Nodes[i].URL() }
	all := url(0) + "," + url(1) + "," + url(2)

	if _, code := cli(t, "", "--endpoints", url(1), "put", "greeting", "hello"); code != 0 {
		t.Fatalf("put exit %d", code)
	}
	for i, n := range c.Nodes {
		if out, code := cli(t, "", "--endpoints", url(i), "get", "greeting"); code != 0 || strings.TrimSpace(out) != "hello" {
			t.Fatalf("get on %s: %q exit %d", n.Name, out, code)
		}
	}
	if _, code := cli(t, "", "--endpoints", all, "get", "missing"); code != 3 {
		t.Fatalf("missing key exit %d, want 3", code)
	}
	if _, code := cli(t, "", "--endpoints", all, "put", "greeting", "x", "--if-revision", "99999"); code != 4 {
		t.Fatalf("failed CAS exit %d, want 4", code)
	}
	if _, code := cli(t, "from stdin", "--endpoints", all, "put", "piped", "-"); code != 0 {
		t.Fatalf("put from stdin exit %d", code)
	}
	if _, code := cli(t, "", "--endpoints", all, "--no-such-flag", "get", "x"); code != 2 {
		t.Fatalf("unknown flag exit %d, want 2", code)
	}
	out, code := cli(t, "", "--endpoints", all, "members", "list", "-o", "json")
	if code != 0 || strings.Count(out, `"client_url"`) != 3 {
		t.Fatalf("members list: %s (exit %d)", out, code)
	}

	// kill -9 the leader; the others keep serving writes and linearizable reads.
	li := c.Index(leaderName(t, url(0)))
	if li < 0 {
		t.Fatal("no leader")
	}
	if err := c.Kill(li); err != nil {
		t.Fatal(err)
	}
	survivors := url((li+1)%3) + "," + url((li+2)%3)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, code := cli(t, "", "--endpoints", survivors, "put", "after", "kill"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no write accepted after killing the leader")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, code := cli(t, "", "--endpoints", survivors, "get", "greeting"); code != 0 || strings.TrimSpace(out) != "hello" {
		t.Fatalf("read after failover: %q exit %d", out, code)
	}
	// The killed node restarts from its disk and catches up.
	if err := c.Start(li); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(li, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if out, code := cli(t, "", "--endpoints", url(li), "get", "after"); code != 0 || strings.TrimSpace(out) != "kill" {
		t.Fatalf("restarted node: %q exit %d", out, code)
	}
	// SIGTERM shuts down cleanly (exit status 0 within 20 s).
	if err := c.Stop((li + 1) % 3); err != nil {
		t.Fatal(err)
	}
}
