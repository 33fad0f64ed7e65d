package chaos

import (
	"flag"
	"testing"

	"github.com/cairnkv/cairn/test/harness"
	"github.com/cairnkv/cairn/test/process"
)

var flagDocker = flag.Bool("chaos.docker", false, "run the container variant (also part of -chaos.long) where a Docker engine answers")

// TestChaosDocker is the container variant: each node in its own container
// of a FROM scratch image on a private network, faults made with docker
// network disconnect, docker pause and docker kill. It runs with
// -chaos.docker (and as part of -chaos.long), where a Docker engine answers.
func TestChaosDocker(t *testing.T) {
	switch {
	case testing.Short():
		t.Skip("starts containers")
	case *flagLong:
		t.Skip("TestChaos runs it")
	case !*flagDocker:
		t.Skip("run with -chaos.docker or -chaos.long (make chaos)")
	}
	testChaosDocker(t)
}

func testChaosDocker(t *testing.T) {
	if !process.DockerAvailable() {
		t.Skip("no Docker engine answers `docker info`: the container variant needs one (it pulls nothing; the image is FROM scratch)")
	}
	dir := harness.RunDir(t, *flagKeep)
	d, err := process.NewDocker(builds.Binary(t, true), dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close) // after the cluster's cleanup has removed the containers
	c := process.New(t, &builds, process.Options{Nodes: 3, Dir: dir, Docker: d})
	harness.MustRun(t, c, dir, harness.Config{Name: "docker: disconnect, pause, kill, 3 nodes, seed 1",
		Workload: workload("chaos/docker/", 1), Faults: harness.DockerFaults, Mixed: 2})
}
