package respapi

import (
	"context"
	"strconv"
	"time"

	"github.com/cairnkv/cairn/kv"
)

func keyCommands() []*command {
	return []*command{
		{name: "expire", arity: -3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planExpire("expire", time.Second, false)},
		{name: "pexpire", arity: -3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planExpire("pexpire", time.Millisecond, false)},
		{name: "expireat", arity: -3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planExpire("expireat", time.Second, true)},
		{name: "pexpireat", arity: -3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planExpire("pexpireat", time.Millisecond, true)},
		{name: "ttl", arity: 2, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planTTL(time.Second)},
		{name: "pttl", arity: 2, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planTTL(time.Millisecond)},
		{name: "persist", arity: 2, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planPersist},
		{name: "type", arity: 2, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planType},
		{name: "rename", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 2, step: 1, plan: planRename(false)},
		{name: "renamenx", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 2, step: 1, plan: planRename(true)},
		{name: "keys", arity: 2, flags: flagRead | flagNoMulti, run: runKeys},
		{name: "scan", arity: -2, flags: flagRead | flagNoMulti, run: runScan},
		{name: "dbsize", arity: 1, flags: flagRead | flagNoMulti, run: runDBSize},
	}
}

// planExpire is EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT key n [NX|XX|GT|LT].
// A time not in the future deletes the key, as in Redis.
func planExpire(name string, unit time.Duration, absolute bool) func(*conn, [][]byte) plan {
	invalid := "ERR invalid expire time in '" + name + "' command"
	return func(_ *conn, a [][]byte) plan {
		n, ok := parseInt(a[2])
		if !ok {
			return planErr(msgNotInteger)
		}
		op := kv.Op{Type: kv.OpExpire, Key: string(a[1])}
		var when int64 // the new expiry in unix nanoseconds, for NX|XX|GT|LT
		switch {
		case n <= 0:
			// ExpiresAt 1 is long past: the engine deletes the key. (A zero
			// TTL and expiry would mean PERSIST instead.)
			op.ExpiresAt, when = 1, 1
		case absolute:
			if op.ExpiresAt, ok = absoluteExpiry(n, unit); !ok {
				return planErr(invalid)
			}
			when = op.ExpiresAt
		default:
			if op.TTL, ok = relativeTTL(n, unit); !ok {
				return planErr(invalid)
			}
			when = time.Now().UnixNano() + int64(op.TTL)
		}
		var nx, xx, gt, lt bool
		for _, o := range a[3:] {
			switch lower(o) {
			case "nx":
				nx = true
			case "xx":
				xx = true
			case "gt":
				gt = true
			case "lt":
				lt = true
			default:
				return planErr(msgSyntax)
			}
		}
		switch {
		case nx && (xx || gt || lt):
			return planErr("ERR NX and XX, GT or LT options at the same time are not compatible")
		case gt && lt:
			return planErr("ERR GT and LT options at the same time are not compatible")
		case nx || xx || gt || lt:
			return plan{run: func(ctx context.Context, c *conn) []byte {
				return c.expireIf(ctx, op, when, nx, xx, gt, lt)
			}}
		}
		return plan{txn: kv.Txn{Success: []kv.Op{op}}, finish: func(res *kv.TxnResult) []byte {
			r := opResult(res, 0)
			return replyBool(r.Record != nil || r.Deleted > 0)
		}}
	}
}

