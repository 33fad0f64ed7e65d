package raftnode

import (
	"context"
	"net"
	"time"

	"github.com/cairnkv/cairn/internal/peer"
	"github.com/hashicorp/raft"
)

// streamLayer carries Raft over the peer mux: its listener is the one Start
// registers for peer.ProtoRaft, and it dials with that byte.
type streamLayer struct {
	net.Listener
	dialer *peer.Dialer
	addr   advertiseAddr
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.dialer.Dial(ctx, string(address), peer.ProtoRaft)
}

// Addr is the advertised peer address, which raft records in its configuration.
func (s *streamLayer) Addr() net.Addr { return s.addr }

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
