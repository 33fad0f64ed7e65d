package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ports inside each container; the harness reaches a node through the client
// and RESP ports published on the host's loopback.
const (
	dockerClientPort = 7700
	dockerPeerPort   = 7701
	dockerRESPPort   = 7702
)

// dockerLabel marks every container, network and image of the harness with
// the pid of the test process that made it, so a later run can remove what a
// killed test left behind.
const dockerLabel = "cairn-chaos-pid"

// Docker runs nodes as containers of a FROM scratch image holding the static
// cairn binary, on a private bridge network where they find each other by
// name. Faults: docker network disconnect, docker pause, docker kill.
type Docker struct {
	image   string
	network string
	prefix  string // container names: prefix + node name
	logf    func(string, ...any)
}

// DockerAvailable reports whether a Docker engine answers.
func DockerAvailable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info").Run() == nil
}

func docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("process: docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// NewDocker builds the image from binary (which must be static: CGO_ENABLED=0,
// as BuildBinary makes it) in dir, without any registry, and creates the
// network. Close removes both.
func NewDocker(binary, dir string, logf func(string, ...any)) (*Docker, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	removeLeftovers(logf)
	id := fmt.Sprintf("%d-%04x", os.Getpid(), rand.IntN(1<<16))
	d := &Docker{image: "cairn-chaos:" + id, network: "cairn-chaos-" + id, prefix: "cairn-chaos-" + id + "-", logf: logf}
	ctxDir := filepath.Join(dir, "image")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "cairn"), b, 0o755); err != nil {
		return nil, err
	}
	dockerfile := "FROM scratch\nCOPY cairn /cairn\nENTRYPOINT [\"/cairn\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return nil, err
	}
	label := dockerLabel + "=" + strconv.Itoa(os.Getpid())
	if _, err := docker("build", "-q", "--label", label, "-t", d.image, ctxDir); err != nil {
		return nil, err
	}
	if _, err := docker("network", "create", "--label", label, d.network); err != nil {
		_, _ = docker("rmi", "-f", d.image)
		return nil, err
	}
	return d, nil
}

// Close removes the network and the image (the cluster removes its
// containers first).
func (d *Docker) Close() {
	if _, err := docker("network", "rm", d.network); err != nil {
		d.logf("%v", err)
	}
	if _, err := docker("rmi", "-f", d.image); err != nil {
		d.logf("%v", err)
	}
}

// removeLeftovers removes containers, networks and images that a test
// process which no longer exists left behind (a test killed by its timeout
// cannot clean up).
func removeLeftovers(logf func(string, ...any)) {
	dead := func(labels string) bool {
		pid, err := strconv.Atoi(strings.TrimSpace(labels))
		if err != nil || pid <= 0 {
			return false
		}
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}
	remove := func(what, id, pid string, rm ...string) {
		if _, err := docker(append(rm, id)...); err == nil {
			logf("process: removed %s %s left by test process %s", what, id, pid)
		}
	}
	format := "{{.ID}} {{.Label \"" + dockerLabel + "\"}}"
	for _, kind := range []struct {
		what   string
		ls, rm []string
	}{
		{"container", []string{"ps", "-a"}, []string{"rm", "-f"}},
		{"network", []string{"network", "ls"}, []string{"network", "rm"}},
	} {
		out, err := docker(append(kind.ls, "--filter", "label="+dockerLabel, "--format", format)...)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && dead(f[1]) {
				remove(kind.what, f[0], f[1], kind.rm...)
			}
		}
	}
	out, err := docker("images", "-q", "--filter", "label="+dockerLabel)
	if err != nil {
		return
	}
	for _, id := range strings.Fields(out) {
		pid, err := docker("image", "inspect", "-f", "{{index .Config.Labels \""+dockerLabel+"\"}}", id)
		if err == nil && dead(pid) {
			remove("image", id, pid, "rmi", "-f")
		}
	}
}

func (d *Docker) container(n *Node) string { return d.prefix + n.Name }

// start runs node n's container (docker run the first time, docker start
// after a kill: the data lives in the container) and follows its log into logf.
func (d *Docker) start(n *Node, args, env []string, logf *os.File) (proc, error) {
	name := d.container(n)
	since := time.Now().UTC().Format(time.RFC3339Nano)
	n.mu.Lock()
	created := n.created
	n.mu.Unlock()
	if created {
		if _, err := docker("start", name); err != nil {
			return nil, err
		}
	} else {
		run := []string{"run", "-d", "--name", name, "--label", dockerLabel + "=" + strconv.Itoa(os.Getpid()),
			"--network", d.network, "--network-alias", n.alias,
			"-p", fmt.Sprintf("%s:%d", n.ClientAddr, dockerClientPort),
			"-p", fmt.Sprintf("%s:%d", n.RESPAddr, dockerRESPPort)}
		for _, e := range env {
			run = append(run, "-e", e)
		}
		run = append(run, d.image)
		if _, err := docker(append(run, args...)...); err != nil {
			_, _ = docker("rm", "-f", name)
			return nil, err
		}
		n.mu.Lock()
		n.created = true
		n.mu.Unlock()
	}
	p := &dockerProc{d: d, name: name, done: make(chan struct{})}
	logs := exec.Command("docker", "logs", "-f", "--since", since, name)
	logs.Stdout, logs.Stderr = logf, logf
	if err := logs.Start(); err != nil {
		logf.Close()
		logs = nil
	}
	go func() {
		// docker wait returns when the container stops (or is removed).
		for {
			if _, err := docker("wait", name); err == nil || !containerRunning(name) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		close(p.done)
		if logs != nil {
			_ = logs.Wait() // docker logs -f ends with the container
			logf.Close()
		}
	}()
	return p, nil
}

func containerRunning(name string) bool {
	out, err := docker("inspect", "-f", "{{.State.Running}}", name)
	return err == nil && out == "true"
}

// remove deletes node n's container and with it the node's data.
func (d *Docker) remove(n *Node) error {
	n.mu.Lock()
	created := n.created
	n.created = false
	n.mu.Unlock()
	if !created {
		return nil
	}
	_, err := docker("rm", "-f", d.container(n))
	return err
}

func (d *Docker) disconnect(n *Node) error {
	_, err := docker("network", "disconnect", "-f", d.network, d.container(n))
	return err
}

func (d *Docker) connect(n *Node) error {
	_, err := docker("network", "connect", "--alias", n.alias, d.network, d.container(n))
	return err
}

type dockerProc struct {
	d    *Docker
	name string
	done chan struct{}
}

func (p *dockerProc) exited() <-chan struct{} { return p.done }

// exitErr is nil: docker wait's exit code is not followed.
func (p *dockerProc) exitErr() error { return nil }

func (p *dockerProc) signal(sig syscall.Signal) error {
	var err error
	switch sig {
	case syscall.SIGTERM:
		_, err = docker("stop", "-t", "15", p.name)
	case syscall.SIGKILL:
		// Docker refuses to kill a paused container.
		if _, err = docker("kill", p.name); err != nil && strings.Contains(err.Error(), "paused") {
			_, _ = docker("unpause", p.name)
			_, err = docker("kill", p.name)
		}
	case syscall.SIGSTOP:
		_, err = docker("pause", p.name)
	case syscall.SIGCONT:
		_, err = docker("unpause", p.name)
	default:
		err = errors.New("process: no docker equivalent of " + sig.String())
	}
	return err
}
