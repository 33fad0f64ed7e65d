package respapi

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/cairnkv/cairn/kv"
)

// Replies are RESP2-encoded byte slices, built with redcon's encoders (which
// also strip CR and LF from status and error lines, so a key or message echoed
// back can never break the framing).
var (
	replyOK         = []byte("+OK\r\n")
	replyQueued     = []byte("+QUEUED\r\n")
	replyNull       = []byte("$-1\r\n")
	replyNullArray  = []byte("*-1\r\n")
	replyEmptyArray = []byte("*0\r\n")
	replyZero       = []byte(":0\r\n")
	replyOne        = []byte(":1\r\n")
)

// Redis error texts that clients match on.
const (
	msgSyntax       = "ERR syntax error"
	msgNotInteger   = "ERR value is not an integer or out of range"
	msgNotFloat     = "ERR value is not a valid float"
	msgNoSuchKey    = "ERR no such key"
	msgNoAuth       = "NOAUTH Authentication required."
	msgWrongPass    = "WRONGPASS invalid username-password pair or user is disabled."
	msgInvalidCurs  = "ERR invalid cursor"
	msgDBOutOfRange = "ERR DB index is out of range"
)

func replyErr(msg string) []byte      { return redcon.AppendError(nil, msg) }
func replyStatus(s string) []byte     { return redcon.AppendString(nil, s) }
func replyInt(n int64) []byte         { return redcon.AppendInt(nil, n) }
func replyBulk(b []byte) []byte       { return redcon.AppendBulk(nil, b) }
func replyBulkString(s string) []byte { return redcon.AppendBulkString(nil, s) }

func replyBool(b bool) []byte {
	if b {
		return replyOne
	}
	return replyZero
}

// replyArray joins already encoded replies into an array.
func replyArray(items ...[]byte) []byte {
	n := 16
	for _, it := range items {
		n += len(it)
	}
	out := redcon.AppendArray(make([]byte, 0, n), len(items))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

// replyStrings encodes strings as an array of bulk strings.
func replyStrings(items []string) []byte {
	out := redcon.AppendArray(nil, len(items))
	for _, it := range items {
		out = redcon.AppendBulkString(out, it)
	}
	return out
}

// replyPairs encodes key/value pairs as a flat array, the RESP2 form of a map.
func replyPairs(kvs ...string) []byte { return replyStrings(kvs) }

func replyWrongArgs(name string) []byte {
	return replyErr("ERR wrong number of arguments for '" + name + "' command")
}

// replyUnknown is Redis's answer to a command it does not know.
func replyUnknown(args [][]byte) []byte {
	var b strings.Builder
	for _, a := range args[1:] {
		if b.Len() >= 128 {
			break
		}
		room := 128 - b.Len()
		if len(a) > room {
			a = a[:room]
		}
		b.WriteString("'")
		b.Write(a)
		b.WriteString("' ")
	}
	name := args[0]
	if len(name) > 128 {
		name = name[:128]
	}
	return replyErr("ERR unknown command '" + string(name) + "', with args beginning with: " + b.String())
}

// replyError maps a service error to a Redis error reply, by its code: the
// one place the RESP API decides how an error looks on the wire. write says
// whether the failed call was a write: a write that timed out may have been
// applied, so it must not be answered with TRYAGAIN (which clients retry
// blindly).
func replyError(err error, write bool) []byte {
	if errors.Is(err, context.Canceled) {
		return replyErr("ERR server is shutting down")
	}
	switch kv.CodeOf(err) {
	case kv.CodeNotInteger:
		return replyErr(msgNotInteger)
	case kv.CodeNotFloat:
		return replyErr(msgNotFloat)
	case kv.CodeKeyNotFound:
		return replyErr(msgNoSuchKey)
	case kv.CodePermissionDenied:
		return replyErr("NOPERM " + trimKV(err))
	case kv.CodeUnauthenticated:
		return replyErr("NOAUTH " + trimKV(err))
	case kv.CodeNoLeader:
		return replyErr("TRYAGAIN no leader: " + trimKV(err))
	case kv.CodeAuthChanged: // refused before it applied: safe to retry
		return replyErr("TRYAGAIN " + trimKV(err))
	case kv.CodeUnavailable:
		if write {
			return replyErr("ERR unavailable, the write may or may not have been applied: " + trimKV(err))
		}
		return replyErr("TRYAGAIN " + trimKV(err))
	}
	return replyErr("ERR " + trimKV(err))
}

// trimKV drops the package prefix of the service's errors ("kv: ").
func trimKV(err error) string {
	return strings.TrimPrefix(err.Error(), "kv: ")
}

// itoa is strconv.FormatInt for int64.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }
