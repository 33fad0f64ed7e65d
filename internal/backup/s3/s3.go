// Package s3 keeps scheduled backups in an S3 bucket: package backup's
// Target for s3://bucket/prefix URLs, on AWS or any S3-compatible server
// (MinIO, versitygw, Ceph RGW…), through the minio-go client. Importing it
// registers the scheme with backup.ParseTarget; internal/cli does, so the
// cairn binary takes s3:// targets wherever it takes file:// ones.
package s3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/cairnkv/cairn/internal/backup"
)

var (
	errURL         = errors.New("s3: bad target URL")
	errCredentials = errors.New("s3: no credentials")
)

// A failed request is retried by minio-go, with jittered exponential
// backoff, this many times in all (a Put can be retried: Schedule hands
// it a file); past that the scheduler tries again the next interval.
const maxRetries = 4

// opTimeout bounds a List, Delete or Open's first answer (minio-go sets
// no timeout of its own); Put is bounded by its ctx.
const opTimeout = 2 * time.Minute

var _ backup.Target = (*Target)(nil)

func init() {
	backup.RegisterScheme("s3", func(raw string) (backup.Target, error) { return Open(raw, os.Getenv) })
	backup.RegisterBucketScheme("s3", func(raw string) (backup.Bucket, error) { return OpenBucket(raw, os.Getenv) })
}

// Options are what an s3:// URL says.
type Options struct {
	Bucket string
	// Prefix is the "directory" of the backups in the bucket, without
	// slashes at either end; "" is the bucket's top.
	Prefix string
	// Endpoint is host:port; "" is AWS (s3.amazonaws.com, by region).
	Endpoint string
	Region   string
	// PathStyle addresses the bucket as endpoint/bucket instead of
	// bucket.endpoint (what most self-hosted servers need).
	PathStyle bool
	// Insecure is plain HTTP, for a server on loopback.
	Insecure bool
	// CredentialsFile is an AWS shared credentials file; Profile its
	// section.
	CredentialsFile, Profile string
}

// ParseURL reads s3://bucket/prefix?endpoint=host:port&region=…&path_style=true&insecure=true&credentials_file=/path&profile=name.
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Options{}, fmt.Errorf("%w: %w", errURL, err)
	}
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w %q: "+format, append([]any{errURL, u.Redacted()}, args...)...)
	}
	if u.Scheme != "s3" {
		return bad("want s3://bucket/prefix")
	}
	if u.User != nil {
		return bad("credentials do not go in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or credentials_file=")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return bad("want s3://bucket/prefix")
	}
	o := Options{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/"), Region: "us-east-1"}
	if o.Bucket == "" {
		return bad("no bucket: want s3://bucket/prefix")
	}
	if err := s3utils.CheckValidBucketNameStrict(o.Bucket); err != nil {
		return bad("bucket %q: %v", o.Bucket, err)
	}
	if strings.Contains(o.Prefix, "//") {
		return bad("prefix %q has an empty path segment", o.Prefix)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("%v", err)
	}
	flag := func(k string) (bool, error) {
		v := q.Get(k)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%s=%q: want true or false", k, v)
		}
		return b, nil
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return bad("%s given %d times", k, len(vs))
		}
		switch k {
		case "endpoint":
			o.Endpoint = vs[0]
			if strings.Contains(o.Endpoint, "/") {
				return bad("endpoint %q: want host:port, without a scheme (insecure=true for plain HTTP)", o.Endpoint)
			}
		case "region":
			if o.Region = vs[0]; o.Region == "" {
				return bad("region is empty")
			}
		case "path_style":
			if o.PathStyle, err = flag(k); err != nil {
				return bad("%v", err)
			}
		case "insecure":
			if o.Insecure, err = flag(k); err != nil {
				return bad("%v", err)
			}
		case "credentials_file":
			if o.CredentialsFile = vs[0]; !path.IsAbs(o.CredentialsFile) {
				return bad("credentials_file %q: want an absolute path", o.CredentialsFile)
			}
		case "profile":
			o.Profile = vs[0]
		default:
			return bad("unknown parameter %q (endpoint, region, path_style, insecure, credentials_file, profile)", k)
		}
	}
	if o.Insecure && o.Endpoint == "" {
		return bad("insecure=true (plain HTTP) needs an endpoint=host:port")
	}
	if o.Profile != "" && o.CredentialsFile == "" {
		return bad("profile needs credentials_file")
	}
	return o, nil
}

