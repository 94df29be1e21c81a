package load_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"echoloop/bench/load"
	"echoloop/eventloop/frame"
)

// shownWriter is the client's output, which a scripted server awaits.
type shownWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // a token after each write
}

func newShownWriter() *shownWriter { return &shownWriter{wrote: make(chan struct{}, 1)} }

func (w *shownWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

func (w *shownWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// await waits for the client to have printed s.
func (w *shownWriter) await(s string) error {
	timeout := time.After(30 * time.Second)
	for !strings.Contains(w.String(), s) {
		select {
		case <-w.wrote:
		case <-timeout:
			return fmt.Errorf("the client did not print %q; it printed %q", s, w.String())
		}
	}
	return nil
}

// TestInteractiveShowReads answers a line in two writes, the second once
// the client has printed its read of the first, then one write holding two
// lines, then closes: the client shows each read, with the replies each
// completes after it, and the end of the stream.
func TestInteractiveShowReads(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := newShownWriter()
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := io.ReadFull(c, make([]byte, len("hello\n"))); err != nil {
				return err
			}
			if _, err := c.Write([]byte("hel")); err != nil {
				return err
			}
			if err := out.await(`[read 3 bytes: "hel"]`); err != nil {
				return err
			}
			if _, err := c.Write([]byte("lo\n")); err != nil {
				return err
			}
			if err := out.await("hello\n"); err != nil {
				return err
			}
			_, err = c.Write([]byte("a\nb\n"))
			return err
		}()
	}()

	err = load.Interactive(context.Background(), load.InteractiveOptions{
		Addr: ln.Addr().String(), Codec: frame.Line{}, In: strings.NewReader("hello\n"), Out: out, ShowReads: true,
		Wait: time.Minute,
	})
	if serr := <-served; serr != nil {
		t.Fatal(serr)
	}
	if err != nil {
		t.Fatal(err)
	}
	want := `[read 3 bytes: "hel"]` + "\n" +
		`[read 3 bytes: "lo\n"]` + "\nhello\n" +
		`[read 4 bytes: "a\nb\n"]` + "\na\nb\n" +
		"[read 0 bytes: end of stream]\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}

func TestInteractiveShowReadsLongRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	long := strings.Repeat("x", 100)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte(long + "\n"))
	}()
	out := newShownWriter()
	// Nothing to send: the client shuts its side at once and prints until
	// the server closes.
	err = load.Interactive(context.Background(), load.InteractiveOptions{
		Addr: ln.Addr().String(), Codec: frame.Line{}, In: strings.NewReader(""), Out: out, ShowReads: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `[read 101 bytes: "` + long[:64] + `"...]` + "\n" + long + "\n[read 0 bytes: end of stream]\n"
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}
