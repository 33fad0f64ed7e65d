// Package strong is cairn's strong engine: keyspaces whose every write goes
// through one Raft group (internal/raftnode) and whose reads are
// linearizable unless the caller asks for a serializable one. It implements
// kv.Engine (records: get, list, transactions) and kv.Control (the control
// plane every node agrees on: membership records, replicated users and ACL
// rules, keyspace policies).
//
// The pieces, one file each:
//
//   - engine.go: Engine, the node's entry point: proposals, the read barrier
//     (read index), reads from the record cache or the state database,
//     readiness, status, digest;
//   - machine.go: Machine, the deterministic state machine that applies
//     committed commands in batches (revisions, CAS, txns, TTL, merge patch);
//   - command.go: the binary codec of commands and results in the log;
//   - layout.go: the state database's key layout and the record codec;
//   - cache.go: the record cache the machine fills and readers share;
//   - expiry.go: the leader's TTL sweep, decided through the log;
//   - control.go, auth.go, keyspaces.go: the control plane's commands.
//
// DESIGN.md beside this file states the invariants the code keeps.
package strong
