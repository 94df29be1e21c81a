// Package faultserver starts deliberately broken echo servers for tests of
// the load generator: each echoes faithfully except for one planted fault,
// which a verifying client must catch. Servers listen on 127.0.0.1 port 0,
// run one goroutine per connection, and are stopped, with every connection
// closed and every goroutine returned, when the test ends.
package faultserver

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"echoloop/eventloop/frame"
)

// Fault is what a server does wrong.
type Fault interface{ fault() }

// DropByte echoes the byte stream of every connection but leaves out the
// byte at stream offset Offset (0-based).
type DropByte struct{ Offset int }

// SwapReplies echoes frames but sends the replies to frames At and At+1
// (0-based, per connection) in the wrong order. The client must have both in
// flight (pipeline 2 or more), or the server waits for frame At+1 forever.
type SwapReplies struct{ At int }

// StallOnce echoes frames but, before answering the After-th frame
// (0-based, counted over all connections), sleeps For, once.
type StallOnce struct {
	After int64
	For   time.Duration
}

// CloseMidReply echoes frames but, at frame At of a connection (0-based),
// writes half of its reply and closes the connection in order: a FIN after
// the earlier replies, then what the client still sends is read and dropped
// until it closes too.
type CloseMidReply struct{ At int }

func (DropByte) fault()      {}
func (SwapReplies) fault()   {}
func (StallOnce) fault()     {}
func (CloseMidReply) fault() {}

// Start starts a server with the given framing (used by the frame faults)
// and fault, and returns its address.
func Start(tb testing.TB, codec frame.Codec, f Fault) net.Addr {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faultserver: listen: %v", err)
	}
	s := &server{codec: codec, fault: f, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept(ln)
	tb.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return ln.Addr()
}

type server struct {
	codec   frame.Codec
	fault   Fault
	frames  atomic.Int64 // frames answered, all connections
	stalled atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closed  bool
}

func (s *server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			if d, ok := s.fault.(DropByte); ok {
				s.dropByte(c, d.Offset)
				return
			}
			s.echoFrames(c)
		}()
	}
}

// dropByte copies the stream back without the byte at offset.
func (s *server) dropByte(c net.Conn, offset int) {
	buf := make([]byte, 4096)
	pos := 0
	for {
		n, err := c.Read(buf)
		chunk := buf[:n]
		if pos <= offset && offset < pos+n {
			i := offset - pos
			chunk = append(chunk[:i:i], chunk[i+1:]...)
		}
		pos += n
		if _, werr := c.Write(chunk); werr != nil || err != nil {
			return
		}
	}
}

// echoFrames decodes frames and echoes each, applying a frame fault.
func (s *server) echoFrames(c net.Conn) {
	var buf []byte
	chunk := make([]byte, 64<<10)
	var held []byte // SwapReplies: the reply to frame At, sent after At+1's
	seq := 0
	for {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		var out []byte
		for {
			p, used, derr := s.codec.Decode(buf)
			if derr != nil {
				if !errors.Is(derr, frame.ErrIncomplete) {
					return
				}
				break
			}
			reply, _ := s.codec.Append(nil, p)
			buf = buf[used:]
			switch f := s.fault.(type) {
			case SwapReplies:
				switch seq {
				case f.At:
					held = reply
					reply = nil
				case f.At + 1:
					reply = append(reply, held...)
				}
			case StallOnce:
				if s.frames.Load() >= f.After && !s.stalled.Swap(true) {
					if len(out) > 0 { // answer what came before the stall first
						if _, err := c.Write(out); err != nil {
							return
						}
						out = out[:0]
					}
					time.Sleep(f.For) // the planted fault: a server that stops answering
				}
			case CloseMidReply:
				if seq == f.At {
					_, _ = c.Write(append(out, reply[:len(reply)/2]...))
					_ = c.(*net.TCPConn).CloseWrite()
					_, _ = io.Copy(io.Discard, c)
					return
				}
			}
			s.frames.Add(1)
			out = append(out, reply...)
			seq++
		}
		buf = append([]byte(nil), buf...)
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if err != nil { // EOF or a closed connection: done either way
			return
		}
	}
}
