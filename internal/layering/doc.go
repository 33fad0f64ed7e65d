// Package layering holds the test that keeps cairn's import rules (see
// rules in layering_test.go and docs/ARCHITECTURE.md): dependencies point one
// way, front ends → kv → engines → store, and the packages at the bottom
// import nothing of cairn's. `go test ./...` fails the moment a change breaks
// a rule, with the chain of imports that does.
package layering