// String is the URL the options came from, parameters in a fixed order.
func (o Options) String() string {
	var q []string
	add := func(k, v string) {
		v = strings.NewReplacer("%2F", "/", "%3A", ":").Replace(url.QueryEscape(v))
		q = append(q, k+"="+v)
	}
	if o.Endpoint != "" {
		add("endpoint", o.Endpoint)
	}
	if o.Region != "us-east-1" {
		add("region", o.Region)
	}
	if o.PathStyle {
		add("path_style", "true")
	}
	if o.Insecure {
		add("insecure", "true")
	}
	if o.CredentialsFile != "" {
		add("credentials_file", o.CredentialsFile)
	}
	if o.Profile != "" {
		add("profile", o.Profile)
	}
	s := "s3://" + o.Bucket
	if o.Prefix != "" {
		s += "/" + (&url.URL{Path: o.Prefix}).EscapedPath()
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// Target is a bucket prefix of backups.
type Target struct {
	opts   Options
	client *minio.Client
}

// Open parses raw and makes its client, with the credentials from
// credentials_file or else from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN as getenv has them. It does not reach the server.
func Open(raw string, getenv func(string) string) (*Target, error) {
	o, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	return New(o, getenv)
}

// New makes the client of o (see Open).
func New(o Options, getenv func(string) string) (*Target, error) {
	creds, err := loadCredentials(o, getenv)
	if err != nil {
		return nil, err
	}
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	lookup := minio.BucketLookupDNS
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(endpoint, &minio.Options{Creds: creds, Secure: !o.Insecure, Region: o.Region,
		BucketLookup: lookup, MaxRetries: maxRetries})
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", errURL, o.String(), err)
	}
	return &Target{opts: o, client: c}, nil
}

func loadCredentials(o Options, getenv func(string) string) (*credentials.Credentials, error) {
	var id, secret, token, from string
	if o.CredentialsFile != "" {
		profile := o.Profile
		if profile == "" {
			profile = "default"
		}
		from = fmt.Sprintf("[%s] of %s", profile, o.CredentialsFile)
		keys, err := readProfile(o.CredentialsFile, profile)
		if err != nil {
			return nil, fmt.Errorf("%w for %s: %w", errCredentials, o, err)
		}
		id, secret, token = keys["aws_access_key_id"], keys["aws_secret_access_key"], keys["aws_session_token"]
	} else {
		from = "the environment"
		id, secret, token = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN")
		if id == "" && secret == "" {
			return nil, fmt.Errorf("%w for %s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or add credentials_file=/path to the URL", errCredentials, o)
		}
	}
	switch {
	case id == "":
		return nil, fmt.Errorf("%w for %s: %s has a secret key but no access key id", errCredentials, o, from)
	case secret == "":
		return nil, fmt.Errorf("%w for %s: %s has an access key id but no secret key", errCredentials, o, from)
	}
	return credentials.NewStaticV4(id, secret, token), nil
}

// readProfile reads one [section] of an AWS shared credentials file
// (~/.aws/credentials): key = value lines, # and ; comments; keys are
// lowercased. It never returns a value in an error.
func readProfile(file, profile string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	keys := map[string]string{}
	found, in := false, false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%s:%d: a section header without ]", file, n)
			}
			name := strings.TrimSpace(line[1 : len(line)-1])
			in = name == profile || name == "profile "+profile
			found = found || in
		case in:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: want key = value", file, n)
			}
			keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("%s has no [%s] section", file, profile)
	}
	return keys, nil
}

func (t *Target) String() string { return t.opts.String() }

// Options returns what the target's URL said.
func (t *Target) Options() Options { return t.opts }

func (t *Target) key(name string) string {
	if t.opts.Prefix == "" {
		return name
	}
	return t.opts.Prefix + "/" + name
}

// Put uploads the backup in one PutObject (multipart for a large one),
// with its size when r is a file (or a bytes or strings Reader); another
// reader is streamed in parts. S3 makes an object visible whole or not
// at all, so a failed or cancelled upload leaves nothing under name;
// minio-go aborts a failed multipart upload (a bucket lifecycle rule that
// removes incomplete multipart uploads covers a process killed mid-way).
func (t *Target) Put(ctx context.Context, name string, r io.Reader) error {
	size := int64(-1)
	if l, ok := r.(interface{ Len() int }); ok {
		size = int64(l.Len())
	} else if f, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
			if s, ok := r.(io.Seeker); ok {
				if off, err := s.Seek(0, io.SeekCurrent); err == nil {
					size -= off
				}
			}
		}
	}
	_, err := t.client.PutObject(ctx, t.opts.Bucket, t.key(name), r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("s3: put %s: %w", t.key(name), err)
	}
	return nil
}

// List lists the backups under the prefix (not below it).
func (t *Target) List() ([]backup.Object, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	prefix := ""
	if t.opts.Prefix != "" {
		prefix = t.opts.Prefix + "/"
	}
	var out []backup.Object
	for o := range t.client.ListObjects(ctx, t.opts.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if o.Err != nil {
			return nil, fmt.Errorf("s3: list %s: %w", t, o.Err)
		}
		name := strings.TrimPrefix(o.Key, prefix)
		if _, ok := backup.ParseName(name); ok {
			out = append(out, backup.Object{Name: name, Bytes: o.Size})
		}
	}
	return out, nil
}

// Open downloads one backup; a missing one wraps fs.ErrNotExist.
func (t *Target) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	sctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if _, err := t.client.StatObject(sctx, t.opts.Bucket, t.key(name), minio.StatObjectOptions{}); err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("s3: %s in %s: %w", name, t, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("s3: stat %s: %w", t.key(name), err)
	}
	obj, err := t.client.GetObject(ctx, t.opts.Bucket, t.key(name), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3: get %s: %w", t.key(name), err)
	}
	return obj, nil
}

// Delete removes one backup.
func (t *Target) Delete(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := t.client.RemoveObject(ctx, t.opts.Bucket, t.key(name), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("s3: delete %s: %w", t.key(name), err)
	}
	return nil
}
