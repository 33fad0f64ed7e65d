package validate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Manifests are the objects of deploy/k8s, by kind.
type Manifests struct {
	StatefulSets []*appsv1.StatefulSet
	Services     []*corev1.Service
	PDBs         []*policyv1.PodDisruptionBudget
}

// Load decodes every document of every .yaml file in dir strictly: a field
// the API type does not have, a duplicate field or a kind this package does
// not know is an error naming the file and the document.
func Load(dir string) (*Manifests, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("validate: no .yaml files in %s", dir)
	}
	m := &Manifests{}
	var errs []error
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for i, doc := range splitDocuments(raw) {
			if err := m.add(doc); err != nil {
				errs = append(errs, fmt.Errorf("%s, document %d: %w", filepath.Base(f), i+1, err))
			}
		}
	}
	return m, errors.Join(errs...)
}

// splitDocuments splits a YAML stream at its "---" lines, dropping empty
// documents (comments only).
func splitDocuments(raw []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		empty := true
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func (m *Manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	strict := func(v any) error { return yaml.UnmarshalStrict(doc, v) }
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		var s appsv1.StatefulSet
		if err := strict(&s); err != nil {
			return err
		}
		m.StatefulSets = append(m.StatefulSets, &s)
	case "v1 Service":
		var s corev1.Service
		if err := strict(&s); err != nil {
			return err
		}
		m.Services = append(m.Services, &s)
	case "policy/v1 PodDisruptionBudget":
		var p policyv1.PodDisruptionBudget
		if err := strict(&p); err != nil {
			return err
		}
		m.PDBs = append(m.PDBs, &p)
	default:
		return fmt.Errorf("validate: unexpected kind %q (apiVersion %q)", tm.Kind, tm.APIVersion)
	}
	return nil
}

// Cairn is what the checks know of cairn itself: its settings' environment
// variables and the HTTP paths it serves.
type Cairn struct {
	EnvVars map[string]bool // CAIRN_NAME, CAIRN_DATA_DIR, …
	Paths   map[string]bool // /readyz, /healthz, …
}

// ReadCairn takes the environment variables from docs/CONFIG.md's table of
// flags and the health paths from docs/API.md, so a manifest cannot set a
// variable cairn would silently ignore.
func ReadCairn(docs string) (*Cairn, error) {
	c := &Cairn{EnvVars: map[string]bool{}, Paths: map[string]bool{}}
	cfg, err := os.ReadFile(filepath.Join(docs, "CONFIG.md"))
	if err != nil {
		return nil, err
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `--[a-z-]+` \\| [^|]+ \\| `(CAIRN_[A-Z_]+)`").FindAllSubmatch(cfg, -1) {
		c.EnvVars[string(m[1])] = true
	}
	api, err := os.ReadFile(filepath.Join(docs, "API.md"))
	if err != nil {
		return nil, err
	}
	for _, m := range regexp.MustCompile("`GET (/[a-z]+)`").FindAllSubmatch(api, -1) {
		c.Paths[string(m[1])] = true
	}
	if len(c.EnvVars) < 10 || !c.EnvVars["CAIRN_INITIAL_CLUSTER"] {
		return nil, fmt.Errorf("validate: found only %d CAIRN_* variables in %s/CONFIG.md", len(c.EnvVars), docs)
	}
	return c, nil
}

