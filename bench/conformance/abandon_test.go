package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"echoloop/bench/servertest"
	"echoloop/eventloop/frame"
	"echoloop/eventloop/session"
	"echoloop/handlers"
)

// TestAttackSlowConsumerIsReset: a client that sends frames and never reads
// a reply is closed as a slow consumer, and is told so at once, though it
// reads nothing. The close gives up on the replies queued for it, so it
// resets the connection. A plain close would queue its FIN behind those
// replies, which the client's closed window never lets through: the
// client's side would stay open (established, or after its own half-close
// FIN-WAIT-2), and the server's kernel would keep the replies and retry for
// minutes.
//
// Only the half-closed case needs the server's reset: in the echo case the
// server closes with the client's input still unread, and the kernel resets
// for that whatever the close asked. It stays as the common case of the
// attack. In the work case the client half-closes after its frames, so
// that on the event loop the replies the handler still owes are being
// written on a hand-off when the server gives up on them.
func TestAttackSlowConsumerIsReset(t *testing.T) {
	cases := []struct {
		name      string
		handler   func() handlers.Handler
		size      int  // bytes of frames sent
		frame     int  // bytes per frame
		halfClose bool // after writing them
	}{
		{"echo", func() handlers.Handler { return handlers.Echo{} }, 1_000_000, 64, false},
		// Work answers a connection's frames one at a time, 2 ms each, so
		// most replies come after the EOF, and there are more of them than
		// the kernel's buffers take in from a peer that does not read: on
		// the event loop they are owed after the EOF, and written on a
		// hand-off when the server gives up on them.
		{"work, half-closed", func() handlers.Handler {
			h, _ := handlers.NewWork(handlers.WorkOptions{Work: 2 * time.Millisecond})
			return h
		}, 6_000_000, 8 << 10, true},
	}
	eachModel(t, func(t *testing.T, m string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				srv, _ := startLogged(t, m, session.Config{
					Handler: tc.handler(), MaxPending: 64 << 10, WriteTimeout: 300 * time.Millisecond,
				})
				conn := dialSmallWindow(t, srv.Addr()).(*net.TCPConn)
				var stream []byte
				for i := 0; len(stream) < tc.size; i++ {
					line := fmt.Appendf(nil, "%08d frame from a peer that never reads its replies ", i)
					stream = append(append(stream, line...), bytes.Repeat([]byte{'.'}, tc.frame-len(line)-1)...)
					stream = append(stream, '\n')
				}
				// Write once, and then nothing: a write after the close
				// would draw a reset from the server's kernel whatever the
				// close did.
				_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
				wrote := make(chan struct{})
				go func() {
					defer close(wrote)
					if _, err := conn.Write(stream); err == nil && tc.halfClose {
						_ = conn.CloseWrite()
					}
				}()
				servertest.Until(t, 20*time.Second, "closed as a slow consumer", func() (bool, string) {
					st := srv.Stats()
					return st.Closes[session.SlowConsumer] == 1, fmt.Sprintf("closes %v, read %d bytes, %d frames in, %d out, %d conns open", st.Closes, st.BytesIn, st.FramesIn, st.FramesOut, st.ConnsOpen)
				})
				waitReset(t, conn)
				<-wrote // the reset ends a write still blocked
			})
		}
	})
}

// TestShutdownCutIsReset: a connection the shutdown deadline cuts off with
// replies still unsent is reset, as a slow consumer's close is (see
// TestAttackSlowConsumerIsReset). The client sends one frame, half-closes
// and reads nothing; the handler answers it with 1.2 MB, more than the
// kernel takes for a peer that does not read, so the server is still
// writing when the deadline passes. Having read all the client's input, the
// server's kernel would not reset on its own: without the reset the
// client's side stayed in FIN-WAIT-2 on the goroutine model.
func TestShutdownCutIsReset(t *testing.T) {
	chunk := bytes.Repeat([]byte{'r'}, 60<<10)
	flood := handlers.HandlerFunc(func(c handlers.Conn, _ []byte) {
		for range 20 {
			_ = c.Reply(chunk)
		}
	})
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{Handler: flood})
		conn := dialSmallWindow(t, srv.Addr()).(*net.TCPConn)
		mustWrite(t, conn, "one\n")
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		servertest.Eventually(t, "the frame read", func() bool { return srv.Stats().FramesIn == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
		waitReset(t, conn)
	})
}