// expireIf applies an expiry only when the key's current expiry passes the
// NX, XX, GT or LT test: it reads the key, then writes on condition that its
// mod revision is unchanged, and starts again when it changed.
func (c *conn) expireIf(ctx context.Context, op kv.Op, when int64, nx, xx, gt, lt bool) []byte {
	for range maxExpireRetries {
		r, err := c.get(ctx, op.Key)
		if err != nil {
			return replyError(err, false)
		}
		if live(r) == nil {
			return replyZero
		}
		cur := r.Expires // 0: no expiry, which counts as infinite
		if (nx && cur != 0) || (xx && cur == 0) || (gt && (cur == 0 || when <= cur)) || (lt && cur != 0 && when >= cur) {
			return replyZero
		}
		res, err := c.s.svc.Txn(ctx, kv.Txn{
			Compare: []kv.Compare{{Key: op.Key, Target: kv.TargetModRevision, Op: "=", Number: r.ModRevision}},
			Success: []kv.Op{op},
		})
		c.fresh = false
		if err != nil {
			return replyError(err, true)
		}
		if res.Succeeded {
			return replyOne
		}
	}
	return replyErr("ERR the key kept changing while EXPIRE checked its options, retry")
}

func planTTL(unit time.Duration) func(*conn, [][]byte) plan {
	return func(_ *conn, a [][]byte) plan {
		return plan{txn: kv.Txn{Success: []kv.Op{getOp(a[1])}}, finish: func(res *kv.TxnResult) []byte {
			r := live(opResult(res, 0).Record)
			switch {
			case r == nil:
				return replyInt(-2)
			case r.Expires == 0:
				return replyInt(-1)
			}
			ms := max((r.Expires-time.Now().UnixNano())/int64(time.Millisecond), 0)
			if unit == time.Second {
				return replyInt((ms + 500) / 1000)
			}
			return replyInt(ms)
		}}
	}
}

func planPersist(_ *conn, a [][]byte) plan {
	return plan{
		txn: kv.Txn{Success: []kv.Op{{Type: kv.OpExpire, Key: string(a[1]), ReturnPrev: true}}},
		finish: func(res *kv.TxnResult) []byte {
			prev := live(opResult(res, 0).Prev)
			return replyBool(prev != nil && prev.Expires != 0)
		},
	}
}

func planType(_ *conn, a [][]byte) plan {
	return plan{txn: kv.Txn{Success: []kv.Op{getOp(a[1])}}, finish: func(res *kv.TxnResult) []byte {
		if live(opResult(res, 0).Record) == nil {
			return replyStatus("none")
		}
		return replyStatus("string")
	}}
}

// planRename is RENAME and RENAMENX (nx): the value and TTL move to the new key.
func planRename(nx bool) func(*conn, [][]byte) plan {
	return func(_ *conn, a [][]byte) plan {
		t := kv.Txn{Success: []kv.Op{{Type: kv.OpRename, Key: string(a[1]), Value: a[2]}}}
		if nx {
			t.Compare = []kv.Compare{{Key: string(a[2]), Target: kv.TargetExists, Op: "=", Exists: false}}
		}
		return plan{txn: t, finish: func(res *kv.TxnResult) []byte {
			if nx {
				return replyBool(res.Succeeded)
			}
			return replyOK
		}}
	}
}

// listPage is how many keys one List call returns for KEYS and DBSIZE.
const listPage = 1000

// eachKey calls fn for every live key under prefix, page by page.
func (c *conn) eachKey(ctx context.Context, prefix string, fn func(r *kv.Record)) error {
	after := ""
	for {
		res, err := c.list(ctx, prefix, after, listPage)
		if err != nil {
			return err
		}
		for _, r := range res.Items {
			if live(r) != nil {
				fn(r)
			}
		}
		if !res.More || len(res.Items) == 0 {
			return nil
		}
		after = res.Items[len(res.Items)-1].Key
	}
}

func runKeys(ctx context.Context, c *conn, a [][]byte) []byte {
	pattern := string(a[1])
	var keys []string
	err := c.eachKey(ctx, globPrefix(pattern), func(r *kv.Record) {
		if globMatch(pattern, r.Key) {
			keys = append(keys, r.Key)
		}
	})
	if err != nil {
		return replyError(err, false)
	}
	return replyStrings(keys)
}

func runDBSize(ctx context.Context, c *conn, _ [][]byte) []byte {
	var n int64
	if err := c.eachKey(ctx, "", func(*kv.Record) { n++ }); err != nil {
		return replyError(err, false)
	}
	return replyInt(n)
}

