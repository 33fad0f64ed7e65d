package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrRemoved is what Err reports when this node was removed from the
// cluster, and what Start answers for a data directory whose node was
// removed: such a node stops serving instead of answering "no leader"
// forever, and its data cannot rejoin (wipe it and --join instead).
var ErrRemoved = errors.New("server: removed from the cluster")

// removedMarker, in the data directory, records that the node was removed.
const removedMarker = "REMOVED"

// refuseIfRemoved fails Start when the data directory belongs to a removed
// member: its Raft state describes a cluster that no longer counts it, so
// it would only wait for a leader that never calls.
func (s *Server) refuseIfRemoved() error {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, removedMarker))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return fmt.Errorf("%w: this data directory (%s) belongs to member %s, which was removed (%s); "+
		"to bring the node back, wipe the data directory and start it with --join URL-of-a-member",
		ErrRemoved, s.cfg.DataDir, s.cfg.Name, strings.TrimSpace(string(b)))
}

// watchRemoval reports ErrRemoved on Err once the Raft member learns it
// was removed, after recording it in the data directory. The owner (cairn
// serve, a test) then closes the server.
func (s *Server) watchRemoval() error {
	node := s.strong
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-s.done:
			return
		case <-node.Removed():
		}
		why := node.RemovedReason()
		note := fmt.Sprintf("%s at %s: %s\n", s.cfg.Name, time.Now().UTC().Format(time.RFC3339), why)
		if err := os.WriteFile(filepath.Join(s.cfg.DataDir, removedMarker), []byte(note), 0o600); err != nil {
			s.log.Error("could not record the removal in the data directory", "err", err)
		}
		s.log.Error(fmt.Sprintf("removed from the cluster: %s; exiting", why))
		select {
		case s.errc <- fmt.Errorf("%w: %s", ErrRemoved, why):
		case <-s.done:
		}
	}()
	return nil
}
