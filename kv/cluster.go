package kv

// Member is one member of the cluster as every node sees it: its Raft identity
// and suffrage, and the addresses it advertises to clients.
type Member struct {
	Name      string `json:"name"`
	PeerAddr  string `json:"peer_addr"`
	ClientURL string `json:"client_url,omitempty"`
	RESPAddr  string `json:"resp_addr,omitempty"`
	Voter     bool   `json:"voter"`
	Leader    bool   `json:"leader"`
}

// MemberSpec describes a member to add.
type MemberSpec struct {
	Name      string `json:"name"`
	PeerAddr  string `json:"peer_addr"`
	ClientURL string `json:"client_url,omitempty"`
	RESPAddr  string `json:"resp_addr,omitempty"`
	// NonVoter adds the member as a learner that receives the log but does not vote.
	NonVoter bool `json:"non_voter,omitempty"`
}

// Status is one node's view of the cluster.
type Status struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_peer_addr,omitempty"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	LastIndex    uint64 `json:"last_index"`
	Revision     int64  `json:"revision"`
	// ClusterID names the cluster (a restored cluster gets a new one); ""
	// until this node knows it.
	ClusterID string `json:"cluster_id,omitempty"`
	Members   int    `json:"members"`
	// LastContactMs is the time since this node last heard from the leader (0 on the leader).
	LastContactMs int64 `json:"last_contact_ms"`
	// Health is each member's health as seen from this node (see
	// Placement.Health).
	Health map[string]string `json:"health,omitempty"`
	// Mirrors is what this node's keyspace mirrors to buckets did (package
	// backup/mirror): each one's cursor, outbox, last copy and error.
	Mirrors any `json:"mirrors,omitempty"`
}
