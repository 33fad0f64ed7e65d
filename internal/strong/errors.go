package strong

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairnkv/cairn/internal/raftnode"
	"github.com/cairnkv/cairn/kv"
)

// mapErr turns consensus errors into the service's sentinels, so every front
// end sees one kv.Code whatever engine answered.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftnode.ErrNoLeader), errors.Is(err, raftnode.ErrNotLeader):
		return fmt.Errorf("%w: %w", kv.ErrNoLeader, err)
	case errors.Is(err, raftnode.ErrUnknownMember):
		return fmt.Errorf("%w: %w", kv.ErrMemberNotFound, err)
	case errors.Is(err, raftnode.ErrNoTransferee), errors.Is(err, raftnode.ErrQuorumAtRisk):
		return fmt.Errorf("%w: %w", kv.ErrConflict, err)
	case errors.Is(err, raftnode.ErrMemberExists):
		return fmt.Errorf("%w: %w", kv.ErrMemberExists, err)
	case errors.Is(err, raftnode.ErrPeerUntrusted):
		return fmt.Errorf("%w: %w", kv.ErrInvalidArgument, err)
	case errors.Is(err, raftnode.ErrTimeout), errors.Is(err, raftnode.ErrLeadershipLost),
		errors.Is(err, raftnode.ErrShutdown), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", kv.ErrUnavailable, err)
	}
	return err
}
