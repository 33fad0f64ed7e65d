package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairnkv/cairn/keyspace"
	"github.com/cairnkv/cairn/kv"
)

// The Repose distributed datastore API, for the programs written against
// it: GET, PUT, DELETE and PATCH of /powerapi/dist-datastore/objects/{name},
// the object being the key reposePrefix+name (an eventual keyspace with one
// replica and sloppy quorum, as Repose keeps each object on one node of its
// ring). Requests go through the same service calls as /v1/kv, so identity,
// ACL rules and limits are the same; errors are cairn's JSON errors.
//
// The statuses are Repose's: PUT answers 202 Accepted, DELETE 204 (whether
// or not the object existed), GET 200 with the raw bytes or 404, PATCH 200
// with the patched object; an X-TTL that is not a positive number of
// seconds is a 400. A PATCH is a JSON merge patch (RFC 7396) here, where
// Repose took a serialized Java object.
const reposeObjects = "/powerapi/dist-datastore/objects/"

// reposeKey returns the key of the object the path names.
func (a *api) reposeKey(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if name == "" {
		return "", badRequest("no object named: the path is %s{name}", reposeObjects)
	}
	key := a.reposePrefix + name
	if err := kv.ValidateKey(key); err != nil {
		return "", err
	}
	// The datastore's keyspace is created on first use (one replica per
	// object, sloppy quorum, as Repose places objects), unless the cluster
	// has a policy for the prefix already.
	if err := a.svc.EnsureKeyspace(r.Context(), keyspace.Policy{Prefix: a.reposePrefix, Mode: keyspace.Eventual,
		Replicas: 1, WriteQuorum: 1, ReadQuorum: 1, SloppyQuorum: true}); err != nil {
		return "", err
	}
	return key, nil
}

// reposeTTL reads X-TTL: whole seconds, more than 0; 0 when absent (the
// keyspace's default_ttl, if any, applies).
func reposeTTL(h http.Header) (time.Duration, error) {
	v := strings.TrimSpace(h.Get("X-TTL"))
	if v == "" {
		return 0, nil
	}
	const maxSeconds = int64(1<<63-1) / int64(time.Second)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > maxSeconds {
		return 0, badRequest("X-TTL must be a positive whole number of seconds, not %q", v)
	}
	return time.Duration(n) * time.Second, nil
}

func (a *api) reposeGet(w http.ResponseWriter, r *http.Request) {
	key, err := a.reposeKey(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ro, err := a.readOptions(w.Header(), r.URL.Query(), key)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ro.Fallback = ro.Fallback || a.svc.Keyspaces().Lookup(key).ReadFallback == keyspace.ReadFallbackBackup
	rec, err := a.svc.Get(r.Context(), key, ro)
	if err == nil && rec == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	h := w.Header()
	setRecordHeaders(h, rec)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(rec.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(rec.Value)
	}
}

func (a *api) reposePut(w http.ResponseWriter, r *http.Request) {
	key, err := a.reposeKey(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ttl, err := reposeTTL(r.Header)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	value, err := a.readValue(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	rec, err := a.svc.Put(r.Context(), key, value, kv.PutOptions{TTL: ttl})
	if err == nil && rec == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setRecordHeaders(w.Header(), rec)
	w.WriteHeader(http.StatusAccepted)
}

func (a *api) reposeDelete(w http.ResponseWriter, r *http.Request) {
	key, err := a.reposeKey(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.deleteKeys(r.Context(), key, false, nil, 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if res.Timestamp != "" {
		setStampHeaders(w.Header(), res.Timestamp, "")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) reposePatch(w http.ResponseWriter, r *http.Request) {
	key, err := a.reposeKey(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if r.Header.Get("X-TTL") != "" {
		// A merge patch keeps the object's expiry; say so rather than
		// ignore the header.
		a.fail(w, r, badRequest("X-TTL applies to PUT only: a PATCH keeps the object's TTL"))
		return
	}
	a.mergePatch(w, r, key, "the patch is not valid JSON: a PATCH body is a JSON merge patch (RFC 7396)")
}
