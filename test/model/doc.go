// Package model holds what cairn's correctness tests check histories
// against, and is the one package that imports porcupine. A history is a
// list of operations as clients saw them (Op: what was asked, when it was
// called and returned, what came back, and whether the outcome is known);
// the workload that records it and the clusters it runs on live in
// test/harness, test/cluster and test/process.
//
// The layout is one file per model, each with its operation kinds, its
// porcupine model and its checks:
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
//
// The models that come next go beside these, one file each: watch.go (a
// change feed delivers every change of its prefix once, in revision order,
// resumable from a revision) and convergence.go (eventual keyspaces: after
// the faults heal, every replica holds, for each key, the newest write by
// (timestamp, node) among those acknowledged or seen, and deletes stay
// deleted).
package model
