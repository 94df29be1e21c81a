package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// FuzzHeader feeds Parse arbitrary bytes in every mode. It must never panic;
// it consumes nothing unless it succeeds, and then no more than it was
// given; the shortest prefix on which it decides decides as the whole input
// does (so the outcome does not depend on how the bytes were split across
// reads); and in mode Any it agrees with go-proxyproto reading the same
// stream.
func FuzzHeader(f *testing.F) {
	for _, tt := range validHeaders {
		f.Add(uint8(tt.version), tt.hdr)
		f.Add(uint8(Any), append(append([]byte(nil), tt.hdr...), "hello\n"...))
	}
	for _, s := range []string{"", "GET / HTTP/1.1\r\n", "PROXY ", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"} {
		f.Add(uint8(Any), []byte(s))
	}
	f.Fuzz(func(t *testing.T, m uint8, data []byte) {
		mode := Mode(m % uint8(numModes))
		h, n, err := Parse(mode, data, socketPeer)
		checkResult(t, mode, data, h, n, err)

		// The first prefix that is not incomplete decides as the whole.
		first := -1
		for i := range min(len(data), MaxLen+1) + 1 {
			if _, _, e := Parse(mode, data[:i], socketPeer); !errors.Is(e, ErrIncomplete) {
				first = i
				break
			}
		}
		switch {
		case errors.Is(err, ErrIncomplete):
			if first >= 0 {
				t.Fatalf("%d bytes decide (%v) but all %d are incomplete", first, err, len(data))
			}
			return
		case first < 0:
			t.Fatalf("no prefix decides, the whole input does: %v", err)
		case err == nil && mode != Off && first != n:
			t.Fatalf("header of %d bytes, first decided on %d", n, first)
		}
		for _, i := range []int{first, min(first+1, len(data))} {
			hi, ni, erri := Parse(mode, data[:i], socketPeer)
			if got, want := outcome(hi, ni, erri), outcome(h, n, err); got != want {
				t.Fatalf("on %d of %d bytes: %s; on all: %s", i, len(data), got, want)
			}
		}
		if mode == Any {
			agreeWithParser(t, data, h, n, err)
		}
	})
}

func checkResult(t *testing.T, mode Mode, data []byte, h Header, n int, err error) {
	t.Helper()
	switch {
	case n < 0 || n > len(data):
		t.Fatalf("consumed %d of %d bytes", n, len(data))
	case err != nil && n != 0:
		t.Fatalf("consumed %d bytes with %v", n, err)
	case err != nil && !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrBadHeader):
		t.Fatalf("error %v is neither incomplete nor a bad header", err)
	case err == nil && h.Source == nil:
		t.Fatal("no source address")
	case err == nil && mode != Off && (n == 0 || (h.Version != 1 && h.Version != 2)):
		t.Fatalf("header version %d of %d bytes", h.Version, n)
	case err == nil && h.Local && h.Source != socketPeer:
		t.Fatalf("LOCAL header with source %v", h.Source)
	}
	if err == nil {
		_ = h.Source.String() // a nil address inside an interface would panic here
		if h.Dest != nil {
			_ = h.Dest.String()
		}
	}
}

func outcome(h Header, n int, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("v%d local=%v %v->%v n=%d tlvs=%d", h.Version, h.Local, h.Source, h.Dest, n, len(h.TLVs))
}

// agreeWithParser reads data as one stream with go-proxyproto alone. Where
// Parse took a header, the parser takes the same one and the same bytes;
// where Parse refused one, so does the parser (bar TLVs, which only Parse
// checks, and headers Parse waits for and the parser gives up on).
func agreeWithParser(t *testing.T, data []byte, h Header, n int, err error) {
	t.Helper()
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, MaxLen+16)
	ph, perr := pp.Read(br)
	switch {
	case err == nil:
		if perr != nil {
			t.Fatalf("Parse took %d bytes, the parser failed: %v", n, perr)
		}
		if used := len(data) - br.Buffered() - src.Len(); used != n {
			t.Fatalf("Parse took %d bytes, the parser %d", n, used)
		}
		if !ph.Command.IsLocal() && h.Source != socketPeer && h.Source.String() != ph.SourceAddr.String() {
			t.Fatalf("source %v, the parser's %v", h.Source, ph.SourceAddr)
		}
	case errors.Is(err, ErrBadHeader):
		if perr == nil && !isTLVError(err) {
			t.Fatalf("Parse refused (%v), the parser took %v", err, ph)
		}
	}
}

func isTLVError(err error) bool {
	return errors.Is(err, pp.ErrTruncatedTLV) || errors.Is(err, pp.ErrMalformedTLV)
}
