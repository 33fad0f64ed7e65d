package deploy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// k8sLabel marks the containers, volumes and network of TestKubernetesFlow
// with the pid of the test process, so a later run can remove what a killed
// run left.
const k8sLabel = "cairn-k8sflow-pid"

// TestKubernetesFlow runs deploy/k8s/statefulset.yaml's container settings
// for real, without Kubernetes: each "pod" is a container of the scratch
// image with the StatefulSet's environment (POD_NAME and POD_NAMESPACE
// filled in as the downward API would, $(VAR) expanded), the TLS files of a
// Secret mounted at the same place, a read-only root file system, and the
// pod's DNS name under the headless Service as a network alias. It then
// follows docs/DEPLOY.md: bootstrap 3, switch to join mode (a member
// restarted with CAIRN_JOIN keeps its data and ignores it), scale up to 5
// through the client Service's name, and scale down by removing the members
// before deleting them.
func TestKubernetesFlow(t *testing.T) {
	if !*dockerFlag {
		t.Skip("skipped without -docker: it builds an image and runs 5 containers (make docker-test)")
	}
	if _, err := output(20*time.Second, "docker", "info"); err != nil {
		t.Skipf("skipped: no Docker engine answers (docker info: %v)", err)
	}
	removeK8sLeftovers(t)
	env := statefulSetEnv(t)
	pid := strconv.Itoa(os.Getpid())
	label := k8sLabel + "=" + pid
	image := buildImage(t, "cairn-k8sflow-test:"+pid)
	network := "cairn-k8sflow-" + pid
	mustDocker(t, "network", "create", "--label", label, network)
	t.Cleanup(func() { _, _ = output(time.Minute, "docker", "network", "rm", network) })
	tlsDir := writeTLS(t, []string{"*.cairn-peer.default.svc", "cairn.default.svc", "cairn", "localhost"})
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	urls := map[string]string{}
	start := func(pod string, join bool) {
		t.Helper()
		name := network + "-" + pod
		_, _ = output(time.Minute, "docker", "rm", "-f", name)
		port := freePorts(t, 1)[0]
		args := []string{"run", "-d", "--name", name, "--label", label, "--network", network,
			"--network-alias", pod + ".cairn-peer.default.svc", "-p", fmt.Sprintf("127.0.0.1:%d:7700", port),
			"-v", network + "-" + pod + ":/var/lib/cairn", "-v", tlsDir + ":/etc/cairn/tls:ro",
			"--read-only", "--tmpfs", "/tmp", "--user", "65532:65532"}
		if !join {
			// The client Service: ready members of the initial cluster
			// (Docker's alias has no readiness, so joiners stay out of it).
			args = append(args, "--network-alias", "cairn.default.svc")
		}
		for _, kv := range podEnv(env, pod, join) {
			args = append(args, "-e", kv)
		}
		mustDocker(t, append(args, image, "serve")...)
		urls[pod] = fmt.Sprintf("https://localhost:%d", port)
	}
	t.Cleanup(func() {
		for pod := range urls {
			name := network + "-" + pod
			if t.Failed() {
				out, _ := output(time.Minute, "docker", "logs", "--tail", "30", name)
				t.Logf("%s:\n%s", name, out)
			}
			_, _ = output(time.Minute, "docker", "rm", "-f", name)
			_, _ = output(time.Minute, "docker", "volume", "rm", network+"-"+pod)
		}
	})

	for i := 0; i < 3; i++ {
		start(fmt.Sprintf("cairn-%d", i), false)
	}
	for i := 0; i < 3; i++ {
		waitReady(t, client, urls[fmt.Sprintf("cairn-%d", i)], 90*time.Second)
	}
	put(t, client, urls["cairn-0"], "k8s/a", "bootstrapped")
	t.Logf("cairn-0..2 bootstrapped from CAIRN_INITIAL_CLUSTER over peer mTLS")

	// Join mode: a member with data restarted with CAIRN_JOIN instead of
	// CAIRN_INITIAL_CLUSTER keeps its data and its place.
	start("cairn-2", true)
	waitReady(t, client, urls["cairn-2"], 60*time.Second)
	if got := get(t, client, urls["cairn-2"], "k8s/a"); got != "bootstrapped" {
		t.Fatalf("cairn-2 after the restart in join mode: %q", got)
	}
	// Scale up: new pods join through the client Service's name.
	start("cairn-3", true)
	start("cairn-4", true)
	waitReady(t, client, urls["cairn-3"], 90*time.Second)
	waitReady(t, client, urls["cairn-4"], 90*time.Second)
	if got := members(t, client, urls["cairn-0"]); len(got) != 5 {
		t.Fatalf("after the scale-up: members %v, want 5", got)
	}
	if got := get(t, client, urls["cairn-4"], "k8s/a"); got != "bootstrapped" {
		t.Fatalf("cairn-4 reads %q", got)
	}
	t.Logf("cairn-3 and cairn-4 joined through https://cairn.default.svc:7700: %v", members(t, client, urls["cairn-0"]))

	// Scale down: remove the highest ordinals first, then delete them.
	for _, pod := range []string{"cairn-4", "cairn-3"} {
		req, _ := http.NewRequest(http.MethodDelete, urls["cairn-0"]+"/v1/cluster/members/"+pod, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("remove %s: %v", pod, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("remove %s: %s", pod, resp.Status)
		}
		// A removed member exits by itself (code 6), which is what the
		// scale-down leans on: it stops serving before its pod is deleted.
		if code := waitExit(t, network+"-"+pod, 30*time.Second); code != 6 {
			t.Errorf("removed %s exited with code %d, want 6", pod, code)
		}
		mustDocker(t, "rm", "-f", network+"-"+pod)
	}
	if got := members(t, client, urls["cairn-0"]); len(got) != 3 {
		t.Fatalf("after the scale-down: members %v, want 3", got)
	}
	put(t, client, urls["cairn-1"], "k8s/b", "after the scale-down")
	if got := get(t, client, urls["cairn-2"], "k8s/b"); got != "after the scale-down" {
		t.Fatalf("cairn-2 reads %q", got)
	}
	t.Logf("removed cairn-4 and cairn-3 (each exited with code 6), then deleted them; the 3 members serve")
}

// statefulSetEnv reads the cairn container's env list from the manifest.
func statefulSetEnv(t *testing.T) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile("k8s/statefulset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sts struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []map[string]any `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &sts); err != nil || len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("k8s/statefulset.yaml: %v", err)
	}
	return sts.Spec.Template.Spec.Containers[0].Env
}

