package process

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// TestMirrorDisasterRecovery is the backup story on three release-build
// processes and a real S3 server (versitygw, with bucket versioning): a
// mirrored eventual files/ keyspace and a mirrored strong cfg/ keyspace,
// scheduled backups into the same bucket every second.
//
//  1. The S3 server stops answering (SIGSTOP) while clients write and
//     delete, and the strong leader is killed with kill -9 meanwhile; once
//     S3 answers again, the bucket holds exactly the keyspaces: nothing
//     acknowledged was lost.
//  2. A mistaken delete is undone from the bucket's versions with cairn
//     backup pull --undelete.
//  3. Two of three nodes are killed: the survivor serves cfg/ (policy
//     read_fallback: backup) and files/ (?fallback=backup) from the bucket,
//     marked as such.
//  4. The whole cluster is destroyed and a new one is restored from the
//     newest scheduled backup in the bucket: every key, revision, user and
//     policy back.
func TestMirrorDisasterRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := versitygw(t)
	const access, secret = "cairnmirroraccess", "cairn-mirror-secret-do-not-log"
	s3 := runVersitygw(t, bin, access, secret, "cairn")
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	query := "?endpoint=" + s3.host + "&path_style=true&insecure=true"
	mirrorURL := "s3://cairn/mirror" + query
	backups := "s3://cairn/backups" + query

	c := New(t, &builds, Options{Binary: builds.Binary(t, false), Nodes: 3,
		Args: append(append([]string{}, plainArgs...), "--backup-target", backups, "--backup-interval", "1s", "--backup-retain", "3")})
	url := func(i int) string { return c.Nodes[i].URL() }
	all := url(0) + "," + url(1) + "," + url(2)
	run := func(args ...string) string {
		t.Helper()
		out, code := cli(t, "", append([]string{"--endpoints", all}, args...)...)
		if code != 0 {
			t.Fatalf("cairn %s: exit %d: %s", strings.Join(args, " "), code, out)
		}
		return out
	}
	run("keyspace", "create", "files/", "--mode", "eventual", "--replicas", "3", "--write-quorum", "2", "--read-quorum", "2", "--backup", mirrorURL)
	run("keyspace", "create", "cfg/", "--backup", mirrorURL, "--read-fallback", "backup")
	if out, code := cli(t, "s3cret-ops\n", "--endpoints", all, "auth", "users", "set", "ops"); code != 0 {
		t.Fatalf("auth users set: exit %d: %s", code, out)
	}

	want := map[string]string{}
	put := func(k, v string) {
		t.Helper()
		// Retried through an election (the same value again is the same
		// end state).
		waitFor(t, 15*time.Second, "put "+k, func() bool {
			_, code := cli(t, "", "--endpoints", all, "put", k, v)
			return code == 0
		})
		want[k] = v
	}
	del := func(k string) {
		t.Helper()
		run("del", k)
		delete(want, k)
	}
	for i := range 20 {
		put(fmt.Sprintf("files/f%02d", i), fmt.Sprintf("file %d", i))
		put(fmt.Sprintf("cfg/c%02d", i), fmt.Sprintf("conf %d", i))
	}
	waitBucket(t, s3, want, 20*time.Second)

	// 1. S3 down while clients write, and the strong leader killed.
	s3.pause(t)
	for i := 20; i < 40; i++ {
		put(fmt.Sprintf("files/f%02d", i), fmt.Sprintf("file %d", i))
		put(fmt.Sprintf("cfg/c%02d", i), fmt.Sprintf("conf %d", i))
	}
	del("files/f03")
	del("cfg/c03")
	l := c.Leader()
	if l < 0 {
		t.Fatal("no leader")
	}
	if err := c.Kill(l); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitLeader(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 40; i < 50; i++ {
		put(fmt.Sprintf("cfg/c%02d", i), "after the kill")
		put(fmt.Sprintf("files/f%02d", i), "after the kill")
	}
	if err := c.Start(l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the outage outlasts the restart
	s3.resume(t)
	waitBucket(t, s3, want, 60*time.Second)
	out := run("status")
	if !strings.Contains(out, "mirror files/") {
		t.Fatalf("cairn status shows no mirror:\n%s", out)
	}

	// 2. A mistaken delete, undone from the bucket's versions. (By
	// --undelete, which goes by the versions' order: versitygw's POSIX
	// backend dates a noncurrent version by when it was replaced and a
	// delete marker by the object's creation, so --at, which goes by the
	// versions' times, is tested against gofakes3 in internal/cli.)
	run("del", "files/f07")
	waitBucket(t, s3, without(want, "files/f07"), 20*time.Second)
	t.Logf("backup pull --undelete:\n%s", run("backup", "pull", mirrorURL, "--prefix", "files/f07", "--undelete"))
	if got := strings.TrimSpace(run("get", "files/f07")); got != want["files/f07"] {
		t.Fatalf("files/f07 after backup pull --undelete: %q, want %q", got, want["files/f07"])
	}
	waitBucket(t, s3, want, 20*time.Second)

	// The newest scheduled backup holds every write above: one taken after
	// this strong write (eventual writes have no revision) has them all.
	put("cfg/marker", "last before the disaster")
	st := status(t, url(0))
	var newest string
	waitFor(t, 30*time.Second, "a scheduled backup at the last revision", func() bool {
		out, code := cli(t, "", "backup", "list", backups, "-o", "json")
		var l struct {
			Backups []struct {
				Name     string `json:"name"`
				Revision int64  `json:"revision"`
			} `json:"backups"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Backups) == 0 {
			return false
		}
		b := l.Backups[len(l.Backups)-1]
		newest = b.Name
		return b.Revision >= st.Revision
	})

	// 3. Quorum and replicas lost: the survivor reads from the bucket.
	survivor := (l + 1) % 3
	for i := range 3 {
		if i != survivor {
			if err := c.Kill(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, code := cli(t, "", "--endpoints", url(survivor), "get", "cfg/c10")
	if code != 0 || strings.TrimSpace(out) != want["cfg/c10"] {
		t.Fatalf("cfg/c10 without quorum (read_fallback: backup): exit %d %q", code, out)
	}
	out, code = cli(t, "", "--endpoints", url(survivor), "get", "files/f11", "--fallback", "backup", "-o", "json")
	var it struct{ Value, Source string }
	if code != 0 || json.Unmarshal([]byte(out), &it) != nil || it.Value != want["files/f11"] || it.Source != "backup" {
		t.Fatalf("files/f11 with --fallback backup and one replica of three: exit %d %s", code, out)
	}

	// 4. Every member lost: a new cluster from the newest backup.
	if err := c.Kill(survivor); err != nil {
		t.Fatal(err)
	}
	addrs, err := freeAddrs(9)
	if err != nil {
		t.Fatal(err)
	}
	spec := fmt.Sprintf("r1=%s,r2=%s,r3=%s", addrs[1], addrs[4], addrs[7])
	var urls []string
	for i := range 3 {
		dir := t.TempDir()
		name := fmt.Sprintf("r%d", i+1)
		if out, code := cli(t, "", "snapshot", "restore", "s3://cairn/backups/"+newest+query, "--data-dir", dir, "--name", name, "--initial-cluster", spec); code != 0 {
			t.Fatalf("restore %s: exit %d: %s", name, code, out)
		}
		startServe(t, name, dir, addrs[3*i], addrs[3*i+1], addrs[3*i+2], spec)
		urls = append(urls, "http://"+addrs[3*i])
	}
	rall := strings.Join(urls, ",")
	waitFor(t, 30*time.Second, "the restored cluster to serve", func() bool {
		_, code := cli(t, "", "--endpoints", rall, "get", "cfg/c00")
		return code == 0
	})
	for k, v := range want {
		out, code := cli(t, "", "--endpoints", urls[2], "get", k)
		if code != 0 || strings.TrimSpace(out) != v {
			t.Fatalf("restored %s: exit %d %q, want %q", k, code, out, v)
		}
	}
	if rst := status(t, urls[0]); rst.Revision < st.Revision || rst.ClusterID == st.ClusterID {
		t.Fatalf("restored revision %d (saved %d), cluster id %q (old %q)", rst.Revision, st.Revision, rst.ClusterID, st.ClusterID)
	}
	if out, _ := cli(t, "", "--endpoints", rall, "keyspace", "list"); !strings.Contains(out, "files/") || !strings.Contains(out, "s3://cairn/mirror") {
		t.Fatalf("restored keyspaces:\n%s", out)
	}
	if out, _ := cli(t, "", "--endpoints", rall, "auth", "users", "list"); !strings.Contains(out, "ops") {
		t.Fatalf("restored users:\n%s", out)
	}
	// The restored cluster mirrors on into the same bucket.
	if _, code := cli(t, "", "--endpoints", rall, "put", "files/new", "after the restore"); code != 0 {
		t.Fatal("put after the restore")
	}
	want["files/new"] = "after the restore"
	waitBucket(t, s3, want, 30*time.Second)
}

// clusterStatus is what the mirror test reads of cairn status.
type clusterStatus struct {
	Revision  int64  `json:"revision"`
	ClusterID string `json:"cluster_id"`
}

func status(t *testing.T, url string) clusterStatus {
	t.Helper()
	out, code := cli(t, "", "--endpoints", url, "status", "-o", "json")
	var st clusterStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("cairn status: exit %d: %s", code, out)
	}
	return st
}

// startServe runs cairn serve for a restored member until the test ends.
func startServe(t *testing.T, name, dir, client, peerAddr, resp, spec string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(builds.Binary(t, false), append([]string{"serve", "--name", name, "--data-dir", dir,
		"--listen-client", client, "--listen-peer", peerAddr, "--listen-resp", resp, "--initial-cluster", spec}, plainArgs...)...)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b)
		}
	})
}

func without(m map[string]string, k string) map[string]string {
	out := map[string]string{}
	for kk, v := range m {
		if kk != k {
			out[kk] = v
		}
	}
	return out
}

// waitBucket waits until the mirror/ prefix of the bucket holds exactly
// want (object names are the keys under the prefix).
func waitBucket(t *testing.T, s3 *versity, want map[string]string, d time.Duration) {
	t.Helper()
	var diff []string
	deadline := time.Now().Add(d)
	for {
		diff = diff[:0]
		got := map[string]string{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for o := range s3.cli.ListObjects(ctx, "cairn", minio.ListObjectsOptions{Prefix: "mirror/", Recursive: true}) {
			if o.Err != nil {
				diff = append(diff, "list: "+o.Err.Error())
				break
			}
			obj, err := s3.cli.GetObject(ctx, "cairn", o.Key, minio.GetObjectOptions{})
			if err != nil {
				diff = append(diff, "get: "+err.Error())
				continue
			}
			b, err := io.ReadAll(obj)
			obj.Close()
			if err != nil {
				diff = append(diff, "read: "+err.Error())
				continue
			}
			got[strings.TrimPrefix(o.Key, "mirror/")] = string(b)
		}
		cancel()
		for k, v := range want {
			if g, ok := got[k]; !ok {
				diff = append(diff, "missing "+k)
			} else if g != v {
				diff = append(diff, fmt.Sprintf("%s=%q want %q", k, g, v))
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				diff = append(diff, "extra "+k)
			}
		}
		if len(diff) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(diff)
			t.Fatalf("after %v the bucket differs from the keyspaces: %v", d, diff)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
