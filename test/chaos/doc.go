// Package chaos is cairn's correctness harness under failure: it starts
// clusters of real cairn processes (built with -tags faultinject) on loopback,
// drives them with concurrent HTTP clients, injects faults with a nemesis
// (partitions, one-way drops, latency, kill -9, SIGSTOP, membership changes,
// leadership transfer, a follower kept away until it needs a snapshot), and
// checks what the clients saw:
//
//   - every key's history is linearizable (porcupine, a register model with
//     revisions and versions; operations with an unknown outcome may or may
//     not have taken effect);
//   - serializable reads never go back in time for a client;
//   - after healing, every member holds the same data at the same applied
//     index, and no acknowledged write is missing from it.
//
// Run prints a report: operations by type and outcome, the faults with their
// times, and the verdict, with the path of porcupine's HTML visualization
// when the linearizability check fails. With a Docker engine the same
// harness runs each node in its own container (docker.go), with faults made
// by docker network disconnect, docker pause and docker kill. The tests in
// this package are the entry points; docs/TESTING.md says how to run and
// read them.
package chaos
