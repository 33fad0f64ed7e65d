// Package validate checks deploy/k8s's manifests offline, in its tests: every
// document is decoded strictly into the Kubernetes API types (an unknown or
// misspelled field is an error, as kubectl apply --validate=strict makes it),
// and the invariants the cluster depends on are checked (odd replicas,
// initial-cluster names equal to the StatefulSet's pod names under its
// headless Service, probes on /readyz and /healthz, TLS files from a mounted
// Secret, every CAIRN_* variable a real cairn setting). It is a module of its
// own so that k8s.io/api stays out of cairn's go.mod; run it with make
// k8s-validate.
package validate
