package validate

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestManifests decodes deploy/k8s strictly and checks its invariants.
func TestManifests(t *testing.T) {
	m := mustLoad(t)
	cairn := mustCairn(t)
	if err := m.Check(cairn); err != nil {
		t.Fatal(err)
	}
	sts := m.StatefulSets[0]
	// YAML 1.1 reads 0440 as octal; a quoted or decimal slip would give
	// the key to everyone or to no one.
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o440) {
			t.Errorf("volume %s: defaultMode %v, want 0440", v.Name, v.Secret.DefaultMode)
		}
	}
	t.Logf("StatefulSet %s: %d replicas under Service %s; %d Services, %d PodDisruptionBudget",
		sts.Name, *sts.Spec.Replicas, sts.Spec.ServiceName, len(m.Services), len(m.PDBs))
}

// TestCheckCatches breaks one invariant at a time in the loaded manifests
// and expects Check to name it, so a passing TestManifests means something.
func TestCheckCatches(t *testing.T) {
	cairn := mustCairn(t)
	for _, tc := range []struct {
		name   string
		break_ func(m *Manifests)
		want   string
	}{
		{"even replicas", func(m *Manifests) { four := int32(4); m.StatefulSets[0].Spec.Replicas = &four }, "odd number"},
		{"initial cluster", func(m *Manifests) {
			setEnv(m, "CAIRN_INITIAL_CLUSTER", "cairn-0=cairn-0.cairn-peer.$(POD_NAMESPACE).svc:7701")
		}, "CAIRN_INITIAL_CLUSTER"},
		{"service name", func(m *Manifests) { m.StatefulSets[0].Spec.ServiceName = "cairn-headless" }, "not a Service"},
		{"ready addresses", func(m *Manifests) { m.Services[headless(m)].Spec.PublishNotReadyAddresses = false }, "publishNotReadyAddresses"},
		{"readiness path", func(m *Manifests) {
			m.StatefulSets[0].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/ready"
		}, "readinessProbe"},
		{"unknown setting", func(m *Manifests) { setEnv(m, "CAIRN_LISTEN_CLIENTS", "x") }, "not a cairn setting"},
		{"name", func(m *Manifests) { setEnv(m, "CAIRN_NAME", "cairn") }, "CAIRN_NAME"},
		{"pdb", func(m *Manifests) { two := intstr.FromInt32(2); m.PDBs[0].Spec.MaxUnavailable = &two }, "maxUnavailable 1"},
		{"secret", func(m *Manifests) { setEnv(m, "CAIRN_PEER_KEY_FILE", "/etc/cairn/node.key") }, "Secret volume"},
		{"root", func(m *Manifests) {
			m.StatefulSets[0].Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = nil
		}, "readOnlyRootFilesystem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mustLoad(t)
			tc.break_(m)
			err := m.Check(cairn)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestStrictDecoding: a misspelled field is an error, as kubectl apply
// --validate=strict makes it.
func TestStrictDecoding(t *testing.T) {
	m := &Manifests{}
	err := m.add([]byte("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  maxUnavailabel: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "maxUnavailabel") {
		t.Fatalf("add: %v, want an unknown-field error", err)
	}
	if err := m.add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")); err == nil {
		t.Fatal("add accepted a kind it does not check")
	}
}

func mustLoad(t *testing.T) *Manifests {
	t.Helper()
	m, err := Load("..")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustCairn(t *testing.T) *Cairn {
	t.Helper()
	c, err := ReadCairn("../../../docs")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setEnv(m *Manifests, name, value string) {
	c := &m.StatefulSets[0].Spec.Template.Spec.Containers[0]
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i].Value = value
			return
		}
	}
	c.Env = append(c.Env, c.Env[0])
	c.Env[len(c.Env)-1].Name, c.Env[len(c.Env)-1].Value, c.Env[len(c.Env)-1].ValueFrom = name, value, nil
}

func headless(m *Manifests) int {
	for i, s := range m.Services {
		if s.Name == m.StatefulSets[0].Spec.ServiceName {
			return i
		}
	}
	return -1
}
