package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/snapfile"
	"github.com/cairnkv/cairn/internal/raftnode"
)

// fakeS3 is an in-process S3 server (gofakes3) over real HTTP on loopback,
// with the bucket made.
type fakeS3 struct {
	host string // host:port
	cli  *minio.Client
}

func mustFakeS3(t *testing.T, bucket string) fakeS3 {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tg, err := Open("s3://"+bucket+"?endpoint="+u.Host+"&path_style=true&insecure=true", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.client.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	return fakeS3{host: u.Host, cli: tg.client}
}

func (f fakeS3) url(bucketPrefix string) string {
	return "s3://" + bucketPrefix + "?endpoint=" + f.host + "&path_style=true&insecure=true"
}

// env is a getenv with test credentials plus extra.
func env(extra map[string]string) func(string) string {
	m := map[string]string{"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret"}
	for k, v := range extra {
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

func mustTarget(t *testing.T, raw string) *Target {
	t.Helper()
	tg, err := Open(raw, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// snapshotSaver writes a real (empty) snapshot file of the next revision.
func snapshotSaver(rev *int64) func(context.Context, io.Writer) (*snapfile.Info, error) {
	return func(_ context.Context, w io.Writer) (*snapfile.Info, error) {
		*rev++
		sw := snapfile.NewWriter(w)
		info := snapfile.Info{Format: 1, Revision: *rev, Applied: 10 + uint64(*rev), Node: "n1", Created: time.Now().UTC()}
		return &info, sw.Close(info)
	}
}

// The schedule stores its backups in the bucket prefix, keeps Retain of
// them, lists them with their sizes, and one restores from S3 into a new
// data directory.
func TestScheduleIntoS3(t *testing.T) {
	s3 := mustFakeS3(t, "backups")
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key-id") // for backup.ParseTarget and Fetch (os.Getenv)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	target, err := backup.ParseTarget(s3.url("backups/cluster-a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := target.(*Target); !ok {
		t.Fatalf("ParseTarget gave a %T", target)
	}
	// Something else in the bucket, beside and below the prefix, is not a backup.
	for _, key := range []string{"cluster-a/notes.txt", "cluster-a/old/" + backup.Name(time.Now(), 1), "cluster-b/" + backup.Name(time.Now(), 1)} {
		if _, err := s3.cli.PutObject(context.Background(), "backups", key, strings.NewReader("x"), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev := int64(0)
	s := &backup.Schedule{Target: target, Retain: 2, Log: slog.New(slog.DiscardHandler), Save: snapshotSaver(&rev)}
	var names []string
	for range 4 {
		name, err := s.Once(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	all, err := backup.ListBackups(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != names[2] || all[1].Name != names[3] || all[1].Revision != 4 {
		t.Fatalf("kept %+v of %v", all, names)
	}
	if _, err := s3.cli.StatObject(context.Background(), "backups", "cluster-a/"+names[3], minio.StatObjectOptions{}); err != nil {
		t.Fatalf("the backup is not at prefix/name: %v", err)
	}
	r, err := target.Open(context.Background(), all[1].Name)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(r)
	r.Close()
	if int64(len(data)) != all[1].Bytes || all[1].Bytes == 0 {
		t.Fatalf("listed %d bytes, read %d", all[1].Bytes, len(data))
	}
	if info, err := snapfile.Verify(bytes.NewReader(data)); err != nil || info.Revision != 4 {
		t.Fatalf("verify: %+v %v", info, err)
	}

	// Restore from s3://bucket/prefix/NAME?….
	members := []raftnode.Peer{{ID: "n1", Addr: "127.0.0.1:1"}}
	what := strings.Replace(s3.url("backups/cluster-a"), "?", "/"+all[1].Name+"?", 1)
	path, done, err := backup.Fetch(context.Background(), what)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "new1")
	info, err := backup.Restore(path, dataDir, members)
	done()
	if err != nil || info.Revision != 4 {
		t.Fatalf("restore: %+v %v", info, err)
	}
	if entries, err := os.ReadDir(dataDir); err != nil || len(entries) == 0 {
		t.Fatalf("restored data directory: %v %v", entries, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the downloaded copy was left: %v", err)
	}

	// A damaged object under a backup's name is refused whole; nothing is written.
	bad := backup.Name(time.Now(), 99)
	if _, err := s3.cli.PutObject(context.Background(), "backups", "cluster-a/"+bad, bytes.NewReader(data[:len(data)-3]), int64(len(data)-3), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	path, done, err = backup.Fetch(context.Background(), strings.Replace(s3.url("backups/cluster-a"), "?", "/"+bad+"?", 1))
	if err != nil {
		t.Fatal(err)
	}
	dataDir = filepath.Join(t.TempDir(), "new2")
	_, err = backup.Restore(path, dataDir, members)
	done()
	if !errors.Is(err, snapfile.ErrCorrupt) {
		t.Fatalf("a truncated backup: %v", err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused restore left %s: %v", dataDir, err)
	}
	// A missing one is fs.ErrNotExist.
	_, _, err = backup.Fetch(context.Background(), strings.Replace(s3.url("backups/cluster-a"), "?", "/"+backup.Name(time.Now(), 7)+"?", 1))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing backup: %v", err)
	}
}

// A target at the bucket's top keeps its backups there.
func TestBucketTop(t *testing.T) {
	s3 := mustFakeS3(t, "top")
	tg := mustTarget(t, s3.url("top"))
	name := backup.Name(time.Now(), 3)
	if err := tg.Put(context.Background(), name, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	objs, err := tg.List()
	if err != nil || len(objs) != 1 || objs[0] != (backup.Object{Name: name, Bytes: 3}) {
		t.Fatalf("list %+v %v", objs, err)
	}
	if err := tg.Delete(name); err != nil {
		t.Fatal(err)
	}
	if objs, err := tg.List(); err != nil || len(objs) != 0 {
		t.Fatalf("after delete %+v %v", objs, err)
	}
	// A backup beyond 16 MiB goes up in parts: gofakes3 stores the parts'
	// aws-chunked framing as data, so that is tested against versitygw
	// (test/process TestS3TargetLargeBackup).
}

// A failed upload stores nothing and says why; a cancelled one too.
func TestPutFails(t *testing.T) {
	s3 := mustFakeS3(t, "bkt")
	name := backup.Name(time.Now(), 1)
	f := filepath.Join(t.TempDir(), "snap")
	if err := os.WriteFile(f, []byte("a whole snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := mustTarget(t, s3.url("no-such-bucket/p"))
	file, _ := os.Open(f)
	defer file.Close()
	if err := missing.Put(context.Background(), name, file); err == nil || !strings.Contains(err.Error(), "bucket") {
		t.Fatalf("put into a missing bucket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tg := mustTarget(t, s3.url("bkt/p"))
	file.Seek(0, io.SeekStart)
	if err := tg.Put(ctx, name, file); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled put: %v", err)
	}
	if objs, err := tg.List(); err != nil || len(objs) != 0 {
		t.Fatalf("a failed put stored %+v %v", objs, err)
	}
	// The server gone: a clear error, after minio-go's few retries.
	down := mustTarget(t, "s3://bkt/p?endpoint=127.0.0.1:1&path_style=true&insecure=true")
	file.Seek(0, io.SeekStart)
	if err := down.Put(context.Background(), name, file); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("put to a server that is down: %v", err)
	}
}

// Bad URLs are refused with a reason, before any request.
func TestParseURL(t *testing.T) {
	good := map[string]Options{
		"s3://bucket":                    {Bucket: "bucket", Region: "us-east-1"},
		"s3://bucket/a/b/":               {Bucket: "bucket", Prefix: "a/b", Region: "us-east-1"},
		"s3://bucket/p?region=eu-west-3": {Bucket: "bucket", Prefix: "p", Region: "eu-west-3"},
		"s3://b-12/p?endpoint=127.0.0.1:9000&path_style=true&insecure=true&credentials_file=/etc/cairn/s3&profile=backup": {
			Bucket: "b-12", Prefix: "p", Endpoint: "127.0.0.1:9000", Region: "us-east-1", PathStyle: true, Insecure: true,
			CredentialsFile: "/etc/cairn/s3", Profile: "backup"},
	}
	for raw, want := range good {
		got, err := ParseURL(raw)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", raw, got, err, want)
			continue
		}
		if again, err := ParseURL(got.String()); err != nil || again != got || strings.Contains(got.String(), "%") {
			t.Errorf("%s: String() %q reads back as %+v %v", raw, got.String(), again, err)
		}
	}
	bad := map[string]string{
		"s3:///prefix":                         "no bucket",
		"s3://Bad_Bucket/p":                    "bucket",
		"s3://bkt/p?regoin=x":                  `unknown parameter "regoin"`,
		"s3://bkt/p?endpoint=http://h:1":       "without a scheme",
		"s3://bkt/p?path_style=yes":            "want true or false",
		"s3://bkt/p?insecure=true":             "needs an endpoint",
		"s3://bkt/p?credentials_file=rel/path": "absolute path",
		"s3://bkt/p?profile=x":                 "profile needs credentials_file",
		"s3://bkt/p?region=a&region=b":         "given 2 times",
		"s3://bkt/a//c":                        "empty path segment",
		"s3://AKIAXX:supersecret@bkt/p":        "do not go in the URL",
		"file:///x":                            "want s3://",
	}
	for raw, want := range bad {
		_, err := ParseURL(raw)
		if !errors.Is(err, errURL) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "supersecret") {
			t.Errorf("%s: the error shows the secret: %v", raw, err)
		}
	}
	// Through backup.ParseTarget, the same errors.
	if _, err := backup.ParseTarget("s3://bkt/p?regoin=x"); !errors.Is(err, errURL) {
		t.Errorf("ParseTarget: %v", err)
	}
}

// Credentials come from the environment or an AWS shared credentials
// file; without them the error says what to set, and never shows a secret.
func TestCredentials(t *testing.T) {
	none := func(string) string { return "" }
	if _, err := Open("s3://bkt/p", none); !errors.Is(err, errCredentials) || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("no credentials: %v", err)
	}
	onlySecret := func(k string) string { return map[string]string{"AWS_SECRET_ACCESS_KEY": "topsecret"}[k] }
	if _, err := Open("s3://bkt/p", onlySecret); !errors.Is(err, errCredentials) || strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "no access key id") {
		t.Fatalf("a secret without a key id: %v", err)
	}
	tg, err := Open("s3://bkt/p", env(map[string]string{"AWS_SESSION_TOKEN": "tok"}))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tg.client.GetCreds(); v.AccessKeyID != "test-key-id" || v.SecretAccessKey != "test-secret" || v.SessionToken != "tok" {
		t.Fatalf("credentials from the environment: %+v", v)
	}

	file := filepath.Join(t.TempDir(), "credentials")
	ini := `# cairn's backups
[default]
aws_access_key_id = AKIDEFAULT
aws_secret_access_key = defaultsecret

[profile backup]
AWS_ACCESS_KEY_ID=AKIBACKUP
aws_secret_access_key= backupsecret
aws_session_token = backuptoken
; the end
[half]
aws_secret_access_key = halfsecret
`
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	for profile, want := range map[string][3]string{"": {"AKIDEFAULT", "defaultsecret", ""}, "backup": {"AKIBACKUP", "backupsecret", "backuptoken"}} {
		raw := "s3://bkt/p?credentials_file=" + file
		if profile != "" {
			raw += "&profile=" + profile
		}
		tg, err := Open(raw, none) // the file wins; the environment is not read
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := tg.client.GetCreds(); v.AccessKeyID != want[0] || v.SecretAccessKey != want[1] || v.SessionToken != want[2] {
			t.Fatalf("profile %q: %+v", profile, v)
		}
	}
	for raw, want := range map[string]string{
		"s3://bkt/p?credentials_file=" + file + "&profile=half":   "no access key id",
		"s3://bkt/p?credentials_file=" + file + "&profile=nobody": "no [nobody] section",
		"s3://bkt/p?credentials_file=" + file + ".missing":        "no such file",
	} {
		_, err := Open(raw, env(nil))
		if !errors.Is(err, errCredentials) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "halfsecret") {
			t.Errorf("%s: %v, want %q", raw, err, want)
		}
	}
}
