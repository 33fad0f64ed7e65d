package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cairnkv/cairn/kv"
)

// txnRequest is the body of POST /v1/txn.
type txnRequest struct {
	Compare []txnCompare `json:"compare"`
	Success []txnOp      `json:"success"`
	Failure []txnOp      `json:"failure"`
}

// txnCompare is one condition. The value target compares bytes (value or
// value_base64), version and the revisions compare number, exists compares
// existence.
type txnCompare struct {
	Key         string  `json:"key"`
	Target      string  `json:"target"`
	Op          string  `json:"op"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	Number      int64   `json:"number"`
	Exists      bool    `json:"exists"`
}

// txnOp is one operation of a branch.
type txnOp struct {
	Op          string  `json:"op"`
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 *string `json:"value_base64"`
	TTL         string  `json:"ttl"`
}

// txnResponse is the answer to POST /v1/txn: the revision after a
// transaction of strong keys, or the timestamp and acks of a batch of
// eventual ones.
type txnResponse struct {
	Succeeded bool        `json:"succeeded"`
	Revision  *int64      `json:"revision,omitempty"`
	Timestamp string      `json:"timestamp,omitempty"`
	Acks      int         `json:"acks,omitempty"`
	Replicas  int         `json:"replicas,omitempty"`
	Results   []txnResult `json:"results"`
}

// txnResult is one op's outcome: the key after the op (put, patch) or as
// read (get), null when absent, and how many keys a delete removed.
type txnResult struct {
	Op      string `json:"op"`
	Key     string `json:"key"`
	Item    *item  `json:"item"`
	Deleted int64  `json:"deleted,omitempty"`
}

var txnOpTypes = map[string]kv.OpType{
	"get":           kv.OpGet,
	"put":           kv.OpPut,
	"delete":        kv.OpDelete,
	"delete_prefix": kv.OpDeletePrefix,
	"patch":         kv.OpPatch,
}

// txnBodyLimit bounds a transaction body: room for one maximal value in
// base64, plus the rest of the document.
func (a *api) txnBodyLimit() int64 { return 2*a.maxValue + 64<<10 }

// readBody reads a body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge("the body is over the limit of %d bytes", limit)
		}
		return nil, badRequest("reading the body: %w", err)
	}
	return body, nil
}

// decodeJSON reads a JSON object body of at most limit bytes into v (see
// unmarshalStrict).
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, optional bool) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return unmarshalStrict(body, v, optional)
}

// unmarshalStrict decodes one JSON object into v, rejecting unknown fields
// and trailing data. An empty body is accepted (leaving v alone) only when
// optional.
func unmarshalStrict(body []byte, v any, optional bool) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		if optional {
			return nil
		}
		return badRequest("the body must be a JSON object and is empty")
	}
	if trimmed[0] != '{' {
		return badRequest("the body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the body is not valid: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the body has data after the JSON object")
	}
	return nil
}

// bytesOf returns the value given as UTF-8 text or as base64, if any.
func bytesOf(text, b64 *string) ([]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, errors.New("give value or value_base64, not both")
	case b64 != nil:
		v, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("value_base64: %w", err)
		}
		return v, nil
	case text != nil:
		return []byte(*text), nil
	}
	return nil, nil
}

// toTxn checks a request and converts it to a kv.Txn. It refuses what the
// service would refuse too, so that a bad request never reaches it, and
// fields that would be silently ignored (a ttl on a get, a number on a
// value compare), so that a mistake is not mistaken for a condition.
func (t *txnRequest) toTxn(maxValue int64) (kv.Txn, error) {
	var out kv.Txn
	for i, c := range t.Compare {
		cmp, err := c.toCompare()
		if err != nil {
			return kv.Txn{}, prefixed(fmt.Sprintf("compare[%d]", i), err)
		}
		out.Compare = append(out.Compare, cmp)
	}
	var err error
	if out.Success, err = toOps("success", t.Success, maxValue); err != nil {
		return kv.Txn{}, err
	}
	if out.Failure, err = toOps("failure", t.Failure, maxValue); err != nil {
		return kv.Txn{}, err
	}
	return out, nil
}

// prefixed says where in the body err was found, keeping its status.
func prefixed(where string, err error) error {
	if re, ok := errors.AsType[*requestError](err); ok {
		return &requestError{re.status, re.code, fmt.Errorf("%s: %w", where, re.err)}
	}
	return fmt.Errorf("%s: %w", where, err)
}

func (c *txnCompare) toCompare() (kv.Compare, error) {
	if err := kv.ValidateKey(c.Key); err != nil {
		return kv.Compare{}, err
	}
	v, err := bytesOf(c.Value, c.ValueBase64)
	if err != nil {
		return kv.Compare{}, badRequest("%w", err)
	}
	target := kv.CompareTarget(c.Target)
	switch target {
	case kv.TargetValue:
		if c.Number != 0 || c.Exists {
			return kv.Compare{}, badRequest("a value compare takes value or value_base64, not number or exists")
		}
	case kv.TargetVersion, kv.TargetCreateRevision, kv.TargetModRevision:
		if len(v) > 0 || c.Exists {
			return kv.Compare{}, badRequest("a %s compare takes number, not value or exists", c.Target)
		}
	case kv.TargetExists:
		if len(v) > 0 || c.Number != 0 {
			return kv.Compare{}, badRequest("an exists compare takes exists, not value or number")
		}
		if c.Op != "=" && c.Op != "!=" {
			return kv.Compare{}, badRequest("op %q on exists (want = or !=)", c.Op)
		}
	default:
		return kv.Compare{}, badRequest("target %q (want value, version, create_revision, mod_revision or exists)", c.Target)
	}
	switch c.Op {
	case "=", "!=", "<", ">":
	default:
		return kv.Compare{}, badRequest("op %q (want =, !=, < or >)", c.Op)
	}
	return kv.Compare{Key: c.Key, Target: target, Op: c.Op, Value: v, Number: c.Number, Exists: c.Exists}, nil
}

func toOps(branch string, in []txnOp, maxValue int64) ([]kv.Op, error) {
	var out []kv.Op
	for i, o := range in {
		op, err := o.toOp(maxValue)
		if err != nil {
			return nil, prefixed(fmt.Sprintf("%s[%d]", branch, i), err)
		}
		out = append(out, op)
	}
	return out, nil
}

func (o *txnOp) toOp(maxValue int64) (kv.Op, error) {
	typ, ok := txnOpTypes[o.Op]
	if !ok {
		return kv.Op{}, badRequest("op %q (want get, put, delete, delete_prefix or patch)", o.Op)
	}
	var err error
	if typ == kv.OpDeletePrefix {
		err = checkPrefix(o.Key)
	} else {
		err = kv.ValidateKey(o.Key)
	}
	if err != nil {
		return kv.Op{}, err
	}
	v, err := bytesOf(o.Value, o.ValueBase64)
	if err != nil {
		return kv.Op{}, badRequest("%w", err)
	}
	op := kv.Op{Type: typ, Key: o.Key, Value: v}
	switch typ {
	case kv.OpPut, kv.OpPatch:
		if int64(len(v)) > maxValue {
			return kv.Op{}, tooLarge("the value is %d bytes, the limit is %d", len(v), maxValue)
		}
		if typ == kv.OpPatch && !json.Valid(v) {
			return kv.Op{}, badRequest("the merge patch is not valid JSON")
		}
	default:
		if len(v) > 0 {
			return kv.Op{}, badRequest("%s takes no value", o.Op)
		}
	}
	if o.TTL != "" {
		if typ != kv.OpPut {
			return kv.Op{}, badRequest("ttl applies to put only")
		}
		if op.TTL, err = parseTTL(o.TTL); err != nil {
			return kv.Op{}, err
		}
	}
	return op, nil
}

// decodeTxn parses and checks a POST /v1/txn body.
func decodeTxn(body []byte, maxValue int64) (kv.Txn, error) {
	var req txnRequest
	if err := unmarshalStrict(body, &req, false); err != nil {
		return kv.Txn{}, err
	}
	return req.toTxn(maxValue)
}

func (a *api) txn(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, a.txnBodyLimit())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	t, err := decodeTxn(body, a.maxValue)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if t.WriteQuorum, err = quorumParam(r.URL.Query(), "w"); err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.svc.Txn(r.Context(), t)
	if err == nil && res == nil {
		err = errNoAnswer
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ran := t.Failure
	if res.Succeeded {
		ran = t.Success
	}
	out := txnResponse{Succeeded: res.Succeeded, Results: make([]txnResult, 0, len(res.Results))}
	if res.Timestamp != "" {
		out.Timestamp, out.Acks, out.Replicas = res.Timestamp, res.Acks, res.Replicas
		setStampHeaders(w.Header(), res.Timestamp, "")
	} else {
		out.Revision = &res.Revision
	}
	for i, or := range res.Results {
		rec := or.Record
		if or.Type == kv.OpPut && rec != nil && i < len(ran) && ran[i].Type == kv.OpPut && ran[i].Key == or.Key {
			// The service does not echo a put's value back; the request has it.
			withValue := *rec
			withValue.Value = ran[i].Value
			rec = &withValue
		}
		out.Results = append(out.Results, txnResult{Op: string(or.Type), Key: or.Key, Item: itemOf(rec, true), Deleted: or.Deleted})
	}
	writeJSON(w, http.StatusOK, out)
}
