//go:build race

package server_test

// raceEnabled: the race detector slows memory copies several times over.
const raceEnabled = true
