// Package deploy holds no code: its tests run the deployment files beside
// it for real. TestCompose starts deploy/compose.yaml's 3-node cluster where
// a Docker engine answers (make docker-test), and TestKubernetesFlow runs the
// StatefulSet's container settings in Docker through docs/DEPLOY.md's
// bootstrap, scale-up and scale-down; TestSystemdUnits runs
// systemd-analyze verify on deploy/systemd where it exists; TestInstance runs
// deploy/systemd/cairn-instance into a temporary root and loads the config it
// writes with package config. The Kubernetes manifests are checked by the
// separate module deploy/k8s/validate (make k8s-validate). See docs/DEPLOY.md.
package deploy