// Check reports every broken invariant at once.
func (m *Manifests) Check(cairn *Cairn) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(m.StatefulSets) != 1 {
		bad("want one StatefulSet, found %d", len(m.StatefulSets))
		return errors.Join(errs...)
	}
	sts := m.StatefulSets[0]
	pod := sts.Spec.Template
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	if replicas < 3 || replicas%2 == 0 {
		bad("StatefulSet %s: replicas %d, want an odd number of voters, at least 3", sts.Name, replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		bad("StatefulSet %s: podManagementPolicy %q, want Parallel (a pod is ready only once a majority runs)", sts.Name, sts.Spec.PodManagementPolicy)
	}
	if sts.Spec.Selector == nil || !matches(sts.Spec.Selector.MatchLabels, pod.Labels) {
		bad("StatefulSet %s: the selector does not match the pod template's labels", sts.Name)
	}

	// The headless Service named by serviceName.
	var headless *corev1.Service
	for _, s := range m.Services {
		if s.Name == sts.Spec.ServiceName {
			headless = s
		}
	}
	switch {
	case headless == nil:
		bad("StatefulSet %s: serviceName %q is not a Service here", sts.Name, sts.Spec.ServiceName)
	case headless.Spec.ClusterIP != corev1.ClusterIPNone:
		bad("Service %s: clusterIP %q, want None (headless: one DNS name per pod)", headless.Name, headless.Spec.ClusterIP)
	case !headless.Spec.PublishNotReadyAddresses:
		bad("Service %s: publishNotReadyAddresses is false: the pods' names would not resolve before a leader is elected", headless.Name)
	}
	clients := 0
	for _, s := range m.Services {
		if !matches(s.Spec.Selector, pod.Labels) {
			bad("Service %s: its selector does not match the StatefulSet's pods", s.Name)
		}
		if s != headless {
			clients++
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "" && containerPort(pod.Spec.Containers, p.TargetPort.StrVal) == 0 {
				bad("Service %s: targetPort %q is no container port", s.Name, p.TargetPort.StrVal)
			}
		}
	}
	if clients != 1 {
		bad("want one client Service beside the headless one, found %d", clients)
	}
	if len(m.PDBs) != 1 {
		bad("want one PodDisruptionBudget, found %d", len(m.PDBs))
	} else if p := m.PDBs[0]; p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.MinAvailable != nil {
		bad("PodDisruptionBudget %s: want maxUnavailable 1 (and no minAvailable)", p.Name)
	} else if p.Spec.Selector == nil || !matches(p.Spec.Selector.MatchLabels, pod.Labels) {
		bad("PodDisruptionBudget %s: the selector does not match the StatefulSet's pods", p.Name)
	}

	if len(pod.Spec.Containers) != 1 {
		bad("StatefulSet %s: want one container, found %d", sts.Name, len(pod.Spec.Containers))
		return errors.Join(errs...)
	}
	c := pod.Spec.Containers[0]
	env := map[string]string{}
	defined := map[string]bool{}
	for _, e := range c.Env {
		// $(VAR) expands only to variables defined earlier in the list.
		for _, ref := range regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).FindAllStringSubmatch(e.Value, -1) {
			if !defined[ref[1]] {
				bad("env %s uses $(%s), which is not defined before it", e.Name, ref[1])
			}
		}
		defined[e.Name] = true
		env[e.Name] = e.Value
		if strings.HasPrefix(e.Name, "CAIRN_") && !cairn.EnvVars[e.Name] {
			bad("env %s is not a cairn setting (docs/CONFIG.md); cairn would ignore it", e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "fieldRef:metadata.name" || env["POD_NAMESPACE"] != "fieldRef:metadata.namespace" {
		bad("env POD_NAME and POD_NAMESPACE must come from the downward API (metadata.name, metadata.namespace)")
	}
	if env["CAIRN_NAME"] != "$(POD_NAME)" {
		bad("env CAIRN_NAME is %q, want $(POD_NAME): the member name is the pod name", env["CAIRN_NAME"])
	}
	peerPort := containerPort([]corev1.Container{c}, "peer")
	podHost := func(pod string) string {
		return fmt.Sprintf("%s.%s.$(POD_NAMESPACE).svc", pod, sts.Spec.ServiceName)
	}
	if want := fmt.Sprintf("%s:%d", podHost("$(POD_NAME)"), peerPort); env["CAIRN_ADVERTISE_PEER"] != want {
		bad("env CAIRN_ADVERTISE_PEER is %q, want %q", env["CAIRN_ADVERTISE_PEER"], want)
	}
	// The initial cluster: exactly the pods the StatefulSet makes, at their
	// headless-Service names and the peer port.
	var want []string
	for i := int32(0); i < replicas; i++ {
		name := fmt.Sprintf("%s-%d", sts.Name, i)
		want = append(want, fmt.Sprintf("%s=%s:%d", name, podHost(name), peerPort))
	}
	got := strings.Split(env["CAIRN_INITIAL_CLUSTER"], ",")
	sort.Strings(got)
	if !slices.Equal(got, want) {
		bad("env CAIRN_INITIAL_CLUSTER is %q, want the %d pods of the StatefulSet: %q", env["CAIRN_INITIAL_CLUSTER"], replicas, strings.Join(want, ","))
	}
	if env["CAIRN_JOIN"] != "" {
		bad("env CAIRN_JOIN is set: cairn refuses it beside a multi-member initial cluster")
	}

	// Probes: readiness on /readyz, liveness on /healthz, on the client
	// port, over HTTPS when the client port has TLS.
	scheme := corev1.URISchemeHTTP
	if env["CAIRN_CERT_FILE"] != "" {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			bad("%s: want an httpGet on %s", p.what, p.path)
		case p.probe.HTTPGet.Path != p.path || !cairn.Paths[p.path]:
			bad("%s: path %q, want %s (which docs/API.md lists: %v)", p.what, p.probe.HTTPGet.Path, p.path, cairn.Paths[p.path])
		case p.probe.HTTPGet.Port.String() != "client" && p.probe.HTTPGet.Port.IntValue() != containerPort([]corev1.Container{c}, "client"):
			bad("%s: port %s is not the client port", p.what, p.probe.HTTPGet.Port.String())
		case p.probe.HTTPGet.Scheme != scheme:
			bad("%s: scheme %q, want %q", p.what, p.probe.HTTPGet.Scheme, scheme)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		bad("container %s: want cpu and memory requests", c.Name)
	}

	// Non-root with a read-only root file system.
	psc, sc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		bad("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		bad("container securityContext: want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL")
	}

	// The data directory on the claim template; the TLS files in a mounted
	// Secret.
	mounts := map[string]string{} // mount path -> volume
	for _, vm := range c.VolumeMounts {
		mounts[vm.MountPath] = vm.Name
	}
	claim := false
	for _, t := range sts.Spec.VolumeClaimTemplates {
		claim = claim || mounts[env["CAIRN_DATA_DIR"]] == t.Name
	}
	if !claim {
		bad("env CAIRN_DATA_DIR %q is not the mount of a volumeClaimTemplate", env["CAIRN_DATA_DIR"])
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	tls := 0
	for name, file := range env {
		if !strings.HasPrefix(name, "CAIRN_") || !strings.HasSuffix(name, "_FILE") {
			continue
		}
		tls++
		dir, key := filepath.Dir(file), filepath.Base(file)
		v, ok := volumes[mounts[dir]]
		switch {
		case !ok || v.Secret == nil:
			bad("env %s=%s: %s is not the mount of a Secret volume", name, file, dir)
		case len(v.Secret.Items) > 0 && !slices.ContainsFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == key }):
			bad("env %s=%s: the Secret volume %s has no item %s", name, file, v.Name, key)
		}
	}
	if tls == 0 {
		bad("no CAIRN_*_FILE settings: the certificates should come from a Secret")
	}
	if env["CAIRN_PEER_CERT_FILE"] == "" || env["CAIRN_PEER_TRUSTED_CA_FILE"] == "" {
		bad("env CAIRN_PEER_CERT_FILE and CAIRN_PEER_TRUSTED_CA_FILE: want peer mutual TLS")
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem && mounts["/tmp"] == "" {
		bad("the root file system is read-only but /tmp is not a volume")
	}
	return errors.Join(errs...)
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func containerPort(cs []corev1.Container, name string) int {
	for _, c := range cs {
		for _, p := range c.Ports {
			if p.Name == name {
				return int(p.ContainerPort)
			}
		}
	}
	return 0
}
