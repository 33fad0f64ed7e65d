package respapi

import (
	"math"
	"strconv"
	"time"

	"github.com/cairnkv/cairn/kv"
)

func stringCommands() []*command {
	return []*command{
		{name: "get", arity: 2, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planGet},
		{name: "set", arity: -3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planSet},
		{name: "setnx", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planSetNX},
		{name: "setex", arity: 4, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planSetEx(time.Second)},
		{name: "psetex", arity: 4, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planSetEx(time.Millisecond)},
		{name: "getset", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planGetSet},
		{name: "getdel", arity: 2, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planGetDel},
		{name: "mget", arity: -2, flags: flagRead, firstKey: 1, lastKey: -1, step: 1, plan: planMGet},
		{name: "mset", arity: -3, flags: flagWrite, firstKey: 1, lastKey: -1, step: 2, plan: planMSet(false)},
		{name: "msetnx", arity: -3, flags: flagWrite, firstKey: 1, lastKey: -1, step: 2, plan: planMSet(true)},
		{name: "del", arity: -2, flags: flagWrite, firstKey: 1, lastKey: -1, step: 1, plan: planDel},
		{name: "unlink", arity: -2, flags: flagWrite, firstKey: 1, lastKey: -1, step: 1, plan: planDel},
		{name: "exists", arity: -2, flags: flagRead, firstKey: 1, lastKey: -1, step: 1, plan: planExists},
		{name: "incr", arity: 2, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planIncrBy(1, false)},
		{name: "decr", arity: 2, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planIncrBy(-1, false)},
		{name: "incrby", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planIncrBy(1, true)},
		{name: "decrby", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planIncrBy(-1, true)},
		{name: "incrbyfloat", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planIncrByFloat},
		{name: "append", arity: 3, flags: flagWrite, firstKey: 1, lastKey: 1, step: 1, plan: planAppend},
		{name: "strlen", arity: 2, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planStrlen},
		{name: "getrange", arity: 4, flags: flagRead, firstKey: 1, lastKey: 1, step: 1, plan: planGetRange},
	}
}

// bulkOrNull is the value of r as a bulk string, or a null bulk when r is nil.
func bulkOrNull(r *kv.Record) []byte {
	if r == nil {
		return replyNull
	}
	return replyBulk(r.Value)
}

func getOp(key []byte) kv.Op { return kv.Op{Type: kv.OpGet, Key: string(key)} }

func parseInt(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err == nil
}

// clockMargin keeps expiry arithmetic clear of int64 overflow when the
// leader's clock is ahead of ours.
const clockMargin = int64(24 * time.Hour)

// relativeTTL converts n units to a TTL, or false when it would overflow the
// unix-nanosecond expiry the engine stores.
func relativeTTL(n int64, unit time.Duration) (time.Duration, bool) {
	room := int64(math.MaxInt64) - time.Now().UnixNano() - clockMargin
	if n > room/int64(unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// absoluteExpiry converts a unix time in units to unix nanoseconds.
func absoluteExpiry(n int64, unit time.Duration) (int64, bool) {
	if n > (math.MaxInt64-clockMargin)/int64(unit) {
		return 0, false
	}
	return n * int64(unit), true
}

func planGet(_ *conn, a [][]byte) plan {
	return plan{txn: kv.Txn{Success: []kv.Op{getOp(a[1])}}, finish: func(res *kv.TxnResult) []byte {
		return bulkOrNull(live(opResult(res, 0).Record))
	}}
}

// planSet is SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL].
func planSet(_ *conn, a [][]byte) plan {
	op := kv.Op{Type: kv.OpPut, Key: string(a[1]), Value: a[2]}
	var nx, xx, get, expiry bool
	for i := 3; i < len(a); i++ {
		switch opt := lower(a[i]); opt {
		case "nx":
			if xx {
				return planErr(msgSyntax)
			}
			nx = true
		case "xx":
			if nx {
				return planErr(msgSyntax)
			}
			xx = true
		case "get":
			get = true
		case "keepttl":
			if expiry {
				return planErr(msgSyntax)
			}
			expiry, op.KeepTTL = true, true
		case "ex", "px", "exat", "pxat":
			if expiry || i+1 >= len(a) {
				return planErr(msgSyntax)
			}
			i++
			n, ok := parseInt(a[i])
			if !ok {
				return planErr(msgNotInteger)
			}
			if n <= 0 {
				return planErr("ERR invalid expire time in 'set' command")
			}
			unit := time.Second
			if opt[0] == 'p' {
				unit = time.Millisecond
			}
			if opt == "exat" || opt == "pxat" {
				op.ExpiresAt, ok = absoluteExpiry(n, unit)
			} else {
				op.TTL, ok = relativeTTL(n, unit)
			}
			if !ok {
				return planErr("ERR invalid expire time in 'set' command")
			}
			expiry = true
		default:
			return planErr(msgSyntax)
		}
	}
	op.ReturnPrev = get
	t := kv.Txn{Success: []kv.Op{op}}
	switch {
	case nx:
		t.Compare = []kv.Compare{{Key: op.Key, Target: kv.TargetExists, Op: "=", Exists: false}}
	case xx:
		t.Compare = []kv.Compare{{Key: op.Key, Target: kv.TargetExists, Op: "=", Exists: true}}
	}
	if len(t.Compare) > 0 && get {
		t.Failure = []kv.Op{getOp(a[1])}
	}
	return plan{txn: t, finish: func(res *kv.TxnResult) []byte {
		switch {
		case !res.Succeeded && get:
			return bulkOrNull(live(opResult(res, 0).Record))
		case !res.Succeeded:
			return replyNull
		case get:
			return bulkOrNull(live(opResult(res, 0).Prev))
		}
		return replyOK
	}}
}

func planSetNX(_ *conn, a [][]byte) plan {
	key := string(a[1])
	return plan{
		txn: kv.Txn{
			Compare: []kv.Compare{{Key: key, Target: kv.TargetExists, Op: "=", Exists: false}},
			Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: a[2]}},
		},
		finish: func(res *kv.TxnResult) []byte { return replyBool(res.Succeeded) },
	}
}

