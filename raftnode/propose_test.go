package raftnode

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
)

// TestConcurrentProposalsShareRounds sends a burst of concurrent proposals:
// each gets the state machine's answer for its own entry, every entry is
// applied once, and the gate is idle afterwards.
func TestConcurrentProposalsShareRounds(t *testing.T) {
	n, c, stop := startSingle(t, t.TempDir())
	defer stop()
	waitLeader(t, n)
	const writers, each = 64, 20
	seen := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				out, err := n.Propose(context.Background(), []byte{1})
				if err != nil {
					t.Error(err)
					return
				}
				seen <- binary.BigEndian.Uint64(out)
			}
		}()
	}
	wg.Wait()
	close(seen)
	// Each command adds 1, so the answers are 1..writers*each, each once.
	got := map[uint64]bool{}
	for v := range seen {
		if got[v] {
			t.Fatalf("two proposals got the answer %d", v)
		}
		got[v] = true
	}
	if len(got) != writers*each || c.total() != writers*each {
		t.Fatalf("%d answers, total %d; want %d", len(got), c.total(), writers*each)
	}
	n.gate.mu.Lock()
	defer n.gate.mu.Unlock()
	if n.gate.inflight != 0 || len(n.gate.queue) != 0 {
		t.Fatalf("gate not idle: %d rounds in flight, %d queued", n.gate.inflight, len(n.gate.queue))
	}
}
