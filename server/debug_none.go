//go:build !faultinject

package server

import (
	"net/http"
	"sync/atomic"

	"github.com/cairnkv/cairn/internal/raftnode"
)

func debugHandler(*Server) http.Handler { return nil }

func debugUnsafeReads() bool { return false }

// leaseClock is the machine's monotonic clock in release builds.
func leaseClock(*atomic.Uint64) raftnode.LeaseClock { return nil }

// logStall is no hook in release builds.
func logStall(*atomic.Bool) func() { return nil }
