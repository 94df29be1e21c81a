// Package servertest starts echoloop servers and clients for tests, on
// 127.0.0.1 port 0, and cleans them up when the test ends.
package servertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"echoloop/bench/model"
	"echoloop/eventloop/frame"
)

// IOTimeout bounds every client read and write in tests, so a server bug
// fails the test instead of hanging it.
const IOTimeout = 30 * time.Second

// Start starts a server of opts.Model on 127.0.0.1:0 (unless opts.Addr is
// set), waits until it listens, and stops it when the test ends, checking
// that it stopped cleanly. A nil opts.Logger logs at debug level to the test
// log, shown only when the test fails.
func Start(tb testing.TB, opts model.Options) model.Server {
	tb.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if reflect.ValueOf(opts.Logger).IsZero() {
		opts.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.DebugLevel)
	}
	srv, err := model.New(opts)
	if err != nil {
		tb.Fatalf("new %s server: %v", opts.Model, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	<-srv.Ready()
	if srv.Addr() == nil {
		tb.Fatalf("%s server did not start: %v", opts.Model, <-served)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
		if err := <-served; !model.IsServerClosed(err) {
			tb.Errorf("ListenAndServe returned %v, want server closed", err)
		}
	})
	return srv
}

// Dial connects to addr and closes the connection when the test ends.
func Dial(tb testing.TB, addr net.Addr) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), IOTimeout)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// Client reads frames from a connection with a codec, the way a careful
// client does: it keeps what it has read until a whole frame is there.
type Client struct {
	Conn  net.Conn
	Codec frame.Codec
	r     *bufio.Reader
	buf   []byte
	chunk []byte
}

// NewClient wraps conn.
func NewClient(conn net.Conn, codec frame.Codec) *Client {
	return &Client{Conn: conn, Codec: codec, r: bufio.NewReaderSize(conn, 64<<10), chunk: make([]byte, 64<<10)}
}

// Send encodes each payload as a frame and writes them all with one write.
func (c *Client) Send(payloads ...[]byte) error {
	var out []byte
	for _, p := range payloads {
		var err error
		if out, err = c.Codec.Append(out, p); err != nil {
			return err
		}
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(IOTimeout))
	_, err := c.Conn.Write(out)
	return err
}

// Recv returns the next frame; the slice is valid until the next Recv.
func (c *Client) Recv() ([]byte, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(IOTimeout))
	for {
		if len(c.buf) > 0 {
			p, n, err := c.Codec.Decode(c.buf)
			if err == nil {
				c.buf = c.buf[n:]
				return p, nil
			}
			if !errors.Is(err, frame.ErrIncomplete) {
				return nil, err
			}
		}
		n, err := c.r.Read(c.chunk)
		c.buf = append(c.buf, c.chunk[:n]...)
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) && len(c.buf) > 0 {
				return nil, fmt.Errorf("EOF with %d bytes of a partial frame: %w", len(c.buf), io.ErrUnexpectedEOF)
			}
			return nil, err
		}
	}
}

// ReadFull reads exactly n bytes.
func ReadFull(conn net.Conn, n int) ([]byte, error) {
	_ = conn.SetReadDeadline(time.Now().Add(IOTimeout))
	b := make([]byte, n)
	_, err := io.ReadFull(conn, b)
	return b, err
}

// WaitClosed reads and discards until the server closes conn, and returns
// the error that ended the read: io.EOF for an orderly close, or a reset.
func WaitClosed(conn net.Conn) error {
	_ = conn.SetReadDeadline(time.Now().Add(IOTimeout))
	_, err := io.Copy(io.Discard, conn)
	if err == nil {
		return io.EOF
	}
	return err
}

// Eventually waits, up to IOTimeout, for cond to hold: for server-side state
// that follows a client-visible event (a close being counted) without a
// happens-before edge the test can wait on.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	Until(tb, IOTimeout, what, func() (bool, string) { return cond(), "it did not" })
}

// Until polls cond, which also describes the state it saw, until it holds;
// after limit the test fails with the last description. Like Eventually,
// it is for state with no event a test can wait on (a server's counters, a
// timeout's effect), never for readiness.
func Until(tb testing.TB, limit time.Duration, what string, cond func() (ok bool, state string)) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s (within %v): %s", what, limit, state)
		}
		time.Sleep(time.Millisecond)
	}
}

// LogBuffer is an io.Writer for a server's logger that tests can search.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Contains reports whether any logged line contains every one of parts.
func (b *LogBuffer) Contains(parts ...string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for line := range strings.SplitSeq(b.buf.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all && line != "" {
			return true
		}
	}
	return false
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Children lists the live processes whose parent is this one, as
// "pid (name)": a test that starts processes checks it is empty at the end.
func Children() []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && f[0] != "Z" {
			kids = append(kids, string(b[:i+1]))
		}
	}
	return kids
}
