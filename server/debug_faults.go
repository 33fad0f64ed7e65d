//go:build faultinject

package server

import (
	"math"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cairnkv/cairn/internal/raftnode"
)

// Test builds (go build -tags faultinject) expose fault injection on the
// client port so the chaos harness can cut, slow and restore this node's
// outgoing peer links, and can switch on a deliberately broken read path to
// prove that the checker catches stale reads. Release builds have none of it.

func debugHandler(s *Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /debug/faults/block", func(w http.ResponseWriter, r *http.Request) {
		s.hooks.Faults.Block(r.URL.Query().Get("addr"))
	})
	mux.HandleFunc("POST /debug/faults/unblock", func(w http.ResponseWriter, r *http.Request) {
		s.hooks.Faults.Unblock(r.URL.Query().Get("addr"))
	})
	mux.HandleFunc("POST /debug/faults/delay", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.hooks.Faults.Delay(r.URL.Query().Get("addr"), d)
	})
	mux.HandleFunc("POST /debug/faults/reset", func(w http.ResponseWriter, r *http.Request) {
		s.hooks.Faults.Reset()
	})
	// The eventual engine's clock runs this far ahead (or behind, when
	// negative) of the machine's: the clock-skew fault.
	mux.HandleFunc("POST /debug/faults/clock", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("skew"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.hooks.ClockSkew.Store(int64(d))
	})
	// The Raft lease's clock runs rate times as fast as the machine's
	// (1: normal; 0.33: three times slow): the clock-rate fault.
	mux.HandleFunc("POST /debug/faults/lease-clock", func(w http.ResponseWriter, r *http.Request) {
		rate, err := strconv.ParseFloat(r.URL.Query().Get("rate"), 64)
		if err != nil || !(rate > 0) {
			http.Error(w, "rate must be a positive number", http.StatusBadRequest)
			return
		}
		s.hooks.LeaseClockRate.Store(math.Float64bits(rate))
	})
	return mux
}

// logStall holds each Raft log append while stall is true (nil: no hook).
func logStall(stall *atomic.Bool) func() {
	if stall == nil {
		return nil
	}
	return func() {
		for stall.Load() {
			time.Sleep(time.Millisecond)
		}
	}
}

// leaseClock is the machine's monotonic clock scaled by the rate in bits
// (the clock-rate fault; 0 bits: rate 1). CAIRN_DEBUG_LEASE_CLOCK_RATE sets
// the rate a process starts with, so it holds across restarts.
func leaseClock(bits *atomic.Uint64) raftnode.LeaseClock {
	if r, err := strconv.ParseFloat(os.Getenv("CAIRN_DEBUG_LEASE_CLOCK_RATE"), 64); err == nil && r > 0 && bits.Load() == 0 {
		bits.Store(math.Float64bits(r))
	}
	return raftnode.ScaledClock(func() float64 {
		if r := math.Float64frombits(bits.Load()); r > 0 {
			return r
		}
		return 1
	})
}

// debugUnsafeReads makes linearizable reads on followers skip the read index
// (CAIRN_DEBUG_UNSAFE_READS=1): a bug on purpose, for the checker's own test.
func debugUnsafeReads() bool { return os.Getenv("CAIRN_DEBUG_UNSAFE_READS") == "1" }
