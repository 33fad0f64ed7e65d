package materialize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// hookOutputBytes is how much of a hook's output is logged.
const hookOutputBytes = 16 << 10

// hookRunner runs a materializer's on_change command after publishes: once
// per quiet period of Debounce after the last publish, with the keys that
// changed since it last succeeded. A failure is retried with backoff
// (1 s doubling to a minute) and never holds up publishing. The pending
// keys are kept in the tree's state directory, so a node that restarts
// before its hook succeeded runs it once when it is back.
type hookRunner struct {
	m       *Materializer
	kick    chan struct{}
	started func(keys []string) // test hook
}

func newHookRunner(m *Materializer) *hookRunner {
	return &hookRunner{m: m, kick: make(chan struct{}, 1)}
}

func (h *hookRunner) notify() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *hookRunner) run(ctx context.Context) {
	retry := time.Duration(0)
	for {
		var after <-chan time.Time
		if retry > 0 {
			after = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		case <-after:
		}
		// Debounce: wait until publishes pause.
		for quiet := false; !quiet; {
			select {
			case <-ctx.Done():
				return
			case <-h.kick:
			case <-time.After(h.m.spec.Debounce):
				quiet = true
			}
		}
		keys, gen := h.m.pending()
		if len(keys) == 0 {
			retry = 0
			continue
		}
		err := h.runOnce(ctx, keys)
		if ctx.Err() == nil {
			h.m.stats.count(hookRuns)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			h.m.stats.count(hookFailures)
			retry = min(max(2*retry, time.Second), time.Minute)
			h.m.log.Warn("on_change hook failed; will retry", "err", err, "in", retry)
			continue
		}
		retry = 0
		if err := h.m.clearPending(gen); err != nil {
			h.m.log.Warn("on_change hook ran, but its pending keys could not be cleared", "err", err)
		}
	}
}

// runOnce runs the command once, in its own process group (killed whole at
// the timeout), with no shell and the changed keys in its environment.
func (h *hookRunner) runOnce(ctx context.Context, keys []string) error {
	spec := h.m.spec
	if h.started != nil {
		h.started(keys)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, spec.OnChange[0], spec.OnChange[1:]...)
	cmd.Env = append(os.Environ(),
		"CAIRN_CHANGED_KEYS="+strings.Join(keys, "\n"),
		"CAIRN_KEYSPACE="+spec.Prefix,
		"CAIRN_DIR="+spec.Dir,
	)
	cmd.Dir = "/"
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	log := h.m.log.With("command", spec.OnChange[0], "keys", len(keys), "took", time.Since(start).Round(time.Millisecond), "output", out.String())
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("timed out after %s", spec.HookTimeout)
	case errors.As(err, &exit):
		err = fmt.Errorf("exit status %d", exit.ExitCode())
	}
	if err != nil {
		log.Warn("on_change hook failed", "err", err)
		return err
	}
	log.Info("on_change hook ran")
	return nil
}

// limitedBuffer keeps the first hookOutputBytes written to it.
type limitedBuffer struct {
	b         bytes.Buffer
	truncated bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := hookOutputBytes - l.b.Len(); room < len(p) {
		l.truncated = true
		l.b.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *limitedBuffer) String() string {
	s := strings.TrimRight(l.b.String(), "\n")
	if l.truncated {
		s += " …(truncated)"
	}
	return s
}
