package respapi

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairnkv/cairn/kv"
)

func BenchmarkParseSet(b *testing.B) {
	frame := encode("SET", "key:000001", string(bytes.Repeat([]byte("v"), 100)))
	var p parser
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.parse(frame, testLimits); err != nil {
			b.Fatal(err)
		}
	}
}

// acceptWrites answers every write as applied and keeps nothing, so that a
// benchmark measures the front end alone. It serves nothing else.
type acceptWrites struct{ Service }

func (acceptWrites) TxnBatch(_ context.Context, txns []kv.Txn) ([]*kv.TxnResult, []error, error) {
	res := make([]*kv.TxnResult, len(txns))
	for i := range res {
		res[i] = &kv.TxnResult{Succeeded: true}
	}
	return res, make([]error, len(txns)), nil
}

// BenchmarkPipelinedSet measures the front end alone (the service accepts
// every write and keeps nothing): 16 pipelined SETs per round trip.
func BenchmarkPipelinedSet(b *testing.B) { benchPipelinedSet(b, Options{}) }

// BenchmarkPipelinedSetMetrics is BenchmarkPipelinedSet with the command
// metrics on: the difference is what they cost.
func BenchmarkPipelinedSetMetrics(b *testing.B) {
	benchPipelinedSet(b, Options{Registerer: prometheus.NewRegistry()})
}

func benchPipelinedSet(b *testing.B, o Options) {
	srv := startServer(b, acceptWrites{}, o)
	c := dial(b, srv)
	var buf bytes.Buffer
	for i := 0; i < 16; i++ {
		buf.Write(encode("SET", fmt.Sprintf("key:%02d", i), "value"))
	}
	frames := buf.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		c.send(frames)
		for i := 0; i < 16; i++ {
			if r := c.read(); r != "+OK" {
				b.Fatal(r)
			}
		}
	}
}