// planSetEx is SETEX key seconds value and PSETEX key milliseconds value.
func planSetEx(unit time.Duration) func(*conn, [][]byte) plan {
	name := "setex"
	if unit == time.Millisecond {
		name = "psetex"
	}
	return func(_ *conn, a [][]byte) plan {
		n, ok := parseInt(a[2])
		if !ok {
			return planErr(msgNotInteger)
		}
		ttl, ok := relativeTTL(n, unit)
		if n <= 0 || !ok {
			return planErr("ERR invalid expire time in '" + name + "' command")
		}
		return plan{
			txn:    kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: string(a[1]), Value: a[3], TTL: ttl}}},
			finish: func(*kv.TxnResult) []byte { return replyOK },
		}
	}
}

func planGetSet(_ *conn, a [][]byte) plan {
	return plan{
		txn: kv.Txn{Success: []kv.Op{{Type: kv.OpPut, Key: string(a[1]), Value: a[2], ReturnPrev: true}}},
		finish: func(res *kv.TxnResult) []byte {
			return bulkOrNull(live(opResult(res, 0).Prev))
		},
	}
}

func planGetDel(_ *conn, a [][]byte) plan {
	return plan{
		txn: kv.Txn{Success: []kv.Op{{Type: kv.OpDelete, Key: string(a[1]), ReturnPrev: true}}},
		finish: func(res *kv.TxnResult) []byte {
			return bulkOrNull(live(opResult(res, 0).Prev))
		},
	}
}

func planMGet(_ *conn, a [][]byte) plan {
	ops := make([]kv.Op, 0, len(a)-1)
	for _, k := range a[1:] {
		ops = append(ops, getOp(k))
	}
	return plan{txn: kv.Txn{Success: ops}, finish: func(res *kv.TxnResult) []byte {
		items := make([][]byte, len(ops))
		for i := range ops {
			items[i] = bulkOrNull(live(opResult(res, i).Record))
		}
		return replyArray(items...)
	}}
}

// planMSet is MSET, and MSETNX when nx: all keys are set, or none.
func planMSet(nx bool) func(*conn, [][]byte) plan {
	name := "mset"
	if nx {
		name = "msetnx"
	}
	return func(_ *conn, a [][]byte) plan {
		if len(a)%2 != 1 {
			return plan{err: replyWrongArgs(name)}
		}
		var t kv.Txn
		for i := 1; i < len(a); i += 2 {
			key := string(a[i])
			t.Success = append(t.Success, kv.Op{Type: kv.OpPut, Key: key, Value: a[i+1]})
			if nx {
				t.Compare = append(t.Compare, kv.Compare{Key: key, Target: kv.TargetExists, Op: "=", Exists: false})
			}
		}
		return plan{txn: t, finish: func(res *kv.TxnResult) []byte {
			if nx {
				return replyBool(res.Succeeded)
			}
			return replyOK
		}}
	}
}