// podEnv is what the kubelet would give pod in namespace default: the
// downward API's fields, then each value with $(VAR) expanded. join applies
// docs/DEPLOY.md's switch: no CAIRN_INITIAL_CLUSTER, CAIRN_JOIN set.
func podEnv(env []map[string]any, pod string, join bool) []string {
	vars := map[string]string{}
	var out []string
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	add := func(name, value string) {
		value = ref.ReplaceAllStringFunc(value, func(m string) string { return vars[m[2:len(m)-1]] })
		vars[name] = value
		out = append(out, name+"="+value)
	}
	for _, e := range env {
		name, _ := e["name"].(string)
		value, _ := e["value"].(string)
		if from, ok := e["valueFrom"].(map[string]any); ok {
			switch from["fieldRef"].(map[string]any)["fieldPath"] {
			case "metadata.name":
				value = pod
			case "metadata.namespace":
				value = "default"
			}
		}
		if join && name == "CAIRN_INITIAL_CLUSTER" {
			continue
		}
		add(name, value)
	}
	if join {
		add("CAIRN_JOIN", "https://cairn.$(POD_NAMESPACE).svc:7700")
	}
	return out
}

// buildImage builds deploy/Dockerfile.scratch as make image does, under tag.
func buildImage(t *testing.T, tag string) string {
	t.Helper()
	ctxDir := t.TempDir()
	for _, d := range []string{"data", "tmp"} {
		if err := os.Mkdir(filepath.Join(ctxDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(ctxDir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := run(t, 3*time.Minute, []string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(ctxDir, "cairn"), "github.com/cairnkv/cairn/cmd/cairn"); err != nil {
		t.Fatal(err)
	}
	if _, err := output(3*time.Minute, "docker", "build", "-q", "--label", k8sLabel+"="+strconv.Itoa(os.Getpid()), "-f", "Dockerfile.scratch", "-t", tag, ctxDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = output(time.Minute, "docker", "rmi", "-f", tag) })
	return tag
}

// writeTLS writes ca.crt, tls.crt and tls.key (the cairn-tls Secret's
// keys) into a directory the container's user can read.
func writeTLS(t *testing.T, names []string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cairn test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cairn"}, DNSNames: names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for name, block := range map[string]*pem.Block{
		"ca.crt": {Type: "CERTIFICATE", Bytes: caDER}, "tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		// 0644: the test's throwaway key; the StatefulSet mounts 0440 for group 65532.
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func waitReady(t *testing.T, c *http.Client, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s: %s", url, within, last)
}

func put(t *testing.T, c *http.Client, url, key, value string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url+"/v1/kv/"+key, strings.NewReader(value))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s %s", key, resp.Status, b)
	}
}

func get(t *testing.T, c *http.Client, url, key string) string {
	t.Helper()
	resp, err := c.Get(url + "/v1/kv/" + key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", key, resp.Status, b)
	}
	return string(b)
}

func members(t *testing.T, c *http.Client, url string) []string {
	t.Helper()
	resp, err := c.Get(url + "/v1/cluster/members")
	if err != nil {
		t.Fatalf("members: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Members []struct {
			Name  string `json:"name"`
			Voter bool   `json:"voter"`
		} `json:"members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("members: %v", err)
	}
	var names []string
	for _, m := range body.Members {
		names = append(names, fmt.Sprintf("%s(voter=%v)", m.Name, m.Voter))
	}
	return names
}

// waitExit waits for a container to stop by itself and returns its exit
// code (-1 if it still runs after within).
func waitExit(t *testing.T, name string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		out, err := output(20*time.Second, "docker", "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name)
		if f := strings.Fields(out); err == nil && len(f) == 2 && f[0] == "false" {
			code, _ := strconv.Atoi(f[1])
			return code
		}
		time.Sleep(300 * time.Millisecond)
	}
	return -1
}

func mustDocker(t *testing.T, args ...string) {
	t.Helper()
	if _, err := output(2*time.Minute, "docker", args...); err != nil {
		t.Fatal(err)
	}
}

// removeK8sLeftovers removes what runs of dead test processes left.
func removeK8sLeftovers(t *testing.T) {
	dead := func(s string) bool {
		pid, err := strconv.Atoi(strings.TrimSpace(s))
		return err == nil && pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	for _, kind := range [][]string{{"ps", "-a"}, {"volume", "ls"}, {"network", "ls"}} {
		format := `{{.Label "` + k8sLabel + `"}} {{.ID}}`
		if kind[0] == "volume" {
			format = `{{.Label "` + k8sLabel + `"}} {{.Name}}`
		}
		out, err := output(20*time.Second, "docker", append(kind, "--filter", "label="+k8sLabel, "--format", format)...)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 && dead(f[0]) {
				rm := map[string][]string{"ps": {"rm", "-f"}, "volume": {"volume", "rm", "-f"}, "network": {"network", "rm"}}[kind[0]]
				_, _ = output(time.Minute, "docker", append(rm, f[1])...)
				t.Logf("removed %s %s left by test process %s", kind[0], f[1], f[0])
			}
		}
	}
}
