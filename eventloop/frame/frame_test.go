package frame

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		codec   Codec
		in      string
		payload string
		n       int
		err     error
	}{
		{"length empty buffer", Length{}, "", "", 0, ErrIncomplete},
		{"length partial header", Length{}, "\x00\x00\x00", "", 0, ErrIncomplete},
		{"length zero frame", Length{}, "\x00\x00\x00\x00", "", 4, nil},
		{"length one frame", Length{}, "\x00\x00\x00\x03abc", "abc", 7, nil},
		{"length leaves the next frame", Length{}, "\x00\x00\x00\x01a\x00\x00", "a", 5, nil},
		{"length partial body", Length{}, "\x00\x00\x00\x05abc", "", 0, ErrIncomplete},
		{"length at max", Length{Max: 3}, "\x00\x00\x00\x03abc", "abc", 7, nil},
		{"length over max on header alone", Length{Max: 3}, "\x00\x00\x00\x04", "", 0, ErrTooLarge},
		{"length 0xFFFFFFFF", Length{}, "\xff\xff\xff\xff", "", 0, ErrTooLarge},
		{"line empty buffer", Line{}, "", "", 0, ErrIncomplete},
		{"line empty line", Line{}, "\n", "", 1, nil},
		{"line keeps CR", Line{}, "hi\r\nnext", "hi\r", 4, nil},
		{"line no newline yet", Line{}, "hello", "", 0, ErrIncomplete},
		{"line exactly max", Line{Max: 5}, "hello\n", "hello", 6, nil},
		{"line max without newline waits", Line{Max: 5}, "hello", "", 0, ErrIncomplete},
		{"line over max", Line{Max: 5}, "hello!", "", 0, ErrTooLarge},
		{"line newline past max", Line{Max: 5}, "hello!\n", "", 0, ErrTooLarge},
		{"fixed empty buffer", Fixed{Size: 4}, "", "", 0, ErrIncomplete},
		{"fixed short", Fixed{Size: 4}, "abc", "", 0, ErrIncomplete},
		{"fixed exact", Fixed{Size: 4}, "abcd", "abcd", 4, nil},
		{"fixed leaves rest", Fixed{Size: 2}, "abcd", "ab", 2, nil},
		{"raw empty", Raw{}, "", "", 0, ErrIncomplete},
		{"raw takes all", Raw{}, "a\nb\x00", "a\nb\x00", 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload, n, err := tt.codec.Decode([]byte(tt.in))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if string(payload) != tt.payload || n != tt.n {
				t.Fatalf("got (%q, %d), want (%q, %d)", payload, n, tt.payload, tt.n)
			}
		})
	}
}

func TestNeed(t *testing.T) {
	tests := []struct {
		codec Codec
		in    string
		want  int
	}{
		{Length{}, "", 4},
		{Length{}, "\x00\x00", 4},
		{Length{}, "\x00\x00\x01\x00ab", 260},
		{Line{}, "abc", 4},
		{Fixed{Size: 8}, "abc", 8},
		{Raw{}, "", 1},
	}
	for _, tt := range tests {
		if got := tt.codec.Need([]byte(tt.in)); got != tt.want {
			t.Errorf("%s.Need(%q) = %d, want %d", tt.codec, tt.in, got, tt.want)
		}
	}
}

// checkNeed is a fuzz property: while a frame is incomplete, Need promises
// more than is buffered, and no prefix shorter than Need decodes a frame.
func checkNeed(t *testing.T, c Codec, data []byte) {
	for i := 0; i <= len(data); i++ {
		if _, _, err := c.Decode(data[:i]); !errors.Is(err, ErrIncomplete) {
			continue
		}
		need := c.Need(data[:i])
		if need <= i {
			t.Fatalf("%s.Need(%q) = %d, not more than buffered", c, data[:i], need)
		}
		if need <= len(data) {
			if _, _, err := c.Decode(data[:need-1]); err == nil {
				t.Fatalf("%s decoded %q although Need said %d", c, data[:need-1], need)
			}
		}
	}
}

func TestDecodedPayloadCannotGrowIntoBuffer(t *testing.T) {
	// A handler appending to a payload must not overwrite the next frame.
	buf := []byte("\x00\x00\x00\x01a\x00\x00\x00\x01b")
	p, _, err := Length{}.Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(p, 'X')
	if buf[5] != 0 {
		t.Fatalf("append to payload overwrote the buffer: %q", buf)
	}
}

