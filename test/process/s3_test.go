package process

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnkv/cairn/internal/backup"
	s3target "github.com/cairnkv/cairn/internal/backup/s3"
)

// versitygw finds the versitygw binary (an S3 server over a local
// directory): $CAIRN_VERSITYGW, or .tools/bin/versitygw of the checkout,
// which `make s3-tools` builds. The test skips without it.
func versitygw(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CAIRN_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CAIRN_VERSITYGW: %v", err)
		}
		return p
	}
	p, err := filepath.Abs("../../.tools/bin/versitygw")
	if err == nil {
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("versitygw is not built: run make s3-tools (or set CAIRN_VERSITYGW) to test s3:// backups against a real S3 server")
	return ""
}

// startVersitygw serves S3 on a loopback port over a directory, with bucket
// versioning, and makes bucket with versioning on; it returns host:port
// and a client.
func startVersitygw(t *testing.T, bin, access, secret, bucket string) (string, *minio.Client) {
	t.Helper()
	v := runVersitygw(t, bin, access, secret, bucket)
	return v.host, v.cli
}

// versity is a running versitygw process.
type versity struct {
	host string
	cli  *minio.Client
	cmd  *exec.Cmd
}

// pause stops the S3 server answering (SIGSTOP: connections hang, as to
// a server that is down behind a load balancer); resume lets it go on.
func (v *versity) pause(t *testing.T) {
	t.Helper()
	if err := v.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

func (v *versity) resume(t *testing.T) {
	t.Helper()
	if err := v.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// runVersitygw is startVersitygw, with the process.
func runVersitygw(t *testing.T, bin, access, secret, bucket string) *versity {
	t.Helper()
	addrs, err := freeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "versions"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--access", access, "--secret", secret, "--port", addrs[0], "--quiet",
		"posix", "--versioning-dir", filepath.Join(dir, "versions"), filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("versitygw log:\n%s", b)
		}
	})
	cli, err := minio.New(addrs[0], &minio.Options{Creds: credentials.NewStaticV4(access, secret, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "versitygw to answer", func() bool {
		c, err := net.DialTimeout("tcp", addrs[0], time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	ctx := context.Background()
	if err := cli.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cli.EnableVersioning(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	return &versity{host: addrs[0], cli: cli, cmd: cmd}
}

// TestScheduledBackupsToS3 runs a one-node cluster of the release build
// whose leader takes scheduled backups into a real S3 server (versitygw,
// a process on loopback, with bucket versioning), credentials from an AWS
// credentials file; lists and verifies them with cairn backup list;
// checks one with cairn snapshot status and restores it, from S3, into a
// new member that starts with the data.
func TestScheduledBackupsToS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := versitygw(t)
	const access, secret = "cairntestaccess", "cairn-test-secret-do-not-log"
	host, s3 := startVersitygw(t, bin, access, secret, "cairn-backups")
	creds := filepath.Join(t.TempDir(), "credentials")
	writeFile(t, creds, "[default]\naws_access_key_id = "+access+"\naws_secret_access_key = "+secret+"\n")
	query := "?endpoint=" + host + "&path_style=true&insecure=true&credentials_file=" + creds
	target := "s3://cairn-backups/prod/cluster-a" + query
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		t.Setenv(k, "") // the file is the only source
	}

	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 1,
		Args: append(append([]string{}, plainArgs...), "--backup-target", target, "--backup-interval", "1s", "--backup-retain", "2")})
	url := c.Nodes[0].URL()
	for i := range 20 {
		if _, code := cli(t, "", "--endpoints", url, "put", fmt.Sprintf("app/k%02d", i), fmt.Sprintf("v%d", i)); code != 0 {
			t.Fatalf("put exit %d", code)
		}
	}
	out, code := cli(t, "", "--endpoints", url, "get", "app/k19", "-o", "json")
	if code != 0 {
		t.Fatalf("get: exit %d", code)
	}
	var kv struct {
		ModRevision int64 `json:"mod_revision"`
	}
	if err := json.Unmarshal([]byte(out), &kv); err != nil || kv.ModRevision == 0 {
		t.Fatalf("get -o json: %s %v", out, err)
	}

	type listing struct {
		Backups []struct {
			Name     string `json:"name"`
			Revision int64  `json:"revision"`
			Bytes    int64  `json:"bytes"`
			SHA256   string `json:"sha256"`
			Error    string `json:"error"`
		} `json:"backups"`
	}
	var l listing
	waitFor(t, 30*time.Second, "two backups holding the last write", func() bool {
		out, code := cli(t, "", "backup", "list", target, "-o", "json")
		l = listing{}
		return code == 0 && json.Unmarshal([]byte(out), &l) == nil && len(l.Backups) == 2 && l.Backups[0].Revision >= kv.ModRevision
	})
	// Retention holds over the next backups.
	time.Sleep(2500 * time.Millisecond)
	out, code = cli(t, "", "backup", "list", target, "--verify", "-o", "json")
	l = listing{}
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Backups) != 2 {
		t.Fatalf("backup list --verify: exit %d: %s", code, out)
	}
	for _, b := range l.Backups {
		if b.Error != "" || b.SHA256 == "" || b.Bytes == 0 {
			t.Fatalf("backup %+v", b)
		}
	}
	if out, code := cli(t, "", "backup", "list", target, "--verify"); code != 0 || strings.Count(out, "ok sha256") != 2 {
		t.Fatalf("backup list --verify: exit %d:\n%s", code, out)
	}
	// With bucket versioning the backups retention removed are still there
	// as noncurrent versions (what a bucket lifecycle rule then expires).
	versions := 0
	for o := range s3.ListObjects(context.Background(), "cairn-backups", minio.ListObjectsOptions{Prefix: "prod/cluster-a/", WithVersions: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if !o.IsDeleteMarker {
			versions++
		}
	}
	if versions <= 2 {
		t.Fatalf("%d versions under the prefix: the removed backups are not kept as versions", versions)
	}
	newest := "s3://cairn-backups/prod/cluster-a/" + l.Backups[1].Name + query
	if out, code := cli(t, "", "snapshot", "status", newest); code != 0 || !strings.Contains(out, "a complete cairn snapshot") {
		t.Fatalf("snapshot status: exit %d:\n%s", code, out)
	}

	// Restore the newest into a new one-member cluster and start it.
	addrs, err := freeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "r1")
	spec := "r1=" + addrs[1]
	if out, code := cli(t, "", "snapshot", "restore", newest, "--data-dir", dataDir, "--name", "r1", "--initial-cluster", spec); code != 0 {
		t.Fatalf("snapshot restore from s3: exit %d:\n%s", code, out)
	}
	logPath := filepath.Join(t.TempDir(), "r1.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(builds.Binary(t, false), append([]string{"serve", "--name", "r1", "--data-dir", dataDir,
		"--listen-client", addrs[0], "--listen-peer", addrs[1], "--listen-resp", addrs[2], "--initial-cluster", spec}, plainArgs...)...)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		logf.Close()
	})
	r1 := "http://" + addrs[0]
	waitFor(t, 20*time.Second, "the restored member to serve", func() bool {
		resp, err := http.Get(r1 + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	var got string
	waitFor(t, 20*time.Second, "the restored member to read app/k19", func() bool {
		out, code := cli(t, "", "--endpoints", r1, "get", "app/k19")
		got = strings.TrimSpace(out)
		return code == 0
	})
	if got != "v19" {
		t.Fatalf("restored app/k19 = %q", got)
	}

	// The secret is in no log.
	for _, p := range []string{c.Nodes[0].LogPath, logPath} {
		b, _ := os.ReadFile(p)
		if strings.Contains(string(b), secret) {
			t.Fatalf("%s shows the secret key", p)
		}
		if p == c.Nodes[0].LogPath && !strings.Contains(string(b), "backup taken") {
			t.Fatalf("%s has no backup taken", p)
		}
	}
}

// TestS3TargetLargeBackup puts a backup larger than one part (16 MiB) into
// versitygw through the s3 target: it goes up as a multipart upload, lists
// with its size and reads back byte for byte (gofakes3, of the unit tests,
// cannot take multipart uploads from minio-go over plain HTTP).
func TestS3TargetLargeBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real S3 server")
	}
	bin := versitygw(t)
	host, _ := startVersitygw(t, bin, "cairntestaccess", "cairn-test-secret", "large")
	tg, err := s3target.Open("s3://large/p?endpoint="+host+"&path_style=true&insecure=true", func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": "cairntestaccess", "AWS_SECRET_ACCESS_KEY": "cairn-test-secret"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 33<<20+5) // three parts
	for i := range big {
		big[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := backup.Name(time.Now(), 42)
	if err := tg.Put(context.Background(), name, f); err != nil {
		t.Fatal(err)
	}
	objs, err := tg.List()
	if err != nil || len(objs) != 1 || objs[0].Name != name || objs[0].Bytes != int64(len(big)) {
		t.Fatalf("list %+v %v", objs, err)
	}
	r, err := tg.Open(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes of %d: %v", len(got), len(big), err)
	}
	if err := tg.Delete(name); err != nil {
		t.Fatal(err)
	}
	if objs, err := tg.List(); err != nil || len(objs) != 0 {
		t.Fatalf("after delete %+v %v", objs, err)
	}
}
