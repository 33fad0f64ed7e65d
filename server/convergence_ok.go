//go:build !cairn_broken_convergence

package server

// brokenConvergence is set only by the test build that proves the chaos
// suite's convergence checker can fail (anti-entropy, read repair, hints
// and handoff off).
const brokenConvergence = false
