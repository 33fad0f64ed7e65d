package raftnode

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"
	"time"
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

// TestShutdownAnswersQueuedProposals shuts Raft down under it, as a leader
// that removes itself does, while writers keep proposing. hashicorp/raft
// drops futures still in its apply queue at shutdown; every proposer must
// still get an answer, and Close must return (it waits for forwarded
// requests). Before the fix this hung.
func TestShutdownAnswersQueuedProposals(t *testing.T) {
	for round := 0; round < 5; round++ {
		n, _, stop := startSingle(t, t.TempDir())
		waitLeader(t, n)
		const writers = 64
		var wg sync.WaitGroup
		started := make(chan struct{}, writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if i == 10 {
						started <- struct{}{}
					}
					if _, err := n.Propose(context.Background(), []byte{1}); err != nil {
						if i < 10 {
							started <- struct{}{}
						}
						return
					}
				}
			}()
		}
		for w := 0; w < writers; w++ {
			<-started
		}
		_ = n.raft.Shutdown() // what ShutdownOnRemove does, without Close
		answered := make(chan struct{})
		go func() { wg.Wait(); stop(); close(answered) }()
		select {
		case <-answered:
		case <-time.After(time.Minute): // a liveness bound, not a timing claim
			t.Fatalf("round %d: proposers or Close still waiting a minute after Raft shut down", round)
		}
	}
}
