//go:build linux

package load_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"echoloop/bench/load"
	"echoloop/eventloop/frame"
)

// TestLockstepServer runs against a server that reads one frame, then blocks
// writing its reply until the client reads it, over sockets whose buffers
// hold a small part of one pipeline. A client that writes the whole pipeline
// before it reads waits on the server while the server waits on it, until
// the timeout; a client that reads while its frames go out gets every reply.
func TestLockstepServer(t *testing.T) {
	const (
		bufSize  = 16 << 10 // SO_SNDBUF and SO_RCVBUF; the kernel doubles them
		size     = 64 << 10
		pipeline = 32 // 2 MiB a pipeline, against about 300 KiB of buffers
		requests = 256
	)
	for _, cl := range clients {
		t.Run(string(cl), func(t *testing.T) {
			t.Parallel()
			addr := lockstepServer(t, bufSize)
			opts := load.Options{Addr: addr, Codec: frame.Length{}, Conns: 2, Size: size, Pipeline: pipeline,
				Requests: requests, Timeout: 2 * time.Second, Client: cl}
			sum := runWithin(t, opts, 30*time.Second)
			if !sum.OK || sum.FramesVerified != requests {
				t.Fatalf("verified %d of %d frames, errors %+v: client and server waited on each other",
					sum.FramesVerified, requests, sum.Errors)
			}
		})
	}
}

// runWithin is run, failing the test if Run has not returned within d.
func runWithin(t *testing.T, opts load.Options, d time.Duration) *load.Summary {
	t.Helper()
	opts.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	type result struct {
		sum *load.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := load.Run(context.Background(), opts)
		done <- result{sum, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("run: %v", r.err)
		}
		return r.sum
	case <-timer.C:
		t.Fatalf("Run did not return within %v", d)
		return nil
	}
}

// lockstepServer starts a length-framed echo server that answers each frame
// before reading the next, with blocking writes, and whose sockets and its
// clients' send buffers are set to bufSize. It returns the server's address.
func lockstepServer(t *testing.T, bufSize int) string {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setBuffers(rc, bufSize) // accepted sockets inherit them
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			// Before the first reply, so before the client's load begins.
			if err := setClientSendBuffer(c, bufSize); err != nil {
				t.Errorf("client send buffer: %v", err)
				c.Close()
				continue
			}
			wg.Go(func() { echoInLockstep(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echoInLockstep(c net.Conn) {
	buf := make([]byte, 4+1<<20)
	for {
		if _, err := io.ReadFull(c, buf[:4]); err != nil {
			return
		}
		n := 4 + int(binary.BigEndian.Uint32(buf))
		if n > len(buf) {
			return
		}
		if _, err := io.ReadFull(c, buf[4:n]); err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func setBuffers(rc syscall.RawConn, size int) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, size),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size))
	})
	return errors.Join(err, serr)
}

// setClientSendBuffer sets SO_SNDBUF on the client end of the accepted
// connection c. The client runs in this process, so its socket is among this
// process's file descriptors: the one whose local and peer addresses are c's
// peer and local addresses. A set SO_SNDBUF also stops the kernel from
// growing the buffer, which would otherwise take megabytes of a pipeline.
func setClientSendBuffer(c net.Conn, size int) error {
	local, peer := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, f := range fds {
		fd, err := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		sa, err1 := unix.Getsockname(fd)
		pa, err2 := unix.Getpeername(fd)
		if err1 == nil && err2 == nil && isAddr(sa, local) && isAddr(pa, peer) {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, size)
		}
	}
	return errors.New("no socket in this process from " + local.String())
}

// isAddr reports whether sa is the IPv4 address a.
func isAddr(sa unix.Sockaddr, a *net.TCPAddr) bool {
	in4, ok := sa.(*unix.SockaddrInet4)
	return ok && in4.Port == a.Port && net.IP(in4.Addr[:]).Equal(a.IP)
}
