package raftnode

import (
	"context"
	"errors"
	"fmt"
)

// ProposeArgs is a command forwarded to the leader.
type ProposeArgs struct{ Data []byte }

// ProposeReply carries the state machine's result or an error code.
type ProposeReply struct {
	Data      []byte
	Code, Msg string
}

// ReadIndexArgs asks the leader for a confirmed read index.
type ReadIndexArgs struct{}

// ReadIndexReply is the leader's commit index after confirming leadership.
type ReadIndexReply struct {
	Index     uint64
	Code, Msg string
}

// MembershipArgs is a membership change forwarded to the leader.
type MembershipArgs struct {
	Op, ID, Addr string
}

// MembershipReply reports the outcome of a membership change.
type MembershipReply struct{ Code, Msg string }

// PingArgs checks that a peer answers internal RPC.
type PingArgs struct{}

// PingReply names the answering node.
type PingReply struct{ ID string }

// rpcService is the internal RPC surface of a node, served on the peer port.
type rpcService struct{ n *Node }

func (s *rpcService) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.n.cfg.RequestTimeout)
}

// Ping answers with the node's ID.
func (s *rpcService) Ping(_ PingArgs, r *PingReply) error {
	r.ID = s.n.cfg.ID
	return nil
}

// Propose applies a forwarded command on the leader.
func (s *rpcService) Propose(a ProposeArgs, r *ProposeReply) error {
	if !s.n.IsLeader() {
		r.Code, r.Msg = errCode(ErrNotLeader)
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	out, err := s.n.proposeLocal(ctx, a.Data)
	r.Data = out
	r.Code, r.Msg = errCode(err)
	return nil
}

// ReadIndex confirms leadership and returns the commit index.
func (s *rpcService) ReadIndex(_ ReadIndexArgs, r *ReadIndexReply) error {
	ctx, cancel := s.ctx()
	defer cancel()
	idx, err := s.n.leaderReadIndex(ctx)
	r.Index = idx
	r.Code, r.Msg = errCode(err)
	return nil
}

// Membership applies a forwarded membership change on the leader.
func (s *rpcService) Membership(a MembershipArgs, r *MembershipReply) error {
	if !s.n.IsLeader() {
		r.Code, r.Msg = errCode(ErrNotLeader)
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	r.Code, r.Msg = errCode(s.n.membershipLocal(ctx, a))
	return nil
}

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
	{"peer_untrusted", ErrPeerUntrusted},
}

func errCode(err error) (code, msg string) {
	if err == nil {
		return "", ""
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code, err.Error()
		}
	}
	return "error", err.Error()
}

// codeErr turns a remote code back into an error that matches our sentinels.
func codeErr(code, msg string) error {
	if code == "" {
		return nil
	}
	for _, c := range codes {
		if c.code == code {
			return fmt.Errorf("%w (remote: %s)", c.err, msg)
		}
	}
	return fmt.Errorf("raftnode: remote error: %s", msg)
}
