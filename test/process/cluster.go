// Package process runs clusters of real cairn processes on loopback (or,
// with a Docker engine, one container per node on a private network) for
// tests: the fault-injection harness's second Cluster implementation (the
// first, in process, is test/cluster), and the home of the tests that need
// a process of their own (the CLI, kill -9 durability, replay after a
// crash). Faults: SIGTERM, kill -9, SIGSTOP, link faults and the eventual
// engine's clock skew through the /debug/faults endpoints of a faultinject
// build; in Docker also docker network disconnect, docker pause and docker
// kill.
package process

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cairncli "github.com/cairnkv/cairn/internal/cli"
	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/model"
)

// Options shape a process cluster.
type Options struct {
	// Binary is the cairn to run (see BuildBinary); link faults need a
	// build with -tags faultinject.
	Binary string
	// Nodes is the number of voters that bootstrap the cluster.
	Nodes int
	// Spares are extra node slots, not started and not members, for the
	// learner fault (join as a non-voter, then promote).
	Spares int
	// Dir holds every node's data directory and log.
	Dir string
	// Env is added to every node's environment (CAIRN_* variables of the
	// test process are not passed on).
	Env []string
	// Args are extra `cairn serve` flags for every node; DefaultArgs when nil.
	Args []string
	// NodeArgs, when set, gives the extra flags of node i (its own
	// directories, say), after Args.
	NodeArgs func(i int) []string
	// Logf receives progress lines (t.Logf); nil discards them.
	Logf func(format string, args ...any)
	// Docker, when set, runs each node in its own container on a private
	// network instead of as a local process (see docker.go).
	Docker *Docker
}

// DefaultArgs are the serve flags of process clusters: fast elections, so a
// fault changes leadership within a second, and frequent snapshots behind a
// short log, so a node kept away catches up by installing a snapshot.
var DefaultArgs = []string{
	"--heartbeat-timeout", "500ms", "--election-timeout", "500ms",
	"--snapshot-entries", "200", "--trailing-logs", "50", "--snapshot-interval", "1s",
	"--request-timeout", "2s",
}

// Cluster is a set of cairn processes on loopback.
type Cluster struct {
	opts  Options
	Nodes []*Node // the bootstrap voters first, then the spares
	spec  string  // --initial-cluster
	hc    *http.Client

	mu    sync.Mutex
	notes []string // API answers worth reporting that are not failures
	exits []string // nodes that stopped without the harness stopping them
}

func (c *Cluster) note(format string, args ...any) string {
	s := fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.notes = append(c.notes, s)
	c.mu.Unlock()
	c.opts.Logf("process: %s", s)
	return s
}

// Drain returns and forgets the notes and the unexpected exits seen so far.
func (c *Cluster) Drain() (notes, crashes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	notes, crashes = c.notes, c.exits
	c.notes, c.exits = nil, nil
	return notes, crashes
}

// Node is one cairn process slot: its addresses and data survive restarts.
type Node struct {
	Name       string
	ClientAddr string
	PeerAddr   string
	RESPAddr   string
	DataDir    string
	LogPath    string

	// alias is the node's host name on the Docker network ("" for a local process).
	alias string

	mu           sync.Mutex
	proc         proc // nil while not running
	paused       bool
	incarnation  int
	member       bool   // in the configuration, as far as the harness knows
	join         string // when set (a re-added or spare node), start with --join
	nonVoter     bool
	blocked      map[string]bool          // peer addresses this node must not reach
	delays       map[string]time.Duration // delays on links to peer addresses
	created      bool                     // Docker: the container exists (and holds the data)
	disconnected bool                     // Docker: off the network
	// skew is the eventual-clock offset the harness wants on the node
	// (SkewClock), skewLive the one its running process has.
	skew, skewLive time.Duration
}

// proc is a running node: a local process or a container.
type proc interface {
	// signal delivers SIGTERM, SIGKILL, SIGSTOP or SIGCONT (docker stop,
	// kill, pause, unpause).
	signal(sig syscall.Signal) error
	// exited is closed once the node has stopped; then exitErr says how.
	exited() <-chan struct{}
	exitErr() error
}

type localProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

func (p *localProc) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }
func (p *localProc) exited() <-chan struct{}         { return p.done }
func (p *localProc) exitErr() error                  { return p.err }

// URL is the node's client URL, as the harness reaches it.
func (n *Node) URL() string { return "http://" + n.ClientAddr }

// innerURL is the node's client URL as other nodes reach it (for --join).
func (n *Node) innerURL() string {
	if n.alias != "" {
		return fmt.Sprintf("http://%s:%d", n.alias, dockerClientPort)
	}
	return n.URL()
}

// Incarnation counts the node's starts; a restart is a new incarnation.
func (n *Node) Incarnation() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.incarnation
}

// Running reports whether the process is alive (possibly paused).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proc != nil
}

// Paused reports whether the process is stopped with SIGSTOP.
func (n *Node) Paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Member reports whether the node is in the cluster configuration.
func (n *Node) Member() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.member
}

// LogSize is the current length of the node's log file, an offset for
// LogContains.
func (n *Node) LogSize() int64 {
	fi, err := os.Stat(n.LogPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogContains reports whether the node's log holds s after byte offset from.
func (n *Node) LogContains(from int64, s string) bool {
	b, err := os.ReadFile(n.LogPath)
	if err != nil || int64(len(b)) < from {
		return false
	}
	return bytes.Contains(b[from:], []byte(s))
}

// BuildBinary builds cairn into dir, with fault injection (-tags
// faultinject) when faultinject is set, and returns its path. It builds
// with CGO_ENABLED=0, so the Docker variant can run the binary in a FROM
// scratch image.
func BuildBinary(dir string, faultinject bool) (string, error) {
	bin, args := filepath.Join(dir, "cairn"), []string{"build"}
	if faultinject {
		bin, args = filepath.Join(dir, "cairn-faultinject"), append(args, "-tags", "faultinject")
	}
	cmd := exec.Command("go", append(args, "-o", bin, "github.com/cairnkv/cairn/cmd/cairn")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("process: build cairn: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddrs picks n distinct loopback ports that are free now. They come
// from below the kernel's ephemeral range where it leaves room: a node that
// is down for a while (kill -9, re-add) must get its ports back, and a port
// in the ephemeral range may meanwhile become the local end of some
// outgoing connection.
func freeAddrs(n int) ([]string, error) {
	lo, hi := 20000, ephemeralLow()
	seen := map[string]bool{}
	var out []string
	for tries := 0; len(out) < n && tries < 50*n; tries++ {
		addr := "127.0.0.1:0"
		if hi-lo >= 1000 {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		a := ln.Addr().String()
		ln.Close()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("process: found only %d free ports of %d", len(out), n)
	}
	return out, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return v
}

// NewCluster starts opts.Nodes voters that bootstrap together and waits until
// every one is ready. Close stops them; callers defer it on every path.
func NewCluster(opts Options) (*Cluster, error) {
	if opts.Args == nil {
		opts.Args = DefaultArgs
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	total := opts.Nodes + opts.Spares
	addrs, err := freeAddrs(3 * total)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, hc: &http.Client{Timeout: 3 * time.Second}}
	var spec []string
	for i := 0; i < total; i++ {
		n := &Node{Name: fmt.Sprintf("n%d", i+1), ClientAddr: addrs[3*i], PeerAddr: addrs[3*i+1], RESPAddr: addrs[3*i+2]}
		if opts.Docker != nil {
			// Peers meet on the Docker network by name; the harness uses
			// the client and RESP ports published on the host's loopback.
			n.alias = n.Name
			n.PeerAddr = fmt.Sprintf("%s:%d", n.alias, dockerPeerPort)
		}
		dir := filepath.Join(opts.Dir, n.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		n.DataDir, n.LogPath = filepath.Join(dir, "data"), filepath.Join(dir, "log")
		if i < opts.Nodes {
			n.member = true
			spec = append(spec, n.Name+"="+n.PeerAddr)
		}
		c.Nodes = append(c.Nodes, n)
	}
	c.spec = strings.Join(spec, ",")
	for i := 0; i < opts.Nodes; i++ {
		if err := c.Start(i); err != nil {
			c.Close()
			return nil, err
		}
	}
	for i := 0; i < opts.Nodes; i++ {
		if err := c.WaitReady(i, 30*time.Second); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

var _ harness.Cluster = (*Cluster)(nil)

// Size is the number of bootstrap voters.
func (c *Cluster) Size() int { return c.opts.Nodes }

// Slots is the number of node slots, the spares included.
func (c *Cluster) Slots() int { return len(c.Nodes) }

// Describe is "processes", or "docker" for the container variant.
func (c *Cluster) Describe() string {
	if c.opts.Docker != nil {
		return "docker"
	}
	return "processes"
}

// Node describes slot i as the harness sees it.
func (c *Cluster) Node(i int) harness.Node {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return harness.Node{Name: n.Name, ClientURL: n.URL(), RESPAddr: n.RESPAddr, Member: n.member,
		Running: n.proc != nil, Paused: n.paused, Incarnation: n.incarnation}
}

// Can says how the cluster makes each fault: with signals, the debug
// endpoints of a faultinject build, or Docker.
func (c *Cluster) Can(a harness.Action) (string, bool) {
	docker := c.opts.Docker != nil
	switch a {
	case harness.ActLinks:
		return "/debug/faults on the node (a faultinject build)", true
	case harness.ActStop:
		if docker {
			return "docker stop", true
		}
		return "SIGTERM", true
	case harness.ActKill:
		if docker {
			return "docker kill", true
		}
		return "kill -9", true
	case harness.ActPause:
		if docker {
			return "docker pause", true
		}
		return "SIGSTOP", true
	case harness.ActDisconnect:
		if docker {
			return "docker network disconnect", true
		}
		return "local processes share the host's loopback: only the Docker variant can take a node off its network", false
	case harness.ActLog:
		return "the node's log file", true
	case harness.ActClock:
		return "/debug/faults/clock on the node (a faultinject build)", true
	}
	return "unknown action", false
}

// LogMark is the current length of node i's log, a mark for LogContains.
func (c *Cluster) LogMark(i int) int64 { return c.Nodes[i].LogSize() }

// LogContains reports whether node i logged s after mark from.
func (c *Cluster) LogContains(i int, from int64, s string) bool {
	return c.Nodes[i].LogContains(from, s)
}

// Index returns the slot of the node with this name, or -1.
func (c *Cluster) Index(name string) int {
	for i, n := range c.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

func (c *Cluster) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	return append(env, c.opts.Env...)
}

// Start starts node i on its data (a new incarnation) and, once it answers
// HTTP, re-applies the link faults the harness wants on it.
func (c *Cluster) Start(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	if n.proc != nil {
		n.mu.Unlock()
		return nil
	}
	n.incarnation++
	args := c.serveArgs(n)
	inc, off := n.incarnation, n.disconnected
	n.mu.Unlock()

	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== process: start %s incarnation %d at %s: %s\n", n.Name, inc, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	var p proc
	if c.opts.Docker != nil {
		p, err = c.opts.Docker.start(n, args, c.opts.Env, logf)
	} else {
		p, err = c.startLocal(args, logf)
	}
	if err != nil {
		logf.Close()
		return fmt.Errorf("process: start %s: %w", n.Name, err)
	}
	n.mu.Lock()
	n.proc, n.paused, n.skewLive = p, false, 0
	n.mu.Unlock()
	c.opts.Logf("process: started %s", n.Name)
	go func() {
		// A node that stops while the harness still counts it as running
		// crashed (a panic, a fatal error): that fails the run.
		<-p.exited()
		n.mu.Lock()
		mine := n.proc == p
		if mine {
			n.proc, n.paused = nil, false
		}
		n.mu.Unlock()
		var ee *exec.ExitError
		if mine && errors.As(p.exitErr(), &ee) && ee.ExitCode() == cairncli.ExitRemoved {
			c.opts.Logf("process: %s exited: it was removed from the cluster", n.Name)
			return // by design, not a crash
		}
		if mine {
			msg := fmt.Sprintf("%s (incarnation %d) exited on its own at %s; log %s", n.Name, inc, time.Now().Format("15:04:05.000"), n.LogPath)
			c.mu.Lock()
			c.exits = append(c.exits, msg)
			c.mu.Unlock()
			c.opts.Logf("process: %s", msg)
		}
	}()
	if off {
		return nil // cut off from the harness too; faults apply when it is back
	}

	// The node has no faults of its own yet; give it the harness's.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited():
			return fmt.Errorf("process: %s exited at start; log %s", n.Name, n.LogPath)
		default:
		}
		if st, _, err := c.do(context.Background(), i, http.MethodGet, "/healthz", nil); err == nil && st == http.StatusOK {
			return c.applyFaults(i)
		}
		// Poll fast: a test may want to watch the node from its first
		// moments (a restarted node replays its log in tens of milliseconds).
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("process: %s does not answer HTTP 10 s after start; log %s", n.Name, n.LogPath)
}

// serveArgs are node n's `cairn serve` flags.
func (c *Cluster) serveArgs(n *Node) []string {
	var args []string
	if n.alias != "" {
		args = []string{"serve", "--name", n.Name, "--data-dir", "/data",
			"--listen-client", fmt.Sprintf("0.0.0.0:%d", dockerClientPort), "--advertise-client", n.innerURL(),
			"--listen-peer", fmt.Sprintf("0.0.0.0:%d", dockerPeerPort), "--advertise-peer", n.PeerAddr,
			"--listen-resp", fmt.Sprintf("0.0.0.0:%d", dockerRESPPort), "--advertise-resp", fmt.Sprintf("%s:%d", n.alias, dockerRESPPort)}
	} else {
		args = []string{"serve", "--name", n.Name, "--data-dir", n.DataDir,
			"--listen-client", n.ClientAddr, "--listen-peer", n.PeerAddr, "--listen-resp", n.RESPAddr}
	}
	if n.join != "" {
		args = append(args, "--join", n.join)
		if n.nonVoter {
			args = append(args, "--join-as-non-voter")
		}
	} else {
		args = append(args, "--initial-cluster", c.spec, "--initial-cluster-state", "new")
	}
	args = append(args, c.opts.Args...)
	if c.opts.NodeArgs != nil {
		for i, o := range c.Nodes {
			if o == n {
				args = append(args, c.opts.NodeArgs(i)...)
			}
		}
	}
	return args
}

func (c *Cluster) startLocal(args []string, logf *os.File) (proc, error) {
	cmd := exec.Command(c.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = c.env()
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &localProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Kill kills node i (SIGKILL, or docker kill) and waits for it to stop.
func (c *Cluster) Kill(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	p := n.proc
	n.proc, n.paused = nil, false
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	err := p.signal(syscall.SIGKILL)
	<-p.exited()
	c.opts.Logf("process: killed %s", n.Name)
	return err
}

// Stop shuts node i down (SIGTERM, or docker stop) and waits for it to
// exit; after 20 s it kills it. It returns an error when the node did not
// exit cleanly.
func (c *Cluster) Stop(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	p, paused := n.proc, n.paused
	n.proc, n.paused = nil, false
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if paused {
		_ = p.signal(syscall.SIGCONT)
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		_ = p.signal(syscall.SIGKILL)
		<-p.exited()
		return fmt.Errorf("process: stop %s: %w", n.Name, err)
	}
	select {
	case <-p.exited():
	case <-time.After(20 * time.Second):
		_ = p.signal(syscall.SIGKILL)
		<-p.exited()
		return fmt.Errorf("process: %s did not exit within 20 s of SIGTERM; log %s", n.Name, n.LogPath)
	}
	c.opts.Logf("process: stopped %s", n.Name)
	if err := p.exitErr(); err != nil {
		return fmt.Errorf("process: %s exited after SIGTERM: %w; log %s", n.Name, err, n.LogPath)
	}
	return nil
}

// Pause stops node i (SIGSTOP, or docker pause): it holds its sockets but
// answers nothing.
func (c *Cluster) Pause(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.paused {
		if err := n.proc.signal(syscall.SIGSTOP); err != nil {
			return err
		}
		n.paused = true
	}
	return nil
}

// Resume continues a paused node (SIGCONT, or docker unpause), and gives
// it the clock skew set while it was paused.
func (c *Cluster) Resume(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	if n.proc != nil && n.paused {
		if err := n.proc.signal(syscall.SIGCONT); err != nil {
			n.mu.Unlock()
			return err
		}
		n.paused = false
	}
	n.mu.Unlock()
	return c.applyClock(i)
}

// Wipe deletes node i's data (its directory, or its container); the node
// must not be running.
func (c *Cluster) Wipe(i int) error {
	if c.opts.Docker != nil {
		return c.opts.Docker.remove(c.Nodes[i])
	}
	return os.RemoveAll(c.Nodes[i].DataDir)
}

// Close kills every node (and removes its container). It is safe to call
// more than once.
func (c *Cluster) Close() {
	for i := range c.Nodes {
		_ = c.Kill(i)
		if c.opts.Docker != nil {
			_ = c.opts.Docker.remove(c.Nodes[i])
		}
	}
}

// Disconnect takes node i off the Docker network (docker network
// disconnect): no peer and no client reaches it, nor it them.
func (c *Cluster) Disconnect(i int) error {
	if c.opts.Docker == nil {
		return fmt.Errorf("%w: disconnect needs Docker", harness.ErrUnsupported)
	}
	n := c.Nodes[i]
	if err := c.opts.Docker.disconnect(n); err != nil {
		return err
	}
	n.mu.Lock()
	n.disconnected = true
	n.mu.Unlock()
	return nil
}

// Reconnect puts node i back on the Docker network under its name.
func (c *Cluster) Reconnect(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	off := n.disconnected
	n.mu.Unlock()
	if !off || c.opts.Docker == nil {
		return nil
	}
	if err := c.opts.Docker.connect(n); err != nil {
		return err
	}
	n.mu.Lock()
	n.disconnected = false
	n.mu.Unlock()
	if n.Running() {
		return c.applyFaults(i)
	}
	return nil
}

// do sends one request to node i and returns the status and body.
func (c *Cluster) do(ctx context.Context, i int, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Nodes[i].URL()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Status asks node i for its status (within one second).
func (c *Cluster) Status(i int) (*harness.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, b, err := c.do(ctx, i, http.MethodGet, "/v1/cluster/status", nil)
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("process: status of %s: %d %s", c.Nodes[i].Name, st, b)
	}
	var s harness.Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("process: status of %s: %w", c.Nodes[i].Name, err)
	}
	return &s, nil
}

// Live are the slots of the member nodes that run, are not paused and are
// on the network.
func (c *Cluster) Live() []int {
	var out []int
	for i, n := range c.Nodes {
		n.mu.Lock()
		if n.member && n.proc != nil && !n.paused && !n.disconnected {
			out = append(out, i)
		}
		n.mu.Unlock()
	}
	return out
}

// Targets are the slots clients may send requests to: every member with a
// process, paused or not (a paused node is a fault clients must live with).
func (c *Cluster) Targets() []int {
	var out []int
	for i, n := range c.Nodes {
		n.mu.Lock()
		if n.member && n.proc != nil {
			out = append(out, i)
		}
		n.mu.Unlock()
	}
	return out
}

// Leader returns the slot of the node that says it leads (the highest term
// wins), or -1.
func (c *Cluster) Leader() int {
	live := c.Live()
	sts := make([]*harness.Status, len(live))
	var wg sync.WaitGroup
	for k, i := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[k], _ = c.Status(i)
		}()
	}
	wg.Wait()
	best, term := -1, uint64(0)
	for k, s := range sts {
		if s != nil && s.State == "leader" && s.Term >= term {
			best, term = live[k], s.Term
		}
	}
	return best
}

// WaitLeader waits up to d for a leader.
func (c *Cluster) WaitLeader(d time.Duration) (int, error) {
	deadline := time.Now().Add(d)
	for {
		if l := c.Leader(); l >= 0 {
			return l, nil
		}
		if time.Now().After(deadline) {
			return -1, fmt.Errorf("process: no leader after %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitReady waits up to d for node i's /readyz to answer 200.
func (c *Cluster) WaitReady(i int, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, b, err := c.do(ctx, i, http.MethodGet, "/readyz", nil)
		cancel()
		if err == nil && st == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("%d %s %v", st, bytes.TrimSpace(b), err)
		if !c.Nodes[i].Running() {
			return fmt.Errorf("process: %s is not running; log %s", c.Nodes[i].Name, c.Nodes[i].LogPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("process: %s not ready after %s (last answer: %s); log %s", c.Nodes[i].Name, d, last, c.Nodes[i].LogPath)
}

// Block makes node i stop dialing node j and close its links to it (one way).
func (c *Cluster) Block(i, j int) {
	n, addr := c.Nodes[i], c.Nodes[j].PeerAddr
	n.mu.Lock()
	if n.blocked == nil {
		n.blocked = map[string]bool{}
	}
	n.blocked[addr] = true
	n.mu.Unlock()
	c.fault(i, "/debug/faults/block?addr="+url.QueryEscape(addr))
}

// Delay adds d to every write node i makes on its links to node j.
func (c *Cluster) Delay(i, j int, d time.Duration) {
	n, addr := c.Nodes[i], c.Nodes[j].PeerAddr
	n.mu.Lock()
	if n.delays == nil {
		n.delays = map[string]time.Duration{}
	}
	n.delays[addr] = d
	n.mu.Unlock()
	c.fault(i, "/debug/faults/delay?addr="+url.QueryEscape(addr)+"&d="+d.String())
}

// Partition cuts every link between the nodes in group and all the others,
// both ways.
func (c *Cluster) Partition(group ...int) {
	for i := range c.Nodes {
		for j := range c.Nodes {
			if i != j && slices.Contains(group, i) != slices.Contains(group, j) {
				c.Block(i, j)
			}
		}
	}
}

// Heal removes every link fault on every node.
func (c *Cluster) Heal() {
	for i, n := range c.Nodes {
		n.mu.Lock()
		n.blocked, n.delays = nil, nil
		n.mu.Unlock()
		c.fault(i, "/debug/faults/reset")
	}
}

// fault posts to a debug endpoint of node i; a node that is down or paused
// gets its faults when it starts (applyFaults) or they no longer matter.
func (c *Cluster) fault(i int, path string) {
	n := c.Nodes[i]
	n.mu.Lock()
	skip := n.proc == nil || n.paused || n.disconnected
	n.mu.Unlock()
	if skip {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, b, err := c.do(ctx, i, http.MethodPost, path, nil); err != nil || st != http.StatusOK {
		c.opts.Logf("process: %s %s: %d %s %v", n.Name, path, st, b, err)
	}
}

// SkewClock sets node i's eventual-engine clock d ahead of the machine's
// (POST /debug/faults/clock?skew=d): now when it runs and answers, and
// otherwise when it starts, is resumed or reconnected.
func (c *Cluster) SkewClock(i int, d time.Duration) error {
	n := c.Nodes[i]
	n.mu.Lock()
	n.skew = d
	n.mu.Unlock()
	return c.applyClock(i)
}

// applyClock gives node i's process the skew the harness wants, unless it
// has it already or cannot be reached now.
func (c *Cluster) applyClock(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	d, skip := n.skew, n.proc == nil || n.paused || n.disconnected || n.skew == n.skewLive
	n.mu.Unlock()
	if skip {
		return nil
	}
	path := "/debug/faults/clock?skew=" + d.String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, b, err := c.do(ctx, i, http.MethodPost, path, nil)
	if err != nil || st != http.StatusOK {
		return fmt.Errorf("process: %s %s: %d %s %w", n.Name, path, st, bytes.TrimSpace(b), err)
	}
	n.mu.Lock()
	n.skewLive = d
	n.mu.Unlock()
	return nil
}

func (c *Cluster) applyFaults(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	var paths []string
	for addr := range n.blocked {
		paths = append(paths, "/debug/faults/block?addr="+url.QueryEscape(addr))
	}
	for addr, d := range n.delays {
		paths = append(paths, "/debug/faults/delay?addr="+url.QueryEscape(addr)+"&d="+d.String())
	}
	n.mu.Unlock()
	for _, p := range paths {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, b, err := c.do(ctx, i, http.MethodPost, p, nil)
		cancel()
		if err != nil || st != http.StatusOK {
			return fmt.Errorf("process: %s %s: %d %s %w", n.Name, p, st, b, err)
		}
	}
	return c.applyClock(i)
}

// admin sends a membership or leadership request, to the leader first and
// then to every other live node, retrying 503s for up to 10 s.
func (c *Cluster) admin(method, path string, body any) ([]byte, error) {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	var answers []string
	for time.Now().Before(deadline) {
		order := c.Live()
		if l := c.Leader(); l >= 0 {
			order = append([]int{l}, order...)
		}
		for _, i := range order {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			st, b, err := c.do(ctx, i, method, path, body)
			cancel()
			switch {
			case err != nil:
				last = err
			case st/100 == 2:
				return b, nil
			case st == http.StatusServiceUnavailable:
				last = fmt.Errorf("%s %s on %s: %d %s", method, path, c.Nodes[i].Name, st, bytes.TrimSpace(b))
				answers = append(answers, last.Error())
			default:
				answers = append(answers, fmt.Sprintf("%s %s on %s: %d %s", method, path, c.Nodes[i].Name, st, bytes.TrimSpace(b)))
				return b, fmt.Errorf("process: %s", strings.Join(answers, "; then "))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("process: %s %s: %w", method, path, last)
}

// Members lists the configuration as the leader (or any live node) sees it.
func (c *Cluster) Members() ([]harness.Member, error) {
	b, err := c.admin(http.MethodGet, "/v1/cluster/members", nil)
	if err != nil {
		return nil, err
	}
	var out struct{ Members []harness.Member }
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out.Members, nil
}

// RemoveMember removes node i from the configuration through the API, then
// kills it and wipes its data, so that it can come back only as a new member.
// A removal whose answer was an error but which took effect is done; note
// then says what the API answered.
func (c *Cluster) RemoveMember(i int) (note string, err error) {
	n := c.Nodes[i]
	if _, err := c.admin(http.MethodDelete, "/v1/cluster/members/"+n.Name, nil); err != nil {
		ms, merr := c.Members()
		if merr != nil || slices.ContainsFunc(ms, func(m harness.Member) bool { return m.Name == n.Name }) {
			return "", err
		}
		note = c.note("the removal of %s took effect, but the API answered: %v", n.Name, err)
	}
	n.mu.Lock()
	n.member = false
	n.mu.Unlock()
	_ = c.Kill(i)
	return note, c.Wipe(i)
}

// JoinMember starts node i empty with --join through a live member (as a
// learner when nonVoter) and waits until it is ready.
func (c *Cluster) JoinMember(i int, nonVoter bool, wait time.Duration) error {
	live := c.Live()
	if len(live) == 0 {
		return errors.New("process: no live member to join through")
	}
	via := live[0]
	if l := c.Leader(); l >= 0 {
		via = l
	}
	n := c.Nodes[i]
	_ = c.Kill(i)
	if err := c.Wipe(i); err != nil {
		return err
	}
	n.mu.Lock()
	n.join, n.nonVoter, n.member = c.Nodes[via].innerURL(), nonVoter, true
	n.mu.Unlock()
	if err := c.Start(i); err != nil {
		return err
	}
	return c.WaitReady(i, wait)
}

// Promote makes learner i a voter.
func (c *Cluster) Promote(i int) error {
	_, err := c.admin(http.MethodPost, "/v1/cluster/members/"+c.Nodes[i].Name+"/promote", nil)
	return err
}

// TransferLeadership asks the leader to hand over to node to.
func (c *Cluster) TransferLeadership(to int) (string, error) {
	b, err := c.admin(http.MethodPost, "/v1/cluster/leader/transfer", map[string]string{"to": c.Nodes[to].Name})
	if err != nil {
		return "", err
	}
	var out struct{ Leader string }
	_ = json.Unmarshal(b, &out)
	return out.Leader, nil
}

func (c *Cluster) list(i int) (int64, []model.Item, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, b, err := c.do(ctx, i, http.MethodGet, "/v1/kv/?list=true&consistency=serializable", nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if st != http.StatusOK {
		return 0, nil, nil, fmt.Errorf("process: list on %s: %d %s", c.Nodes[i].Name, st, b)
	}
	var out struct {
		Revision int64        `json:"revision"`
		Items    []model.Item `json:"items"`
		More     bool         `json:"more"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, nil, nil, err
	}
	if out.More {
		return 0, nil, nil, fmt.Errorf("process: list on %s was cut short", c.Nodes[i].Name)
	}
	items, _ := json.Marshal(out.Items)
	return out.Revision, out.Items, items, nil
}

// WaitConverged waits up to d until every member runs, reports the same
// applied index before and after a serializable listing of the whole key
// space, and every listing is identical; it returns that state.
func (c *Cluster) WaitConverged(d time.Duration) (*harness.State, error) {
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		st, why := c.converged()
		if st != nil {
			return st, nil
		}
		last = why
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("process: replicas did not converge in %s: %s", d, last)
}

func (c *Cluster) converged() (*harness.State, string) {
	var members []int
	for i, n := range c.Nodes {
		if n.Member() {
			members = append(members, i)
		}
	}
	applied := func() ([]uint64, string) {
		var out []uint64
		for _, i := range members {
			s, err := c.Status(i)
			if err != nil {
				return nil, err.Error()
			}
			out = append(out, s.AppliedIndex)
		}
		return out, ""
	}
	before, why := applied()
	if before == nil {
		return nil, why
	}
	if !allEqual(before) {
		return nil, fmt.Sprintf("applied indexes %v", before)
	}
	var first []byte
	st := &harness.State{AppliedIndex: before[0]}
	for k, i := range members {
		rev, items, raw, err := c.list(i)
		if err != nil {
			return nil, err.Error()
		}
		if k == 0 {
			first, st.Revision = raw, rev
			st.Items = map[string]model.Item{}
			for _, it := range items {
				st.Items[it.Key] = it
			}
		} else if !bytes.Equal(raw, first) || rev != st.Revision {
			return nil, fmt.Sprintf("%s and %s differ at applied index %d (revisions %d and %d)",
				c.Nodes[members[0]].Name, c.Nodes[i].Name, before[0], st.Revision, rev)
		}
		st.Nodes = append(st.Nodes, c.Nodes[i].Name)
	}
	after, why := applied()
	if after == nil {
		return nil, why
	}
	if !slices.Equal(before, after) {
		return nil, fmt.Sprintf("applied indexes moved from %v to %v", before, after)
	}
	sum := sha256.Sum256(first)
	st.Hash = hex.EncodeToString(sum[:8])
	return st, ""
}

func allEqual[T comparable](xs []T) bool {
	for _, x := range xs {
		if x != xs[0] {
			return false
		}
	}
	return true
}