// waitReset waits, without reading (which would open conn's window), until
// the client's side of conn is closed: reset by the server. A FIN queued
// behind replies the client never reads would leave it established (or,
// after its own half-close, in FIN-WAIT-2).
func waitReset(t *testing.T, conn *net.TCPConn) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	servertest.Until(t, 10*time.Second, "the client's side to be reset without reading", func() (bool, string) {
		var info *unix.TCPInfo
		var ierr error
		if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
			return false, fmt.Sprintf("TCP_INFO: %v %v", err, ierr)
		}
		return info.State == unix.BPF_TCP_CLOSE, fmt.Sprintf("TCP state %d (7: closed)", info.State)
	})
}

// TestAttackSlowReaderKernelQueue: a client that sends frames and never
// reads its replies cannot make the server's kernel keep megabytes of them.
// Without session.UnsentLimit, Linux grew the server socket's send queue
// to about 4 MB for such a client (200 of them held 800 MB and put every
// connection on the machine under TCP memory pressure); with it, the
// replies beyond in flight plus the limit wait in the server, where
// MaxPending and the memory budget count them. The client's receive
// buffer is small, so that little is in flight. The server's send queue is
// read from /proc/net/tcp while the client sends 1 MiB that the server
// echoes whole; it must never pass the limit by more than one write's
// overshoot (the kernel checks the limit before each 64 KiB segment it
// builds).
func TestAttackSlowReaderKernelQueue(t *testing.T) {
	const (
		total = 1 << 20
		size  = 16 << 10
		bound = session.UnsentLimit + 64<<10 + 16<<10 // limit, one segment, the window
	)
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{Codec: frame.Length{}, MaxPending: 4 << 20})
		conn := dialSmallWindow(t, srv.Addr())
		stream := lengthFrames('q', size, total)
		_ = conn.SetWriteDeadline(time.Now().Add(servertest.IOTimeout))
		wrote := make(chan struct{})
		go func() { defer close(wrote); _, _ = conn.Write(stream) }()
		defer func() { conn.Close(); <-wrote }()
		local := conn.LocalAddr().(*net.TCPAddr).Port
		server := srv.Addr().(*net.TCPAddr).Port

		// Sample until the server has taken all it will: nothing read and
		// nothing sent for 300ms, as waitStuck waits (with the limit, the
		// goroutine model stops reading once its write blocks; without
		// it, both models read and echo all of it). The bound is checked
		// at every sample; when the sampling stops cannot make it fail.
		var peak, last, lastIn int64
		changed := time.Now()
		servertest.Until(t, 20*time.Second, "the server to stop taking the client's frames", func() (bool, string) {
			q, err := sendQueue(server, local)
			if err != nil {
				t.Fatal(err)
			}
			if q > bound {
				t.Fatalf("the server's kernel holds %d bytes of replies for a client that does not read; want at most %d", q, bound)
			}
			peak = max(peak, q)
			if in := srv.Stats().BytesIn; q != last || in != lastIn {
				last, lastIn, changed = q, in, time.Now()
			}
			return q > 0 && time.Since(changed) > 300*time.Millisecond, fmt.Sprintf("send queue %d, server read %d of %d", q, lastIn, len(stream))
		})
		t.Logf("server's send queue peaked at %d bytes; it read %d of %d", peak, srv.Stats().BytesIn, len(stream))
	})
}

