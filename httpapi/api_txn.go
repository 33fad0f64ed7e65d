package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cairnkv/cairn/kv"
)

// TxnRequest is the body of POST /v1/txn.
type TxnRequest struct {
	Compare []TxnCompare `json:"compare"`
	Success []TxnOp      `json:"success"`
	Failure []TxnOp      `json:"failure"`
}

// TxnCompare is one condition: value compares bytes (value or value_base64),
// version and the revisions compare number, exists compares existence.
type TxnCompare struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	Number      int64   `json:"number,omitempty"`
	Exists      bool    `json:"exists,omitempty"`
}

// TxnOp is one operation of a branch.
type TxnOp struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
	TTL         string  `json:"ttl,omitempty"`
}

// TxnResponse is the answer to POST /v1/txn.
type TxnResponse struct {
	Succeeded bool             `json:"succeeded"`
	Revision  int64            `json:"revision"`
	Results   []TxnResultEntry `json:"results"`
}

// TxnResultEntry is one op's outcome: the key after the op (put, patch,
// incr…) or as read (get), and how many keys a delete removed.
type TxnResultEntry struct {
	Op      string `json:"op"`
	Key     string `json:"key"`
	Item    *Item  `json:"item"`
	Deleted int64  `json:"deleted,omitempty"`
}

func value(s, b64 *string) ([]byte, error) {
	switch {
	case s != nil && b64 != nil:
		return nil, fmt.Errorf("give value or value_base64, not both")
	case b64 != nil:
		v, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("value_base64: %w", err)
		}
		return v, nil
	case s != nil:
		return []byte(*s), nil
	}
	return nil, nil
}

var txnOps = map[string]kv.OpType{"get": kv.OpGet, "put": kv.OpPut, "delete": kv.OpDelete, "delete_prefix": kv.OpDeletePrefix, "patch": kv.OpPatch}

// toTxn converts and checks a request; the service checks the rest.
func (t *TxnRequest) toTxn(maxValue int64) (kv.Txn, int, error) {
	var out kv.Txn
	for i, c := range t.Compare {
		switch kv.CompareTarget(c.Target) {
		case kv.TargetValue, kv.TargetVersion, kv.TargetCreateRevision, kv.TargetModRevision, kv.TargetExists:
		default:
			return out, http.StatusBadRequest, fmt.Errorf("compare[%d]: target %q (want value, version, create_revision, mod_revision or exists)", i, c.Target)
		}
		switch c.Op {
		case "=", "!=", "<", ">":
		default:
			return out, http.StatusBadRequest, fmt.Errorf("compare[%d]: op %q (want =, !=, < or >)", i, c.Op)
		}
		if err := kv.ValidateKey(c.Key); err != nil {
			return out, http.StatusBadRequest, fmt.Errorf("compare[%d]: %w", i, err)
		}
		v, err := value(c.Value, c.ValueBase64)
		if err != nil {
			return out, http.StatusBadRequest, fmt.Errorf("compare[%d]: %w", i, err)
		}
		out.Compare = append(out.Compare, kv.Compare{Key: c.Key, Target: kv.CompareTarget(c.Target), Op: c.Op, Value: v, Number: c.Number, Exists: c.Exists})
	}
	for _, branch := range []struct {
		name string
		in   []TxnOp
		out  *[]kv.Op
	}{{"success", t.Success, &out.Success}, {"failure", t.Failure, &out.Failure}} {
		for i, o := range branch.in {
			typ, ok := txnOps[o.Op]
			if !ok {
				return out, http.StatusBadRequest, fmt.Errorf("%s[%d]: op %q (want get, put, delete, delete_prefix or patch)", branch.name, i, o.Op)
			}
			if typ != kv.OpDeletePrefix {
				if err := kv.ValidateKey(o.Key); err != nil {
					return out, http.StatusBadRequest, fmt.Errorf("%s[%d]: %w", branch.name, i, err)
				}
			}
			v, err := value(o.Value, o.ValueBase64)
			if err != nil {
				return out, http.StatusBadRequest, fmt.Errorf("%s[%d]: %w", branch.name, i, err)
			}
			if int64(len(v)) > maxValue {
				return out, http.StatusRequestEntityTooLarge, fmt.Errorf("%s[%d]: value of %d bytes is over the limit of %d", branch.name, i, len(v), maxValue)
			}
			if typ == kv.OpPatch && !json.Valid(v) {
				return out, http.StatusBadRequest, fmt.Errorf("%s[%d]: patch is not valid JSON", branch.name, i)
			}
			ttl, err := parseTTL(o.TTL)
			if err != nil {
				return out, http.StatusBadRequest, fmt.Errorf("%s[%d]: %w", branch.name, i, err)
			}
			*branch.out = append(*branch.out, kv.Op{Type: typ, Key: o.Key, Value: v, TTL: ttl})
		}
	}
	return out, 0, nil
}

func (a *api) txn(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, 2*a.o.MaxValueBytes+clusterBodyLimit)
	if !ok {
		return
	}
	var req TxnRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		badRequest(w, "txn body: %v", err)
		return
	}
	if dec.More() {
		badRequest(w, "txn body: trailing data after the JSON object")
		return
	}
	t, status, err := req.toTxn(a.o.MaxValueBytes)
	if err != nil {
		code := "bad_request"
		if status == http.StatusRequestEntityTooLarge {
			code = "value_too_large"
		}
		writeError(w, status, code, err.Error(), nil)
		return
	}
	res, err := a.svc.Txn(r.Context(), t)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := TxnResponse{Succeeded: res.Succeeded, Revision: res.Revision, Results: make([]TxnResultEntry, 0, len(res.Results))}
	for _, or := range res.Results {
		out.Results = append(out.Results, TxnResultEntry{Op: string(or.Type), Key: or.Key, Item: itemOf(or.Record, or.Type != kv.OpPut), Deleted: or.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}
