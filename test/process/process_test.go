// Package process runs real cairn processes (built from this checkout) on
// loopback and drives them with the cairn CLI, the way a user would.
package process

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is cairn as released; faultBinary is the faultinject test build.
var binary, faultBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-process-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "cairn")
	build := exec.Command("go", "build", "-o", binary, "github.com/cairnkv/cairn/cmd/cairn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cairn: %v\n%s", err, out)
		os.Exit(1)
	}
	faultBinary = filepath.Join(dir, "cairn-faultinject")
	build = exec.Command("go", "build", "-tags", "faultinject", "-o", faultBinary, "github.com/cairnkv/cairn/cmd/cairn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cairn -tags faultinject: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type node struct {
	name               string
	client, peer, resp string
	dir                string
	cmd                *exec.Cmd
	log                *bytes.Buffer
	bin                string   // default: binary
	extra              []string // more serve flags
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func (n *node) url() string { return "http://" + n.client }

func (n *node) start(t *testing.T, spec string) {
	t.Helper()
	n.log = &bytes.Buffer{}
	bin := n.bin
	if bin == "" {
		bin = binary
	}
	n.cmd = exec.Command(bin, "serve", "--name", n.name, "--data-dir", n.dir,
		"--listen-client", n.client, "--listen-peer", n.peer, "--listen-resp", n.resp,
		"--initial-cluster", spec, "--initial-cluster-state", "new",
		"--heartbeat-timeout", "500ms", "--election-timeout", "500ms")
	n.cmd.Args = append(n.cmd.Args, n.extra...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
}

func (n *node) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		_ = n.cmd.Wait()
		n.cmd = nil
	}
}

func waitReady(t *testing.T, n *node, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := http.Get(n.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready after %s; log:\n%s", n.name, d, n.log.String())
}

// cli runs the cairn CLI and returns stdout and the exit code.
func cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
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

func leaderName(t *testing.T, n *node) string {
	t.Helper()
	out, code := cli(t, "", "--endpoints", n.url(), "status", "-o", "json")
	if code != 0 {
		return ""
	}
	var st struct{ Leader string }
	if json.Unmarshal([]byte(out), &st) != nil {
		return ""
	}
	return st.Leader
}

func TestThreeProcessesWithCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	nodes := make([]*node, 3)
	var spec []string
	for i := range nodes {
		n := &node{name: fmt.Sprintf("n%d", i+1), client: freePort(t), peer: freePort(t), resp: freePort(t),
			dir: filepath.Join(t.TempDir(), "data")}
		nodes[i] = n
		spec = append(spec, n.name+"="+n.peer)
	}
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	for _, n := range nodes {
		n.start(t, strings.Join(spec, ","))
	}
	for _, n := range nodes {
		waitReady(t, n, 30*time.Second)
	}
	all := nodes[0].url() + "," + nodes[1].url() + "," + nodes[2].url()

	if _, code := cli(t, "", "--endpoints", nodes[1].url(), "put", "greeting", "hello"); code != 0 {
		t.Fatalf("put exit %d", code)
	}
	for _, n := range nodes {
		if out, code := cli(t, "", "--endpoints", n.url(), "get", "greeting"); code != 0 || strings.TrimSpace(out) != "hello" {
			t.Fatalf("get on %s: %q exit %d", n.name, out, code)
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
	leader := leaderName(t, nodes[0])
	li := -1
	for i, n := range nodes {
		if n.name == leader {
			li = i
		}
	}
	if li < 0 {
		t.Fatalf("no leader (%q)", leader)
	}
	nodes[li].kill()
	survivors := nodes[(li+1)%3].url() + "," + nodes[(li+2)%3].url()
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
	nodes[li].start(t, strings.Join(spec, ","))
	waitReady(t, nodes[li], 30*time.Second)
	if out, code := cli(t, "", "--endpoints", nodes[li].url(), "get", "after"); code != 0 || strings.TrimSpace(out) != "kill" {
		t.Fatalf("restarted node: %q exit %d", out, code)
	}
	// SIGTERM shuts down cleanly.
	n := nodes[(li+1)%3]
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- n.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, n.log.String())
		}
		n.cmd = nil
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15 s after SIGTERM")
	}
}