// lengthFrames returns length frames of size bytes of b, at least total
// bytes of them.
func lengthFrames(b byte, size, total int) []byte {
	payload := bytes.Repeat([]byte{b}, size)
	var stream []byte
	for len(stream) < total {
		stream, _ = frame.Length{}.Append(stream, payload)
	}
	return stream
}

// sendQueue reads /proc/net/tcp for the bytes queued in the send queue of
// the IPv4 socket with local port local and remote port remote (written by
// the application, not yet acknowledged by the peer: on loopback, the
// unsent ones).
func sendQueue(local, remote int) (int64, error) {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf(":%04X", local)
	peer := fmt.Sprintf(":%04X", remote)
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], want) || !strings.HasSuffix(f[2], peer) {
			continue
		}
		tx, _, _ := strings.Cut(f[4], ":")
		return strconv.ParseInt(tx, 16, 64)
	}
	return 0, fmt.Errorf("no socket from port %d to port %d in /proc/net/tcp", local, remote)
}

// TestAttackSlowReaderNotRead: a client that sends frames and reads no
// replies must cost the server no more than its first stalled replies. The
// server stops reading it once the socket refuses replies (the goroutine
// model's write blocks; the event loop stops watching the socket for
// input), so the client's further frames wait in the kernel and TCP stops
// it, instead of the server reading, decoding and keeping all it sends
// until a limit closes it (what the event loop did before: it read over
// 2 × MaxPending and closed the client). Once the client reads, every reply
// arrives, byte-exact: stopping loses nothing.
func TestAttackSlowReaderNotRead(t *testing.T) {
	const (
		total      = 8 << 20
		size       = 16 << 10
		maxPending = 1 << 20
	)
	eachModel(t, func(t *testing.T, m string) {
		srv, _ := startLogged(t, m, session.Config{Codec: frame.Length{}, MaxPending: maxPending})
		conn := dialSmallWindow(t, srv.Addr())
		stream := lengthFrames('r', size, total)
		_ = conn.SetDeadline(time.Now().Add(servertest.IOTimeout))
		wrote := make(chan struct{})
		var werr error
		go func() { defer close(wrote); _, werr = conn.Write(stream) }()
		defer func() { conn.Close(); <-wrote }()

		// Wait until the server has taken all it will: nothing more read
		// for 300ms (as TestAttackSlowReaderKernelQueue waits).
		var last int64
		changed := time.Now()
		servertest.Until(t, 20*time.Second, "the server to stop reading the client", func() (bool, string) {
			select {
			case <-wrote:
				t.Fatalf("the client's write ended (err %v; closes %v): the server read %d of its %d bytes",
					werr, srv.Stats().Closes, srv.Stats().BytesIn, len(stream))
			default:
			}
			if in := srv.Stats().BytesIn; in != last {
				last, changed = in, time.Now()
			}
			return last > 0 && time.Since(changed) > 300*time.Millisecond, fmt.Sprintf("server read %d of %d", last, len(stream))
		})
		st := srv.Stats()
		t.Logf("the server read %d of %d bytes and stopped", st.BytesIn, len(stream))
		if st.BytesIn > maxPending {
			t.Errorf("the server read %d bytes from a client that reads nothing; want at most MaxPending, %d", st.BytesIn, maxPending)
		}
		if st.ConnsOpen != 1 {
			t.Fatalf("the client was closed (%v); want it waiting for the client to read", st.Closes)
		}

		// The client reads: the server resumes, and every frame is echoed.
		got := make([]byte, len(stream))
		if _, err := io.ReadFull(conn, got); err != nil {
			t.Fatalf("reading the replies: %v (%d frames sent)", err, len(stream)/(size+4))
		}
		if !bytes.Equal(got, stream) {
			t.Fatal("the replies differ from the frames sent")
		}
		<-wrote
		if werr != nil {
			t.Fatalf("writing the frames: %v", werr)
		}
	})
}
