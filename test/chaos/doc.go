// Package chaos holds the entry points of cairn's correctness sweep on real
// processes: the short configuration inside `go test ./...`, the long sweep
// of `make chaos` (every fault kind against 3 and 5 nodes, the proof that
// the checker catches stale reads, the Docker variant), the eventual
// convergence runs (eventual_test.go: in process and on processes, a
// clock beyond the bound, and the proofs that the convergence check fails
// on nodes without repair), custom
// sweeps and the re-check of a saved history. The harness itself
// (workload, nemesis, checks, report) is test/harness, the models
// test/model, the process cluster test/process; the in-process sweep of the
// strong keyspaces runs the same harness from server/ (TestNemesisSweep).
// docs/TESTING.md says how to run and read them.
package chaos
