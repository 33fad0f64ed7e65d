package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/internal/peer"
)

// The node's service on the shared internal RPC endpoint. Followers call the
// leader's Propose, ReadIndex and Membership; probe calls a joining member's
// Ping. Payloads are encoded by hand:
//
//	Propose     request: the command; reply: the state machine's result
//	ReadIndex   request: empty; reply: the commit index, uint64 big-endian
//	LeaseReadIndex  the same, without a quorum round while the lease holds
//	Membership  request: op, member ID, address, each a uvarint length and
//	            the bytes; reply: empty
//	Ping        request: empty; reply: the node's ID
//	MemberOf    request: a member ID; reply: one byte (removal.go)
//
// A failure is a *peer.Error whose code is one of codes below.
const (
	rpcService      = "raft"
	methodPropose   = rpcService + ".Propose"
	methodReadIndex = rpcService + ".ReadIndex"
	// methodLeaseReadIndex is ReadIndex under the leader's lease (lease.go).
	methodLeaseReadIndex = rpcService + ".LeaseReadIndex"
	methodMember         = rpcService + ".Membership"
	methodPing           = rpcService + ".Ping"
)

// MembershipArgs is a membership change, forwarded to the leader.
type MembershipArgs struct {
	Op, ID, Addr string
}

func (n *Node) registerRPC() (*peer.Service, error) {
	return n.rpc.Register(rpcService, map[string]peer.Handler{
		"Propose":        n.servePropose,
		"ReadIndex":      n.serveReadIndex,
		"LeaseReadIndex": n.serveLeaseReadIndex,
		"Membership":     n.serveMembership,
		"Ping":           n.servePing,
		"MemberOf":       n.serveMemberOf, // removal.go
	})
}

// servePing answers with the node's ID.
func (n *Node) servePing(context.Context, []byte) ([]byte, error) {
	return []byte(n.cfg.ID), nil
}

// servePropose applies a forwarded command on the leader.
func (n *Node) servePropose(ctx context.Context, data []byte) ([]byte, error) {
	if !n.IsLeader() {
		return nil, remoteErr(ErrNotLeader)
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	out, err := n.proposeLocal(ctx, data)
	if err != nil {
		return nil, remoteErr(err)
	}
	return out, nil
}

// serveReadIndex confirms leadership and returns the commit index.
func (n *Node) serveReadIndex(ctx context.Context, _ []byte) ([]byte, error) {
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	idx, err := n.leaderReadIndex(ctx)
	if err != nil {
		return nil, remoteErr(err)
	}
	return binary.BigEndian.AppendUint64(nil, idx), nil
}

// serveMembership applies a forwarded membership change on the leader.
func (n *Node) serveMembership(ctx context.Context, p []byte) ([]byte, error) {
	a, err := decodeMembership(p)
	if err != nil {
		return nil, remoteErr(err)
	}
	if !n.IsLeader() {
		return nil, remoteErr(ErrNotLeader)
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	if err := n.membershipLocal(ctx, a); err != nil {
		return nil, remoteErr(err)
	}
	return nil, nil
}

// call invokes method on the leader at addr. A failure the leader reported
// comes back as this package's error for its code; a call the leader did
// not run (its service is not registered, or its endpoint is closing) is
// ErrNoLeader, so onLeader tries again; this node's endpoint closing is
// ErrShutdown; anything else (the connection, the deadline) leaves the
// outcome unknown: ErrTimeout.
func (n *Node) call(ctx context.Context, addr, method string, payload []byte) ([]byte, error) {
	out, err := n.rpc.CallOwned(ctx, addr, method, payload) // proposals are not changed after they are sent
	var re *peer.Error
	switch {
	case err == nil:
		return out, nil
	case errors.As(err, &re):
		switch {
		case errors.Is(re, peer.ErrUnknownMethod), errors.Is(re, peer.ErrClosed):
			return nil, fmt.Errorf("%w: the leader at %s is not serving: %w", ErrNoLeader, addr, err)
		case errors.Is(re, context.DeadlineExceeded):
			return nil, fmt.Errorf("%w: %s on the leader at %s: %w", ErrTimeout, method, addr, err)
		}
		return nil, codeErr(re)
	case errors.Is(err, peer.ErrClosed):
		return nil, fmt.Errorf("%w: %w", ErrShutdown, err) // this node's endpoint closed
	case errors.Is(err, peer.ErrNotSent):
		// The leader it knows cannot be reached (killed, say, and not yet
		// replaced): nothing was proposed, so the caller waits for the
		// next leader and retries (onLeader).
		return nil, fmt.Errorf("%w: the leader at %s cannot be reached: %w", ErrNoLeader, addr, err)
	}
	return nil, fmt.Errorf("%w: %s to the leader at %s: %w", ErrTimeout, method, addr, err)
}

func encodeMembership(a MembershipArgs) []byte {
	var b []byte
	for _, s := range []string{a.Op, a.ID, a.Addr} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeMembership(b []byte) (MembershipArgs, error) {
	var f [3]string
	for i := range f {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return MembershipArgs{}, fmt.Errorf("%w: membership field %d", ErrBadMessage, i)
		}
		f[i] = string(b[k : k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return MembershipArgs{}, fmt.Errorf("%w: %d bytes after the membership change", ErrBadMessage, len(b))
	}
	return MembershipArgs{Op: f[0], ID: f[1], Addr: f[2]}, nil
}

func decodeIndex(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: a %d-byte read index", ErrBadMessage, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// codes names the errors that travel from the leader back to a follower.
var codes = []struct {
	code string
	err  error
}{
	{"not_leader", ErrNotLeader},
	{"no_leader", ErrNoLeader},
	{"leadership_lost", ErrLeadershipLost},
	{"timeout", ErrTimeout},
	{"shutdown", ErrShutdown},
	{"unknown_member", ErrUnknownMember},
	{"member_exists", ErrMemberExists},
	{"no_transferee", ErrNoTransferee},
	{"quorum_at_risk", ErrQuorumAtRisk},
	{"peer_untrusted", ErrPeerUntrusted},
	{"bad_message", ErrBadMessage},
}

// remoteErr is err as a handler's reply: the code of the sentinel it wraps.
func remoteErr(err error) error {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return &peer.Error{Code: c.code, Msg: err.Error()}
		}
	}
	return &peer.Error{Code: "error", Msg: err.Error()}
}

// codeErr turns a remote code back into an error that matches our sentinels.
func codeErr(re *peer.Error) error {
	for _, c := range codes {
		if c.code == re.Code {
			return fmt.Errorf("%w (remote: %s)", c.err, re.Msg)
		}
	}
	return fmt.Errorf("raftnode: remote error: %w", re)
}
