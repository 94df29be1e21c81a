package netserver

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"echoloop/eventloop/session"
)

// scriptedConn is a net.Conn whose writes return what a script says, to
// test writeAll's handling of partial progress without waiting on a real
// socket's timeouts.
type scriptedConn struct {
	net.Conn // nil: only the methods below are called
	script   []scriptedWrite
	wrote    []byte
	armed    int // write deadlines set
}

type scriptedWrite struct {
	n   int
	err error
}

func (s *scriptedConn) Write(p []byte) (int, error) {
	w := s.script[0]
	s.script = s.script[1:]
	s.wrote = append(s.wrote, p[:w.n]...)
	return w.n, w.err
}

func (s *scriptedConn) SetWriteDeadline(time.Time) error { s.armed++; return nil }
func (s *scriptedConn) SetReadDeadline(time.Time) error  { return nil }

func scriptedServerConn(t *testing.T, script ...scriptedWrite) (*conn, *scriptedConn) {
	t.Helper()
	s, err := New(Options{Config: session.Config{WriteTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	nc := &scriptedConn{script: script}
	return newConn(s, nc), nc
}

// The write timeout bounds a wait without progress, not a whole reply: a
// write that times out after some progress goes on, with a fresh deadline,
// and one that times out without any fails.
func TestWriteTimeoutMeansNoProgress(t *testing.T) {
	timeout, broken := os.ErrDeadlineExceeded, errors.New("broken pipe")
	reply := []byte("0123456789")
	tests := []struct {
		name    string
		script  []scriptedWrite
		wantErr error // nil: all written
		written int
	}{
		{"progress every time", []scriptedWrite{{3, timeout}, {2, timeout}, {5, nil}}, nil, 10},
		{"progress, then none", []scriptedWrite{{3, timeout}, {0, timeout}}, timeout, 3},
		{"progress, then an error", []scriptedWrite{{4, timeout}, {1, broken}}, broken, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, nc := scriptedServerConn(t, tt.script...)
			if err := c.writeAll(reply); !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("writeAll = %v, want %v", err, tt.wantErr)
			}
			if !bytes.Equal(nc.wrote, reply[:tt.written]) {
				t.Errorf("wrote %q, want %q", nc.wrote, reply[:tt.written])
			}
			if len(nc.script) != 0 || nc.armed != len(tt.script) {
				t.Errorf("%d writes left unmade, deadline armed %d times for %d writes; want every write made, each armed",
					len(nc.script), nc.armed, len(tt.script))
			}
			if got := c.srv.Stats().BytesOut; got != int64(tt.written) {
				t.Errorf("BytesOut = %d, want %d", got, tt.written)
			}
		})
	}
}

// An eviction ends a write at once, whatever the write timeout.
func TestWriteEndsOnEviction(t *testing.T) {
	c, nc := scriptedServerConn(t)
	c.evict(1)
	if err := c.writeAll([]byte("x")); !errors.Is(err, errWoken) {
		t.Fatalf("writeAll after an eviction = %v, want errWoken", err)
	}
	if len(nc.wrote) != 0 {
		t.Errorf("wrote %q after the eviction", nc.wrote)
	}
	if err := c.writeFailed(errWoken); err != nil || c.Closing() != session.MemoryLimit {
		t.Errorf("writeFailed = %v, closing %v; want nil, %v", err, c.Closing(), session.MemoryLimit)
	}
}