func planDel(_ *conn, a [][]byte) plan {
	ops := make([]kv.Op, 0, len(a)-1)
	for _, k := range a[1:] {
		ops = append(ops, kv.Op{Type: kv.OpDelete, Key: string(k)})
	}
	return plan{txn: kv.Txn{Success: ops}, finish: func(res *kv.TxnResult) []byte {
		var n int64
		for i := range ops {
			n += opResult(res, i).Deleted
		}
		return replyInt(n)
	}}
}

func planExists(_ *conn, a [][]byte) plan {
	ops := make([]kv.Op, 0, len(a)-1)
	for _, k := range a[1:] {
		ops = append(ops, getOp(k))
	}
	return plan{txn: kv.Txn{Success: ops}, finish: func(res *kv.TxnResult) []byte {
		var n int64
		for i := range ops {
			if live(opResult(res, i).Record) != nil {
				n++
			}
		}
		return replyInt(n)
	}}
}

// planIncrBy is INCR and DECR (withArg false) and INCRBY and DECRBY; sign is
// the direction.
func planIncrBy(sign int64, withArg bool) func(*conn, [][]byte) plan {
	return func(_ *conn, a [][]byte) plan {
		delta := int64(1)
		if withArg {
			var ok bool
			if delta, ok = parseInt(a[2]); !ok {
				return planErr(msgNotInteger)
			}
		}
		if sign < 0 {
			if delta == math.MinInt64 {
				return planErr("ERR decrement would overflow")
			}
			delta = -delta
		}
		return plan{
			txn: kv.Txn{Success: []kv.Op{{Type: kv.OpIncr, Key: string(a[1]), Value: strconv.AppendInt(nil, delta, 10)}}},
			finish: func(res *kv.TxnResult) []byte {
				r := opResult(res, 0).Record
				if r == nil {
					return replyErr(msgNotInteger)
				}
				n, ok := parseInt(r.Value)
				if !ok {
					return replyErr(msgNotInteger)
				}
				return replyInt(n)
			},
		}
	}
}

func planIncrByFloat(_ *conn, a [][]byte) plan {
	f, err := strconv.ParseFloat(string(a[2]), 64)
	if err != nil || math.IsNaN(f) {
		return planErr(msgNotFloat)
	}
	if math.IsInf(f, 0) {
		return planErr("ERR increment would produce NaN or Infinity")
	}
	return plan{
		txn: kv.Txn{Success: []kv.Op{{Type: kv.OpIncrFloat, Key: string(a[1]), Value: strconv.AppendFloat(nil, f, 'g', -1, 64)}}},
		finish: func(res *kv.TxnResult) []byte {
			r := opResult(res, 0).Record
			if r == nil {
				return replyErr(msgNotFloat)
			}
			return replyBulk(r.Value)
		},
	}
}

func planAppend(_ *conn, a [][]byte) plan {
	return plan{
		txn: kv.Txn{Success: []kv.Op{{Type: kv.OpAppend, Key: string(a[1]), Value: a[2]}}},
		finish: func(res *kv.TxnResult) []byte {
			if r := opResult(res, 0).Record; r != nil {
				return replyInt(int64(len(r.Value)))
			}
			return replyZero
		},
	}
}

func planStrlen(_ *conn, a [][]byte) plan {
	return plan{txn: kv.Txn{Success: []kv.Op{getOp(a[1])}}, finish: func(res *kv.TxnResult) []byte {
		if r := live(opResult(res, 0).Record); r != nil {
			return replyInt(int64(len(r.Value)))
		}
		return replyZero
	}}
}

func planGetRange(_ *conn, a [][]byte) plan {
	start, ok1 := parseInt(a[2])
	end, ok2 := parseInt(a[3])
	if !ok1 || !ok2 {
		return planErr(msgNotInteger)
	}
	return plan{txn: kv.Txn{Success: []kv.Op{getOp(a[1])}}, finish: func(res *kv.TxnResult) []byte {
		var v []byte
		if r := live(opResult(res, 0).Record); r != nil {
			v = r.Value
		}
		return replyBulk(substr(v, start, end))
	}}
}

// substr is Redis GETRANGE's slice of v from start to end inclusive, where
// negative offsets count from the end.
func substr(v []byte, start, end int64) []byte {
	n := int64(len(v))
	if n == 0 || (start < 0 && end < 0 && start > end) {
		return nil
	}
	if start < 0 {
		start += n
	}
	if end < 0 {
		end += n
	}
	start = max(start, 0)
	end = max(end, 0)
	end = min(end, n-1)
	if start > end {
		return nil
	}
	return v[start : end+1]
}
