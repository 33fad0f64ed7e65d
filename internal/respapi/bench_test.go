package respapi

import (
	"bytes"
	"fmt"
	"testing"
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

// BenchmarkPipelinedSet measures the front end alone (the fake service
// applies writes in memory): 16 pipelined SETs per round trip.
func BenchmarkPipelinedSet(b *testing.B) {
	srv := startServer(b, newFake(), Options{})
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
