//go:build !race

package cluster

import "time"

// raftTimeout is the test cluster's heartbeat and election timeout: short,
// so elections in the tests are quick; the leader's lease is half of it.
const raftTimeout = 300 * time.Millisecond
