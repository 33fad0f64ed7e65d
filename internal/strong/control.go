package strong

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/cairnkv/cairn/kv"
)

// Membership is Raft's configuration (who votes, at which peer address)
// plus the addresses each member advertises to clients, kept as member
// records in the state database (0x04) so every node can tell a client where
// everyone is.

// Members implements kv.Control: every member with the addresses it advertises.
func (e *Engine) Members(ctx context.Context) ([]kv.Member, error) {
	// Membership is read like data: after a read barrier, this node's copy of
	// the configuration includes every change committed before the call.
	if err := e.Barrier(ctx); err != nil {
		return nil, err
	}
	servers, err := e.node.Servers()
	if err != nil {
		return nil, mapErr(err)
	}
	meta := map[string]kv.Member{}
	err = e.db.Scan([]byte{prefixMember}, []byte{prefixMember + 1}, func(_, v []byte) bool {
		var m kv.Member
		if json.Unmarshal(v, &m) == nil {
			meta[m.Name] = m
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	leader := e.node.Status().LeaderID
	out := make([]kv.Member, 0, len(servers))
	for _, sv := range servers {
		m := meta[sv.ID]
		m.Name, m.PeerAddr, m.Voter, m.Leader = sv.ID, sv.Addr, sv.Voter, sv.ID == leader
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AddMember implements kv.Control: it adds the member to the Raft group and
// records its advertised addresses.
func (e *Engine) AddMember(ctx context.Context, m kv.MemberSpec) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	if err := mapErr(e.node.AddMember(ctx, m.Name, m.PeerAddr, !m.NonVoter)); err != nil {
		return err
	}
	if m.ClientURL == "" && m.RESPAddr == "" {
		return nil
	}
	_, err := e.propose(ctx, command{Type: cmdMemberSet, Member: &kv.Member{Name: m.Name, PeerAddr: m.PeerAddr, ClientURL: m.ClientURL, RESPAddr: m.RESPAddr}})
	return err
}

// RemoveMember implements kv.Control: it removes the member and its record.
func (e *Engine) RemoveMember(ctx context.Context, name string) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	// A leader that removed itself shuts Raft down as soon as the change
	// commits (ShutdownOnRemove), and under load the answer to the change
	// can be lost in that shutdown: Raft shut down with a configuration that
	// no longer holds this node means the removal committed.
	removedSelf := func() bool {
		if name != e.cfg.Name || e.node.Status().State != "shutdown" {
			return false
		}
		servers, err := e.node.Servers()
		if err != nil {
			return false
		}
		for _, sv := range servers {
			if sv.ID == name {
				return false
			}
		}
		return true
	}
	if removedSelf() {
		return fmt.Errorf("%w: %s removed itself", kv.ErrMemberNotFound, name) // a retry
	}
	// The record goes first: once the change has committed, a leader that
	// removed itself can propose nothing (it is out of the configuration and
	// hears from no leader), so a deletion proposed afterwards failed (503)
	// for a removal that had taken effect, and a retry got 404.
	old, _ := e.db.Get(memberKey(name))
	if _, err := e.propose(ctx, command{Type: cmdMemberDel, Name: name}); err != nil {
		return err
	}
	err := mapErr(e.node.RemoveMember(ctx, name))
	if err != nil && removedSelf() {
		return nil
	}
	if err != nil && old != nil && !errors.Is(err, kv.ErrMemberNotFound) {
		// The member may still be in the configuration: put its addresses
		// back (best effort; a restarted member publishes them again). If
		// the removal took effect after all, the record is never listed.
		var m kv.Member
		if json.Unmarshal(old, &m) == nil {
			_, _ = e.propose(ctx, command{Type: cmdMemberSet, Member: &m})
		}
	}
	return err
}

// PromoteMember implements kv.Control: a non-voter becomes a voter.
func (e *Engine) PromoteMember(ctx context.Context, name string) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	return mapErr(e.node.PromoteMember(ctx, name))
}

// TransferLeadership implements kv.Control.
func (e *Engine) TransferLeadership(ctx context.Context, to string) error {
	ctx, cancel := e.ctx(ctx)
	defer cancel()
	return mapErr(e.node.TransferLeadership(ctx, to))
}

// PublishMember implements kv.Control.
func (e *Engine) PublishMember(ctx context.Context, m kv.Member) error {
	if raw, err := e.db.Get(memberKey(m.Name)); err == nil {
		var cur kv.Member
		if json.Unmarshal(raw, &cur) == nil && cur == m {
			return nil
		}
	}
	_, err := e.propose(ctx, command{Type: cmdMemberSet, Member: &m})
	return err
}
