package process

import (
	"testing"

	s3target "github.com/cairnkv/cairn/internal/backup/s3"
	"github.com/cairnkv/cairn/internal/backup/s3/s3test"
)

// TestBucketConformance runs the mirror bucket's checks (package s3test,
// the same ones the unit tests run on gofakes3) on a real S3 server:
// versitygw over a directory, with versioning and multipart uploads.
func TestBucketConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real S3 server")
	}
	bin := versitygw(t)
	const access, secret = "cairntestaccess", "cairn-test-secret"
	host, cli := startVersitygw(t, bin, access, secret, "unused")
	getenv := func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}[k]
	}
	s3test.Conformance(t, s3test.Server{
		Client: cli,
		Open: func(bucketPrefix string) (*s3target.Bucket, error) {
			return s3target.OpenBucket("s3://"+bucketPrefix+"?endpoint="+host+"&path_style=true&insecure=true", getenv)
		},
		Versioning: true,
		Multipart:  true,
	})
}
