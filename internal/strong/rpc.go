package strong

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
)

// The engine's service on the node's shared internal RPC endpoint (the one
// raftnode's "raft" service is on). Payloads are encoded by hand:
//
//	Applied  request: a log index, uint64 big-endian; the handler waits
//	         (at most appliedPoll) until this node has applied it; reply:
//	         the node's applied index, uint64 big-endian
//
// It lets a proposer of a control change (a keyspace policy) tell when
// every member is using it.
const (
	rpcService    = "strong"
	methodApplied = rpcService + ".Applied"
)

const (
	// controlWait bounds how long a control change waits, once committed,
	// for every member to apply it (the request's deadline may cut it
	// shorter).
	controlWait = 2 * time.Second
	// appliedPoll bounds one Applied call's wait on the member, so that a
	// reply always comes back before the caller gives up.
	appliedPoll = 250 * time.Millisecond
	// appliedRetry is the pause before asking a member that did not answer
	// (down, or a version without the method) again.
	appliedRetry = 50 * time.Millisecond
)

var errBadIndex = errors.New("strong: malformed applied index")

func (e *Engine) registerRPC() (*peer.Service, error) {
	return e.rpc.Register(rpcService, map[string]peer.Handler{"Applied": e.serveApplied})
}

// serveApplied waits a little for the index asked about and answers with
// this node's applied index, whether it has reached it or not.
func (e *Engine) serveApplied(ctx context.Context, p []byte) ([]byte, error) {
	if len(p) != 8 {
		return nil, &peer.Error{Code: "bad_message", Msg: fmt.Sprintf("a %d-byte index", len(p))}
	}
	ctx, cancel := context.WithTimeout(ctx, appliedPoll)
	defer cancel()
	_ = e.node.WaitApplied(ctx, binary.BigEndian.Uint64(p)) // not reached: the answer says how far it got
	return binary.BigEndian.AppendUint64(nil, e.node.AppliedIndex()), nil
}

// awaitApplied waits until every member of the configuration has applied
// index, for at most controlWait (or until ctx ends), and returns the
// names of those that have not, sorted.
func (e *Engine) awaitApplied(ctx context.Context, index uint64) []string {
	servers, err := e.node.Servers()
	if err != nil {
		return []string{e.cfg.Name} // cannot tell who the members are: say what is known
	}
	ctx, cancel := context.WithTimeout(ctx, controlWait)
	defer cancel()
	var (
		mu      sync.Mutex
		pending []string
		wg      sync.WaitGroup
	)
	for _, sv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok bool
			if sv.ID == e.cfg.Name {
				ok = e.node.WaitApplied(ctx, index) == nil
			} else {
				ok = e.remoteApplied(ctx, sv.Addr, index)
			}
			if !ok {
				mu.Lock()
				pending = append(pending, sv.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(pending)
	return pending
}

// remoteApplied asks the member at addr until it has applied index or ctx ends.
func (e *Engine) remoteApplied(ctx context.Context, addr string, index uint64) bool {
	req := binary.BigEndian.AppendUint64(nil, index)
	for {
		out, err := e.rpc.Call(ctx, addr, methodApplied, req)
		if err == nil && len(out) == 8 {
			if binary.BigEndian.Uint64(out) >= index {
				return true
			}
			continue // the member waited appliedPoll: ask again at once
		}
		if err == nil {
			e.log.Warn("bad reply to "+methodApplied, "addr", addr, "err", errBadIndex)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(appliedRetry):
		}
	}
}
