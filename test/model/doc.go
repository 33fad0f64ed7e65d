// Package model holds what cairn's correctness tests check histories
// against, and is the one package that imports porcupine. A history is a
// list of operations as clients saw them (Op: what was asked, when it was
// called and returned, what came back, and whether the outcome is known);
// the workload that records it and the clusters it runs on live in
// test/harness, test/cluster and test/process.
//
// The layout is one file per model, each with its operation kinds and its
// checks (and a porcupine model where there is an order to linearize):
//
//   - kv.go: the strong keyspaces' register, one per key, with revisions and
//     versions (gets, puts, compare-and-swap on a revision, transactions
//     that compare a revision or a value, deletes, and the Redis protocol's
//     GET/SET/DEL checked by value). Check runs it with a timeout and writes
//     porcupine's HTML visualization when a history has no linearization.
//   - checks.go: the checks of a history that are not linearizability:
//     serializable reads never go back for a client on a node, the cluster
//     revision in a client's answers never goes back, no acknowledged write
//     is missing from the final state, and the revision counter accounts for
//     unknown writes.
//   - history.go: a history saved as JSON, to check it again without a
//     cluster.
//   - convergence.go: eventual keyspaces, where there is no order to
//     linearize. CheckConvergence checks the end state, read from every
//     replica once the faults have healed, against every write attempted
//     (Write: acknowledged at a Version, failed with a 503, unknown, or
//     refused): every replica of a key holds the same version or none
//     does; it is at least every acknowledged write's, so nothing
//     acknowledged is lost unless a greater version replaced it and a
//     delete never lets an older value back; a value is its own write's,
//     at that write's version, and a refused write never shows; a key is
//     absent only where a delete, an expiry or no acknowledged write can
//     explain it. CheckEventualReads checks the values reads returned
//     during a run. test/harness's RunEventual records the writes and
//     reads and reads the end state.
//   - watch.go: the strong keyspaces' change feed. CheckWatches checks the
//     streams of watchers that resume from the revision after the last one
//     they saw whole, whatever breaks them: each watcher sees every change
//     of its prefix from where it started, once, in revision order, with
//     the written values, and catches up to the replicas once the faults
//     heal. It holds them to a reference feed replayed at the end, and the
//     reference to the history (every acknowledged write at its revision,
//     no value nobody wrote) and to the agreed end state.
package model
