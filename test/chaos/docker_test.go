//go:build chaosharness

package chaos

import (
	"flag"
	"testing"
)

var flagDocker = flag.Bool("chaos.docker", false, "run the container variant (also part of -chaos.long) where a Docker engine answers")

// TestChaosDocker is the container variant: each node in its own container
// of a FROM scratch image on a private network, faults made with docker
// network disconnect, docker pause and docker kill. It runs with
// -chaos.docker or -chaos.long, where a Docker engine answers.
func TestChaosDocker(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts containers")
	case !*flagDocker && !*flagLong:
		t.Skip("run with -chaos.docker or -chaos.long")
	case !DockerAvailable():
		t.Skip("no Docker engine answers `docker info`")
	}
	dir := runDir(t)
	d, err := NewDocker(binary, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close) // after the cluster's cleanup has removed the containers
	c, err := NewCluster(Options{Binary: binary, Nodes: 3, Dir: dir, Logf: t.Logf, Docker: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	mustRun(t, c, dir, Config{Name: "docker: disconnect, pause, kill, 3 nodes, seed 1",
		Workload: workload("chaos/docker/", 1), Faults: DockerFaults, Mixed: 2})
}
