package s3_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairnkv/cairn/internal/backup"
	"github.com/cairnkv/cairn/internal/backup/s3"
	"github.com/cairnkv/cairn/internal/backup/s3/s3test"
)

const testKeyID, testSecret = "test-key-id", "test-secret-do-not-show"

func getenv(k string) string {
	return map[string]string{"AWS_ACCESS_KEY_ID": testKeyID, "AWS_SECRET_ACCESS_KEY": testSecret}[k]
}

// mustGofakes3 serves gofakes3 (in memory, with versioning) over real
// HTTP on loopback, without buckets.
func mustGofakes3(t *testing.T) s3test.Server {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	cli, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(testKeyID, testSecret, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return s3test.Server{
		Client: cli,
		Open: func(bucketPrefix string) (*s3.Bucket, error) {
			return s3.OpenBucket("s3://"+bucketPrefix+"?endpoint="+u.Host+"&path_style=true&insecure=true", getenv)
		},
		Versioning:     true,
		MergesMetadata: true,
	}
}

// TestBucketConformance runs the mirror bucket's checks on gofakes3.
func TestBucketConformance(t *testing.T) {
	s3test.Conformance(t, mustGofakes3(t))
}

func mustOpenBucket(t *testing.T, raw string) *s3.Bucket {
	t.Helper()
	b, err := s3.OpenBucket(raw, getenv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CheckKey says why, without a server: the limit counts the prefix and
// its slash.
func TestBucketCheckKey(t *testing.T) {
	top := mustOpenBucket(t, "s3://bkt")
	deep := mustOpenBucket(t, "s3://bkt/"+strings.Repeat("p", 100)) // 101 bytes with the slash
	for _, c := range []struct {
		b    *s3.Bucket
		key  string
		want string // "" when fine
	}{
		{top, strings.Repeat("k", 1024), ""},
		{top, strings.Repeat("k", 1025), "is 1025 bytes: S3 object names are at most 1024"},
		{deep, strings.Repeat("k", 923), ""},
		{deep, strings.Repeat("k", 924), "is 924 bytes, 1025 with the prefix"},
		{deep, strings.Repeat("é", 2048), "is 4096 bytes, 4197 with the prefix"},
		{top, "", "the key is empty"},
		{top, "a\x00", `key "a\x00" has a NUL byte`},
		{top, "\xc3(", "is not valid UTF-8"},
		{top, " \t", "only white space"},
		{deep, " \t", ""},
		{top, "/leading/and/trailing/", ""},
		{deep, strings.Repeat("é", 500) + "\xff", `is not valid UTF-8`},
		{deep, "a" + strings.Repeat("é", 600), "is 1201 bytes, 1302 with the prefix"}, // cut short before a rune's second byte
	} {
		err := c.b.CheckKey(c.key)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s CheckKey(%.30q): %v", c.b, c.key, err)
		case c.want != "" && (!errors.Is(err, s3.ErrKey) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s CheckKey(%.30q): %v, want %q", c.b, c.key, err, c.want)
		case c.want != "" && len(c.key) > 64 && (!strings.Contains(err.Error(), fmt.Sprintf("… (%d bytes)", len(c.key))) || !utf8.ValidString(err.Error()) || strings.Contains(err.Error(), `\x`)):
			t.Errorf("%s CheckKey(%.30q): %v, want the key cut short at a rune", c.b, c.key, err)
		}
	}
}

// backup.ParseBucket opens s3:// URLs as an s3.Bucket, with the
// credentials of the environment, and shows no secret.
func TestParseBucket(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", testKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	raw := "s3://bkt/mirror/a?endpoint=127.0.0.1:9000&path_style=true&insecure=true"
	b, err := backup.ParseBucket(raw)
	if err != nil {
		t.Fatal(err)
	}
	sb, ok := b.(*s3.Bucket)
	if !ok {
		t.Fatalf("ParseBucket gave a %T", b)
	}
	if b.String() != raw || sb.Options().Prefix != "mirror/a" || strings.Contains(b.String(), testSecret) {
		t.Fatalf("String() %q, options %+v", b, sb.Options())
	}
	for raw, want := range map[string]string{
		"s3://bkt/p?regoin=x":                `unknown parameter "regoin"`,
		"s3://AKIA:" + testSecret + "@bkt/p": "do not go in the URL",
	} {
		if _, err := backup.ParseBucket(raw); err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), testSecret) {
			t.Errorf("ParseBucket(%s): %v, want %q", raw, err, want)
		}
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if _, err := backup.ParseBucket("s3://bkt/p"); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Errorf("no credentials: %v", err)
	}
}

// A bucket that is not there, or a server that is down, fails every call
// with a clear error (not fs.ErrNotExist, which would read as a missing
// key) that shows no secret.
func TestBucketUnreachable(t *testing.T) {
	srv := mustGofakes3(t)
	missing, err := srv.Open("no-such-bucket/p")
	if err != nil {
		t.Fatal(err)
	}
	down := mustOpenBucket(t, "s3://bkt/p?endpoint=127.0.0.1:1&path_style=true&insecure=true")
	ctx := context.Background()
	for _, c := range []struct {
		b    *s3.Bucket
		want string
	}{{missing, "bucket"}, {down, "connection refused"}} {
		for what, err := range map[string]error{
			"put":  c.b.PutObject(ctx, "k", []byte("v"), backup.ObjectMeta{}),
			"get":  func() error { _, _, err := c.b.GetObject(ctx, "k"); return err }(),
			"list": c.b.ListObjects(ctx, "", func(backup.ObjectInfo) error { return nil }),
		} {
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), c.want) || errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), testSecret) {
				t.Errorf("%s %s: %v, want %q", what, c.b, err, c.want)
			}
		}
	}
}
