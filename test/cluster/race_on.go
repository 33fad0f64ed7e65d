//go:build race

package cluster

import "time"

// raftTimeout is the test cluster's heartbeat and election timeout. Under
// the race detector three nodes on two cores answer heartbeats late: with
// 300 ms (a 150 ms lease) leaders stepped down mid-write in `make race`.
const raftTimeout = 600 * time.Millisecond
