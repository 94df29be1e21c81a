package frame

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkDecode reports ns per frame and MB/s of payload for each framing,
// walking a buffer of many frames the way OnTraffic does.
func BenchmarkDecode(b *testing.B) {
	for _, size := range []int{64, 4096} {
		payload := bytes.Repeat([]byte{'x'}, size)
		for _, c := range []Codec{Length{}, Line{}, Fixed{Size: size}, Raw{}} {
			const perBuf = 64
			var buf []byte
			for range perBuf {
				buf, _ = c.Append(buf, payload)
			}
			if _, raw := c.(Raw); raw {
				buf = payload // one read, one frame
			}
			b.Run(fmt.Sprintf("%s/%dB", c, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				rest := buf
				for b.Loop() {
					if len(rest) == 0 {
						rest = buf
					}
					p, n, err := c.Decode(rest)
					if err != nil || len(p) == 0 {
						b.Fatal(err)
					}
					rest = rest[n:]
				}
			})
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	payload := bytes.Repeat([]byte{'x'}, 64)
	for _, c := range []Codec{Length{}, Line{}, Fixed{Size: 64}, Raw{}} {
		b.Run(c.String(), func(b *testing.B) {
			b.SetBytes(64)
			b.ReportAllocs()
			dst := make([]byte, 0, 256)
			for b.Loop() {
				var err error
				if dst, err = c.Append(dst[:0], payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
