package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The compose test builds an image and runs three containers, which takes
// about a minute: `go test ./...` skips it, make docker-test passes -docker.
var dockerFlag = flag.Bool("docker", false, "run TestCompose: build the image and start deploy/compose.yaml (make docker-test)")

// projectPrefix names the compose projects of this test, followed by the pid
// of the test process, so a later run can take down what a killed run left.
const projectPrefix = "cairn-compose-test-"

// TestCompose starts deploy/compose.yaml with an image built as make image
// builds cairn:dev (deploy/Dockerfile.scratch and the static binary), waits
// until every node is ready and agrees on a leader, writes a key through
// n1's published port and reads it through n3's, then takes the project
// down with its volumes.
func TestCompose(t *testing.T) {
	if !*dockerFlag {
		t.Skip("skipped without -docker: it builds an image and runs 3 containers (make docker-test)")
	}
	if _, err := output(20*time.Second, "docker", "info"); err != nil {
		t.Skipf("skipped: no Docker engine answers (docker info: %v)", err)
	}
	compose := findCompose(t)
	if compose == nil {
		t.Skip("skipped: neither `docker compose` nor `docker-compose` works here")
	}
	t.Logf("compose: %s", strings.Join(compose, " "))
	removeLeftovers(t, compose)

	// The image: what make image does, under a tag of this run.
	ctxDir := t.TempDir()
	for _, d := range []string{"data", "tmp"} {
		if err := os.Mkdir(filepath.Join(ctxDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(ctxDir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(ctxDir, "cairn"), "github.com/cairnkv/cairn/cmd/cairn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pid := strconv.Itoa(os.Getpid())
	image := "cairn-compose-test:" + pid
	if err := run(t, 3*time.Minute, nil, "docker", "build", "-q", "-f", "Dockerfile.scratch", "-t", image, ctxDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run(t, time.Minute, nil, "docker", "rmi", "-f", image) })

	// Free host ports for the published client and RESP ports: the
	// defaults (7700…) may be taken by a cluster someone runs.
	ports := freePorts(t, 6)
	env := []string{"CAIRN_IMAGE=" + image}
	for i, name := range []string{"CAIRN_N1_PORT", "CAIRN_N2_PORT", "CAIRN_N3_PORT", "CAIRN_N1_RESP_PORT", "CAIRN_N2_RESP_PORT", "CAIRN_N3_RESP_PORT"} {
		env = append(env, fmt.Sprintf("%s=%d", name, ports[i]))
	}
	project := projectPrefix + pid
	dc := func(timeout time.Duration, args ...string) error {
		full := append(append(append([]string{}, compose[1:]...), "-p", project, "-f", "compose.yaml"), args...)
		return run(t, timeout, env, compose[0], full...)
	}
	if err := dc(time.Minute, "config", "-q"); err != nil {
		t.Fatalf("compose rejects compose.yaml: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			_ = dc(time.Minute, "logs", "--no-color", "--tail", "100")
		}
		if err := dc(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	start := time.Now()
	if err := dc(3*time.Minute, "up", "-d"); err != nil {
		t.Fatalf("compose up: %v", err)
	}

	urls := []string{}
	for _, p := range ports[:3] {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", p))
	}
	leader := waitLeader(t, urls, 90*time.Second)
	t.Logf("3 nodes ready, leader %s, %s after compose up", leader, time.Since(start).Round(time.Millisecond))

	value := "written through n1 at " + time.Now().UTC().Format(time.RFC3339Nano)
	if code, body := do(t, http.MethodPut, urls[0]+"/v1/kv/compose/test", value); code != http.StatusOK {
		t.Fatalf("PUT through n1: %d %s", code, body)
	}
	code, body := do(t, http.MethodGet, urls[2]+"/v1/kv/compose/test", "")
	if code != http.StatusOK || body != value {
		t.Fatalf("GET through n3: %d %q, want 200 %q", code, body, value)
	}
	t.Logf("put through n1 (%s), read through n3 (%s)", urls[0], urls[2])

	// docs/DEPLOY.md's way into a node of a shell-less image: the binary
	// itself, at the path both images put it.
	full := append(append(append([]string{}, compose[1:]...), "-p", project, "-f", "compose.yaml"), "exec", "-T", "n1", "/usr/local/bin/cairn", "members", "list")
	out, err := outputEnv(time.Minute, env, compose[0], full...)
	if err != nil || strings.Count(out, "true") < 3 || !strings.Contains(out, "http://n3:7700") {
		t.Fatalf("compose exec n1 cairn members list: %v\n%s", err, out)
	}
	// A crash restarts a bounded number of times (a removed member's
	// restarts cannot succeed).
	ids, err := outputEnv(time.Minute, env, compose[0], append(append(append([]string{}, compose[1:]...), "-p", project, "-f", "compose.yaml"), "ps", "-q")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range strings.Fields(ids) {
		if p, err := output(20*time.Second, "docker", "inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", id); err != nil || strings.TrimSpace(p) != "on-failure:3" {
			t.Errorf("container %s: restart policy %q (%v), want on-failure:3", id, strings.TrimSpace(p), err)
		}
	}
}

// findCompose returns the compose command that works here: the docker
// compose plugin (v2) or the docker-compose binary (v1), or nil.
func findCompose(t *testing.T) []string {
	for _, c := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := output(20*time.Second, c[0], append(c[1:], "version")...); err == nil {
			return c
		}
	}
	return nil
}

// removeLeftovers takes down the projects of test processes that no longer
// exist (a run killed by its timeout cannot clean up after itself).
func removeLeftovers(t *testing.T, compose []string) {
	out, err := output(20*time.Second, "docker", "ps", "-a", "--filter", "label=com.docker.compose.project",
		"--format", `{{.Label "com.docker.compose.project"}}`)
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, p := range strings.Fields(out) {
		pid, err := strconv.Atoi(strings.TrimPrefix(p, projectPrefix))
		if !strings.HasPrefix(p, projectPrefix) || err != nil || seen[p] || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		seen[p] = true
		t.Logf("taking down %s, left by test process %d", p, pid)
		_ = run(t, 2*time.Minute, nil, compose[0], append(compose[1:], "-p", p, "-f", "compose.yaml", "down", "-v", "-t", "1")...)
	}
}

// waitLeader waits until every node answers /readyz and all name the same
// leader in /v1/cluster/status, and returns it.
func waitLeader(t *testing.T, urls []string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		leaders := map[string]bool{}
		ready := 0
		for _, u := range urls {
			if code, body := do(t, http.MethodGet, u+"/readyz", ""); code != http.StatusOK {
				last = fmt.Sprintf("%s/readyz: %d %s", u, code, body)
				continue
			}
			ready++
			_, body := do(t, http.MethodGet, u+"/v1/cluster/status", "")
			var st struct {
				Leader string `json:"leader"`
			}
			if json.Unmarshal([]byte(body), &st) == nil && st.Leader != "" {
				leaders[st.Leader] = true
			}
		}
		if ready == len(urls) && len(leaders) == 1 {
			for l := range leaders {
				return l
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("no leader all %d nodes agree on within %s; last: %s", len(urls), within, last)
	return ""
}

// do sends one request and returns the status and the body (code 0 when
// the node does not answer).
func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// run runs a command with extra environment, logging its output into the
// test log; the error carries the end of its output.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if s := strings.TrimSpace(out.String()); s != "" {
		t.Logf("%s %s:\n%s", name, strings.Join(args, " "), s)
	}
	if err != nil {
		tail := out.String()
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(tail))
	}
	return nil
}

func output(timeout time.Duration, name string, args ...string) (string, error) {
	return outputEnv(timeout, nil, name, args...)
}

// outputEnv runs a command with extra environment and returns its stdout.
func outputEnv(timeout time.Duration, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		return "", errors.Join(fmt.Errorf("%s %s", name, strings.Join(args, " ")), err)
	}
	return string(out), nil
}
