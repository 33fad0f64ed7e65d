//go:build cairn_broken_convergence

package server

const brokenConvergence = true