// maxScanCount bounds one SCAN page.
const maxScanCount = 10000

// runScan is SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]. A cursor is a
// number the server maps to the last key it returned (see cursorTable).
func runScan(ctx context.Context, c *conn, a [][]byte) []byte {
	cursor, err := strconv.ParseUint(string(a[1]), 10, 64)
	if err != nil {
		return replyErr(msgInvalidCurs)
	}
	after := ""
	if cursor != 0 {
		var ok bool
		if after, ok = c.s.cursors.get(cursor); !ok {
			return replyErr(msgInvalidCurs)
		}
	}
	pattern, count, onlyType := "", int64(10), ""
	for i := 2; i < len(a); i += 2 {
		if i+1 >= len(a) {
			return replyErr(msgSyntax)
		}
		switch lower(a[i]) {
		case "match":
			pattern = string(a[i+1])
		case "count":
			n, ok := parseInt(a[i+1])
			if !ok {
				return replyErr(msgNotInteger)
			}
			if n < 1 {
				return replyErr(msgSyntax)
			}
			count = min(n, maxScanCount)
		case "type":
			onlyType = lower(a[i+1])
		default:
			return replyErr(msgSyntax)
		}
	}
	prefix := globPrefix(pattern)
	res, err := c.list(ctx, prefix, after, int(count))
	if err != nil {
		return replyError(err, false)
	}
	var keys []string
	for _, r := range res.Items {
		if live(r) == nil || (pattern != "" && !globMatch(pattern, r.Key)) || (onlyType != "" && onlyType != "string") {
			continue
		}
		keys = append(keys, r.Key)
	}
	next := "0"
	if res.More && len(res.Items) > 0 {
		next = strconv.FormatUint(c.s.cursors.put(res.Items[len(res.Items)-1].Key), 10)
	}
	return replyArray(replyBulkString(next), replyStrings(keys))
}

// globPrefix is the literal start of a glob pattern: the prefix every match has.
func globPrefix(pattern string) string {
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '*', '?', '[', '\\':
			return pattern[:i]
		}
	}
	return pattern
}

// globMatch reports whether s matches a Redis glob pattern: * ? [abc] [^a]
// [a-z] and \ escapes. It backtracks only to the last star, so it runs in
// O(len(pattern)·len(s)) even on hostile patterns.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) || p < len(pattern) {
		if p < len(pattern) {
			switch pattern[p] {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				if i < len(s) {
					p++
					i++
					continue
				}
			case '[':
				if i < len(s) {
					ok, n := matchClass(pattern[p:], s[i])
					if ok {
						p += n
						i++
						continue
					}
				}
			case '\\':
				lit := byte('\\')
				n := 1
				if p+1 < len(pattern) {
					lit, n = pattern[p+1], 2
				}
				if i < len(s) && s[i] == lit {
					p += n
					i++
					continue
				}
			default:
				if i < len(s) && s[i] == pattern[p] {
					p++
					i++
					continue
				}
			}
		}
		if starP >= 0 && starI < len(s) {
			starI++
			p, i = starP+1, starI
			continue
		}
		return false
	}
	return true
}

// matchClass matches c against the class at the start of pat ("[...]") and
// returns the class's length. An unterminated class runs to the end.
func matchClass(pat string, c byte) (bool, int) {
	j := 1
	negate := false
	if j < len(pat) && pat[j] == '^' {
		negate = true
		j++
	}
	match := false
	for j < len(pat) && pat[j] != ']' {
		switch {
		case pat[j] == '\\' && j+1 < len(pat):
			j++
			if pat[j] == c {
				match = true
			}
			j++
		case j+2 < len(pat) && pat[j+1] == '-' && pat[j+2] != ']':
			lo, hi := pat[j], pat[j+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			j += 3
		default:
			if pat[j] == c {
				match = true
			}
			j++
		}
	}
	if j < len(pat) {
		j++ // the closing ]
	}
	return match != negate, j
}
