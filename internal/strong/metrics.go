package strong

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the engine's metrics: its Raft member's (with the Raft
// log database) and the state database's pebble metrics (db="state").
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.node.Collector(), e.db.Collector("state")}
}