func TestAppend(t *testing.T) {
	tests := []struct {
		name    string
		codec   Codec
		payload string
		want    string
		err     error
	}{
		{"length", Length{}, "abc", "\x00\x00\x00\x03abc", nil},
		{"length empty", Length{}, "", "\x00\x00\x00\x00", nil},
		{"length too large", Length{Max: 2}, "abc", "", ErrTooLarge},
		{"line", Line{}, "hi\r", "hi\r\n", nil},
		{"line with newline", Line{}, "a\nb", "", ErrPayload},
		{"line too large", Line{Max: 2}, "abc", "", ErrTooLarge},
		{"fixed", Fixed{Size: 3}, "abc", "abc", nil},
		{"fixed wrong size", Fixed{Size: 3}, "ab", "", ErrPayload},
		{"raw", Raw{}, "a\nb", "a\nb", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix")
			got, err := tt.codec.Append(dst, []byte(tt.payload))
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if string(got) != "prefix" {
					t.Fatalf("failed Append changed dst to %q", got)
				}
				return
			}
			if string(got) != "prefix"+tt.want {
				t.Fatalf("got %q, want %q", got, "prefix"+tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		max     int
		want    string
		wantMax int
		errText string
	}{
		{"line", 0, "line", DefaultMaxLine, ""},
		{"line", 10, "line", 10, ""},
		{"length", 0, "length", DefaultMaxLength, ""},
		{"length", 5, "length", 5, ""},
		{"fixed:16", 0, "fixed:16", 16, ""},
		{"raw", 0, "raw", int(^uint(0) >> 1), ""},
		{"fixed:0", 0, "", 0, "fixed:N needs N from 1"},
		{"fixed:x", 0, "", 0, "fixed:N needs N from 1"},
		{"fixed:1048577", 0, "", 0, `"fixed:1048577": fixed:N needs N from 1 to 1048576`},
		{"fixed:16", 8, "", 0, "exceed the max frame size 8"},
		{"json", 0, "", 0, "known: line, length, fixed:N, raw"},
		{"line", -1, "", 0, "negative"},
	}
	for _, tt := range tests {
		c, err := Parse(tt.spec, tt.max)
		if tt.errText != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("Parse(%q, %d) err = %v, want one containing %q", tt.spec, tt.max, err, tt.errText)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q, %d): %v", tt.spec, tt.max, err)
			continue
		}
		if c.String() != tt.want || c.MaxPayload() != tt.wantMax {
			t.Errorf("Parse(%q, %d) = %s max %d, want %s max %d", tt.spec, tt.max, c, c.MaxPayload(), tt.want, tt.wantMax)
		}
	}
	if _, err := Parse("yaml", 0); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown spec error %v is not ErrSpec", err)
	}
	if _, err := Parse("fixed:1048577", 0); errors.Is(err, ErrSpec) {
		t.Errorf("fixed:N out of range is called unknown: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	payloads := [][]byte{{}, []byte("a"), []byte("hello\r"), bytes.Repeat([]byte{0xff}, 1000)}
	for _, c := range []Codec{Length{}, Line{}} {
		var stream []byte
		for _, p := range payloads {
			var err error
			if stream, err = c.Append(stream, p); err != nil {
				t.Fatalf("%s: Append(%q): %v", c, p, err)
			}
		}
		got, rest, err := decodeStream(c, [][]byte{stream})
		if err != nil || len(rest) != 0 {
			t.Fatalf("%s: decode: err %v, %d bytes left", c, err, len(rest))
		}
		if len(got) != len(payloads) {
			t.Fatalf("%s: got %d frames, want %d", c, len(got), len(payloads))
		}
		for i := range got {
			if !bytes.Equal(got[i], payloads[i]) {
				t.Fatalf("%s: frame %d = %q, want %q", c, i, got[i], payloads[i])
			}
		}
	}
}

// decodeStream feeds chunks to c the way a server does: it appends each chunk
// to what is buffered, takes every complete frame, and keeps the rest. It
// returns copies of the frames, the bytes left over, and the first error
// other than ErrIncomplete.
func decodeStream(c Codec, chunks [][]byte) (frames [][]byte, rest []byte, err error) {
	var buf []byte
	for _, chunk := range chunks {
		buf = append(buf, chunk...)
		for {
			p, n, derr := c.Decode(buf)
			if errors.Is(derr, ErrIncomplete) {
				break
			}
			if derr != nil {
				return frames, buf, derr
			}
			if n <= 0 || n > len(buf) {
				panic("Decode returned an impossible length")
			}
			frames = append(frames, bytes.Clone(p))
			buf = buf[n:]
		}
	}
	return frames, buf, nil
}

// fuzzCodecs are small-limit codecs so that fuzz inputs reach every branch,
// too-large included.
var fuzzCodecs = []Codec{Length{Max: 16}, Line{Max: 16}, Fixed{Size: 3}, Raw{}}

// checkSplits is the fuzz property: for every codec and every split point,
// decoding data in two reads yields the same frames, leftover and error as
// decoding it in one. Raw frames follow the reads, so for raw only the bytes
// are compared.
func checkSplits(t *testing.T, data []byte) {
	if len(data) > 2048 {
		data = data[:2048]
	}
	for _, c := range fuzzCodecs {
		checkNeed(t, c, data)
		want, wantRest, wantErr := decodeStream(c, [][]byte{data})
		for i := 0; i <= len(data); i++ {
			got, gotRest, gotErr := decodeStream(c, [][]byte{data[:i], data[i:]})
			if !errors.Is(gotErr, wantErr) || (gotErr == nil) != (wantErr == nil) {
				t.Fatalf("%s split at %d of %q: err %v, unsplit %v", c, i, data, gotErr, wantErr)
			}
			if _, raw := c.(Raw); raw {
				if !bytes.Equal(bytes.Join(got, nil), bytes.Join(want, nil)) {
					t.Fatalf("raw split at %d of %q: bytes differ", i, data)
				}
				continue
			}
			if wantErr != nil {
				gotRest, wantRest = nil, nil // a dead stream's leftover depends on when it died
			}
			if !bytes.Equal(gotRest, wantRest) || len(got) != len(want) {
				t.Fatalf("%s split at %d of %q: %d frames rest %q, unsplit %d frames rest %q",
					c, i, data, len(got), gotRest, len(want), wantRest)
			}
			for k := range got {
				if !bytes.Equal(got[k], want[k]) {
					t.Fatalf("%s split at %d of %q: frame %d = %q, unsplit %q", c, i, data, k, got[k], want[k])
				}
			}
		}
	}
}

func FuzzDecodeSplit(f *testing.F) {
	for _, seed := range []string{
		"", "\n", "a\nb\n", "hi\r\n\n\n", "no newline", strings.Repeat("x", 20) + "\n",
		"\x00\x00\x00\x00", "\x00\x00\x00\x03abc\x00\x00", "\xff\xff\xff\xff", "\x00\x00\x00\x11",
		"abcdefg", "\x00\x00\x00\x02a\nb\n\x00",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(checkSplits)
}

// FuzzAppendDecode checks that whatever Append accepts, Decode returns intact.
func FuzzAppendDecode(f *testing.F) {
	for _, seed := range []string{"", "abc", "a\nb", "\r", "\x00\x00\x00\x05", strings.Repeat("z", 17)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, c := range fuzzCodecs {
			enc, err := c.Append(nil, payload)
			if err != nil {
				continue
			}
			got, n, err := c.Decode(enc)
			if err != nil || n != len(enc) || !bytes.Equal(got, payload) {
				if _, raw := c.(Raw); raw && len(payload) == 0 {
					continue // an empty raw write is no frame at all
				}
				t.Fatalf("%s: Decode(Append(%q)) = %q, %d, %v", c, payload, got, n, err)
			}
		}
	})
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var buf []byte
	buf, _ = Length{}.Append(buf, []byte("hello, world"))
	buf, _ = Line{}.Append(buf, []byte("hello, world"))
	for _, c := range []Codec{Length{}, Line{}, Fixed{Size: 16}, Raw{}} {
		allocs := testing.AllocsPerRun(100, func() {
			_, _, _ = c.Decode(buf)
			_, _, _ = c.Decode(buf[:2])
		})
		if allocs != 0 {
			t.Errorf("%s: Decode allocates %.1f times per call", c, allocs)
		}
	}
}
